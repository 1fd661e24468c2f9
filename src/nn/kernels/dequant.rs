//! Blocks to f32, as gguf-py's `gguf.quants.dequantize` computes them: the plain
//! reference the integer kernels are measured against (and what a prefill that prefers
//! a float matmul would tile).

use super::block::BlockType;
use super::half::f16_at;
use super::kquants::scales_mins;
use crate::error::{Error, Result};

/// Dequantises `blocks` (whole blocks of type `block`) into `out`, one f32 an element:
/// `out.len()` must be `blocks.len() / block_bytes · block_len`.
pub fn dequantize(block: BlockType, blocks: &[u8], out: &mut [f32]) -> Result<()> {
    if !blocks.len().is_multiple_of(block.block_bytes()) {
        return Err(Error::invalid(
            "blocks",
            format!(
                "expected whole {block} blocks of {} bytes, got {} bytes",
                block.block_bytes(),
                blocks.len()
            ),
        ));
    }
    let expected = blocks.len() / block.block_bytes() * block.block_len();
    if out.len() != expected {
        return Err(Error::invalid(
            "out",
            format!("expected {expected} elements, got {}", out.len()),
        ));
    }
    let chunks = blocks
        .chunks_exact(block.block_bytes())
        .zip(out.chunks_exact_mut(block.block_len()));
    for (blk, y) in chunks {
        match block {
            BlockType::Q8_0 => q8_0(blk, y),
            BlockType::Q4_0 => q4_0(blk, y),
            BlockType::Q4_1 => q4_1(blk, y),
            BlockType::Q5_0 => q5_0(blk, y),
            BlockType::Q4_K => q4_k(blk, y),
            BlockType::Q5_K => q5_k(blk, y),
            BlockType::Q6_K => q6_k(blk, y),
        }
    }
    Ok(())
}

fn q8_0(blk: &[u8], y: &mut [f32]) {
    let d = f16_at(blk, 0);
    for (v, &q) in y.iter_mut().zip(&blk[2..34]) {
        *v = q as i8 as f32 * d;
    }
}

fn q4_0(blk: &[u8], y: &mut [f32]) {
    let d = f16_at(blk, 0);
    for (j, &byte) in blk[2..18].iter().enumerate() {
        y[j] = d * ((byte & 15) as f32 - 8.0);
        y[j + 16] = d * ((byte >> 4) as f32 - 8.0);
    }
}

fn q4_1(blk: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
    for (j, &byte) in blk[4..20].iter().enumerate() {
        y[j] = d * (byte & 15) as f32 + m;
        y[j + 16] = d * (byte >> 4) as f32 + m;
    }
}

fn q5_0(blk: &[u8], y: &mut [f32]) {
    let d = f16_at(blk, 0);
    let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
    for (j, &byte) in blk[6..22].iter().enumerate() {
        let lo = (byte & 15) as u32 | (((qh >> j) & 1) << 4);
        let hi = (byte >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
        y[j] = d * (lo as f32 - 16.0);
        y[j + 16] = d * (hi as f32 - 16.0);
    }
}

fn q4_k(blk: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (sc, m) = scales_mins(&blk[4..16]);
    let qs = &blk[16..144];
    for j in 0..8 {
        let (dl, ml) = (d * sc[j] as f32, dmin * m[j] as f32);
        for l in 0..32 {
            let q = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
            y[32 * j + l] = dl * q as f32 - ml;
        }
    }
}

fn q5_k(blk: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (sc, m) = scales_mins(&blk[4..16]);
    let (qh, qs) = (&blk[16..48], &blk[48..176]);
    for j in 0..8 {
        let (dl, ml) = (d * sc[j] as f32, dmin * m[j] as f32);
        for l in 0..32 {
            let lo = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
            let q = lo | (((qh[l] >> j) & 1) << 4);
            y[32 * j + l] = dl * q as f32 - ml;
        }
    }
}

/// Element `e = 128·h + 32·s + l` is [`super::kquants::q6_code`]'s code `(h, s, l)` times the scale of
/// its group of 16; written half by half, four elements an `l` (ggml's
/// `dequantize_row_q6_K` order), so that the loops vectorise. The same products as
/// element by element, so the same bits (`tests/kernels.rs` holds it to gguf-py).
fn q6_k(blk: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&blk[0..128], &blk[128..192], &blk[192..208]);
    let d = f16_at(blk, 208);
    for h in 0..2 {
        let (ql, qh) = (&ql[64 * h..64 * h + 64], &qh[32 * h..32 * h + 32]);
        let dl: [f32; 8] = std::array::from_fn(|g| d * scales[8 * h + g] as i8 as f32);
        let y = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            // Sub-block s: the low nibble of ql[32 (s % 2) + l] for s < 2, the high one
            // after; the bits 2s and 2s + 1 of qh[l].
            for s in 0..4 {
                let lo = (ql[32 * (s % 2) + l] >> (4 * (s / 2))) & 15;
                let q = lo | (((qh[l] >> (2 * s)) & 3) << 4);
                y[32 * s + l] = dl[2 * s + l / 16] * (q as i32 - 32) as f32;
            }
        }
    }
}
