//! Reading one block's tensors, each key at most once, with the checks every layout
//! shares: shapes, biases, the causal mask buffers, one floating dtype.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tch::{Kind, Tensor};

use super::{Attn, Biases};
use crate::error::{Error, Result};

/// The tensors under one prefix, each taken at most once.
pub(super) struct Block<'a> {
    pub(super) tensors: &'a BTreeMap<String, Tensor>,
    pub(super) prefix: &'a str,
    pub(super) source: &'a str,
    pub(super) taken: BTreeSet<String>,
    /// Whether the tensors hold their data. `false` for stand-ins built from a file's
    /// header ([`stand_in`]): shapes and dtypes are checked, contents (a mask buffer's)
    /// are not, and nothing the size of a projection is allocated.
    pub(super) data: bool,
}

impl Block<'_> {
    /// The tensor under `key`, if there is one. A view whose elements outnumber its
    /// storage's must fit in memory before a conversion copies it.
    pub(super) fn get(&mut self, key: &str) -> Result<Option<Tensor>> {
        let full = format!("{}{key}", self.prefix);
        let Some(t) = self.tensors.get(&full) else {
            return Ok(None);
        };
        if self.data && !t.is_contiguous() {
            let bytes = t.numel() as u64 * t.kind().elt_size_in_bytes() as u64;
            let what = format!("tensor {full} (a view of shape {:?}) converted", t.size());
            crate::io::check_fits(bytes, self.source, &what)?;
        }
        self.taken.insert(full);
        Ok(Some(t.shallow_clone()))
    }

    pub(super) fn need(&mut self, key: &str) -> Result<Tensor> {
        self.get(key)?.ok_or_else(|| {
            Error::malformed(self.source, format!("missing key {}{key}", self.prefix))
        })
    }

    pub(super) fn err(&self, key: &str, reason: impl fmt::Display) -> Error {
        Error::malformed(self.source, format!("{}{key}: {reason}", self.prefix))
    }

    /// Checks `t`'s shape against `want` (`-1` = any), naming the key.
    pub(super) fn shape(&self, key: &str, t: &Tensor, want: &[i64]) -> Result<()> {
        let got = t.size();
        let ok = got.len() == want.len() && got.iter().zip(want).all(|(&g, &w)| w < 0 || g == w);
        if ok {
            Ok(())
        } else {
            Err(self.err(key, format!("expected shape {want:?}, got {got:?}")))
        }
    }

    /// `parts` stacked along dim 0; for stand-ins, a stand-in of that shape.
    pub(super) fn cat(&self, parts: &[Tensor]) -> Result<Tensor> {
        if self.data {
            return Ok(Tensor::f_cat(parts, 0)?);
        }
        let mut shape = parts.first().map(|p| p.size()).unwrap_or_default();
        if let Some(rows) = shape.first_mut() {
            *rows = parts.iter().map(|p| p.size()[0]).sum();
        }
        let kind = parts.first().map_or(Kind::Float, |p| p.kind());
        stand_in(kind, &shape)
    }

    pub(super) fn bias(&mut self, key: &str, n: i64) -> Result<Option<Tensor>> {
        match self.get(key)? {
            Some(b) => {
                self.shape(key, &b, &[n])?;
                Ok(Some(b))
            }
            None => Ok(None),
        }
    }
}

pub(super) fn split3(t: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let parts = t.f_chunk(3, 0)?;
    let [q, k, v]: [Tensor; 3] = parts
        .try_into()
        .map_err(|_| Error::invalid("stacked projection", "cannot split in three"))?;
    Ok((q, k, v))
}

pub(super) fn split3_bias(b: Option<Tensor>) -> Result<Biases> {
    Ok(match b {
        Some(b) => {
            let (q, k, v) = split3(&b)?;
            (Some(q), Some(k), Some(v))
        }
        None => (None, None, None),
    })
}

/// A causal mask buffer must be the lower-triangular ones its module builds; anything
/// else carries information the other layouts cannot hold.
pub(super) fn check_tril(block: &Block, key: &str, t: &Tensor) -> Result<i64> {
    let size = t.size();
    let n = *size.last().unwrap_or(&0);
    if size.len() < 2 || size[size.len() - 2] != n || t.numel() as i64 != n * n {
        return Err(block.err(key, format!("expected a square causal mask, got {size:?}")));
    }
    if !block.data {
        return Ok(n);
    }
    let want = Tensor::f_ones([n, n], (Kind::Bool, t.device()))?.f_tril(0)?;
    let same = t.f_reshape([n, n])?.f_ne(0)?.f_equal(&want)?;
    if !same {
        return Err(block.err(
            key,
            "not the lower-triangular causal mask; it cannot be converted",
        ));
    }
    Ok(n)
}

pub(super) fn check_dtypes(b: &Block, a: &Attn) -> Result<()> {
    let kind = a.q.kind();
    if !matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    ) {
        return Err(b.err("", format!("weights are {kind:?}, not floating point")));
    }
    let all = [
        Some(&a.k),
        Some(&a.v),
        Some(&a.o),
        a.q_b.as_ref(),
        a.k_b.as_ref(),
    ]
    .into_iter()
    .chain([a.v_b.as_ref(), a.o_b.as_ref()])
    .flatten();
    for t in all {
        if t.kind() != kind {
            return Err(b.err(
                "",
                format!("mixed dtypes ({kind:?} and {:?}) in one block", t.kind()),
            ));
        }
    }
    Ok(())
}

/// A tensor of `kind` and `shape` that holds one element, repeated (stride 0): what a
/// header says of a tensor, for code that looks at shapes and dtypes only.
pub(super) fn stand_in(kind: Kind, shape: &[i64]) -> Result<Tensor> {
    Ok(Tensor::f_zeros([0i64; 0], (kind, tch::Device::Cpu))?.f_expand(shape, false)?)
}

/// A bias, or zeros of `n` (which change nothing) where the target needs one.
pub(super) fn bias_or_zeros(b: &Option<Tensor>, n: i64, like: &Tensor) -> Result<Tensor> {
    match b {
        Some(b) => Ok(b.shallow_clone()),
        None => Ok(Tensor::f_zeros([n], (like.kind(), like.device()))?),
    }
}

pub(super) fn is_nonzero(b: &Option<Tensor>) -> Result<bool> {
    match b {
        Some(b) => Ok(b.f_ne(0)?.f_any()?.f_int64_value(&[])? != 0),
        None => Ok(false),
    }
}
