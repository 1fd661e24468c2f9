//! ALiBi (Press et al., "Train Short, Test Long", 2021; BLOOM, MPT): instead of position
//! embeddings, each head adds a linear bias `-slope_h * (i - j)` to the score of query `i`
//! for key `j`. Query positions are aligned bottom-right (query `i` sits at key position
//! `i + S - L`), so a KV-cache step gets the same biases as the full forward.
//!
//! The slopes follow the paper's geometric sequence as BLOOM's `build_alibi_tensor`
//! (transformers, `modeling_bloom.py`) computes it, in float32: for `n` heads with `c` the
//! largest power of two `<= n`, `base = 2^(-8 / c)` and slopes `base^1 ..= base^c`; the
//! remaining `n - c` heads take every other power of `2^(-4 / c)`: `^1, ^3, ^5, ..`.
//! BLOOM's tensor holds `slope_h * j` (key positions only): each row differs from this
//! bias by a constant, which the softmax removes.

use tch::{Device, Kind, Tensor};

use crate::attention::sinks::heads_of;
use crate::error::{Error, Result};

/// Where the slopes come from.
#[derive(Debug)]
pub enum Alibi {
    /// BLOOM's slopes for the number of heads of the scores ([`alibi_slopes`]).
    Bloom,
    /// Given slopes, one per head: a floating tensor of shape `(H,)`.
    Slopes(Tensor),
}

/// BLOOM's ALiBi slopes for `num_heads` heads, computed in float32 as
/// `build_alibi_tensor` does (module docs). An empty list for `num_heads <= 0`.
pub fn alibi_slopes(num_heads: i64) -> Vec<f32> {
    if num_heads <= 0 {
        return Vec::new();
    }
    let closest = 1i64 << (63 - num_heads.leading_zeros()); // largest power of 2 <= n
                                                            // BLOOM: torch.tensor(2 ** (-(2 ** -(log2(c) - 3))), dtype=float32), then pow(base, k).
    let base = |c: i64| 2f64.powf(-(2f64.powf(-((c as f64).log2() - 3.0)))) as f32;
    let mut slopes: Vec<f32> = (1..=closest)
        .map(|k| base(closest).powf(k as f32))
        .collect();
    let remaining = (num_heads - closest).min(closest);
    let extra = base(2 * closest);
    slopes.extend((0..remaining).map(|r| extra.powf((2 * r + 1) as f32)));
    slopes
}

impl Alibi {
    /// A second handle on the same slopes.
    pub fn shallow_clone(&self) -> Self {
        match self {
            Alibi::Bloom => Alibi::Bloom,
            Alibi::Slopes(t) => Alibi::Slopes(t.shallow_clone()),
        }
    }

    /// Given slopes must be a floating `(H,)` on the query's device, `H` the heads of the
    /// scores (their dimension -3).
    pub(crate) fn check(&self, scores: &[i64], device: Device) -> Result<()> {
        let heads = heads_of(scores, "alibi")?;
        let Alibi::Slopes(slopes) = self else {
            return Ok(());
        };
        if slopes.size() != [heads] {
            return Err(Error::shape(
                "alibi",
                format!("slopes (H,) with H = {heads}, the heads of the scores {scores:?}"),
                &slopes.size(),
            ));
        }
        if !slopes.is_floating_point() {
            return Err(Error::Dtype {
                arg: "alibi".into(),
                expected: "a floating dtype for the slopes".into(),
                got: slopes.kind(),
            });
        }
        if slopes.device() != device {
            return Err(Error::Device {
                arg: "alibi".into(),
                expected: device,
                got: slopes.device(),
            });
        }
        Ok(())
    }

    /// The bias `(H, L, S)` in `kind`: `-slope_h * (i + S - L - j)`.
    pub(crate) fn bias(
        &self,
        h: i64,
        l: i64,
        s: i64,
        kind: Kind,
        device: Device,
    ) -> Result<Tensor> {
        let slopes = match self {
            Alibi::Bloom => Tensor::f_from_slice(&alibi_slopes(h))?
                .f_to_device(device)?
                .f_to_kind(Kind::Double)?,
            Alibi::Slopes(t) => t.f_to_kind(Kind::Double)?,
        };
        let i = Tensor::f_arange(l, (Kind::Double, device))?
            .f_add_scalar(s - l)?
            .f_unsqueeze(1)?; // (L, 1)
        let j = Tensor::f_arange(s, (Kind::Double, device))?.f_unsqueeze(0)?; // (1, S)
        let distance = i.f_sub(&j)?; // (L, S): how far back key j lies
        let bias = slopes
            .f_view([h, 1, 1])?
            .f_mul(&distance.f_unsqueeze(0)?)?
            .f_neg()?; // (H, L, S)
        Ok(bias.f_to_kind(kind)?)
    }
}
