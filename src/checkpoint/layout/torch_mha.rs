//! `torch.nn.MultiheadAttention`: `in_proj_weight` `[3E, E]` (or `{q,k,v}_proj_weight`
//! when kdim or vdim differ), `in_proj_bias` `[3E]`, `out_proj.{weight,bias}` (biases
//! optional), and `add_bias_kv`'s `bias_k`, `bias_v` `[1, 1, E]`.

use tch::Tensor;

use super::block::{bias_or_zeros, split3, split3_bias, Block};
use super::{Attn, Layout};
use crate::error::Result;

/// Reads the packed `in_proj_weight` or the unpacked `{q,k,v}_proj_weight` (kdim and
/// vdim equal to embed_dim only), `in_proj_bias`, `out_proj`, and `bias_k`/`bias_v`.
pub(super) fn extract(b: &mut Block) -> Result<Attn> {
    let (q, k, v, unpacked) = match b.get("in_proj_weight") {
        Some(w) => {
            let e = w.size().get(1).copied().unwrap_or(0);
            b.shape("in_proj_weight", &w, &[3 * e, e])?;
            if e == 0 {
                return Err(b.err("in_proj_weight", "embed_dim is 0"));
            }
            let (q, k, v) = split3(&w)?;
            (q, k, v, false)
        }
        None => {
            let q = b.need("q_proj_weight")?;
            let e = q.size().first().copied().unwrap_or(0);
            b.shape("q_proj_weight", &q, &[e, e])?;
            let k = b.need("k_proj_weight")?;
            let v = b.need("v_proj_weight")?;
            for (key, t) in [("k_proj_weight", &k), ("v_proj_weight", &v)] {
                b.shape(key, t, &[e, -1])?;
                if t.size()[1] != e {
                    return Err(b.err(
                        key,
                        format!(
                            "kdim/vdim {} differs from embed_dim {e}: the other layouts \
                             project keys and values from the same C",
                            t.size()[1]
                        ),
                    ));
                }
            }
            (q, k, v, true)
        }
    };
    let e = q.size()[0];
    let biases = split3_bias(b.bias("in_proj_bias", 3 * e)?)?;
    let o = b.need("out_proj.weight")?;
    b.shape("out_proj.weight", &o, &[e, e])?;
    let o_b = b.bias("out_proj.bias", e)?;
    let mut own = Vec::new();
    for key in ["bias_k", "bias_v"] {
        if let Some(t) = b.get(key) {
            b.shape(key, &t, &[1, 1, e])?;
            own.push((key.to_string(), t));
        }
    }
    let mut attn = Attn::new(Layout::TorchMha, [q, k, v], biases, o, o_b);
    attn.own_is_lossy = !own.is_empty();
    attn.own = own;
    attn.mha_unpacked = unpacked;
    Ok(attn)
}

/// Writes the packed form, or the unpacked one the source had; `bias_k`/`bias_v` only
/// back to torch-mha itself.
pub(super) fn emit(a: &Attn, with_bias: bool) -> Result<Vec<(String, Tensor)>> {
    let back = a.source == Layout::TorchMha;
    let mut out = Vec::new();
    if a.mha_unpacked && back {
        out.push(("q_proj_weight".into(), a.q.shallow_clone()));
        out.push(("k_proj_weight".into(), a.k.shallow_clone()));
        out.push(("v_proj_weight".into(), a.v.shallow_clone()));
    } else {
        out.push(("in_proj_weight".into(), a.stacked_weight()?));
    }
    out.push(("out_proj.weight".into(), a.o.shallow_clone()));
    if with_bias {
        out.push(("in_proj_bias".into(), a.stacked_bias()?));
        out.push(("out_proj.bias".into(), bias_or_zeros(&a.o_b, a.c(), &a.o)?));
    }
    if back {
        out.extend(a.own.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
    }
    Ok(out)
}
