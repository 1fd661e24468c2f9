//! Packed documents: several sequences concatenated into one row of the batch, each query
//! seeing only the keys of its own document — FlexAttention's document masking
//! (`document_id[q_idx] == document_id[kv_idx]` in a `mask_mod`) and flash-attention's
//! varlen API (`flash_attn_varlen_func` with `cu_seqlens_q` / `cu_seqlens_k`).
//!
//! Documents are given as ids, one per query and one per key position (`(L,)` and `(S,)`,
//! or `(N, L)` and `(N, S)` per batch row), or as cumulative sequence lengths
//! ([`Documents::from_cu_seqlens`]), flash-attention's `[0, len_0, len_0 + len_1, ..]`.
//!
//! # Causal masking and windows apply per document, aligned at its end
//! With documents, `is_causal` and `window` are flash-attention's varlen ones: each
//! document is its own sequence, its last query sitting at its last key. A document with
//! `Lq` queries over `Lk` keys gives its query `i` (counted within the document) the keys
//! `j` (likewise) with `j <= i + Lk - Lq` under `is_causal`, and
//! `i + Lk - Lq - left <= j <= i + Lk - Lq + right` under `window = (left, right)`.
//! A document of 2 queries over 5 keys: with `is_causal` query 0 sees keys 0–3 and
//! query 1 keys 0–4 (PyTorch's top-left `is_causal` would give 0 and 0–1); with
//! `window = (1, 0)` query 0 sees keys 2–3 and query 1 keys 3–4. So a chunk of new
//! queries per document over each document's cached and new keys (chunked prefill,
//! decoding packed sequences) gets the rows of the full computation.
//!
//! Without documents, `is_causal` stays PyTorch's top-left mask and the window is aligned
//! at the end of the whole sequence (see [`Window`]).
//!
//! Shared ids ([`Documents::same`], `document_ids` `(T,)`) keep FlexAttention's reading,
//! `q_idx >= kv_idx` within a document and the window over global positions: each of
//! their documents has as many queries as keys at the same positions, so aligning at its
//! end or at its start is the same, and both readings agree. Ids need not be contiguous:
//! on each side a position is counted from the last position of its document, the
//! spacing between positions kept (for contiguous documents, such as cumulative lengths
//! give, that is the position within the document).

use tch::{Device, Kind, Tensor};

use crate::attention::window::Window;
use crate::error::{Error, Result};

/// The document of every query and key position.
#[derive(Debug)]
pub struct Documents {
    query: Tensor,
    key: Tensor,
    /// Where the ids came from, so that a mismatch names the caller's argument.
    source: Source,
}

/// The arguments the documents were given as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `document_ids.query` / `document_ids.key`.
    Ids,
    /// `cu_seqlens_q` / `cu_seqlens_k`.
    CuSeqlens,
}

