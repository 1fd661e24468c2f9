//! ggml's first block types ("legacy quants"): blocks of 32 values with one float16
//! scale `d` (and a float16 minimum `m` in the `_1` types), dequantised value for value
//! as gguf-py's `quants.py` (gguf 0.19): `d` widened to float32, then `d * q` (`+ m`)
//! in float32, one rounding per operation and no fused multiply-add.
//!
//! Each function takes one block's bytes (`GgmlType::block().1` of them) and writes its
//! 32 values, in the order ggml's `dequantize_row_*` in `ggml-quants.c` writes them.
//! The 4-bit and 5-bit types keep two values per byte of `qs` ("32 nibbles" below):
//! element `j < 16` in the low nibble of byte `j`, element `j + 16` in its high nibble.
//! (Casts with `as` rather than `f32::from`: a debug build calls the trait function for
//! every value.)

use super::half::f16_at;

/// `block_q8_0`, 34 bytes:
///
/// ```text
/// 0..2   d    f16
/// 2..34  qs   32 x i8     x[j] = d * qs[j]
/// ```
pub(super) fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = d * (b[2 + j] as i8) as f32;
    }
}

/// `block_q4_0`, 18 bytes:
///
/// ```text
/// 0..2   d    f16
/// 2..18  qs   32 nibbles                 x[j] = d * (q[j] - 8)
/// ```
pub(super) fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * ((qs[j] & 0x0f) as i8 - 8) as f32;
        y[j + 16] = d * ((qs[j] >> 4) as i8 - 8) as f32;
    }
}

/// `block_q4_1`, 20 bytes:
///
/// ```text
/// 0..2   d    f16
/// 2..4   m    f16
/// 4..20  qs   32 nibbles                 x[j] = d * q[j] + m
/// ```
pub(super) fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * (qs[j] & 0x0f) as f32 + m;
        y[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// The 5-bit values `j` and `j + 16` (`j < 16`) of a Q5 block: their nibbles, with
/// bits `j` and `j + 16` of the little-endian `qh` as their fifth (high) bits.
fn five_bits(qh: u32, qs: &[u8], j: usize) -> (u8, u8) {
    let lo = (qs[j] & 0x0f) | (((qh >> j) & 1) << 4) as u8;
    let hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
    (lo, hi)
}

/// `block_q5_0`, 22 bytes:
///
/// ```text
/// 0..2   d    f16
/// 2..6   qh   u32, bit j = the high bit of element j
/// 6..22  qs   32 nibbles                 x[j] = d * (q[j] - 16)
/// ```
pub(super) fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let (lo, hi) = five_bits(qh, qs, j);
        y[j] = d * (lo as i8 - 16) as f32;
        y[j + 16] = d * (hi as i8 - 16) as f32;
    }
}

/// `block_q5_1`, 24 bytes:
///
/// ```text
/// 0..2   d    f16
/// 2..4   m    f16
/// 4..8   qh   u32, bit j = the high bit of element j
/// 8..24  qs   32 nibbles                 x[j] = d * q[j] + m
/// ```
pub(super) fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let (lo, hi) = five_bits(qh, qs, j);
        y[j] = d * lo as f32 + m;
        y[j + 16] = d * hi as f32 + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_nibble_order() {
        // d = 1, m = 0.5; byte j = (j+16 high nibble: 15 - j, low nibble: j).
        let mut b = vec![0x00, 0x3c, 0x00, 0x38];
        b.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let mut out = [0f32; 32];
        q4_1(&b, &mut out);
        let expected: Vec<f32> = (0..16)
            .map(|j| j as f32 + 0.5)
            .chain((0..16).map(|j| (15 - j) as f32 + 0.5))
            .collect();
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn q5_0_high_bits_come_from_qh_in_element_order() {
        // d = 1; every nibble 0; qh bit j set for odd j: odd elements are 16 - 16 = 0,
        // even ones 0 - 16.
        let mut b = vec![0x00, 0x3c];
        b.extend(0xaaaa_aaaau32.to_le_bytes());
        b.extend([0u8; 16]);
        let mut out = [0f32; 32];
        q5_0(&b, &mut out);
        let expected: Vec<f32> = (0..32)
            .map(|j| if j % 2 == 1 { 0.0 } else { -16.0 })
            .collect();
        assert_eq!(out.to_vec(), expected);
    }
}
