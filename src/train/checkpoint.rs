//! The checkpoint `attn train` writes and `attn sample` reads: a safetensors file holding
//! the model's state_dict (PyTorch's keys, float32, buffers included, so
//! `model.load_state_dict(safetensors.torch.load_file(path))` loads it into the
//! lecture's `GPTLanguageModel`), with everything else needed to use it in the header's
//! `__metadata__`:
//!
//! | key | value |
//! |---|---|
//! | `format` | `tch-attention/lecture-gpt` |
//! | `format_version` | `1` |
//! | `config` | JSON: `vocab_size`, `block_size`, `n_embd`, `n_head`, `n_layer`, `dropout` |
//! | `vocab` | JSON array of the characters, id order (`itos`) |
//! | `iter` | the iterations trained |
//!
//! Written atomically (a temporary file, then a rename), so an interrupted write leaves
//! the previous checkpoint whole.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use tch::nn::VarStore;
use tch::Device;

use crate::checkpoint::load_into;
use crate::data::CharVocab;
use crate::error::{Error, Result};
use crate::models::lecture::{GptConfig, GptLanguageModel};

/// The `format` metadata value that marks a lecture GPT checkpoint.
pub const FORMAT: &str = "tch-attention/lecture-gpt";
const FORMAT_VERSION: &str = "1";

/// A lecture GPT with its vocabulary, as a checkpoint holds it.
#[derive(Debug)]
pub struct LectureCheckpoint {
    /// The VarStore holding the model.
    pub vs: VarStore,
    /// The model (eval use: sampling).
    pub model: GptLanguageModel,
    /// Its characters.
    pub vocab: CharVocab,
    /// The iterations it was trained for.
    pub iter: i64,
}

/// Writes `model` (living in `vs`), `vocab` and `iter` to `path`, atomically.
pub fn save(
    path: &Path,
    vs: &VarStore,
    model: &GptLanguageModel,
    vocab: &CharVocab,
    iter: i64,
) -> Result<()> {
    let c = &model.config;
    let config = json!({
        "vocab_size": c.vocab_size, "block_size": c.block_size, "n_embd": c.n_embd,
        "n_head": c.n_head, "n_layer": c.n_layer, "dropout": c.dropout,
    });
    let chars: Vec<String> = vocab.chars().iter().map(|c| c.to_string()).collect();
    let metadata = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("config".to_string(), config.to_string()),
        ("vocab".to_string(), json!(chars).to_string()),
        ("iter".to_string(), iter.to_string()),
    ]);
    let tensors = crate::checkpoint::state_dict(vs);
    crate::io::write_safetensors(
        path,
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &metadata,
    )
}

/// Reads a checkpoint written by [`save`] onto `device`. A file that is not one (another
/// safetensors file, a corrupt one, a config the tensors do not fit) is
/// [`Error::Malformed`] naming the file.
pub fn load(path: &Path, device: Device) -> Result<LectureCheckpoint> {
    let name = path.display().to_string();
    let file = crate::io::read_safetensors(path)?;
    let meta = |key: &str| {
        file.metadata.get(key).ok_or_else(|| {
            Error::malformed(
                &name,
                format!("not a lecture GPT checkpoint (no {key:?} in its metadata)"),
            )
        })
    };
    if meta("format")? != FORMAT {
        return Err(Error::malformed(
            &name,
            format!(
                "not a lecture GPT checkpoint (format {:?})",
                meta("format")?
            ),
        ));
    }
    if meta("format_version")? != FORMAT_VERSION {
        return Err(Error::malformed(
            &name,
            format!(
                "format_version {:?} is not supported (expected {FORMAT_VERSION})",
                meta("format_version")?
            ),
        ));
    }
    let config = parse_config(&name, meta("config")?)?;
    let vocab = parse_vocab(&name, meta("vocab")?)?;
    let iter = meta("iter")?
        .parse::<i64>()
        .map_err(|_| Error::malformed(&name, "metadata iter is not an integer"))?;
    if vocab.len() as i64 != config.vocab_size {
        return Err(Error::malformed(
            &name,
            format!(
                "vocab has {} characters, config says {}",
                vocab.len(),
                config.vocab_size
            ),
        ));
    }
    config
        .validate()
        .map_err(|e| Error::malformed(&name, format!("config: {e}")))?;
    // Before anything is built: a config describing more parameters than the file holds
    // would otherwise allocate them all first (a few bytes of metadata could ask for
    // tens of GB).
    let in_file: u64 = file.tensors.values().map(|t| t.numel() as u64).sum();
    match config.parameter_count() {
        Some(n) if n <= in_file => {}
        n => {
            return Err(Error::malformed(
                &name,
                format!(
                    "its config describes {} parameters, but the file holds {in_file} elements",
                    n.map_or("more than 2^64".to_string(), |n| n.to_string())
                ),
            ))
        }
    }
    let vs = VarStore::new(device);
    let model = GptLanguageModel::new(vs.root(), config)?;
    load_into(&vs, &file.tensors, &name)?;
    Ok(LectureCheckpoint {
        vs,
        model,
        vocab,
        iter,
    })
}

fn parse_config(name: &str, text: &str) -> Result<GptConfig> {
    let bad = |why: String| Error::malformed(name, format!("metadata config: {why}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let int = |key: &str| {
        v.get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(format!("{key} is missing or not an integer")))
    };
    let dropout = v
        .get("dropout")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("dropout is missing or not a number".into()))?;
    Ok(GptConfig {
        vocab_size: int("vocab_size")?,
        block_size: int("block_size")?,
        n_embd: int("n_embd")?,
        n_head: int("n_head")?,
        n_layer: int("n_layer")?,
        dropout,
    })
}

fn parse_vocab(name: &str, text: &str) -> Result<CharVocab> {
    let bad = |why: &str| Error::malformed(name, format!("metadata vocab: {why}"));
    let items: Vec<String> =
        serde_json::from_str(text).map_err(|_| bad("not a JSON array of strings"))?;
    let chars = items
        .iter()
        .map(|s| {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(bad("an entry is not one character")),
            }
        })
        .collect::<Result<Vec<char>>>()?;
    CharVocab::from_chars(chars).map_err(|e| Error::malformed(name, format!("metadata vocab: {e}")))
}
