//! Linear layers with 4-bit and 8-bit weights, run through libtorch's own packed CPU
//! kernels (`aten::_weight_int4pack_mm_for_cpu`, `aten::_weight_int8pack_mm`, the ones
//! torchao and gpt-fast call), and [`Projection`], a bias-free linear that is float or
//! one of these.
//!
//! The kernels take bfloat16 activations and scales (fast only there: the float32
//! kernels are some 30 times slower), accumulate in float32 and round the output to
//! bfloat16. Each layer keeps the line-for-line math path beside the kernel
//! (`fused: false`): dequantise the weight to float32, multiply the bf16-rounded input in
//! float32, round the product to bf16; the tests check that the two agree.

use tch::{Device, Kind, Tensor};

use super::{f_decode_linear, BlockLinear, Linear};
use crate::error::{Error, Result};

/// The group sizes the int4 CPU kernel accepts.
pub const INT4_GROUP_SIZES: [i64; 4] = [32, 64, 128, 256];

/// A bias-free linear layer `(*, K) -> (*, N)` whose weight `[N, K]` is stored as 4-bit
/// codes `q` in 0..16 with one scale and one zero per group of `group_size` inputs of
/// each row: `w = (q - 8) * scale + zero`, as libtorch's int4 kernel dequantises.
#[derive(Debug)]
pub struct Int4Linear {
    /// The codes packed by `aten::_convert_weight_to_int4pack_for_cpu`, `[N, K / 2]` uint8.
    pub packed: Tensor,
    /// `[K / group_size, N, 2]` bfloat16: each group's scale and zero.
    pub scales_and_zeros: Tensor,
    /// Inputs per group: one of [`INT4_GROUP_SIZES`].
    pub group_size: i64,
    /// K.
    pub in_features: i64,
    /// N.
    pub out_features: i64,
    /// `true` (the default): libtorch's packed kernel; `false`: the math path.
    pub fused: bool,
}

impl Int4Linear {
    /// The layer of `codes` `[N, K]` (integers in 0..16), `scales` and `zeros`
    /// `[N, K / group_size]` (float; rounded to bfloat16, as the kernel takes them).
    /// CPU only; N must be a multiple of 16 and K of `group_size` (the kernel's tiling).
    pub fn new(codes: &Tensor, scales: &Tensor, zeros: &Tensor, group_size: i64) -> Result<Self> {
        if !INT4_GROUP_SIZES.contains(&group_size) {
            return Err(Error::invalid(
                "group_size",
                format!("must be one of {INT4_GROUP_SIZES:?}, got {group_size}"),
            ));
        }
        let size = codes.size();
        if size.len() != 2 || size[0] % 16 != 0 || size[1] % group_size != 0 {
            return Err(Error::shape(
                "codes",
                format!("[N, K] with N a multiple of 16 and K of the group size {group_size}"),
                &size,
            ));
        }
        let (n, k) = (size[0], size[1]);
        check_cpu("codes", codes)?;
        if codes.is_floating_point() || codes.kind() == Kind::Bool {
            return Err(Error::Dtype {
                arg: "codes".into(),
                expected: "an integer type".into(),
                got: codes.kind(),
            });
        }
        let (lo, hi) = (
            codes.f_min()?.int64_value(&[]),
            codes.f_max()?.int64_value(&[]),
        );
        if lo < 0 || hi > 15 {
            return Err(Error::invalid(
                "codes",
                format!("must lie in 0..=15, got {lo}..={hi}"),
            ));
        }
        for (arg, t) in [("scales", scales), ("zeros", zeros)] {
            check_cpu(arg, t)?;
            if t.size() != [n, k / group_size] || !t.is_floating_point() {
                return Err(Error::shape(
                    arg,
                    format!("float [N, K / group_size] = [{n}, {}]", k / group_size),
                    &t.size(),
                ));
            }
        }
        let packed = codes
            .f_to_kind(Kind::Int)?
            .f_contiguous()?
            .f_internal_convert_weight_to_int4pack_for_cpu(2)?;
        // [N, K/G, 2] -> [K/G, N, 2], the kernel's layout.
        let scales_and_zeros = Tensor::f_stack(&[scales, zeros], 2)?
            .f_transpose(0, 1)?
            .f_to_kind(Kind::BFloat16)?
            .f_contiguous()?;
        Ok(Self {
            packed,
            scales_and_zeros,
            group_size,
            in_features: k,
            out_features: n,
            fused: true,
        })
    }

