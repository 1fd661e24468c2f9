//! Sampling from a nanoGPT `ckpt.pt` as karpathy/nanoGPT's `sample.py` does it
//! (`init_from='resume'`, a char vocabulary from `meta.pkl`).
//!
//! `sample.py` seeds the default generator *before* it builds `GPT(model_args)`, so
//! the initialisation's draws come first and the samples draw after them: call
//! [`SampleCheckpoint::load`] after `tch::manual_seed(seed)`. Each sample is then
//! `model.generate(x, max_new_tokens, temperature, top_k)`, which is
//! [`super::generate_batch`] with nanoGPT's [`super::CausalLm`] (the KV cache while the context
//! fits in `block_size`, recomputing the cropped window after that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Device;

use crate::data::read_meta;
use crate::error::{Error, Result};
use crate::io::{read_torch_object, strip_compile_prefix, TorchValue};
use crate::models::nanogpt::{Gpt, GptConfig};

/// nanoGPT's model from a `ckpt.pt` with its character vocabulary.
#[derive(Debug)]
pub struct SampleCheckpoint {
    /// The VarStore holding the model.
    pub vs: VarStore,
    /// `GPT(GPTConfig(**checkpoint['model_args']))` with `checkpoint['model']` loaded.
    pub model: Gpt,
    /// `meta['itos']`: id to string.
    pub itos: Vec<String>,
    /// Where the vocabulary came from.
    pub meta_path: PathBuf,
}

impl SampleCheckpoint {
    /// Reads `ckpt` (a `ckpt.pt` as `train.py` or `attn train --model nanogpt` saves
    /// it: a dict with `model_args` and `model`), builds the model on the CPU, drawing
    /// its initialisation from the default generator as `GPT(gptconf)` does, and loads
    /// the weights (keys with `_orig_mod.` accepted). The vocabulary is `meta.pkl`
    /// beside `ckpt`, else `sample.py`'s `data/<config['dataset']>/meta.pkl` (relative to
    /// the working directory); without either there is no char vocabulary, and GPT-2's
    /// BPE, `sample.py`'s fallback, is not available here: an error.
    pub fn load(ckpt: &Path) -> Result<Self> {
        let name = ckpt.display().to_string();
        let bad = |reason: String| Error::malformed(&name, reason);
        let value = read_torch_object(ckpt)?;
        if value.as_dict().is_none() {
            return Err(bad("holds no dict".into()));
        }
        let (Some(args), Some(weights)) = (value.get("model_args"), value.get("model")) else {
            return Err(bad(
                "not a nanoGPT ckpt.pt (no 'model_args' and 'model')".into()
            ));
        };
        let config = model_args(args).map_err(bad)?;
        let meta_path = find_meta(ckpt, value.get("config")).ok_or_else(|| {
            bad(
                "has no meta.pkl beside it or in data/<dataset>/: no char vocabulary \
                 (GPT-2's BPE, sample.py's fallback, is not supported)"
                    .into(),
            )
        })?;
        let (meta_vocab, itos) = read_meta(&meta_path)?;
        let meta_name = meta_path.display().to_string();
        let itos = itos.ok_or_else(|| Error::malformed(&meta_name, "has no itos"))?;
        if meta_vocab != config.vocab_size || itos.len() as i64 != config.vocab_size {
            return Err(Error::malformed(
                &meta_name,
                format!(
                    "vocab_size {meta_vocab} with {} itos entries, but {name} has vocab_size {}",
                    itos.len(),
                    config.vocab_size
                ),
            ));
        }
        let tensors = weights
            .as_dict()
            .ok_or_else(|| bad("'model' is not a dict".into()))?
            .iter()
            .map(|(k, v)| match (k.as_str(), v.as_tensor()) {
                (Some(k), Some(t)) => Ok((k.to_string(), t.shallow_clone())),
                _ => Err(bad("'model' is not a dict of str to tensor".into())),
            })
            .collect::<Result<Vec<_>>>()?;
        // Before building the model: model_args that ask for far more than the file holds
        // would allocate it all first.
        let held: f64 = tensors
            .iter()
            .filter(|(k, _)| strip_compile_prefix(k) != "lm_head.weight")
            .map(|(_, t)| t.numel() as f64)
            .sum();
        let wanted = parameter_count(&config);
        if wanted != held {
            return Err(bad(format!(
                "model_args ask for {wanted} parameters, but the file holds {held}"
            )));
        }
        let vs = VarStore::new(Device::Cpu);
        let model = Gpt::new(vs.root(), config)?;
        model.load_state_dict(&tensors)?;
        Ok(Self {
            vs,
            model,
            itos,
            meta_path,
        })
    }

