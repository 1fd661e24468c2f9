//! Packed documents: several sequences concatenated into one row of the batch, each query
//! seeing only the keys of its own document. With causal masking this is the
//! block-diagonal causal attention of FlexAttention's document masking example
//! (`document_id[q_idx] == document_id[kv_idx]` in a `mask_mod`) and of flash-attention's
//! varlen API (`cu_seqlens_q` / `cu_seqlens_k`).
//!
//! Documents are given as ids, one per query and one per key position (`(L,)` and `(S,)`,
//! or `(N, L)` and `(N, S)` per batch row), or as cumulative sequence lengths
//! ([`Documents::from_cu_seqlens`]), flash-attention's `[0, len_0, len_0 + len_1, ..]`.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The document of every query and key position.
#[derive(Debug)]
pub struct Documents {
    query: Tensor,
    key: Tensor,
}

impl Documents {
    /// Document ids of the queries `(L,)` or `(N, L)` and of the keys `(S,)` or `(N, S)`:
    /// integer tensors of the same rank on the same device. Query `i` sees key `j` only
    /// when their ids are equal.
    pub fn new(query_ids: Tensor, key_ids: Tensor) -> Result<Self> {
        for (arg, t) in [
            ("document_ids.query", &query_ids),
            ("document_ids.key", &key_ids),
        ] {
            if !matches!(
                t.kind(),
                Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
            ) {
                return Err(Error::Dtype {
                    arg: arg.into(),
                    expected: "an integer dtype".into(),
                    got: t.kind(),
                });
            }
            if !(1..=2).contains(&t.dim()) {
                return Err(Error::shape(
                    arg,
                    "(L,) / (S,) or (N, L) / (N, S)",
                    &t.size(),
                ));
            }
        }
        if key_ids.dim() != query_ids.dim() {
            return Err(Error::shape(
                "document_ids.key",
                format!(
                    "{}-D like the query ids {:?}",
                    query_ids.dim(),
                    query_ids.size()
                ),
                &key_ids.size(),
            ));
        }
        if key_ids.device() != query_ids.device() {
            return Err(Error::Device {
                arg: "document_ids.key".into(),
                expected: query_ids.device(),
                got: key_ids.device(),
            });
        }
        Ok(Documents {
            query: query_ids,
            key: key_ids,
        })
    }

    /// A second handle on the same ids.
    pub fn shallow_clone(&self) -> Self {
        Documents {
            query: self.query.shallow_clone(),
            key: self.key.shallow_clone(),
        }
    }

    /// Self-attention over packed documents: the same ids `(T,)` or `(N, T)` for queries
    /// and keys.
    pub fn same(ids: Tensor) -> Result<Self> {
        let key = ids.shallow_clone();
        Documents::new(ids, key)
    }

    /// From cumulative sequence lengths, flash-attention's `cu_seqlens_q` and
    /// `cu_seqlens_k`: 1-D integer tensors `[0, end_0, end_1, ..]`, non-decreasing, with
    /// as many documents on each side. Document `d` holds queries
    /// `cu_q[d]..cu_q[d + 1]` and keys `cu_k[d]..cu_k[d + 1]`.
    pub fn from_cu_seqlens(cu_seqlens_q: &Tensor, cu_seqlens_k: &Tensor) -> Result<Self> {
        let q = ids_from_cu_seqlens("cu_seqlens_q", cu_seqlens_q)?;
        let k = ids_from_cu_seqlens("cu_seqlens_k", cu_seqlens_k)?;
        if cu_seqlens_q.size() != cu_seqlens_k.size() {
            return Err(Error::shape(
                "cu_seqlens_k",
                format!(
                    "as many documents as cu_seqlens_q {:?}",
                    cu_seqlens_q.size()
                ),
                &cu_seqlens_k.size(),
            ));
        }
        Documents::new(q, k)
    }

    /// The ids fit scores of shape `scores` `(.., L, S)`: last dimensions `L` and `S`,
    /// a leading `N` equal to (or broadcasting with) the scores' first dimension, and the
    /// query's device.
    pub(crate) fn check(&self, scores: &[i64], device: Device) -> Result<()> {
        let n = scores.len();
        let (l, s) = (scores[n - 2], scores[n - 1]);
        for (arg, t, len, letter) in [
            ("document_ids.query", &self.query, l, "L"),
            ("document_ids.key", &self.key, s, "S"),
        ] {
            let size = t.size();
            let fits = match size.as_slice() {
                [x] => *x == len,
                [b, x] => *x == len && n >= 3 && (*b == 1 || *b == scores[0]),
                _ => false,
            };
            if !fits {
                return Err(Error::shape(
                    arg,
                    format!(
                        "({letter},) or (N, {letter}) with {letter} = {len} and N = {} \
                         (scores {scores:?})",
                        scores[0]
                    ),
                    &size,
                ));
            }
            if t.device() != device {
                return Err(Error::Device {
                    arg: arg.into(),
                    expected: device,
                    got: t.device(),
                });
            }
        }
        Ok(())
    }

    /// The keep-mask, broadcastable to scores of `rank` dimensions: `(L, S)` for 1-D ids,
    /// `(N, 1, .., 1, L, S)` for `(N, L)` ids.
    pub(crate) fn keep(&self, rank: usize) -> Result<Tensor> {
        let same = self
            .query
            .f_unsqueeze(-1)?
            .f_eq_tensor(&self.key.f_unsqueeze(-2)?)?; // (.., L, S)
        if self.query.dim() == 1 {
            return Ok(same);
        }
        let size = same.size(); // (N, L, S)
        let mut shape = vec![size[0]];
        shape.extend(std::iter::repeat_n(1, rank - 3));
        shape.extend([size[1], size[2]]);
        Ok(same.f_reshape(&shape)?)
    }
}

/// Document ids `(T,)` from cumulative lengths `[0, .., T]`: position `t` belongs to the
/// document `d` with `cu[d] <= t < cu[d + 1]`.
fn ids_from_cu_seqlens(arg: &str, cu: &Tensor) -> Result<Tensor> {
    if !matches!(cu.kind(), Kind::Int64 | Kind::Int) {
        return Err(Error::Dtype {
            arg: arg.into(),
            expected: "int32 or int64 cumulative sequence lengths".into(),
            got: cu.kind(),
        });
    }
    if cu.dim() != 1 || cu.size()[0] < 1 {
        return Err(Error::shape(
            arg,
            "(documents + 1,) starting with 0",
            &cu.size(),
        ));
    }
    let values = Vec::<i64>::try_from(cu.f_to_kind(Kind::Int64)?.f_to_device(Device::Cpu)?)?;
    let sorted = values.windows(2).all(|w| w[0] <= w[1]);
    if values[0] != 0 || !sorted {
        return Err(Error::invalid(
            arg,
            format!("cumulative lengths must start at 0 and never decrease, got {values:?}"),
        ));
    }
    let total = values[values.len() - 1];
    let ids: Vec<i64> = (1..values.len())
        .flat_map(|d| std::iter::repeat_n(d as i64 - 1, (values[d] - values[d - 1]) as usize))
        .collect();
    debug_assert_eq!(ids.len() as i64, total);
    Ok(Tensor::f_from_slice(&ids)?.f_to_device(cu.device())?)
}