    /// `weight` `[N, K]` (float) quantised in groups of `group_size` inputs, rounding to
    /// nearest between each group's minimum and maximum: `scale = bf16((max - min) /
    /// 15)` (1 for a constant group), `zero = bf16(min + 8 scale)`, `q = round((w -
    /// zero) / scale) + 8` clamped to 0..=15, so that `w ~ (q - 8) * scale + zero`.
    /// CPU only; the shapes [`Int4Linear::new`] needs.
    pub fn from_float(weight: &Tensor, group_size: i64) -> Result<Self> {
        let size = weight.size();
        if size.len() != 2 || size.contains(&0) || !weight.is_floating_point() {
            return Err(Error::shape("weight", "float [N, K], not empty", &size));
        }
        if group_size < 1 || size[1] % group_size != 0 {
            return Err(Error::invalid(
                "group_size",
                format!("must divide K = {}, got {group_size}", size[1]),
            ));
        }
        check_cpu("weight", weight)?;
        let (n, k) = (size[0], size[1]);
        let bf16 = |t: Tensor| -> Result<Tensor> {
            Ok(t.f_to_kind(Kind::BFloat16)?.f_to_kind(Kind::Float)?)
        };
        let w = weight
            .f_to_kind(Kind::Float)?
            .f_reshape([n, k / group_size, group_size])?;
        let lo = w.f_amin(&[2i64][..], true)?;
        let hi = w.f_amax(&[2i64][..], true)?;
        let scales = bf16(hi.f_sub(&lo)?.f_div_scalar(15.0)?)?;
        let scales = scales.f_where_scalarother(&scales.f_gt(0.0)?, 1.0)?;
        let zeros = bf16(lo.f_add(&scales.f_mul_scalar(8.0)?)?)?;
        let codes = w
            .f_sub(&zeros)?
            .f_div(&scales)?
            .f_round()?
            .f_add_scalar(8.0)?
            .f_clamp(0.0, 15.0)?
            .f_to_kind(Kind::Uint8)?
            .f_reshape([n, k])?;
        let per_group = |t: Tensor| t.f_reshape([n, k / group_size]);
        Self::new(&codes, &per_group(scales)?, &per_group(zeros)?, group_size)
    }

    /// `(*, K) -> (*, N)` in `x`'s dtype, computed from `x` rounded to bfloat16.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        batched(x, self.in_features, |x2| {
            if self.fused {
                Ok(x2.f_internal_weight_int4pack_mm_for_cpu(
                    &self.packed,
                    self.group_size,
                    &self.scales_and_zeros,
                )?)
            } else {
                unfused(x2, &self.dequantized_weight()?)
            }
        })
    }

    /// The weight `[N, K]` in float32, exactly `(q - 8) * scale + zero` with the stored
    /// bfloat16 scales and zeros. The codes are read back through the kernel itself
    /// (the packed layout is libtorch's): with scale 1 and zero 8 it returns `q`, exact
    /// in bfloat16, for an identity input.
    pub fn dequantized_weight(&self) -> Result<Tensor> {
        let (n, k, g) = (self.out_features, self.in_features, self.group_size);
        let unit = Tensor::f_stack(
            &[
                Tensor::f_ones([k / g, n], (Kind::BFloat16, Device::Cpu))?,
                Tensor::f_full([k / g, n], 8, (Kind::BFloat16, Device::Cpu))?,
            ],
            2,
        )?;
        let eye = Tensor::f_eye(k, (Kind::BFloat16, Device::Cpu))?;
        let codes = eye
            .f_internal_weight_int4pack_mm_for_cpu(&self.packed, g, &unit)?
            .f_transpose(0, 1)?
            .f_to_kind(Kind::Float)?; // [N, K]
                                      // [K/G, N, 2] -> [N, K/G] each, repeated over the G inputs of a group.
        let per_input = |i: i64| -> Result<Tensor> {
            Ok(self
                .scales_and_zeros
                .f_select(2, i)?
                .f_transpose(0, 1)?
                .f_to_kind(Kind::Float)?
                .f_repeat_interleave_self_int(g, 1, None)?)
        };
        Ok(codes
            .f_sub_scalar(8)?
            .f_mul(&per_input(0)?)?
            .f_add(&per_input(1)?)?)
    }
}

/// A bias-free linear layer `(*, K) -> (*, N)` whose weight `[N, K]` is stored as int8
/// with one scale per output channel: `w = q * scale`.
#[derive(Debug)]
pub struct Int8Linear {
    /// `[N, K]` int8.
    pub weight: Tensor,
    /// `[N]` bfloat16.
    pub scales: Tensor,
    /// `true` (the default): libtorch's kernel; `false`: the math path.
    pub fused: bool,
}