    /// `encode(s)`: `[stoi[c] for c in s]`; a character outside the vocabulary is an
    /// error naming it.
    pub fn encode(&self, s: &str) -> Result<Vec<i64>> {
        let stoi: HashMap<&str, i64> = self
            .itos
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as i64))
            .collect();
        let mut buf = [0u8; 4];
        s.chars()
            .map(|c| {
                stoi.get(&*c.encode_utf8(&mut buf)).copied().ok_or_else(|| {
                    Error::invalid("text", format!("{c:?} is not in the vocabulary"))
                })
            })
            .collect()
    }

    /// `decode(l)`: `''.join([itos[i] for i in l])`.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        ids.iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.itos.get(i))
                    .map(String::as_str)
                    .ok_or_else(|| {
                        Error::invalid("ids", format!("{i} is not in [0, {})", self.itos.len()))
                    })
            })
            .collect()
    }
}

/// `GPTConfig(**model_args)`: the six ints and bool, and `dropout` (unused in eval).
fn model_args(args: &TorchValue) -> std::result::Result<GptConfig, String> {
    args.as_dict().ok_or("'model_args' is not a dict")?;
    let int = |key: &str| {
        let v = args.get(key);
        v.and_then(TorchValue::as_int)
            .ok_or_else(|| format!("model_args[{key:?}] is {v:?}, not an int"))
    };
    let dropout = match args.get("dropout") {
        None => 0.0,
        Some(v) => v
            .as_float()
            .ok_or_else(|| format!("model_args['dropout'] is {v:?}, not a float"))?,
    };
    Ok(GptConfig {
        block_size: int("block_size")?,
        vocab_size: int("vocab_size")?,
        n_layer: int("n_layer")?,
        n_head: int("n_head")?,
        n_embd: int("n_embd")?,
        dropout,
        bias: int("bias")? != 0,
    })
}

/// `model.parameters()`' element count of `GPT(config)` (`lm_head` tied to `wte`), in
/// f64 so that absurd sizes do not overflow.
fn parameter_count(c: &GptConfig) -> f64 {
    let [v, t, cc, l] = [c.vocab_size, c.block_size, c.n_embd, c.n_layer].map(|x| x as f64);
    let b = if c.bias { 1.0 } else { 0.0 };
    // ln_1, c_attn, attn.c_proj, ln_2, c_fc, mlp.c_proj
    let block = (cc + b * cc)
        + (3.0 * cc * cc + b * 3.0 * cc)
        + (cc * cc + b * cc)
        + (cc + b * cc)
        + (4.0 * cc * cc + b * 4.0 * cc)
        + (4.0 * cc * cc + b * cc);
    v * cc + t * cc + l * block + (cc + b * cc)
}

/// `meta.pkl` beside the checkpoint, else `data/<config['dataset']>/meta.pkl`.
fn find_meta(ckpt: &Path, config: Option<&TorchValue>) -> Option<PathBuf> {
    let beside = ckpt.parent().unwrap_or(Path::new(".")).join("meta.pkl");
    if beside.is_file() {
        return Some(beside);
    }
    let dataset = match config.and_then(|c| c.get("dataset")) {
        Some(TorchValue::Str(s)) if !s.is_empty() => s.clone(),
        _ => return None,
    };
    let path = Path::new("data").join(dataset).join("meta.pkl");
    path.is_file().then_some(path)
}
