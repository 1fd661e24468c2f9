//! Loading a Llama-family decoder's weights by their Hugging Face names: from a GGUF
//! (llama.cpp's names, dequantised to float32, the query and key rows of the `llama`
//! architecture put back in Hugging Face's order) or from a Hugging Face folder
//! (`config.json`, `model.safetensors` or its shards). Phi-3's fused projections are
//! split by rows at load, in either format; the names are `gguf_names.rs`'s. A Gemma 3
//! GGUF's rows are not permuted (llama.cpp permutes
//! only the `llama` architecture's), and its norm weights are stored as `1 + weight`,
//! which transformers' `Gemma2TensorProcessor` undoes by subtracting 1.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::config::LlamaConfig;
use super::gguf_names::gguf_name_for;
use super::model::LlamaForCausalLM;
use crate::error::{Error, Result};
use crate::io::{read_safetensors, Gguf, GgufTensorInfo};
use crate::nn::load_into;

/// Whether a GGUF of `config`'s architecture holds its query/key rows permuted:
/// llama.cpp's converter permutes those of the `llama` architecture only (Mistral's files
/// are `llama` too); Qwen, Phi-3 and Gemma files keep transformers' order.
pub(super) fn rows_permuted(config: &LlamaConfig) -> bool {
    config.architecture == "llama"
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
/// kind, since variables require gradients). The weight matrices among them are left
/// unwritten (`unfilled`), so no page backs them; each is replaced whole by its weight
/// (or by an empty tensor for a projection that runs on the file's blocks), and the
/// store's kind set back to float32.
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
        // The slices read so far need not stay resident (the rest is not yet).
        g.release(info);
    }
    Ok(out)
}

impl LlamaForCausalLM {
    /// The model of a GGUF (`general.architecture` `llama`, `qwen2`, `qwen3`, `gemma2`,
    /// `gemma3` or `phi3`), its config from the metadata and every weight dequantised to
    /// float32, on `device`. The VarStore holds the weights under Hugging Face's names.
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
        let (mut vs, model) = Self::to_load(config, device, LOAD_PLACEHOLDER)?;
        let vars = vs.variables();
        let config = &model.config;
        // Under the checkpoint's names (Phi-3's fused projections once), split below.
        let mut wanted = BTreeMap::new();
        for name in vars.keys() {
            let name = checkpoint_name(config, name);
            let gname = gguf_name_for(config, &name).ok_or_else(|| {
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
        // Every name and shape first, as `load_into` checks them, before any is read (a
        // fused tensor's parts when it is split).
        for (gname, name) in &wanted {
            let info = g.tensor_info(gname)?;
            if let Some(var) = vars.get(name) {
                check_shape(&g.source_name, name, &var.size(), &info.shape)?;
            }
        }
        let (h, hkv) = (config.num_attention_heads, config.num_key_value_heads);
        let permuted = rows_permuted(config);
        let mut fused = BTreeMap::new();
        for (gname, name) in wanted {
            let info = g.tensor_info(&gname)?;
            let t = if keep(info) {
                Tensor::f_empty([0], (Kind::Float, device))?
            } else if config.norm_unit_offset && gname.contains("norm.weight") {
                // Gemma's norms are stored as 1 + weight; in float32, as numpy's
                // `weights - 1` (transformers' Gemma2TensorProcessor).
                g.tensor(&gname)?.f_sub_scalar(1.0)?
            } else if permuted && gname.ends_with(".attn_q.weight") {
                unpermute_rows(&g.tensor(&gname)?, h)?
            } else if permuted && gname.ends_with(".attn_k.weight") {
                unpermute_rows(&g.tensor(&gname)?, hkv)?
            } else {
                dequantized_in_slices(g, info, device)?
            };
            if !keep(info) {
                // Read once into its float copy: its file pages need not stay resident.
                g.release(info);
            }
            match vars.get(&name) {
                Some(var) => replace_data(var, &t.f_to(device)?),
                None => {
                    fused.insert(name, t);
                }
            }
        }
        split_fused(&mut fused, config, &g.source_name)?;
        for (name, t) in fused {
            let var = vars.get(&name).ok_or_else(|| {
                Error::malformed(&g.source_name, format!("no parameter {name} to load"))
            })?;
            check_shape(&g.source_name, &name, &var.size(), &t.size())?;
            replace_data(var, &t.f_to(device)?);
        }
        vs.set_kind(Kind::Float);
        Ok((vs, model))
    }

    /// A model of `config` in `kind` (nothing drawn) whose weight matrices are
    /// uninitialised (`unfilled`), for a loader that replaces or overwrites every
    /// variable next.
    fn to_load(config: LlamaConfig, device: Device, kind: Kind) -> Result<(VarStore, Self)> {
        let mut vs = VarStore::new(device);
        vs.set_kind(kind);
        let zeros = LlamaConfig {
            initializer_range: 0.0,
            ..config.clone()
        };
        let mut model = super::unfilled(|| Self::new(vs.root(), zeros))?;
        model.config = config;
        Ok((vs, model))
    }

    /// The model of a Hugging Face folder: `config.json` (its `model_type` one of
    /// [`super::SUPPORTED_MODEL_TYPES`]) and `model.safetensors`, or the shards
    /// `model.safetensors.index.json` lists. A tied `lm_head.weight`, if saved, is the
    /// embedding and is not loaded twice; Phi-3's fused projections are split.
    pub fn from_hf_dir(dir: &Path, device: Device) -> Result<(VarStore, Self)> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let (mut tensors, source) = read_checkpoint(dir)?;
        if config.tie_word_embeddings {
            tensors.remove("lm_head.weight");
        }
        split_fused(&mut tensors, &config, &source)?;
        let (vs, model) = Self::to_load(config, device, Kind::Float)?;
        load_into(&vs, &tensors, &source)?;
        Ok((vs, model))
    }
}

/// A folder's weights: `model.safetensors`, or every shard of
/// `model.safetensors.index.json`'s `weight_map`; and the name to report them under.
fn read_checkpoint(dir: &Path) -> Result<(BTreeMap<String, Tensor>, String)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        let name = single.display().to_string();
        return Ok((read_safetensors(&single)?.tensors, name));
    }
    let name = index.display().to_string();
    let json: serde_json::Value = serde_json::from_str(&crate::io::read_text(&index)?)
        .map_err(|e| Error::malformed(&name, format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::malformed(&name, "no weight_map object"))?;
    let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    let mut tensors = BTreeMap::new();
    for shard in shards {
        if shard.contains('/') || shard.contains("..") {
            return Err(Error::malformed(
                &name,
                format!("shard {shard:?} is outside the folder"),
            ));
        }
        tensors.extend(read_safetensors(&dir.join(shard))?.tensors);
    }
    if let Some(missing) = map.keys().find(|k| !tensors.contains_key(*k)) {
        return Err(Error::malformed(&name, format!("{missing} is in no shard")));
    }
    Ok((tensors, name))
}

