//! `torch.nn.MultiheadAttention`'s checks of its inputs and masks (`_mha_shape_check`
//! and the forward's asserts), before any op runs, each failure a typed error naming
//! the argument.

use tch::Tensor;

use super::mha_config::{MhaOptions, MultiheadAttentionConfig};
use crate::check;
use crate::error::{Error, Result};

/// `query`, `key`, `value` against the config and the parameters' dtype and device
/// (`like`). Returns `(batched, L, S, N)` (`N = 1` unbatched).
pub(super) fn inputs(
    cfg: &MultiheadAttentionConfig,
    like: &Tensor,
    [query, key, value]: [&Tensor; 3],
) -> Result<(bool, i64, i64, i64)> {
    let (kind, device) = (like.kind(), like.device());
    for (arg, t) in [("query", query), ("key", key), ("value", value)] {
        check::same_kind_device(arg, t, kind, device)?;
    }
    let (qs, ks, vs) = (query.size(), key.size(), value.size());
    let batched = match qs.len() {
        3 => true,
        2 => false,
        _ => return Err(Error::shape("query", "batched 3-D or unbatched 2-D", &qs)),
    };
    let layout = match (batched, cfg.batch_first) {
        (false, _) => "(L, E)",
        (true, false) => "(L, N, E)",
        (true, true) => "(N, L, E)",
    };
    let dims = qs.len();
    for (arg, s, width) in [
        ("query", &qs, cfg.embed_dim),
        ("key", &ks, cfg.kdim()),
        ("value", &vs, cfg.vdim()),
    ] {
        if s.len() != dims || s[dims - 1] != width || s.contains(&0) {
            return Err(Error::shape(
                arg,
                format!("{layout} with last dimension {width}, no zero sizes"),
                s,
            ));
        }
    }
    // Sequence and batch dims: (S, N) of key and value agree; N of query agrees.
    if ks[..dims - 1] != vs[..dims - 1] {
        return Err(Error::shape(
            "value",
            format!("the same sequence and batch dims as key {ks:?}"),
            &vs,
        ));
    }
    let (seq, batch) = if cfg.batch_first { (1, 0) } else { (0, 1) };
    let (l, s) = if batched {
        (qs[seq], ks[seq])
    } else {
        (qs[0], ks[0])
    };
    if batched && ks[batch] != qs[batch] {
        return Err(Error::shape(
            "key",
            format!("batch size {} like query {qs:?}", qs[batch]),
            &ks,
        ));
    }
    let n = if batched { qs[batch] } else { 1 };
    Ok((batched, l, s, n))
}

/// `key_padding_mask` `(N, S)` (or `(S,)` unbatched) and `attn_mask` `(L, S)` or
/// `(N * num_heads, L, S)`; `is_causal` only with an `attn_mask`, as in PyTorch.
pub(super) fn masks(
    cfg: &MultiheadAttentionConfig,
    like: &Tensor,
    o: &MhaOptions,
    batched: bool,
    [l, s, n]: [i64; 3],
) -> Result<()> {
    for (arg, m) in [
        ("key_padding_mask", &o.key_padding_mask),
        ("attn_mask", &o.attn_mask),
    ] {
        if let Some(m) = m {
            m.check_like(arg, like.kind(), like.device())?;
        }
    }
    if let Some(m) = &o.key_padding_mask {
        let expected = if batched { vec![n, s] } else { vec![s] };
        if m.tensor().size() != expected {
            return Err(Error::shape(
                "key_padding_mask",
                format!("{expected:?} (N, S)"),
                &m.tensor().size(),
            ));
        }
    }
    if let Some(m) = &o.attn_mask {
        let size = m.tensor().size();
        let nh = if batched {
            n * cfg.num_heads
        } else {
            cfg.num_heads
        };
        if size != [l, s] && size != [nh, l, s] {
            return Err(Error::shape(
                "attn_mask",
                format!(
                    "(L, S) = {:?} or (N * num_heads, L, S) = {:?}",
                    [l, s],
                    [nh, l, s]
                ),
                &size,
            ));
        }
    } else if o.is_causal {
        return Err(Error::invalid(
            "is_causal",
            "is a hint that needs attn_mask, as in PyTorch; pass the causal mask too",
        ));
    }
    Ok(())
}
