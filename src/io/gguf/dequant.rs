//! ggml's tensor types, their block sizes, and dequantisation to float32, value for
//! value as gguf-py's `gguf.quants.dequantize` (which transformers' GGUF loader calls):
//! each block's scale (and minimum) is a float16 widened to float32, and `d * q (+ m)`
//! is computed in float32, unfused.
//!
//! Two paths that agree bit for bit (tested): [`dequantize_tensor`], whole tensors
//! through libtorch's elementwise ops (what loading uses: fast even in a debug build),
//! and [`dequantize`], the same arithmetic block by block in plain Rust, which reads
//! as ggml's `dequantize_row_*`.

use tch::{Kind, Tensor};

/// A ggml tensor type, by its id in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // ggml's own names
pub enum GgmlType {
    /// float32.
    F32,
    /// float16.
    F16,
    /// Blocks of 32: a float16 scale `d`, 32 4-bit values `q`; `x = (q - 8) * d`.
    Q4_0,
    /// Blocks of 32: float16 `d` and `m`, 32 4-bit values; `x = q * d + m`.
    Q4_1,
    /// Blocks of 32 with a fifth bit per value (not dequantised here).
    Q5_0,
    /// Blocks of 32 with a fifth bit and a minimum (not dequantised here).
    Q5_1,
    /// Blocks of 32: a float16 scale `d`, 32 signed bytes `q`; `x = q * d`.
    Q8_0,
    /// Blocks of 32 with a sum term (not dequantised here).
    Q8_1,
    /// A k-quant: super-blocks of 256 (not dequantised here).
    Q2_K,
    /// A k-quant (not dequantised here).
    Q3_K,
    /// A k-quant (not dequantised here).
    Q4_K,
    /// A k-quant (not dequantised here).
    Q5_K,
    /// A k-quant (not dequantised here).
    Q6_K,
    /// A k-quant (not dequantised here).
    Q8_K,
    /// int8 (not dequantised here).
    I8,
    /// int16 (not dequantised here).
    I16,
    /// int32 (not dequantised here).
    I32,
    /// int64 (not dequantised here).
    I64,
    /// float64 (not dequantised here).
    F64,
    /// bfloat16.
    BF16,
}

impl GgmlType {
    /// The type with ggml's id `id`, if it is one of the types above.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block), as ggml's `GGML_QUANT_SIZES`.
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
        }
    }
}

/// The float32 values stored in `bytes` as `ty`, as a 1-D tensor (whole blocks, as the
/// reader checked).
pub(super) fn dequantize_tensor(ty: GgmlType, bytes: &[u8]) -> Result<Tensor, String> {
    let (block, block_bytes) = ty.block();
    let n_blocks = (bytes.len() as u64 / block_bytes) as i64;
    let torch = |e: tch::TchError| e.to_string();
    let raw = |kind| Tensor::f_from_data_size(bytes, &[bytes.len() as i64 / elem_size(kind)], kind);
    let out = match ty {
        GgmlType::F32 => raw(Kind::Float).map_err(torch)?,
        GgmlType::F16 => raw(Kind::Half)
            .and_then(|t| t.f_to_kind(Kind::Float))
            .map_err(torch)?,
        GgmlType::BF16 => raw(Kind::BFloat16)
            .and_then(|t| t.f_to_kind(Kind::Float))
            .map_err(torch)?,
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let blocks =
                Tensor::f_from_data_size(bytes, &[n_blocks, block_bytes as i64], Kind::Uint8)
                    .map_err(torch)?;
            quantized_blocks(ty, &blocks).map_err(torch)?
        }
        other => return Err(format!("ggml type {other:?} cannot be dequantised yet")),
    };
    debug_assert_eq!(out.numel() as u64, n_blocks as u64 * block);
    Ok(out)
}

fn elem_size(kind: Kind) -> i64 {
    match kind {
        Kind::Float => 4,
        _ => 2,
    }
}

/// The float16 at byte `at` of every block, widened: `(n_blocks, 1)` float32.
fn block_scale(blocks: &Tensor, at: i64) -> Result<Tensor, tch::TchError> {
    blocks
        .f_narrow(1, at, 2)?
        .f_contiguous()?
        .f_view_dtype(Kind::Half)?
        .f_to_kind(Kind::Float)
}

