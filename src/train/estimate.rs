//! `estimate_loss()`, as the lecture's `gpt.py` and nanoGPT's `train.py` write it, for
//! any model: eval mode, no gradients, `eval_iters` batches of the train split then of
//! the val split; each split's mean taken in float32 as PyTorch takes it
//! (`losses = torch.zeros(eval_iters)`, `losses.mean()`).

use tch::{Kind, Tensor};

use crate::data::Split;
use crate::error::Result;

/// `(train, val)` mean losses: `batch(split)` draws a batch `(X, Y)` as `get_batch`
/// does, `loss(X, Y)` runs the model in eval mode and returns its scalar loss.
pub fn estimate_loss(
    eval_iters: i64,
    mut batch: impl FnMut(Split) -> Result<(Tensor, Tensor)>,
    mut loss: impl FnMut(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<(f32, f32)> {
    tch::no_grad(|| -> Result<(f32, f32)> {
        let mut out = [0f32; 2];
        for (slot, split) in out.iter_mut().zip([Split::Train, Split::Val]) {
            // Grown, not reserved: eval_iters is the user's count, and reserving
            // 2^63 - 1 of them was a capacity overflow (a panic) before one batch.
            let mut losses = Vec::new();
            for _ in 0..eval_iters {
                let (x, y) = batch(split)?;
                losses.push(loss(&x, &y)?.f_double_value(&[])? as f32);
            }
            *slot = Tensor::f_from_slice(&losses)?
                .f_mean(Kind::Float)?
                .f_double_value(&[])? as f32;
        }
        Ok((out[0], out[1]))
    })
}
