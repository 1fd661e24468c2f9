//! [`Quant::Blocks`]: every layer projection, the head and the embedding table kept in the GGUF's own
//! blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K) and run on the crate's integer
//! kernels ([`crate::nn::BlockLinear`]), activations quantised per block to 8 bits as
//! llama.cpp quantises them: llama.cpp's arithmetic, so the tokens are close to
//! llama.cpp's rather than equal to transformers' float32 ones. A tensor the file
//! stores as floats (F32, F16, BF16) stays a float projection.

use std::sync::Arc;

use tch::{Kind, Tensor};

use super::config::LlamaConfig;
use super::model::LlamaForCausalLM;
use super::projections::{is_projection, projections_mut};
use super::weights::rows_permuted;
use crate::error::{Error, Result};
use crate::io::{GgmlType, Gguf, GgufTensorInfo};
use crate::nn::kernels::{BlockType, HugePageBytes};
use crate::nn::{BlockLinear, Projection};

impl LlamaForCausalLM {
    /// Replaces every projection the file stores in blocks by its blocks, sets the
    /// head to the blocks of `output.weight` (or of the tied `token_embd.weight`), and
    /// the embedding lookup to the blocks of `token_embd.weight`. The
    /// float weights of the replaced projections are emptied, freeing their memory.
    pub(super) fn use_file_blocks(&mut self, g: &Gguf) -> Result<()> {
        let (h, hkv) = (
            self.config.num_attention_heads,
            self.config.num_key_value_heads,
        );
        // Undone as weights.rs undoes it for the float weights.
        let permuted = rows_permuted(&self.config);
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            for (name, proj) in projections_mut(layer) {
                let heads = match name {
                    "attn_q" if permuted => Some(h),
                    "attn_k" if permuted => Some(hkv),
                    _ => None,
                };
                let (tensor, part) = stored_as(&self.config, i, name);
                let Some(mut blocks) = block_linear(g, &tensor, part, heads)? else {
                    continue;
                };
                // Qwen2's q/k/v biases stay float32, added after the blocks' product.
                if let Projection::Float(old) = &*proj {
                    if let Some(bias) = &old.bias {
                        blocks = blocks.with_bias(bias)?;
                    }
                }
                if let Projection::Float(old) = std::mem::replace(proj, Projection::Block(blocks)) {
                    // Shared with the VarStore's variable: emptying it frees the float copy.
                    let empty = Tensor::f_empty([0], (Kind::Float, old.weight.device()))?;
                    tch::no_grad(|| old.weight.shallow_clone().set_data(&empty));
                }
            }
        }
        let head = match g.tensor_info("output.weight") {
            Ok(_) => "output.weight",
            Err(_) => "token_embd.weight",
        };
        let head_blocks = block_linear(g, head, None, None)?
            .map(|linear| on_huge_pages(g, head, linear))
            .transpose()?;
        // The embedding table from its blocks too, its float copy never made (a tied
        // head's own copy: one table for both).
        self.model.embed_blocks = match head == "token_embd.weight" {
            true => head_blocks.clone(),
            false => block_linear(g, "token_embd.weight", None, None)?,
        };
        self.quantized_head = head_blocks.map(Projection::Block);
        Ok(())
    }
}

/// Whether [`LlamaForCausalLM::use_file_blocks`] runs the tensor `info` of an
/// `arch` file on its blocks, so that the float loader need not read it: a layer
/// projection, the head or the embedding table stored in a block type. Phi-3's fused
/// projections are read as floats too, for the loader's split (then replaced by row
/// ranges of their blocks).
pub(super) fn runs_on_blocks(arch: &str, info: &GgufTensorInfo) -> bool {
    let name = info.name.as_str();
    let fused =
        arch == "phi3" && (name.ends_with(".attn_qkv.weight") || name.ends_with(".ffn_up.weight"));
    (is_projection(name) || name == "output.weight" || name == "token_embd.weight")
        && block_type(info).is_some()
        && !fused
}

/// Where layer `i`'s projection `name` (a GGUF module name of [`projections_mut`]) lies
/// in a file of `config`'s family: its own tensor, or rows `start .. start + n` of
/// Phi-3's fused one (`attn_qkv`: H·D query, Hkv·D key, Hkv·D value rows; `ffn_up`:
/// I gate rows, then I up rows; as weights.rs splits the float ones).
fn stored_as(config: &LlamaConfig, i: usize, name: &str) -> (String, Option<(i64, i64)>) {
    let (h, hkv, d, inter) = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.intermediate_size,
    );
    let part = match (config.architecture == "phi3", name) {
        (true, "attn_q") => Some(("attn_qkv", 0, h * d)),
        (true, "attn_k") => Some(("attn_qkv", h * d, hkv * d)),
        (true, "attn_v") => Some(("attn_qkv", (h + hkv) * d, hkv * d)),
        (true, "ffn_gate") => Some(("ffn_up", 0, inter)),
        (true, "ffn_up") => Some(("ffn_up", inter, inter)),
        _ => None,
    };
    match part {
        Some((fused, start, n)) => (format!("blk.{i}.{fused}.weight"), Some((start, n))),
        None => (format!("blk.{i}.{name}.weight"), None),
    }
}

