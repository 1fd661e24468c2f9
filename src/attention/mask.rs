//! Typed attention masks, so that a mask's polarity can never be confused.
//!
//! PyTorch uses two opposite conventions for boolean masks:
//! - `torch.nn.functional.scaled_dot_product_attention`: `True` means "takes part"
//!   (a [`Mask::Keep`]);
//! - `torch.nn.MultiheadAttention` (`attn_mask`, `key_padding_mask`): `True` means
//!   "masked out" (a [`Mask::Block`]).
//!
//! A floating mask is an additive bias in both ([`Mask::Bias`]): `-inf` removes a key.
//! Causal masking is the `is_causal` flag of
//! [`SdpaOptions`](crate::attention::functional::SdpaOptions); [`Mask::causal`] builds the same mask
//! explicitly when it has to be combined with another. Conversions are explicit methods.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// An attention mask whose meaning is part of its type.
#[derive(Debug)]
pub enum Mask {
    /// Bool, `true` = the query may attend to that key (SDPA's convention).
    Keep(Tensor),
    /// Bool, `true` = the key is masked out (`nn.MultiheadAttention`'s convention).
    Block(Tensor),
    /// Floating, added to the scores before softmax; `-inf` masks a key out.
    Bias(Tensor),
}

impl Mask {
    /// A keep-mask (SDPA's convention); the tensor must be bool.
    pub fn keep(mask: Tensor) -> Result<Self> {
        expect_bool("attn_mask", &mask)?;
        Ok(Mask::Keep(mask))
    }

    /// A block-mask (`nn.MultiheadAttention`'s convention); the tensor must be bool.
    pub fn block(mask: Tensor) -> Result<Self> {
        expect_bool("attn_mask", &mask)?;
        Ok(Mask::Block(mask))
    }

    /// An additive mask; the tensor must be floating point.
    pub fn bias(mask: Tensor) -> Result<Self> {
        if !mask.is_floating_point() {
            return Err(Error::Dtype {
                arg: "attn_mask".into(),
                expected: "a floating dtype for an additive mask".into(),
                got: mask.kind(),
            });
        }
        Ok(Mask::Bias(mask))
    }

    /// Reads a tensor the way SDPA does: bool is a keep-mask, floating is a bias.
    pub fn from_sdpa(mask: Tensor) -> Result<Self> {
        if mask.kind() == Kind::Bool {
            Ok(Mask::Keep(mask))
        } else {
            Mask::bias(mask)
        }
    }

    /// Reads a tensor the way `nn.MultiheadAttention` does: bool is a block-mask,
    /// floating is a bias.
    pub fn from_mha(mask: Tensor) -> Result<Self> {
        if mask.kind() == Kind::Bool {
            Ok(Mask::Block(mask))
        } else {
            Mask::bias(mask)
        }
    }

    /// The causal keep-mask `[L, S]`, aligned top-left as PyTorch's `is_causal`:
    /// query `i` sees keys `0..=i`.
    pub fn causal(l: i64, s: i64, device: Device) -> Result<Self> {
        let ones = Tensor::f_ones([l, s], (Kind::Bool, device))?;
        Ok(Mask::Keep(ones.f_tril(0)?))
    }

    /// The underlying tensor, whatever its convention.
    pub fn tensor(&self) -> &Tensor {
        match self {
            Mask::Keep(t) | Mask::Block(t) | Mask::Bias(t) => t,
        }
    }

    /// This mask as a keep-mask (SDPA's bool convention). A bias converts only if each of
    /// its values is `0` or `-inf`; anything else would lose information.
    pub fn to_keep(&self) -> Result<Tensor> {
        match self {
            Mask::Keep(t) => Ok(t.shallow_clone()),
            Mask::Block(t) => Ok(t.f_logical_not()?),
            Mask::Bias(t) => {
                let neg_inf = t.f_eq(f64::NEG_INFINITY)?;
                let zero = t.f_eq(0.0)?;
                let lossless = neg_inf.f_logical_or(&zero)?.f_all()?.f_int64_value(&[])? != 0;
                if !lossless {
                    return Err(Error::invalid(
                        "attn_mask",
                        "an additive mask with values other than 0 and -inf has no bool form",
                    ));
                }
                Ok(neg_inf.f_logical_not()?)
            }
        }
    }

    /// This mask as a block-mask (`nn.MultiheadAttention`'s bool convention).
    pub fn to_block(&self) -> Result<Tensor> {
        Ok(self.to_keep()?.f_logical_not()?)
    }

    /// This mask as an additive bias of dtype `kind`: `0` where a key takes part,
    /// `-inf` where it is masked out. A bias is converted to `kind`.
    pub fn to_bias(&self, kind: Kind) -> Result<Tensor> {
        match self {
            Mask::Bias(t) => Ok(t.f_to_kind(kind)?),
            Mask::Keep(_) | Mask::Block(_) => {
                let keep = self.to_keep()?;
                let zeros = Tensor::f_zeros(keep.size(), (kind, keep.device()))?;
                Ok(zeros.f_masked_fill(&keep.f_logical_not()?, f64::NEG_INFINITY)?)
            }
        }
    }

    /// The same mask with the opposite bool convention: keep becomes block and back.
    /// A bias is returned unchanged: it has no polarity.
    pub fn flip_convention(self) -> Result<Self> {
        Ok(match self {
            Mask::Keep(t) => Mask::Block(t.f_logical_not()?),
            Mask::Block(t) => Mask::Keep(t.f_logical_not()?),
            bias @ Mask::Bias(_) => bias,
        })
    }

    /// Checks that the mask broadcasts to scores of shape `scores` (`[..., L, S]`) and
    /// that it suits a computation in `kind` on `device` (see [`Mask::check_like`]).
    pub(crate) fn check(
        &self,
        arg: &str,
        scores: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<()> {
        self.check_like(arg, kind, device)?;
        check_broadcast(arg, &self.tensor().size(), scores)
    }

    /// The mask lives on `device` and, for a bias, has dtype `kind`: PyTorch adds a bias
    /// to the scores without promoting it.
    pub(crate) fn check_like(&self, arg: &str, kind: Kind, device: Device) -> Result<()> {
        let t = self.tensor();
        if t.device() != device {
            return Err(Error::Device {
                arg: arg.into(),
                expected: device,
                got: t.device(),
            });
        }
        if let Mask::Bias(b) = self {
            if b.kind() != kind {
                return Err(Error::Dtype {
                    arg: arg.into(),
                    expected: format!("bool or the query's dtype {kind:?}"),
                    got: b.kind(),
                });
            }
        }
        Ok(())
    }
}

fn expect_bool(arg: &str, t: &Tensor) -> Result<()> {
    if t.kind() != Kind::Bool {
        return Err(Error::Dtype {
            arg: arg.into(),
            expected: "Bool".into(),
            got: t.kind(),
        });
    }
    Ok(())
}

/// `shape` must broadcast to `target` without growing it: same or lower rank, and each
/// trailing dimension 1 or equal.
pub(crate) fn check_broadcast(arg: &str, shape: &[i64], target: &[i64]) -> Result<()> {
    let fits = shape.len() <= target.len()
        && shape
            .iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(&m, &t)| m == 1 || m == t);
    if fits {
        Ok(())
    } else {
        Err(Error::shape(
            arg,
            format!("broadcastable to {target:?}"),
            shape,
        ))
    }
}
