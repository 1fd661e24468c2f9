//! The shapes scaled dot-product attention accepts, broadcast as PyTorch broadcasts them:
//! query `(.., L, E)`, key `(.., S, E)`, value `(.., S, Ev)`, each at least 2-D, whose
//! leading ("batch") dimensions broadcast together as in `torch.matmul` — a query of
//! batch 1 against keys of batch 2 gives batch 2, a 3-D query against 4-D keys gives 4-D,
//! any number of batch dimensions. With `enable_gqa`, the key's and value's heads
//! (dimension -3) may instead divide the query's: each serves a group of consecutive
//! query heads. Any dimension may be 0 (an empty batch gives an empty output).
//!
//! Key and value lengths must agree (PyTorch's CPU flash kernel reads out of bounds
//! otherwise). Where a batch of 1 meets a batch of 0, the result has batch 0 as
//! broadcasting defines; PyTorch 2.13 returns batch 1 there.

use tch::Tensor;

use crate::error::{Error, Result};

/// Checks the shapes, dtypes and devices of query, key and value; returns the shape of
/// the scores `(.., L, S)` (their batch dimensions broadcast, heads grouped).
pub(crate) fn check(q: &Tensor, k: &Tensor, v: &Tensor, enable_gqa: bool) -> Result<Vec<i64>> {
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    for (arg, t, s) in [("query", q, &qs), ("key", k, &ks), ("value", v, &vs)] {
        if s.len() < 2 {
            return Err(Error::shape(arg, "at least 2-D (.., L, E)", s));
        }
        if !t.is_floating_point() {
            return Err(Error::Dtype {
                arg: arg.into(),
                expected: "a floating dtype".into(),
                got: t.kind(),
            });
        }
    }
    for (arg, t) in [("key", k), ("value", v)] {
        crate::check::same_kind_device(arg, t, q.kind(), q.device()).map_err(|e| match e {
            Error::Dtype { arg, got, .. } => Error::Dtype {
                arg,
                expected: format!("the query's dtype {:?}", q.kind()),
                got,
            },
            other => other,
        })?;
    }
    let (l, e) = (qs[qs.len() - 2], qs[qs.len() - 1]);
    let s = ks[ks.len() - 2];
    if ks[ks.len() - 1] != e {
        return Err(Error::shape(
            "key",
            format!("last dimension E = {e} like query {qs:?}"),
            &ks,
        ));
    }
    if vs[vs.len() - 2] != s {
        return Err(Error::shape(
            "value",
            format!("(.., S, Ev) with S = {s} like key {ks:?}"),
            &vs,
        ));
    }
    let q_batch = &qs[..qs.len() - 2];
    let k_batch = grouped("key", &ks, q_batch, enable_gqa)?;
    let v_batch = grouped("value", &vs, q_batch, enable_gqa)?;
    let batch = broadcast(q_batch, &k_batch).ok_or_else(|| mismatch("key", &qs, &ks))?;
    let mut scores = broadcast(&batch, &v_batch).ok_or_else(|| mismatch("value", &qs, &vs))?;
    scores.extend([l, s]);
    Ok(scores)
}

/// The batch dimensions of key or value, with their heads counted as the query's when
/// `enable_gqa` groups them (their heads divide the query's).
fn grouped(arg: &str, size: &[i64], q_batch: &[i64], enable_gqa: bool) -> Result<Vec<i64>> {
    let mut batch = size[..size.len() - 2].to_vec();
    if !enable_gqa || batch.is_empty() || q_batch.is_empty() {
        return Ok(batch);
    }
    let (hq, h) = (q_batch[q_batch.len() - 1], batch[batch.len() - 1]);
    if h != hq {
        if h <= 0 || hq % h != 0 {
            return Err(Error::shape(
                arg,
                format!(
                    "a number of heads (dimension -3) that divides the query's {hq} (enable_gqa)"
                ),
                size,
            ));
        }
        let last = batch.len() - 1;
        batch[last] = hq;
    }
    Ok(batch)
}

/// How many times each key/value head repeats for the query's heads under `enable_gqa`:
/// 1 when they are not grouped.
pub(crate) fn groups(q: &Tensor, t: &Tensor, enable_gqa: bool) -> i64 {
    let (qs, ts) = (q.size(), t.size());
    if !enable_gqa || qs.len() < 3 || ts.len() < 3 {
        return 1;
    }
    let (hq, h) = (qs[qs.len() - 3], ts[ts.len() - 3]);
    if h == hq || h <= 0 {
        1
    } else {
        hq / h
    }
}

/// The broadcast of two batch shapes, right-aligned; `None` when a pair of dimensions
/// differ and neither is 1.
pub(crate) fn broadcast(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let n = a.len().max(b.len());
    let at = |s: &[i64], i: usize| {
        if i < n - s.len() {
            1
        } else {
            s[i - (n - s.len())]
        }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn mismatch(arg: &str, qs: &[i64], got: &[i64]) -> Error {
    Error::shape(
        arg,
        format!(
            "batch dimensions that broadcast with query {qs:?} (each equal or 1, aligned \
             from the right; with enable_gqa, heads that divide the query's)"
        ),
        got,
    )
}