impl Int8Linear {
    /// `weight` `[N, K]` (float) quantised symmetrically per output channel, rounding to
    /// nearest: `scale = bf16(max |w| / 127)` (1 for a row of zeros), `q = round(w /
    /// scale)` clamped to -127..=127. CPU only.
    pub fn from_float(weight: &Tensor) -> Result<Self> {
        let size = weight.size();
        if size.len() != 2 || size.contains(&0) || !weight.is_floating_point() {
            return Err(Error::shape("weight", "float [N, K], not empty", &size));
        }
        check_cpu("weight", weight)?;
        let w = weight.f_to_kind(Kind::Float)?;
        let amax = w.f_abs()?.f_amax(&[1i64][..], false)?; // [N]
        let scales = amax
            .f_div_scalar(127.0)?
            .f_to_kind(Kind::BFloat16)?
            .f_to_kind(Kind::Float)?;
        let scales = scales.f_where_scalarother(&scales.f_gt(0.0)?, 1.0)?;
        let q = w
            .f_div(&scales.f_unsqueeze(1)?)?
            .f_round()?
            .f_clamp(-127.0, 127.0)?
            .f_to_kind(Kind::Int8)?;
        Ok(Self {
            weight: q,
            scales: scales.f_to_kind(Kind::BFloat16)?,
            fused: true,
        })
    }

    /// `(*, K) -> (*, N)` in `x`'s dtype, computed from `x` rounded to bfloat16.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        batched(x, self.in_features(), |x2| {
            if self.fused {
                Ok(x2.f_internal_weight_int8pack_mm(&self.weight, &self.scales)?)
            } else {
                unfused(x2, &self.dequantized_weight()?)
            }
        })
    }

    /// The weight `[N, K]` in float32: `q * scale`.
    pub fn dequantized_weight(&self) -> Result<Tensor> {
        let scales = self.scales.f_to_kind(Kind::Float)?.f_unsqueeze(1)?;
        Ok(self.weight.f_to_kind(Kind::Float)?.f_mul(&scales)?)
    }

    /// K.
    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    /// N.
    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}

/// A bias-free linear projection: float weights, or quantised ones.
#[derive(Debug)]
pub enum Projection {
    /// `F.linear(x, weight, bias)` in the weight's dtype; a few float32 rows on the CPU
    /// through the crate's matrix-vector kernel ([`f_decode_linear`]), the layer's own
    /// [`Linear::f_forward`] being the math path.
    Float(Linear),
    /// 4-bit weights in groups.
    Int4(Int4Linear),
    /// 8-bit weights per output channel.
    Int8(Int8Linear),
    /// A GGUF file's own blocks on the crate's integer kernels.
    Block(BlockLinear),
}

impl Projection {
    /// `(*, K) -> (*, N)`. The caller checks `x`.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Projection::Float(l) => f_decode_linear(x, &l.weight, l.bias.as_ref()),
            Projection::Int4(l) => l.f_forward(x),
            Projection::Int8(l) => l.f_forward(x),
            Projection::Block(l) => l.f_forward(x),
        }
    }

    /// K.
    pub fn in_features(&self) -> i64 {
        match self {
            Projection::Float(l) => l.in_features(),
            Projection::Int4(l) => l.in_features,
            Projection::Int8(l) => l.in_features(),
            Projection::Block(l) => l.in_features(),
        }
    }

    /// N.
    pub fn out_features(&self) -> i64 {
        match self {
            Projection::Float(l) => l.out_features(),
            Projection::Int4(l) => l.out_features,
            Projection::Int8(l) => l.out_features(),
            Projection::Block(l) => l.out_features(),
        }
    }
}

fn check_cpu(arg: &str, t: &Tensor) -> Result<()> {
    match t.device() {
        Device::Cpu => Ok(()),
        got => Err(Error::Device {
            arg: arg.into(),
            expected: Device::Cpu,
            got,
        }),
    }
}

/// `x` `(*, K)` as `(M, K)` bfloat16 through `mm`, back to `(*, N)` in `x`'s dtype: the
/// kernels take matrices.
fn batched(x: &Tensor, k: i64, mm: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let size = x.size();
    if size.last() != Some(&k) || !x.is_floating_point() {
        return Err(Error::shape(
            "x",
            format!("float (*, K) with K = {k}"),
            &size,
        ));
    }
    check_cpu("x", x)?;
    let x2 = x
        .f_reshape([-1, k])?
        .f_to_kind(Kind::BFloat16)?
        .f_contiguous()?; // (M, K)
    let y = mm(&x2)?; // (M, N)
    let mut out = size[..size.len() - 1].to_vec();
    out.push(y.size()[1]);
    Ok(y.f_reshape(&out)?.f_to_kind(x.kind())?)
}

/// The kernels' arithmetic written out: bf16 input, float32 products and sums, bf16 out.
fn unfused(x2: &Tensor, weight: &Tensor) -> Result<Tensor> {
    Ok(x2
        .f_to_kind(Kind::Float)?
        .f_linear::<Tensor>(weight, None)?
        .f_to_kind(Kind::BFloat16)?)
}
