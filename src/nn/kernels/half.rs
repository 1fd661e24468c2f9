//! IEEE half precision to and from f32, bit by bit (the crate has no `half`
//! dependency; the kernels need one conversion a block).

/// The f32 value of the half whose little-endian bytes start `bytes`.
#[inline(always)]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Exact: every half is an f32.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 => {
            // Zero or subnormal: man · 2^-24, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        31 => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Rounded to nearest, ties to even, as numpy's `astype(np.float16)` and ggml's
/// `GGML_FP32_TO_FP16` round; beyond the half range, infinity; NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    if a > 0x7f80_0000 {
        return sign | 0x7e00;
    }
    if a < 0x3880_0000 {
        // Below 2^-14: a subnormal half, man = x · 2^24 rounded (at most 1024, which is
        // the smallest normal's encoding).
        let m = (f32::from_bits(a) * 16_777_216.0).round_ties_even() as u16;
        return sign | m;
    }
    // Round the 23-bit mantissa to 10 bits, ties to even; a carry moves into the exponent.
    let rounded = a + 0x0fff + ((a >> 13) & 1);
    let h = (rounded >> 13).saturating_sub(112 << 10);
    if h >= 0x7c00 {
        sign | 0x7c00
    } else {
        sign | h as u16
    }
}