/// Phi-3's fused projections: `self_attn.qkv_proj` is `q_proj`, `k_proj`, `v_proj`
/// stacked by rows, `mlp.gate_up_proj` is `gate_proj` then `up_proj`.
const FUSED: [(&str, &[&str]); 2] = [
    (
        "self_attn.qkv_proj.weight",
        &[
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
        ],
    ),
    (
        "mlp.gate_up_proj.weight",
        &["mlp.gate_proj.weight", "mlp.up_proj.weight"],
    ),
];

/// The name under which `config`'s checkpoints store the parameter `name`: the fused
/// projection that holds it (Phi-3), or the name itself.
fn checkpoint_name(config: &LlamaConfig, name: &str) -> String {
    if config.architecture == "phi3" {
        for (fused, parts) in FUSED {
            for part in parts {
                if let Some(prefix) = name.strip_suffix(part) {
                    return format!("{prefix}{fused}");
                }
            }
        }
    }
    name.to_string()
}

/// Splits every fused projection of `tensors` into its parts by rows (H * D, Hkv * D,
/// Hkv * D; I, I), checking that the rows add up.
fn split_fused(
    tensors: &mut BTreeMap<String, Tensor>,
    config: &LlamaConfig,
    source: &str,
) -> Result<()> {
    let (h, hkv, d, i) = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.intermediate_size,
    );
    let fused: Vec<String> = tensors
        .keys()
        .filter(|k| FUSED.iter().any(|(f, _)| k.ends_with(f)))
        .cloned()
        .collect();
    for name in fused {
        let (suffix, parts) = FUSED
            .iter()
            .find(|(f, _)| name.ends_with(f))
            .copied()
            .ok_or_else(|| Error::malformed(source, format!("{name}: not fused")))?;
        let rows: Vec<i64> = match parts.len() {
            3 => vec![h * d, hkv * d, hkv * d],
            _ => vec![i, i],
        };
        let Some(t) = tensors.remove(&name) else {
            continue;
        };
        if t.dim() != 2 || t.size()[0] != rows.iter().sum::<i64>() {
            return Err(Error::malformed(
                source,
                format!(
                    "{name}: expected {} rows ({rows:?}), got shape {:?}",
                    rows.iter().sum::<i64>(),
                    t.size()
                ),
            ));
        }
        let prefix = &name[..name.len() - suffix.len()];
        for (part, piece) in parts.iter().zip(t.f_split_with_sizes(&rows, 0)?) {
            tensors.insert(format!("{prefix}{part}"), piece.f_contiguous()?);
        }
    }
    Ok(())
}

/// An error naming `name` unless the file's `got` shape is the model's `expected`.
fn check_shape(source: &str, name: &str, expected: &[i64], got: &[i64]) -> Result<()> {
    if expected == got {
        return Ok(());
    }
    Err(Error::malformed(
        source,
        format!("{name}: expected shape {expected:?}, got {got:?}"),
    ))
}

/// `var`'s storage replaced by `t` (the module shares the variable): the placeholder
/// it was built over is freed.
fn replace_data(var: &Tensor, t: &Tensor) {
    let mut dst = var.shallow_clone();
    tch::no_grad(|| dst.set_data(t));
}
