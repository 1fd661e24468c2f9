//! Quantised Llama weights: the decoder layers' seven linear projections as int4 layers
//! built from the GGUF's own Q4_0/Q4_1 blocks (no requantisation: the 4-bit codes are
//! the file's, the scales rounded to bfloat16 as libtorch's kernel takes them), or as
//! int8 layers quantised per output channel from the float weights. The embeddings and
//! the norms stay as they are (float); the language-model head too, unless
//! [`LlamaForCausalLM::quantize_head`] quantises a copy of it for the logits (the
//! embedding lookup of a tied head still reads the float table).

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::blocks::runs_on_blocks;
use super::model::LlamaForCausalLM;
use super::projections::{is_projection, projections_mut};
use super::weights::unpermute_rows;
use crate::error::{Error, Result};
use crate::io::{GgmlType, Gguf};
use crate::nn::{Int4Linear, Int8Linear, Projection};

/// How the decoder layers' linear projections are stored and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// The file's Q4_0/Q4_1 blocks (32 values, one scale and minimum each) as 4-bit
    /// weights through `aten::_weight_int4pack_mm_for_cpu`.
    Int4,
    /// int8 weights with one scale per output channel, quantised from the float weights,
    /// through `aten::_weight_int8pack_mm`.
    Int8,
    /// The file's own blocks of every projection and of the head on the crate's integer
    /// kernels (`blocks.rs`): llama.cpp's arithmetic.
    Blocks,
}

impl Quant {
    /// The dtype `attn generate --quant` (and `attn bench`'s quantised rows) give the
    /// parameters left in floats (embeddings, norms, an unquantised head): bfloat16
    /// beside libtorch's int4/int8 kernels, which take bfloat16 activations; float32
    /// beside the crate's block kernels, whose decoding step (`decode_step.rs`) runs on
    /// float32 buffers, as llama.cpp keeps its activations.
    pub fn default_kind(self) -> Kind {
        match self {
            Quant::Int4 | Quant::Int8 => Kind::BFloat16,
            Quant::Blocks => Kind::Float,
        }
    }
}

/// The block size of Q4_0 and Q4_1: one group of the int4 kernel.
const Q4_GROUP: i64 = 32;

impl LlamaForCausalLM {
    /// [`LlamaForCausalLM::from_gguf`] with the layers' projections quantised by
    /// `quant` (CPU only: the kernels are libtorch's CPU ones). The VarStore keeps the
    /// other parameters; the quantised projections' float weights in it are emptied, to
    /// free their memory. [`Quant::Int4`] needs every projection stored as Q4_0 or Q4_1.
    pub fn from_gguf_quantized(g: &Gguf, device: Device, quant: Quant) -> Result<(VarStore, Self)> {
        if device != Device::Cpu {
            return Err(Error::Device {
                arg: "device (quantised weights)".into(),
                expected: Device::Cpu,
                got: device,
            });
        }
        let arch = g.get_str("general.architecture")?;
        if quant != Quant::Blocks && !["llama", "gemma3"].contains(&arch) {
            // int4/int8: Qwen2's biases, Phi-3's fused rows and unpermuted query/key rows
            // are mapped onto the file's blocks only (blocks.rs).
            return Err(Error::malformed(
                &g.source_name,
                format!(
                    "general.architecture: int4/int8 projections are implemented for llama \
                     and gemma3 only, got {arch}; use --quant gguf, or load it without \
                     quantising"
                ),
            ));
        }
        if quant == Quant::Int4 {
            check_q4(g)?;
        }
        if quant == Quant::Blocks {
            // The projections on the file's blocks are never dequantised.
            let (vs, mut model) =
                Self::from_gguf_except(g, device, |info| runs_on_blocks(arch, info))?;
            model.use_file_blocks(g)?;
            return Ok((vs, model));
        }
        let (vs, mut model) = Self::from_gguf(g, device)?;
        let (h, hkv) = (
            model.config.num_attention_heads,
            model.config.num_key_value_heads,
        );
        for (i, layer) in model.model.layers.iter_mut().enumerate() {
            for (name, proj) in projections_mut(layer) {
                let Projection::Float(linear) = proj else {
                    continue;
                };
                let quantised = match quant {
                    Quant::Int8 | Quant::Blocks => {
                        Projection::Int8(Int8Linear::from_float(&linear.weight)?)
                    }
                    Quant::Int4 => {
                        let gname = format!("blk.{i}.{name}.weight");
                        let heads = match name {
                            "attn_q" => Some(h),
                            "attn_k" => Some(hkv),
                            _ => None,
                        };
                        Projection::Int4(int4_from_gguf(g, &gname, heads)?)
                    }
                };
                if let Projection::Float(mut old) = std::mem::replace(proj, quantised) {
                    // Shared with the VarStore's variable: emptying it frees the float copy.
                    let empty = Tensor::f_empty([0], (Kind::Float, device))?;
                    tch::no_grad(|| old.weight.set_data(&empty));
                }
            }
        }
        Ok((vs, model))
    }
}

