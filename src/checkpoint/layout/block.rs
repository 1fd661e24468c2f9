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
}

impl Block<'_> {
    pub(super) fn get(&mut self, key: &str) -> Option<Tensor> {
        let full = format!("{}{key}", self.prefix);
        let t = self.tensors.get(&full)?.shallow_clone();
        self.taken.insert(full);
        Some(t)
    }

    pub(super) fn need(&mut self, key: &str) -> Result<Tensor> {
        self.get(key).ok_or_else(|| {
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

    pub(super) fn bias(&mut self, key: &str, n: i64) -> Result<Option<Tensor>> {
        match self.get(key) {
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
