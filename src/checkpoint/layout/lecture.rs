//! The lecture's `MultiHeadAttention` of `Head`s: `heads.{h}.{query,key,value}.weight`
//! `[hs, C]` (no biases), a `tril` buffer per head, `proj.{weight,bias}`.

use tch::Tensor;

use super::block::{bias_or_zeros, check_tril, Block};
use super::{Attn, ConvertOptions, Layout, BLOCK_SIZE, HEADS};
use crate::error::{Error, Result};

/// Reads `heads.{h}.{query,key,value}.weight` `[hs, C]` (biases optional, all heads or
/// none), each head's `tril`, and `proj`; the heads are stacked into `[heads * hs, C]`.
pub(super) fn extract(b: &mut Block) -> Result<Attn> {
    let mut heads = 0;
    while b
        .tensors
        .contains_key(&format!("{}heads.{heads}.query.weight", b.prefix))
    {
        heads += 1;
    }
    let first = b.need("heads.0.query.weight")?;
    let (hs, c) = match first.size()[..] {
        [hs, c] => (hs, c),
        _ => return Err(b.err("heads.0.query.weight", "expected 2 dims")),
    };
    let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let (mut q_b, mut k_b, mut v_b) = (Vec::new(), Vec::new(), Vec::new());
    let mut block_size = None;
    for h in 0..heads {
        for (name, list, blist) in [
            ("query", &mut q, &mut q_b),
            ("key", &mut k, &mut k_b),
            ("value", &mut v, &mut v_b),
        ] {
            let key = format!("heads.{h}.{name}.weight");
            let w = b.need(&key)?;
            b.shape(&key, &w, &[hs, c])?;
            list.push(w);
            if let Some(bias) = b.bias(&format!("heads.{h}.{name}.bias"), hs)? {
                blist.push(bias);
            }
        }
        let key = format!("heads.{h}.tril");
        if let Some(tril) = b.get(&key) {
            b.shape(&key, &tril, &[-1, -1])?;
            let n = check_tril(b, &key, &tril)?;
            if block_size.is_some_and(|bs| bs != n) {
                return Err(b.err(&key, "heads disagree on the block size"));
            }
            block_size = Some(n);
        }
    }
    let d = heads * hs;
    let o = b.need("proj.weight")?;
    b.shape("proj.weight", &o, &[c, d])?;
    let o_b = b.bias("proj.bias", c)?;
    let cat = |parts: &[Tensor], name: &str| -> Result<Option<Tensor>> {
        match parts.len() {
            0 => Ok(None),
            n if n as i64 == heads => Ok(Some(Tensor::f_cat(parts, 0)?)),
            _ => Err(b.err(
                &format!("heads.*.{name}.bias"),
                "some heads have a bias and some do not",
            )),
        }
    };
    let biases = (cat(&q_b, "query")?, cat(&k_b, "key")?, cat(&v_b, "value")?);
    let qkv = [
        Tensor::f_cat(&q, 0)?,
        Tensor::f_cat(&k, 0)?,
        Tensor::f_cat(&v, 0)?,
    ];
    let mut attn = Attn::new(Layout::Lecture, qkv, biases, o, o_b);
    attn.heads = Some(heads);
    attn.block_size = block_size;
    Ok(attn)
}

/// Splits the projections per head; the head count and the `tril` size come from the
/// options or the source, and are an error when neither has them.
pub(super) fn emit(a: &Attn, opts: &ConvertOptions) -> Result<Vec<(String, Tensor)>> {
    let (d, c) = (a.d(), a.c());
    let heads = opts.heads.or(a.heads).ok_or_else(|| {
        Error::invalid(
            HEADS,
            format!(
                "not set, and {} does not record the head count that the lecture layout \
                 needs (it stores one query/key/value per head)",
                a.source
            ),
        )
    })?;
    if heads <= 0 || d % heads != 0 {
        return Err(Error::invalid(
            HEADS,
            format!("{heads} heads do not divide the projection size {d}"),
        ));
    }
    let bs = opts.block_size.or(a.block_size).ok_or_else(|| {
        Error::invalid(
            BLOCK_SIZE,
            format!(
                "not set, and {} does not record the block size that the lecture layout \
                 needs (each head stores a tril [block_size, block_size])",
                a.source
            ),
        )
    })?;
    if bs <= 0 {
        return Err(Error::invalid(
            BLOCK_SIZE,
            format!("must be positive, got {bs}"),
        ));
    }
    let tril = Tensor::f_ones([bs, bs], (a.q.kind(), a.q.device()))?.f_tril(0)?;
    let hs = d / heads;
    let chunks = |t: &Tensor| t.f_split(hs, 0);
    let (q, k, v) = (chunks(&a.q)?, chunks(&a.k)?, chunks(&a.v)?);
    let mut out = Vec::new();
    for h in 0..heads as usize {
        out.push((format!("heads.{h}.key.weight"), k[h].shallow_clone()));
        out.push((format!("heads.{h}.query.weight"), q[h].shallow_clone()));
        out.push((format!("heads.{h}.value.weight"), v[h].shallow_clone()));
        out.push((format!("heads.{h}.tril"), tril.shallow_clone()));
    }
    out.push(("proj.weight".into(), a.o.shallow_clone()));
    out.push(("proj.bias".into(), bias_or_zeros(&a.o_b, c, &a.o)?));
    Ok(out)
}