impl LlamaForCausalLM {
    /// Quantises the head `[V, E]` for the logits (CPU only): [`Quant::Int8`] per output
    /// channel, [`Quant::Int4`] in groups of 32 with one scale and zero each (round to
    /// nearest between the group's minimum and maximum; not the file's blocks, since a
    /// tied head is the embedding, which the file may store otherwise). The float head
    /// stays for the embedding lookup of a tied model; the logits then run on the
    /// quantised copy, in the kernels' bfloat16.
    pub fn quantize_head(&mut self, quant: Quant) -> Result<()> {
        let w = self.lm_head_weight();
        if w.device() != Device::Cpu {
            return Err(Error::Device {
                arg: "head (quantised weights)".into(),
                expected: Device::Cpu,
                got: w.device(),
            });
        }
        self.quantized_head = Some(match quant {
            Quant::Int8 => Projection::Int8(Int8Linear::from_float(w)?),
            Quant::Int4 => Projection::Int4(Int4Linear::from_float(w, Q4_GROUP)?),
            Quant::Blocks => {
                return Err(Error::invalid(
                    "quant",
                    "Blocks keeps a file's own blocks: load with from_gguf_quantized",
                ))
            }
        });
        Ok(())
    }
}

/// Every layer projection of `g` is Q4_0 or Q4_1, or an error naming the first that is
/// not.
fn check_q4(g: &Gguf) -> Result<()> {
    match g
        .tensors
        .iter()
        .find(|t| is_projection(&t.name) && !matches!(t.ggml_type, GgmlType::Q4_0 | GgmlType::Q4_1))
    {
        Some(t) => Err(Error::invalid(
            "quant",
            format!(
                "int4 keeps the file's Q4_0/Q4_1 blocks, but {} in {} is {:?}",
                t.name, g.source_name, t.ggml_type
            ),
        )),
        None => Ok(()),
    }
}

/// The int4 layer of the Q4_0/Q4_1 tensor `name` `[N, K]`, its rows put back in Hugging
/// Face's order for `heads` query or key heads (see [`unpermute_rows`]).
pub fn int4_from_gguf(g: &Gguf, name: &str, heads: Option<i64>) -> Result<Int4Linear> {
    let info = g.tensor_info(name)?;
    let (codes, scales, zeros) = q4_blocks(info.ggml_type, g.raw_data(info), &info.shape)
        .map_err(|e| Error::malformed(&g.source_name, format!("tensor {name}: {e}")))?;
    let (codes, scales, zeros) = match heads {
        Some(h) => (
            unpermute_rows(&codes, h)?,
            unpermute_rows(&scales, h)?,
            unpermute_rows(&zeros, h)?,
        ),
        None => (codes, scales, zeros),
    };
    Int4Linear::new(&codes, &scales, &zeros, Q4_GROUP)
}

/// The codes `[N, K]` (uint8, 0..16), scales and zeros `[N, K / 32]` (float32) of
/// Q4_0/Q4_1 blocks, in the int4 kernel's convention `w = (q - 8) * scale + zero`:
/// Q4_0's `(q - 8) * d` has zero 0; Q4_1's `q * d + m` has zero `m + 8 d`.
fn q4_blocks(
    ty: GgmlType,
    bytes: &[u8],
    shape: &[i64],
) -> Result<(Tensor, Tensor, Tensor), String> {
    let (n, k) = match shape {
        [n, k] if k % Q4_GROUP == 0 => (*n, *k),
        _ => {
            return Err(format!(
                "expected [N, K] with K a multiple of 32, got {shape:?}"
            ))
        }
    };
    let (block_bytes, nibbles_at) = match ty {
        GgmlType::Q4_0 => (18, 2),
        GgmlType::Q4_1 => (20, 4),
        other => return Err(format!("expected Q4_0 or Q4_1 blocks, got {other:?}")),
    };
    let torch = |e: tch::TchError| e.to_string();
    let groups = k / Q4_GROUP;
    let blocks =
        Tensor::f_from_data_size(bytes, &[n * groups, block_bytes], Kind::Uint8).map_err(torch)?;
    let half = |at: i64| -> Result<Tensor, tch::TchError> {
        blocks
            .f_narrow(1, at, 2)?
            .f_contiguous()?
            .f_view_dtype(Kind::Half)?
            .f_to_kind(Kind::Float)?
            .f_reshape([n, groups])
    };
    // Byte j holds value j in its low nibble and value j + 16 in its high one.
    let qs = blocks.f_narrow(1, nibbles_at, 16).map_err(torch)?;
    let codes = (|| {
        let lo = qs.f_bitwise_and(0x0f)?;
        let hi = qs.f_bitwise_right_shift_tensor_scalar(4)?;
        Tensor::f_cat(&[&lo, &hi], 1)?.f_reshape([n, k])
    })()
    .map_err(torch)?;
    let d = half(0).map_err(torch)?;
    let zeros = match ty {
        GgmlType::Q4_0 => d.f_zeros_like().map_err(torch)?,
        _ => half(2)
            .and_then(|m| m.f_add(&d.f_mul_scalar(8)?))
            .map_err(torch)?,
    };
    Ok((codes, d, zeros))
}
