//! Rotary position embeddings (Su et al., "RoFormer", 2021) in transformers' convention
//! (`LlamaRotaryEmbedding`, `rotate_half`, `apply_rotary_pos_emb`): each head's vector is
//! split into halves `(x1, x2)`, not interleaved pairs, and rotated by
//! `x * cos + rotate_half(x) * sin` with `rotate_half(x) = (-x2, x1)`.
//!
//! llama.cpp stores the query and key projections with their rows permuted so that its
//! interleaved-pair rotation computes the same thing; a GGUF loader undoes that
//! permutation (`crate::models::llama`) before these functions see the weights.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The inverse frequencies of a rotary embedding, `1 / base^(2i / D)` for `i < D / 2`,
/// computed in float32 exactly as transformers' `compute_default_rope_parameters`.
#[derive(Debug)]
pub struct RotaryEmbedding {
    /// `inv_freq`, `[D / 2]`, float32.
    pub inv_freq: Tensor,
    /// The head dimension D the embedding rotates.
    pub head_dim: i64,
}

impl RotaryEmbedding {
    /// The embedding for heads of `head_dim` (even) with `rope_theta` = `base`.
    pub fn new(head_dim: i64, base: f64, device: Device) -> Result<Self> {
        if head_dim <= 0 || head_dim % 2 != 0 {
            return Err(Error::config(
                "head_dim",
                format!("must be positive and even for rotary embeddings, got {head_dim}"),
            ));
        }
        if !(base > 0.0 && base.is_finite()) {
            return Err(Error::config(
                "rope_theta",
                format!("must be positive, got {base}"),
            ));
        }
        // base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)
        let exponents = Tensor::f_arange_start_step(0, head_dim, 2, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(head_dim)?;
        let inv_freq = Tensor::f_pow_scalar(base, &exponents)?.f_reciprocal()?;
        Ok(Self { inv_freq, head_dim })
    }

    /// `(cos, sin)`, each `(N, L, D)` float32, for integer `positions` `(N, L)`: the
    /// angles `position * inv_freq`, repeated over both halves of the head.
    pub fn f_cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        if positions.dim() != 2 {
            return Err(Error::shape("positions", "(N, L)", &positions.size()));
        }
        // (N, L, 1) * (D/2) -> (N, L, D/2): transformers' outer product by matmul, whose
        // inner dimension of 1 makes it the same single product per entry.
        let freqs = positions
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?; // (N, L, D)
        Ok((emb.f_cos()?, emb.f_sin()?))
    }

    /// The positions `offset .. offset + len` for a batch of `n`, `(N, L)` int64: the
    /// tokens after a cache that already holds `offset` of them.
    pub fn positions(n: i64, offset: i64, len: i64, device: Device) -> Result<Tensor> {
        Ok(
            Tensor::f_arange_start(offset, offset + len, (Kind::Int64, device))?
                .f_unsqueeze(0)?
                .f_expand([n, len], false)?,
        )
    }
}

/// `rotate_half(x)`: `(x1, x2) -> (-x2, x1)` over the last dimension.
pub fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.size().last().copied().unwrap_or(0);
    let x1 = x.f_narrow(-1, 0, d / 2)?;
    let x2 = x.f_narrow(-1, d / 2, d - d / 2)?;
    Ok(Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?)
}

/// `apply_rotary_pos_emb(x, cos, sin)` for one of query or key: `x` `(N, H, L, D)`,
/// `cos` and `sin` `(N, L, D)` (broadcast over the heads); returns `(N, H, L, D)`.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (xs, cs) = (x.size(), cos.size());
    if xs.len() != 4 || cs.len() != 3 || cs[1..] != xs[2..] || sin.size() != cs {
        return Err(Error::shape(
            "x, cos, sin",
            format!("x (N, H, L, D) with cos and sin (N, L, D) of the same L, D; got cos {cs:?}"),
            &xs,
        ));
    }
    let (cos, sin) = (cos.f_unsqueeze(1)?, sin.f_unsqueeze(1)?);
    Ok(x.f_mul(&cos)?.f_add(&rotate_half(x)?.f_mul(&sin)?)?)
}
