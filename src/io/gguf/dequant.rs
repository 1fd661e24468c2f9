//! Dequantisation of a tensor's stored bytes to float32, value for value as gguf-py's
//! `gguf.quants.dequantize` (which transformers' GGUF loader calls): each block's float16
//! scale (and minimum) widened to float32, then the block's products and sums in
//! float32, one rounding per operation, unfused.
//!
//! [`dequantize`] is the reference: plain Rust, one function per block type, in
//! `legacy.rs` (blocks of 32), `kquants.rs` (super-blocks of 256) and `iquants.rs`
//! (non-linear tables), each reading as ggml's `dequantize_row_*`. Loading
//! ([`dequantize_tensor`]) takes F32/F16/BF16/Q8_0/Q4_0/Q4_1 through libtorch's
//! elementwise ops instead (fast even in a debug build, the common case for a model
//! file), tested bit-equal to the reference; every other type through the reference.

use tch::{Kind, Tensor};

use super::half::{bf16_to_f32, f16_to_f32};
use super::types::GgmlType;
use super::{iquants, kquants, legacy, GgufTensorInfo};
use crate::error::{Error, Result};

/// The values of tensor `info`, stored as `bytes` in file `source`, as a 1-D float32
/// tensor; a type that cannot be dequantised, or a tensor whose float32 copy would not
/// fit in memory, is an error naming the file and the tensor.
pub(super) fn tensor(source: &str, info: &GgufTensorInfo, bytes: &[u8]) -> Result<Tensor> {
    let (name, ty) = (&info.name, info.ggml_type);
    if !ty.dequantisable() {
        let supported = GgmlType::dequantisable_names();
        return Err(Error::malformed(
            source,
            format!(
                "tensor {name}: ggml type {ty:?} cannot be dequantised (supported: {supported})"
            ),
        ));
    }
    // The float32 copy, and for a type without a libtorch path the Vec it is built
    // from: checked against the memory there is before either is allocated.
    let what = format!("tensor {name} dequantised to float32");
    crate::io::check_fits(info.numel().saturating_mul(8), source, &what)?;
    dequantize_tensor(ty, bytes)
        .map_err(|e| Error::malformed(source, format!("tensor {name}: {e}")))
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
        other => {
            let values = dequantize(other, bytes)?;
            Tensor::f_from_slice(&values).map_err(torch)?
        }
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

/// Fewer blocks than this are not worth a thread of their own.
const MIN_BLOCKS_PER_THREAD: usize = 1024;

/// One block's dequantiser: its bytes in, its values out.
type BlockFn = fn(&[u8], &mut [f32]);

/// The dequantiser of each quantised type, or None for a type of one element per block.
fn block_fn(ty: GgmlType) -> Result<Option<BlockFn>, String> {
    use GgmlType::*;
    Ok(Some(match ty {
        F32 | F16 | BF16 => return Ok(None),
        Q8_0 => legacy::q8_0,
        Q4_0 => legacy::q4_0,
        Q4_1 => legacy::q4_1,
        Q5_0 => legacy::q5_0,
        Q5_1 => legacy::q5_1,
        Q2_K => kquants::q2_k,
        Q3_K => kquants::q3_k,
        Q4_K => kquants::q4_k,
        Q5_K => kquants::q5_k,
        Q6_K => kquants::q6_k,
        IQ4_NL => iquants::iq4_nl,
        IQ4_XS => iquants::iq4_xs,
        other => return Err(format!("ggml type {other:?} cannot be dequantised")),
    }))
}

/// The float32 values stored in `bytes` as `ty`, which must be whole blocks.
pub(super) fn dequantize(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let (block, block_bytes) = ty.block();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    if !bytes.len().is_multiple_of(block_bytes) {
        return Err(format!(
            "{} bytes are not whole {ty:?} blocks of {block_bytes} bytes",
            bytes.len()
        ));
    }
    let Some(f) = block_fn(ty)? else {
        let elems = bytes.chunks_exact(block_bytes);
        return Ok(match ty {
            GgmlType::F32 => elems
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            GgmlType::F16 => elems
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            _ => elems
                .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        });
    };
    let n_blocks = bytes.len() / block_bytes;
    let mut out = vec![0f32; n_blocks * block];
    // Blocks are independent: a run of them per core (a value is the same whichever
    // thread computes it).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run = n_blocks.div_ceil(cores).max(MIN_BLOCKS_PER_THREAD);
    let mut refused = None;
    std::thread::scope(|scope| {
        let runs = bytes
            .chunks(run * block_bytes)
            .zip(out.chunks_mut(run * block));
        for (bytes, out) in runs {
            let work = move || {
                for (b, y) in bytes
                    .chunks_exact(block_bytes)
                    .zip(out.chunks_exact_mut(block))
                {
                    f(b, y);
                }
            };
            if let Err(e) = std::thread::Builder::new().spawn_scoped(scope, work) {
                refused = Some(e);
            }
        }
    });
    match refused {
        Some(e) => Err(format!(
            "could not start a thread to dequantise {ty:?}: {e}"
        )),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_blocks_and_unknown_layouts_are_refused() {
        let err = dequantize(GgmlType::Q4_K, &[0; 143]).unwrap_err();
        assert!(
            err.contains("143 bytes are not whole Q4_K blocks of 144"),
            "{err}"
        );
        let err = dequantize(GgmlType::IQ2_XXS, &[0; 66]).unwrap_err();
        assert!(err.contains("IQ2_XXS cannot be dequantised"), "{err}");
        assert!(dequantize(GgmlType::IQ4_XS, &[]).unwrap().is_empty());
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
}
