//! Splitting channels into heads and back, in the two layouts the modules use:
//! batch-first `(B, T, C)` as nanoGPT writes it (`view(B, T, nh, hs).transpose(1, 2)`)
//! and sequence-first `(L, N, E)` as `torch.nn.MultiheadAttention` works internally.

use tch::Tensor;

use crate::error::Result;

/// `(B, T, nh * hs) -> (B, nh, T, hs)`, a view: nanoGPT's
/// `x.view(B, T, nh, hs).transpose(1, 2)`.
pub(crate) fn split_heads(x: &Tensor, nh: i64) -> Result<Tensor> {
    let (b, t, c) = x.size3()?;
    Ok(x.f_view([b, t, nh, c / nh])?.f_transpose(1, 2)?)
}

/// `(B, nh, T, hs) -> (B, T, nh * hs)`, the heads side by side: nanoGPT's
/// `y.transpose(1, 2).contiguous().view(B, T, C)`, the lecture's `torch.cat(heads, -1)`.
pub(crate) fn merge_heads(y: &Tensor) -> Result<Tensor> {
    let (b, nh, t, hs) = y.size4()?;
    Ok(y.f_transpose(1, 2)?.f_reshape([b, t, nh * hs])?)
}

/// `(L, N, h * hd) -> (N, h, L, hd)`: sequence-first input to the `(N, H, L, hd)` that
/// scaled dot-product attention takes.
pub(crate) fn split_heads_seq_first(x: &Tensor, h: i64) -> Result<Tensor> {
    let (l, n, e) = x.size3()?;
    Ok(x.f_view([l, n, h, e / h])?.f_permute([1, 2, 0, 3])?)
}

/// `(N, H, L, hd) -> (L * N, H * hd)`: the heads side by side, sequence-first and
/// flattened for the output projection.
pub(crate) fn merge_heads_seq_first(y: &Tensor) -> Result<Tensor> {
    let (n, h, l, hd) = y.size4()?;
    Ok(y.f_permute([2, 0, 1, 3])?.f_reshape([l * n, h * hd])?)
}
