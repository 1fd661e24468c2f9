//! The tokenizer of a Gemma GGUF (`tokenizer.ggml.model = llama`: SentencePiece's
//! pieces with their scores), built with Hugging Face's `tokenizers` exactly as
//! transformers 5 builds it from the file (`GGUFGemmaConverter` in
//! `integrations/ggml.py`, then `GemmaTokenizer`): a Unigram model over the pieces and
//! scores (`<0x09>` read as a tab, pieces of spaces only as as many `▁`), the file's
//! unknown token, byte fallback — `tokenizers`' own `Unigram` in its tokens, but
//! [`CompactUnigram`] in memory (6 MiB instead of 182 MiB for Gemma 3's 262144 pieces,
//! checked against `Unigram` in `tests/compact_unigram.rs`); the normalizer `Replace(" ", "▁")`, the pre-tokenizer
//! `Split(" ", MergedWithPrevious)`, the decoder Replace("▁", " "), ByteFallback, Fuse;
//! the named special tokens (`<pad>`, `<eos>`, `<bos>`, `<unk>`, `<mask>`) added as
//! special. No BOS is added: transformers reads no `add_bos_token` from a GGUF, and its
//! default for this tokenizer is false.

use std::borrow::Cow;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, TokenizerImpl};

use super::compact_unigram::CompactUnigram;
use crate::error::{Error, Result};
use crate::io::Gguf;

/// `tokenizers::Tokenizer` with the model [`CompactUnigram`] in place of its
/// `ModelWrapper`.
pub type GemmaTokenizer = TokenizerImpl<
    CompactUnigram,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The special tokens `GemmaTokenizer` names, by their default texts.
const GEMMA_SPECIAL: [&str; 5] = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"];

/// The Unigram tokenizer of the Gemma GGUF `g`.
pub fn gemma_tokenizer(g: &Gguf) -> Result<GemmaTokenizer> {
    let bad = |reason: String| Error::malformed(&g.source_name, reason);
    let tokens = g.get_strings("tokenizer.ggml.tokens")?;
    // float32 scores, widened exactly to the floats Python hands `tokenizers`.
    let scores = g
        .get("tokenizer.ggml.scores")?
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_f64()).collect::<Option<Vec<f64>>>())
        .ok_or_else(|| bad("tokenizer.ggml.scores: expected an array of floats".into()))?;
    if scores.len() != tokens.len() {
        return Err(bad(format!(
            "tokenizer.ggml.scores: {} entries for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let vocab = tokens
        .iter()
        .zip(&scores)
        .map(|(t, &s)| (converter_piece(t), s));
    let unk = match g.metadata.get("tokenizer.ggml.unknown_token_id") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .map(|id| id as usize)
                .filter(|&id| id < tokens.len())
                .ok_or_else(|| bad("tokenizer.ggml.unknown_token_id: not a token id".into()))?,
        ),
    };
    let model =
        CompactUnigram::new(vocab, unk, true).map_err(|e| bad(format!("tokenizer: {e}")))?;
    let mut inner = TokenizerImpl::new(model);
    let err = |e: tokenizers::Error| bad(format!("tokenizer: {e}"));
    inner.with_normalizer(Some(Replace::new(" ", "▁").map_err(err)?));
    inner.with_pre_tokenizer(Some(
        Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(err)?,
    ));
    inner.with_decoder(Some(decoder().map_err(err)?));
    let special: Vec<AddedToken> = GEMMA_SPECIAL
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    inner.add_special_tokens(&special);
    Ok(inner)
}

/// `GGUFGemmaConverter.vocab`'s renaming of a piece: `<0x09>` is the tab itself, and a
/// piece that has a space and only whitespace becomes as many `▁` as it has characters.
fn converter_piece(token: &str) -> Cow<'_, str> {
    // Python's str.isspace: Unicode whitespace and the separators \x1c..\x1f.
    let is_space = |c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
    if token == "<0x09>" {
        Cow::Borrowed("\t")
    } else if token.contains(' ') && token.chars().all(is_space) {
        Cow::Owned("▁".repeat(token.chars().count()))
    } else {
        Cow::Borrowed(token)
    }
}

/// `GGUFGemmaConverter.decoder` (no prefix space to strip).
fn decoder() -> tokenizers::Result<DecoderWrapper> {
    Ok(DecoderSequence::new(vec![
        Replace::new("▁", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ])
    .into())
}
