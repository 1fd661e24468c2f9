//! Comparing what a case produced with what PyTorch computed, as
//! `torch.testing.assert_close` does with its default tolerances.

use tch::{Device, Kind, Tensor};

use super::case::Case;
use super::run::Outcome;
use crate::error::Result;

/// One compared tensor.
#[derive(Debug, Clone)]
pub struct TensorCheck {
    /// The tensor's name, as in [`Outcome::tensors`].
    pub name: String,
    /// The largest `|actual - expected|`.
    pub max_abs: f64,
    /// The largest `|actual - expected| / |expected|`.
    pub max_rel: f64,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// The comparison of a case's outcome with its expected tensors.
#[derive(Debug, Clone)]
pub struct Report {
    /// One check per expected or produced tensor.
    pub checks: Vec<TensorCheck>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }
    /// The largest absolute error over all checks.
    pub fn max_abs(&self) -> f64 {
        self.checks.iter().map(|c| c.max_abs).fold(0.0, f64::max)
    }
    /// The largest relative error over all checks.
    pub fn max_rel(&self) -> f64 {
        self.checks.iter().map(|c| c.max_rel).fold(0.0, f64::max)
    }
}

/// `torch.testing.assert_close`'s default `(rtol, atol)` for a dtype.
pub fn tolerance(kind: Kind) -> (f64, f64) {
    match kind {
        Kind::Double => (1e-7, 1e-7),
        Kind::Float => (1.3e-6, 1e-5),
        Kind::Half => (1e-3, 1e-5),
        Kind::BFloat16 => (1.6e-2, 1e-5),
        _ => (0.0, 0.0),
    }
}

impl Case {
    /// Compares `outcome` with the expected tensors: the same names, shapes and dtypes,
    /// values within `assert_close`'s default tolerance, NaN in the same places.
    pub fn compare(&self, outcome: &Outcome) -> Result<Report> {
        let mut checks = Vec::new();
        for (name, expected) in &self.expected {
            let check = match outcome.tensors.get(name) {
                None => TensorCheck {
                    name: name.clone(),
                    max_abs: f64::NAN,
                    max_rel: f64::NAN,
                    failure: Some("not produced".into()),
                },
                Some(actual) => compare_tensors(name, actual, expected)?,
            };
            checks.push(check);
        }
        for name in outcome.tensors.keys() {
            if !self.expected.contains_key(name) {
                checks.push(TensorCheck {
                    name: name.clone(),
                    max_abs: f64::NAN,
                    max_rel: f64::NAN,
                    failure: Some("produced but the case expects no such tensor".into()),
                });
            }
        }
        Ok(Report { checks })
    }
}

/// `torch.testing.assert_close(actual, expected)` with default tolerances, reporting the
/// largest absolute and relative errors.
pub fn compare_tensors(name: &str, actual: &Tensor, expected: &Tensor) -> Result<TensorCheck> {
    let mut check = TensorCheck {
        name: name.into(),
        max_abs: 0.0,
        max_rel: 0.0,
        failure: None,
    };
    if actual.size() != expected.size() {
        check.failure = Some(format!(
            "shape {:?}, expected {:?}",
            actual.size(),
            expected.size()
        ));
        return Ok(check);
    }
    if actual.kind() != expected.kind() {
        check.failure = Some(format!(
            "dtype {:?}, expected {:?}",
            actual.kind(),
            expected.kind()
        ));
        return Ok(check);
    }
    let (rtol, atol) = tolerance(expected.kind());
    let a = actual.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    let e = expected.f_to_kind(Kind::Double)?;
    let (a_nan, e_nan) = (a.f_isnan()?, e.f_isnan()?);
    if a_nan.f_ne_tensor(&e_nan)?.f_any()?.f_int64_value(&[])? != 0 {
        check.failure = Some("NaN in different places".into());
    }
    // Equal values (infinities included) count as exact; NaN positions were checked above.
    let same = a.f_eq_tensor(&e)?.f_logical_or(&e_nan)?;
    let diff = a.f_sub(&e)?.f_abs()?.f_masked_fill(&same, 0.0)?;
    let rel = diff.f_div(&e.f_abs()?)?.f_masked_fill(&same, 0.0)?;
    if diff.numel() > 0 {
        check.max_abs = diff.f_max()?.f_double_value(&[])?;
        check.max_rel = rel
            .f_nan_to_num(None, None, None)?
            .f_max()?
            .f_double_value(&[])?;
    }
    let allowed = e.f_abs()?.f_mul_scalar(rtol)?.f_add_scalar(atol)?;
    let bad = diff.f_gt_tensor(&allowed)?.f_logical_or(&diff.f_isnan()?)?;
    let n_bad = bad.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    if n_bad > 0 && check.failure.is_none() {
        check.failure = Some(format!(
            "{n_bad} of {} elements differ by more than atol={atol:e} + rtol={rtol:e} * |expected|",
            e.numel()
        ));
    }
    Ok(check)
}