/// The kernels' block type of tensor `info`, if it is stored in one of them.
fn block_type(info: &GgufTensorInfo) -> Option<BlockType> {
    BlockType::ALL
        .into_iter()
        .find(|b| GgmlType::from_id(b.ggml_type()) == Some(info.ggml_type))
}

/// The GGUF tensor `name` (or its rows `start .. start + n`) as a [`BlockLinear`], rows
/// in Hugging Face's order (llama.cpp's query/key permutation undone for a projection
/// over `heads` heads); `None` where the file stores it as floats.
fn block_linear(
    g: &Gguf,
    name: &str,
    part: Option<(i64, i64)>,
    heads: Option<i64>,
) -> Result<Option<BlockLinear>> {
    let info = g.tensor_info(name)?;
    let Some(block) = block_type(info) else {
        return Ok(None);
    };
    let &[all_rows, cols] = info.shape.as_slice() else {
        return Err(Error::malformed(
            &g.source_name,
            format!("{name}: expected a matrix, got shape {:?}", info.shape),
        ));
    };
    let (start, rows) = part.unwrap_or((0, all_rows));
    if start < 0 || rows <= 0 || start + rows > all_rows {
        return Err(Error::malformed(
            &g.source_name,
            format!("{name}: rows {start}..{} of {all_rows}", start + rows),
        ));
    }
    // The file's pages in place; only a permuted query/key projection is copied.
    let range = g.raw_range(info);
    let row_bytes = range.len() / all_rows as usize;
    let first = range.start + start as usize * row_bytes;
    let bytes = first..first + rows as usize * row_bytes;
    let linear = BlockLinear::in_place(block, rows as usize, cols as usize, g.file_bytes(), bytes)?;
    match heads {
        None => Ok(Some(linear)),
        Some(heads) => Ok(Some(linear.with_rows(&unpermuted_order(rows, heads)?)?)),
    }
}

/// Weights at least this large that every token streams through whole (the head) are
/// copied onto huge pages ([`HugePageBytes`]); smaller ones stay in the file's pages.
const HUGE_PAGE_BYTES: usize = 8 << 20;

/// `linear` (the file's tensor `name` in place) moved onto a copy on 2 MiB pages when it
/// is at least [`HUGE_PAGE_BYTES`], the file's pages released as the copy goes (so the
/// copy costs no memory beyond them): the head, which every token reads whole, streams
/// from huge pages with a TLB miss per 2 MiB instead of per 4 KiB (Gemma 3's Q8_0 head:
/// 17-25 GB/s from the file's pages, 23-31 from the copy, `HugePageBytes`).
fn on_huge_pages(g: &Gguf, name: &str, linear: BlockLinear) -> Result<BlockLinear> {
    if linear.nbytes() < HUGE_PAGE_BYTES {
        return Ok(linear);
    }
    let range = g.raw_range(g.tensor_info(name)?);
    let file = g.file_bytes();
    let src = &(*file).as_ref()[range.clone()];
    let copy = HugePageBytes::copy_of_releasing(src, |r| {
        file.release(range.start + r.start..range.start + r.end)
    });
    let len = copy.len();
    let rows = linear.out_features() as usize;
    let cols = linear.in_features() as usize;
    BlockLinear::in_place(linear.block(), rows, cols, Arc::new(copy), 0..len)
}

/// Row `i` of the Hugging Face weight is row `order[i]` of llama.cpp's (the inverse of
/// its `permute`): rows `(head, half, pair)` in the file are `(head, pair, half)` here,
/// as [`super::weights::unpermute_rows`] reorders a float weight.
fn unpermuted_order(rows: i64, heads: i64) -> Result<Vec<usize>> {
    if heads <= 0 || rows % (2 * heads) != 0 {
        return Err(Error::invalid(
            "heads",
            format!("{rows} rows are not heads = {heads} of an even head size"),
        ));
    }
    let half = (rows / heads / 2) as usize;
    let mut order = Vec::with_capacity(rows as usize);
    for head in 0..heads as usize {
        for pair in 0..2 {
            for j in 0..half {
                order.push(head * 2 * half + 2 * j + pair);
            }
        }
    }
    Ok(order)
}
