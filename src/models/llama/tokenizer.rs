//! The tokenizer of a GGUF whose `tokenizer.ggml.model` is `gpt2` (byte-level BPE, as
//! SmolLM2 and Llama 3 use), built with Hugging Face's `tokenizers` exactly as
//! transformers' `GGUFLlamaConverter` builds it (`integrations/ggml.py`): a BPE over the
//! file's tokens and merges (`unk_token`, `fuse_unk`, `byte_fallback`), every token of
//! type 3 (control) added as a special token, no normalizer, the byte-level
//! pre-tokenizer (GPT-2's regex, no prefix space), and the decoder sequence
//! ByteFallback, Fuse, Replace("▁", " "), ByteLevel. No BOS is added
//! (`tokenizer.ggml.add_bos_token` is false for SmolLM2, and transformers adds none).
//! A `gemma3` (or `gemma2`) file's SentencePiece vocabulary (`llama`) is built as
//! `unigram.rs` says, on the crate's compact Unigram model rather than `tokenizers`'
//! own: the two pipelines differ only in their model's type, so [`LlamaTokenizer`]
//! holds either.

use std::path::Path;
use std::str::FromStr;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Model, Tokenizer};

use super::chat::{render_chat, ChatMessage};
use super::unigram::{gemma_tokenizer, GemmaTokenizer};
use crate::error::{Error, Result};
use crate::io::Gguf;

/// GGUF's token type for control (special) tokens.
const CONTROL: i64 = 3;

/// The `tokenizers` pipeline of a [`LlamaTokenizer`]: the library's own, or Gemma's on
/// the compact Unigram model.
#[derive(Debug, Clone)]
enum Inner {
    Hf(Box<Tokenizer>),
    Gemma(Box<GemmaTokenizer>),
}

/// `$body` with `$t` bound to the pipeline `$inner` holds: both are a
/// `tokenizers::TokenizerImpl`, with the same methods under different models.
macro_rules! with_inner {
    ($inner:expr, $t:ident => $body:expr) => {
        match $inner {
            Inner::Hf($t) => $body,
            Inner::Gemma($t) => $body,
        }
    };
}

/// Text <-> token ids for a GGUF model or a Hugging Face folder, with its chat template.
#[derive(Debug, Clone)]
pub struct LlamaTokenizer {
    inner: Inner,
    /// [`Self::vocab_size`], counted once: `tokenizers` counts the added tokens by
    /// cloning the whole vocabulary (`get_vocab(true).len()`), which per decoded token
    /// took over half of a streamed Gemma 3 generation (262144 pieces).
    vocab_size: usize,
    /// `tokenizer.chat_template`, a Jinja template, when the file has one.
    pub chat_template: Option<String>,
    /// The BOS token's text (`tokenizer.ggml.bos_token_id`), for templates that use it.
    pub bos_token: Option<String>,
    /// The EOS token's text (`tokenizer.ggml.eos_token_id`), for templates that use it.
    pub eos_token: Option<String>,
}

impl LlamaTokenizer {
    /// The tokenizer described by `g`'s `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let bad = |reason: String| Error::malformed(&g.source_name, reason);
        let model = g.get_str("tokenizer.ggml.model")?;
        // transformers builds both Gemmas' SentencePiece vocabularies with one converter
        // (`GGUFGemmaConverter`).
        let gemma = ["gemma2", "gemma3"].contains(&g.get_str("general.architecture")?);
        if !(model == "gpt2" || (gemma && model == "llama")) {
            return Err(bad(format!(
                "tokenizer.ggml.model: only gpt2 (byte-level BPE) and a gemma2 or gemma3 \
                 file's llama (SentencePiece) are implemented, got {model}"
            )));
        }
        let tokens = g.get_strings("tokenizer.ggml.tokens")?;
        let types = g.get_i64s("tokenizer.ggml.token_type")?;
        if types.len() != tokens.len() {
            return Err(bad(format!(
                "tokenizer.ggml.token_type: {} entries for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let token_of = |key: &str| -> Result<Option<String>> {
            match g.metadata.get(key).and_then(|v| v.as_u64()) {
                None => Ok(None),
                Some(id) => tokens
                    .get(id as usize)
                    .map(|t| Some(t.to_string()))
                    .ok_or_else(|| bad(format!("{key}: {id} is not a token id"))),
            }
        };
        let inner = match model == "llama" {
            true => Inner::Gemma(Box::new(gemma_tokenizer(g)?)),
            false => {
                let unk = token_of("tokenizer.ggml.unknown_token_id")?;
                let mut inner = Tokenizer::new(bpe_of(g, &tokens, unk)?);
                inner.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
                inner.with_decoder(Some(decoder().map_err(|e| bad(format!("tokenizer: {e}")))?));
                let special: Vec<AddedToken> = tokens
                    .iter()
                    .zip(&types)
                    .filter(|(_, &ty)| ty == CONTROL)
                    .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
                    .collect();
                inner.add_special_tokens(&special);
                Inner::Hf(Box::new(inner))
            }
        };
        Ok(Self {
            vocab_size: counted_vocab_size(&inner),
            inner,
            chat_template: g
                .metadata
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            bos_token: token_of("tokenizer.ggml.bos_token_id")?,
            eos_token: token_of("tokenizer.ggml.eos_token_id")?,
        })
    }

    /// The tokenizer of a Hugging Face folder: `tokenizer.json` loaded as is (the
    /// `tokenizers` library's own format), the chat template from
    /// `tokenizer_config.json`'s `chat_template` or else `chat_template.jinja`, and the
    /// BOS/EOS tokens' texts from `tokenizer_config.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let file = dir.join("tokenizer.json");
        let name = file.display().to_string();
        let text = crate::io::read_text(&file)?;
        let inner =
            Inner::Hf(Box::new(Tokenizer::from_str(&text).map_err(|e| {
                Error::malformed(&name, format!("not a tokenizer.json: {e}"))
            })?));
        let config_file = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match config_file.is_file() {
            true => serde_json::from_str(&crate::io::read_text(&config_file)?).map_err(|e| {
                Error::malformed(config_file.display().to_string(), format!("not JSON: {e}"))
            })?,
            false => serde_json::Value::Null,
        };
        // A string, or {"content": ...} as older files write an AddedToken.
        let token = |key: &str| -> Option<String> {
            let v = config.get(key)?;
            v.as_str()
                .or_else(|| v.get("content")?.as_str())
                .map(str::to_string)
        };
        let jinja = dir.join("chat_template.jinja");
        let chat_template = match config.get("chat_template") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            // [{"name": "default", "template": ...}, ...]: the default one.
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .map(str::to_string),
            _ if jinja.is_file() => Some(crate::io::read_text(&jinja)?),
            _ => None,
        };
        Ok(Self {
            vocab_size: counted_vocab_size(&inner),
            inner,
            chat_template,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        })
    }

