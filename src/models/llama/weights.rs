//! Loading a Llama's weights by their Hugging Face names: from a GGUF (llama.cpp's
//! names, dequantised to float32, the query and key rows put back in Hugging Face's
//! order) or from a Hugging Face folder (`config.json`, `model.safetensors`). A Gemma 3
//! GGUF's names are its own (`gemma.rs`), its rows are not permuted (llama.cpp permutes
//! only the `llama` architecture's), and its norm weights are stored as `1 + weight`,
//! which transformers' `Gemma2TensorProcessor` undoes by subtracting 1.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::config::LlamaConfig;
use super::gemma::gemma3_gguf_name;
use super::model::LlamaForCausalLM;
use crate::checkpoint::load_into;
use crate::error::{Error, Result};
use crate::io::{read_safetensors, Gguf, GgufTensorInfo};

/// The non-layer parameters' GGUF names.
pub(super) const FIXED_NAMES: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// The GGUF name of the Hugging Face parameter `hf`, as transformers' GGUF loader maps
/// llama.cpp's names (`model.layers.3.self_attn.q_proj.weight` <-> `blk.3.attn_q.weight`).
pub fn gguf_name(hf: &str) -> Option<String> {
    gguf_name_with(hf, &FIXED_NAMES, llama_module)
}

/// A Llama layer's module under its GGUF name (`self_attn.q_proj.weight` ->
/// `attn_q.weight`).
pub(super) fn llama_module(module: &str) -> Option<&'static str> {
    Some(match module {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        _ => return None,
    })
}

/// `hf`'s GGUF name: one of `fixed`, or `blk.{i}.{module(rest)}` for
/// `model.layers.{i}.{rest}`; the family's names differ only in `fixed` and `module`.
pub(super) fn gguf_name_with(
    hf: &str,
    fixed: &[(&str, &str)],
    module: impl Fn(&str) -> Option<&'static str>,
) -> Option<String> {
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, m) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    Some(format!("blk.{layer}.{}", module(m)?))
}

/// Undoes llama.cpp's permutation of a query or key projection `[heads * D, E]`.
///
/// llama.cpp's converter (`LlamaModel.permute`) reorders each head's rows from
/// transformers' halves `(x1, x2)` into interleaved pairs, `reshape(heads, 2, D/2, E)
/// .swapaxes(1, 2)`; this is transformers' `_reverse_permute_weights`,
/// `reshape(heads, D/2, 2, E).swapaxes(1, 2)`, its inverse.
pub fn unpermute_rows(w: &Tensor, heads: i64) -> Result<Tensor> {
    let size = w.size();
    if size.len() != 2 || heads <= 0 || size[0] % (2 * heads) != 0 {
        return Err(Error::shape(
            "weight",
            format!("(heads * D, E) with heads = {heads} and D even"),
            &size,
        ));
    }
    let half = size[0] / heads / 2;
    Ok(w.f_reshape([heads, half, 2, size[1]])?
        .f_transpose(1, 2)?
        .f_reshape(&size)?)
}

/// The kind of the placeholders a GGUF is loaded over: one byte an element (a float
/// kind, since variables require gradients), a quarter
/// of float32's, since the constructor's zeros are all allocated (and written) before the
/// first weight is read; each is replaced whole by its weight (or by an empty tensor
/// for a projection that runs on the file's blocks), and the store's kind set back to
/// float32.
const LOAD_PLACEHOLDER: Kind = Kind::Float8e4m3fn;

/// Elements dequantised at a time by [`dequantized_in_slices`]: 16 MiB of float32.
const SLICE_ELEMENTS: i64 = 4 << 20;

/// Tensor `info` in float32 on `device`, dequantised a slice of rows at a time into the
/// one tensor it ends in, so that the dequantiser's temporaries stay small beside a
/// large table (Gemma 3's embedding is 671 MB in float32).
fn dequantized_in_slices(g: &Gguf, info: &GgufTensorInfo, device: Device) -> Result<Tensor> {
    let rows = info.shape.first().copied().unwrap_or(1).max(1);
    let per_row = (info.numel() as i64 / rows).max(1);
    if info.shape.len() < 2 || rows * per_row <= SLICE_ELEMENTS {
        return Ok(g.tensor(&info.name)?.f_to(device)?);
    }
    let out = Tensor::f_empty(info.shape.as_slice(), (Kind::Float, device))?;
    let step = (SLICE_ELEMENTS / per_row).max(1);
    for start in (0..rows).step_by(step as usize) {
        let n = step.min(rows - start);
        let part = g.tensor_rows(info, start..start + n)?;
        tch::no_grad(|| out.f_narrow(0, start, n)?.f_copy_(&part))?;
    }
    Ok(out)
}

