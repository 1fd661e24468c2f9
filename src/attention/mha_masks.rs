//! `torch.nn.MultiheadAttention`'s masks once made canonical: additive biases, padded
//! with a column as `bias_k` or the zero key is added, and the key padding mask merged
//! into the attention mask per head.

use tch::Tensor;

use crate::error::Result;

/// The forward's masks as additive biases, padded as keys are added.
pub(super) struct Masks {
    /// `(N, S')`.
    pub(super) key_padding: Option<Tensor>,
    /// `(1, L, S')` or `(N * H, L, S')`.
    pub(super) attn: Option<Tensor>,
    /// Whether SDPA may apply the causal mask itself.
    pub(super) is_causal: bool,
}

impl Masks {
    /// One more key (`bias_k` or the zero key), which every query may see.
    pub(super) fn pad(&mut self) -> Result<()> {
        for t in [&mut self.attn, &mut self.key_padding]
            .into_iter()
            .flatten()
        {
            *t = t.f_constant_pad_nd([0, 1])?;
        }
        Ok(())
    }

    /// The key padding mask added to `attn`, per head: `(N * H, 1, S')` broadcast over
    /// the queries.
    pub(super) fn merged(&self, n: i64, h: i64, s_all: i64) -> Result<Option<Tensor>> {
        let Some(kp) = &self.key_padding else {
            return Ok(self.attn.as_ref().map(Tensor::shallow_clone));
        };
        let kp = kp
            .f_view([n, 1, 1, s_all])?
            .f_expand([-1, h, -1, -1], false)?
            .f_reshape([n * h, 1, s_all])?;
        Ok(Some(match &self.attn {
            None => kp,
            Some(m) => m.f_add(&kp)?,
        }))
    }
}