    /// The ids of `text`, as `tokenizer(text)["input_ids"]`: special tokens written in
    /// the text (`<|im_start|>`) are recognised as such.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = with_inner!(&self.inner, t => t.encode(text, true))
            .map_err(|e| Error::invalid("text", format!("cannot be tokenised: {e}")))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The text of `ids`, as `tokenizer.decode(ids)` (special tokens kept).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let n = self.vocab_size();
        let ids = ids
            .iter()
            .map(|&i| {
                u32::try_from(i)
                    .ok()
                    .filter(|&u| (u as usize) < n)
                    .ok_or_else(|| Error::invalid("ids", format!("{i} is not in 0..{n}")))
            })
            .collect::<Result<Vec<u32>>>()?;
        with_inner!(&self.inner, t => t.decode(&ids, false))
            .map_err(|e| Error::invalid("ids", format!("cannot be decoded: {e}")))
    }

    /// The token of `id` as stored (byte-level symbols such as `Ġ` for a space).
    pub fn token(&self, id: i64) -> Option<String> {
        let id = u32::try_from(id).ok()?;
        with_inner!(&self.inner, t => t.id_to_token(id))
    }

    /// Whether `id` is a special (control) token, such as `<|im_start|>`.
    pub fn is_special(&self, id: i64) -> bool {
        self.token(id).is_some_and(|token| {
            with_inner!(&self.inner, t => t.get_added_vocabulary().is_special_token(&token))
        })
    }

    /// The number of ids, special tokens included.
    /// A piece listed twice (Gemma's tab, `\t` and `<0x09>` renamed to it) counts
    /// twice: both ids are the model's.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// `messages` through the chat template, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            Error::invalid("chat_template", "the model has no tokenizer.chat_template")
        })?;
        render_chat(
            template,
            messages,
            add_generation_prompt,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
        )
    }
}

/// The BPE model over the file's tokens and merges, as `GGUFLlamaConverter.tokenizer`.
fn bpe_of(g: &Gguf, tokens: &[&str], unk: Option<String>) -> Result<BPE> {
    let bad = |reason: String| Error::malformed(&g.source_name, reason);
    let merges = g
        .get_strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("tokenizer.ggml.merges: {m:?} is not a pair")))
        })
        .collect::<Result<Vec<_>>>()?;
    // Python's {word: i for i, word in enumerate(tokens)}: a repeated token keeps its
    // last id.
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = unk {
        bpe = bpe.unk_token(unk);
    }
    bpe.build().map_err(|e| bad(format!("tokenizer: {e}")))
}

/// The number of ids of `inner`, special tokens included ([`LlamaTokenizer::vocab_size`]):
/// the distinct tokens of the model and the added ones (`get_vocab_size(true)`), or the
/// model's ids if more.
fn counted_vocab_size(inner: &Inner) -> usize {
    match inner {
        Inner::Hf(t) => t.get_vocab_size(true).max(t.get_vocab_size(false)),
        // The same count without `get_vocab(true)`'s copy of all 262144 pieces.
        Inner::Gemma(t) => {
            let model = t.get_model();
            let added_only = t
                .get_added_vocabulary()
                .get_vocab()
                .keys()
                .filter(|token| model.token_to_id(token).is_none())
                .count();
            (model.distinct_pieces() + added_only).max(model.get_vocab_size())
        }
    }
}

/// transformers' decoder for a GGUF gpt2 tokenizer (`GGUFLlamaConverter.decoder` with
/// `is_llama_3_tokenizer` and no prefix space).
fn decoder() -> tokenizers::Result<DecoderWrapper> {
    Ok(DecoderSequence::new(vec![
        ByteFallback::new().into(),
        Fuse::new().into(),
        Replace::new("▁", " ")?.into(),
        ByteLevel::new(false, false, true).into(),
    ])
    .into())
}
