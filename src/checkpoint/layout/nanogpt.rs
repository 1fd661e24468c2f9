//! nanoGPT's `CausalSelfAttention`: `c_attn.weight` `[3C, C]` (q, k, v stacked),
//! `c_attn.bias`, `c_proj.{weight,bias}` (biases optional), and the non-flash variant's
//! causal mask buffer `bias` `[1, 1, T, T]`. Hugging Face GPT-2 ([`super::hf_gpt2`])
//! has the same keys with the weights transposed, so the code here serves both.

use tch::{Kind, Tensor};

use super::block::{bias_or_zeros, check_tril, split3, split3_bias, Block};
use super::{Attn, ConvertOptions, Layout, BLOCK_SIZE};
use crate::error::{Error, Result};

/// Reads nanoGPT's keys.
pub(super) fn extract(b: &mut Block) -> Result<Attn> {
    extract_c_attn(b, Layout::NanoGpt)
}

/// Writes nanoGPT's keys.
pub(super) fn emit(
    a: &Attn,
    opts: &ConvertOptions,
    with_bias: bool,
) -> Result<Vec<(String, Tensor)>> {
    emit_c_attn(a, Layout::NanoGpt, opts, with_bias)
}

/// nanoGPT and Hugging Face GPT-2: the same stacked `c_attn`, transposed in GPT-2
/// (Conv1D computes `x @ W + b` with `W [in, out]`).
pub(super) fn extract_c_attn(b: &mut Block, layout: Layout) -> Result<Attn> {
    let transposed = layout == Layout::HfGpt2;
    let w = b.need("c_attn.weight")?;
    let (c, three_c) = match (&w.size()[..], transposed) {
        (&[rows, cols], false) => (cols, rows),
        (&[rows, cols], true) => (rows, cols),
        _ => return Err(b.err("c_attn.weight", "expected 2 dims")),
    };
    if three_c != 3 * c || c == 0 {
        let want = if transposed { "[C, 3C]" } else { "[3C, C]" };
        return Err(b.err(
            "c_attn.weight",
            format!("expected shape {want}, got {:?}", w.size()),
        ));
    }
    let w = if transposed { w.f_transpose(0, 1)? } else { w };
    let (q, k, v) = split3(&w)?;
    let biases = split3_bias(b.bias("c_attn.bias", 3 * c)?)?;
    let o = b.need("c_proj.weight")?;
    b.shape("c_proj.weight", &o, &[c, c])?;
    let o = if transposed { o.f_transpose(0, 1)? } else { o };
    let o_b = b.bias("c_proj.bias", c)?;
    let mut own = Vec::new();
    let mut block_size = None;
    if let Some(mask) = b.get("bias") {
        b.shape("bias", &mask, &[1, 1, -1, -1])?;
        block_size = Some(check_tril(b, "bias", &mask)?);
        own.push(("bias".to_string(), mask));
    }
    if transposed {
        if let Some(masked_bias) = b.get("masked_bias") {
            own.push(("masked_bias".to_string(), masked_bias));
        }
    }
    let mut attn = Attn::new(layout, [q, k, v], biases, o, o_b);
    attn.block_size = block_size;
    attn.own = own;
    Ok(attn)
}

/// Writes the stacked `c_attn` and `c_proj` of `to` (nanoGPT or GPT-2, transposed), and
/// the mask buffer: the source's own when `to` is its layout, else a new one when
/// `opts.mask_buffer` asks for it.
pub(super) fn emit_c_attn(
    a: &Attn,
    to: Layout,
    opts: &ConvertOptions,
    with_bias: bool,
) -> Result<Vec<(String, Tensor)>> {
    let gpt2 = to == Layout::HfGpt2;
    let w = a.stacked_weight()?;
    let (w, o) = if gpt2 {
        (
            w.f_transpose(0, 1)?.f_contiguous()?,
            a.o.f_transpose(0, 1)?.f_contiguous()?,
        )
    } else {
        (w, a.o.shallow_clone())
    };
    let mut out = vec![("c_attn.weight".into(), w), ("c_proj.weight".into(), o)];
    if with_bias {
        out.push(("c_attn.bias".into(), a.stacked_bias()?));
        out.push(("c_proj.bias".into(), bias_or_zeros(&a.o_b, a.c(), &a.o)?));
    }
    let keep_own = to == a.source && opts.mask_buffer != Some(false) && !a.own.is_empty();
    if keep_own {
        out.extend(a.own.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
    } else if opts.mask_buffer.unwrap_or(false) {
        let bs = opts.block_size.or(a.block_size).ok_or_else(|| {
            Error::invalid(
                BLOCK_SIZE,
                format!(
                    "not set, and {} does not record the block size that the causal mask \
                     buffer needs",
                    a.source
                ),
            )
        })?;
        let kind = if gpt2 { Kind::Bool } else { a.q.kind() };
        let tril = Tensor::f_ones([bs, bs], (kind, a.q.device()))?
            .f_tril(0)?
            .f_view([1, 1, bs, bs])?;
        out.push(("bias".into(), tril));
        if gpt2 {
            let masked = Tensor::f_from_slice(&[-1e4f32])?.f_reshape([0i64; 0])?;
            out.push(("masked_bias".into(), masked.f_to_kind(a.q.kind())?));
        }
    }
    Ok(out)
}
