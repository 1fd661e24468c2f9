//! ggml's tensor types, their block sizes, and dequantisation to float32, value for
//! value as gguf-py's `gguf.quants.dequantize` (which transformers' GGUF loader calls):
//! each block's scale (and minimum) is a float16 widened to float32, and `d * q (+ m)`
//! is computed in float32, unfused.

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

/// The float32 values stored in `bytes` as `ty` (whole blocks, as the reader checked).
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
