//! sentence-transformers' `Pooling` (mean over real tokens) and `Normalize` (L2) modules,
//! what turns all-MiniLM-L6-v2's token states into a sentence embedding.

use tch::{Kind, Tensor};

use crate::error::Result;

/// `Pooling(pooling_mode_mean_tokens=True)`: `(N, L, E)`, mask `(N, L)` -> `(N, E)`,
/// the sum over real tokens divided by their count (clamped at 1e-9, as there).
pub fn mean_pooling(token_embeddings: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let mask = attention_mask
        .f_unsqueeze(-1)?
        .f_to_kind(token_embeddings.kind())?; // (N, L, 1)
    let sum = token_embeddings
        .f_mul(&mask)?
        .f_sum_dim_intlist(1, false, None::<Kind>)?; // (N, E)
    let count = mask
        .f_sum_dim_intlist(1, false, None::<Kind>)?
        .f_clamp_min(1e-9)?; // (N, 1)
    Ok(sum.f_div(&count)?)
}

/// `Normalize()`, i.e. `F.normalize(x, p=2, dim=1)`: `x / max(||x||, 1e-12)`.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .f_clamp_min(1e-12)?;
    Ok(x.f_div(&norm)?)
}