impl Documents {
    /// Document ids of the queries `(L,)` or `(N, L)` and of the keys `(S,)` or `(N, S)`:
    /// integer tensors of the same rank on the same device. Query `i` sees key `j` only
    /// when their ids are equal; `is_causal` and the window then apply within each
    /// document, aligned at its end (see the module docs).
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
            source: Source::Ids,
        })
    }

    /// A second handle on the same ids.
    pub fn shallow_clone(&self) -> Self {
        Documents {
            query: self.query.shallow_clone(),
            key: self.key.shallow_clone(),
            source: self.source,
        }
    }

    /// Self-attention over packed documents: the same ids `(T,)` or `(N, T)` for queries
    /// and keys. `is_causal` is then FlexAttention's `q_idx >= kv_idx` within a document
    /// (its documents are square, so aligned at the end or at the start is the same).
    pub fn same(ids: Tensor) -> Result<Self> {
        let key = ids.shallow_clone();
        Documents::new(ids, key)
    }

    /// From cumulative sequence lengths, flash-attention's `cu_seqlens_q` and
    /// `cu_seqlens_k`: 1-D integer tensors `[0, end_0, end_1, ..]`, non-decreasing, with
    /// as many documents on each side, the last values `L` and `S`. Document `d` holds
    /// queries `cu_q[d]..cu_q[d + 1]` and keys `cu_k[d]..cu_k[d + 1]`; with `is_causal`
    /// and a window it is `flash_attn_varlen_func`'s document: with 2 queries over 5 keys,
    /// causal query 0 sees keys 0–3 and query 1 keys 0–4.
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
        Ok(Documents {
            source: Source::CuSeqlens,
            ..Documents::new(q, k)?
        })
    }

    /// The ids fit scores of shape `scores` `(.., L, S)`: last dimensions `L` and `S`,
    /// a leading `N` equal to (or broadcasting with) the scores' first dimension, and the
    /// query's device. Cumulative lengths that do not end at `L` (or `S`) are named as
    /// given, with the last value they need.
    pub(crate) fn check(&self, scores: &[i64], device: Device) -> Result<()> {
        let n = scores.len();
        let (l, s) = (scores[n - 2], scores[n - 1]);
        let sides = match self.source {
            Source::Ids => [("document_ids.query", "L"), ("document_ids.key", "S")],
            Source::CuSeqlens => [("cu_seqlens_q", "L"), ("cu_seqlens_k", "S")],
        };
        for ((arg, letter), t, len) in [(sides[0], &self.query, l), (sides[1], &self.key, s)] {
            let size = t.size();
            let fits = match size.as_slice() {
                [x] => *x == len,
                [b, x] => *x == len && n >= 3 && (*b == 1 || *b == scores[0]),
                _ => false,
            };
            if !fits && self.source == Source::CuSeqlens {
                let what = if letter == "L" { "queries" } else { "keys" };
                return Err(Error::invalid(
                    arg,
                    format!(
                        "the last value must be {letter} = {len}, the number of {what} \
                         (scores {scores:?}), got {}",
                        size[0]
                    ),
                ));
            }
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

    /// The keep-mask of the documents together with `causal` masking and `window`, both
    /// applied within each document and aligned at its end (see the module docs);
    /// broadcastable to scores of `rank` dimensions: `(L, S)` for 1-D ids,
    /// `(N, 1, .., 1, L, S)` for `(N, L)` ids.
    pub(crate) fn keep(&self, rank: usize, causal: bool, window: Option<Window>) -> Result<Tensor> {
        let mut keep = self
            .query
            .f_unsqueeze(-1)?
            .f_eq_tensor(&self.key.f_unsqueeze(-2)?)?; // (.., L, S)
        let window = window.filter(|w| !w.is_unbounded());
        if causal || window.is_some() {
            // Key position relative to the query's, both counted from their document's
            // end: flash-attention's `j - (i + Lk - Lq)` within the document.
            let offset = from_end(&self.key)?
                .f_unsqueeze(-2)?
                .f_sub(&from_end(&self.query)?.f_unsqueeze(-1)?)?; // (.., L, S)
            if causal {
                keep = keep.f_logical_and(&offset.f_le(0)?)?;
            }
            if let Some(w) = window {
                keep = keep.f_logical_and(&w.keep_offset(&offset)?)?;
            }
        }
        if self.query.dim() == 1 {
            return Ok(keep);
        }
        let size = keep.size(); // (N, L, S)
        let mut shape = vec![size[0]];
        shape.extend(std::iter::repeat_n(1, rank - 3));
        shape.extend([size[1], size[2]]);
        Ok(keep.f_reshape(&shape)?)
    }
}

/// Each position of `ids` `(.., T)` counted from the last position of its document on
/// the same row: `0` for a document's last position, `-1` for the one before, .. (int64
/// `(.., T)`).
fn from_end(ids: &Tensor) -> Result<Tensor> {
    let t = ids.size()[ids.dim() - 1];
    if t == 0 {
        return Ok(ids.f_to_kind(Kind::Int64)?);
    }
    let pos = Tensor::f_arange(t, (Kind::Int64, ids.device()))?; // (T,)
    let same = ids.f_unsqueeze(-1)?.f_eq_tensor(&ids.f_unsqueeze(-2)?)?; // (.., T, T)
    let last = pos.f_where_scalarother(&same, -1)?.f_amax(-1, false)?; // (.., T)
    Ok(pos.f_sub(&last)?)
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