impl LlamaForCausalLM {
    /// The model of a Llama GGUF, its config from the metadata and every weight
    /// dequantised to float32, on `device`. The VarStore holds the weights under
    /// Hugging Face's names.
    pub fn from_gguf(g: &Gguf, device: Device) -> Result<(VarStore, Self)> {
        Self::from_gguf_except(g, device, |_| false)
    }

    /// [`LlamaForCausalLM::from_gguf`], except that the tensors whose GGUF info `keep`
    /// names are shape-checked but not dequantised: their variables are emptied, for the
    /// caller to run them otherwise (on the file's blocks). Tensor by tensor, so that
    /// at most one dequantised tensor exists beside the model at a time.
    pub(super) fn from_gguf_except(
        g: &Gguf,
        device: Device,
        keep: impl Fn(&GgufTensorInfo) -> bool,
    ) -> Result<(VarStore, Self)> {
        let config = LlamaConfig::from_gguf(g)?;
        let gemma = config.architecture == "gemma3";
        let (mut vs, model) = Self::to_load(config, device, LOAD_PLACEHOLDER)?;
        let vars = vs.variables();
        let mut wanted = BTreeMap::new();
        for name in vars.keys() {
            let mapped = match gemma {
                true => gemma3_gguf_name(name),
                false => gguf_name(name),
            };
            let gname = mapped.ok_or_else(|| {
                Error::malformed(&g.source_name, format!("no GGUF name for parameter {name}"))
            })?;
            wanted.insert(gname, name);
        }
        if let Some(extra) = g.tensors.iter().find(|t| !wanted.contains_key(&t.name)) {
            return Err(Error::malformed(
                &g.source_name,
                format!("unexpected tensor {} for this config", extra.name),
            ));
        }
        // Every name and shape first, as `load_into` checks them, before any is read.
        for (gname, name) in &wanted {
            let info = g.tensor_info(gname)?;
            if info.shape != vars[*name].size() {
                return Err(Error::malformed(
                    &g.source_name,
                    format!(
                        "{name} ({gname}): expected shape {:?}, got {:?}",
                        vars[*name].size(),
                        info.shape
                    ),
                ));
            }
        }
        let (h, hkv) = (
            model.config.num_attention_heads,
            model.config.num_key_value_heads,
        );
        for (gname, name) in wanted {
            let mut dst = vars[name].shallow_clone();
            let info = g.tensor_info(&gname)?;
            let t = if keep(info) {
                Tensor::f_empty([0], (Kind::Float, device))?
            } else if gemma && gname.contains("norm.weight") {
                // In float32, as numpy's `weights - 1`.
                g.tensor(&gname)?.f_sub_scalar(1.0)?
            } else if !gemma && gname.ends_with(".attn_q.weight") {
                unpermute_rows(&g.tensor(&gname)?, h)?
            } else if !gemma && gname.ends_with(".attn_k.weight") {
                unpermute_rows(&g.tensor(&gname)?, hkv)?
            } else {
                dequantized_in_slices(g, info, device)?
            };
            // The placeholder's storage is replaced (the module shares the variable).
            let t = t.f_to(device)?;
            tch::no_grad(|| dst.set_data(&t));
        }
        vs.set_kind(Kind::Float);
        Ok((vs, model))
    }

    /// A model of `config` with zero weights of `kind` (nothing drawn), to load weights
    /// into.
    fn to_load(config: LlamaConfig, device: Device, kind: Kind) -> Result<(VarStore, Self)> {
        let mut vs = VarStore::new(device);
        vs.set_kind(kind);
        let zeros = LlamaConfig {
            initializer_range: 0.0,
            ..config.clone()
        };
        let mut model = Self::new(vs.root(), zeros)?;
        model.config = config;
        Ok((vs, model))
    }

    /// The model of a Hugging Face folder: `config.json` and `model.safetensors`
    /// (a tied `lm_head.weight`, if saved, is the embedding and is not loaded twice).
    pub fn from_hf_dir(dir: &Path, device: Device) -> Result<(VarStore, Self)> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let file = dir.join("model.safetensors");
        let mut tensors = read_safetensors(&file)?.tensors;
        if config.tie_word_embeddings {
            tensors.remove("lm_head.weight");
        }
        let (vs, model) = Self::to_load(config, device, Kind::Float)?;
        load_into(&vs, &tensors, &file.display().to_string())?;
        Ok((vs, model))
    }
}