/// 16 bytes of nibbles from byte `at` of every block: low nibbles first, then high
/// ones, `(n_blocks, 32)` float32.
fn nibbles(blocks: &Tensor, at: i64) -> Result<Tensor, tch::TchError> {
    let qs = blocks.f_narrow(1, at, 16)?;
    let lo = qs.f_bitwise_and(0x0f)?;
    let hi = qs.f_bitwise_right_shift_tensor_scalar(4)?;
    Tensor::f_cat(&[&lo, &hi], 1)?.f_to_kind(Kind::Float)
}

fn quantized_blocks(ty: GgmlType, blocks: &Tensor) -> Result<Tensor, tch::TchError> {
    let d = block_scale(blocks, 0)?;
    let values = match ty {
        // x = q * d, q signed bytes.
        GgmlType::Q8_0 => blocks
            .f_narrow(1, 2, 32)?
            .f_contiguous()?
            .f_view_dtype(Kind::Int8)?
            .f_to_kind(Kind::Float)?
            .f_mul(&d)?,
        // x = (q - 8) * d.
        GgmlType::Q4_0 => nibbles(blocks, 2)?.f_sub_scalar(8)?.f_mul(&d)?,
        // x = q * d + m, the product rounded before the sum.
        _ => nibbles(blocks, 4)?
            .f_mul(&d)?
            .f_add(&block_scale(blocks, 2)?)?,
    };
    values.f_reshape([-1])
}

/// The float32 values stored in `bytes` as `ty` (whole blocks, as the reader checked).
#[cfg_attr(not(test), allow(dead_code))] // the reference path; loading uses the tensors
pub(super) fn dequantize(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let (block, block_bytes) = ty.block();
    let block_bytes = block_bytes as usize;
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * block as usize);
    let blocks = bytes.chunks_exact(block_bytes);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
        GgmlType::Q8_0 => blocks.for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => blocks.for_each(|b| q4_1(b, &mut out)),
        other => return Err(format!("ggml type {other:?} cannot be dequantised yet")),
    }
    Ok(out)
}

fn scale(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// `d` (f16), then 32 int8 values.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = scale(b, 0);
    out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
}

/// `d` (f16), then 16 bytes: element `j` in the low nibble of byte `j`, element
/// `j + 16` in its high nibble.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = scale(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0f) - 8.0)));
    out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
}

/// `d`, `m` (f16 each), then 16 bytes of nibbles ordered as [`q4_0`]'s.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (scale(b, 0), scale(b, 2));
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
    out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
}

/// IEEE half precision to single, exactly (subnormals, infinities and NaN included).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: value = f * 2^-24, exact in f32.
            let v = f as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 is float32's upper half.
fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_edges() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn tensor_path_equals_the_scalar_path_bit_for_bit() {
        // Every byte pattern's nibbles and scales, including f16 subnormals, inf, NaN.
        let bytes: Vec<u8> = (0..20 * 34 * 8)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
        ] {
            let (_, bb) = ty.block();
            let n = bytes.len() / (bb as usize * 4) * bb as usize * 4;
            let scalar = dequantize(ty, &bytes[..n]).unwrap();
            let tensor = dequantize_tensor(ty, &bytes[..n]).unwrap();
            let tensor = Vec::<f32>::try_from(&tensor).unwrap();
            assert_eq!(scalar.len(), tensor.len(), "{ty:?}");
            for (i, (a, b)) in scalar.iter().zip(&tensor).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{ty:?}[{i}]: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn q4_1_nibble_order() {
        // d = 1, m = 0.5; byte j = (j+16 high nibble: 15 - j, low nibble: j).
        let mut b = vec![0x00, 0x3c, 0x00, 0x38];
        b.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let mut out = Vec::new();
        q4_1(&b, &mut out);
        let expected: Vec<f32> = (0..16)
            .map(|j| j as f32 + 0.5)
            .chain((0..16).map(|j| (15 - j) as f32 + 0.5))
            .collect();
        assert_eq!(out, expected);
    }
}
