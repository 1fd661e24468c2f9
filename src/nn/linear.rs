//! `torch.nn.Linear`, initialised as PyTorch initialises it, so that the same seed gives
//! the same weights.
//!
//! tch's own `nn::linear` draws its default init differently; this one calls
//! `uniform_` with exactly the bounds `torch.nn.Linear.reset_parameters` computes:
//! `kaiming_uniform_(weight, a=sqrt(5))` on the `[out, in]` weight, then
//! `uniform_(bias, -1/sqrt(in), 1/sqrt(in))`. VarStore names: `weight`, `bias`.

use std::borrow::Borrow;

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::error::{Error, Result};

/// A linear layer `y = x W^T + b` with PyTorch's parameter names.
#[derive(Debug)]
pub struct Linear {
    /// `weight`, `[out_features, in_features]`.
    pub weight: Tensor,
    /// `bias`, `[out_features]`, when the layer has one.
    pub bias: Option<Tensor>,
}

/// The bound of `kaiming_uniform_(w, a=sqrt(5))` for a weight with `fan_in` inputs,
/// computed in the same order as PyTorch's `torch.nn.init` so the double is the same.
pub fn kaiming_uniform_bound(fan_in: i64) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a.powi(2))).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

/// `torch.nn.Linear(in_features, out_features, bias)` under `path`.
pub fn linear<'a>(
    path: impl Borrow<Path<'a>>,
    in_features: i64,
    out_features: i64,
    bias: bool,
) -> Result<Linear> {
    let path = path.borrow();
    if in_features <= 0 || out_features <= 0 {
        return Err(Error::config(
            path.path("weight"),
            format!("features must be positive, got in={in_features}, out={out_features}"),
        ));
    }
    let bound = kaiming_uniform_bound(in_features);
    let weight = path.f_var(
        "weight",
        &[out_features, in_features],
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    let bias = if bias {
        let bound = 1.0 / (in_features as f64).sqrt();
        Some(path.f_var(
            "bias",
            &[out_features],
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

impl Linear {
    /// `F.linear(x, weight, bias)`: `(*, in) -> (*, out)`. The caller checks `x`.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }

    /// `in_features`, the last dimension the layer takes.
    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    /// `out_features`, the last dimension the layer gives.
    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}
