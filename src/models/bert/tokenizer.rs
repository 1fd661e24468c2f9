//! BERT's WordPiece tokenizer, as Hugging Face's `BertTokenizerFast` runs it for an
//! uncased model: `BertNormalizer` (clean text, spaces around CJK characters, strip
//! accents, lower-case), `BertPreTokenizer` (split on whitespace, isolate punctuation),
//! greedy longest-match-first `WordPiece` with the `##` prefix, then
//! `[CLS] ... [SEP]`, truncated to the model's max sequence length.
//!
//! Mirrors `tokenizers/src/normalizers/bert.rs`, `pre_tokenizers/bert.rs` and
//! `models/wordpiece/mod.rs`; the character classes are the same crate's
//! (`unicode_categories`), so "punctuation" and "control" mean what they mean there.
//! Checked token for token against the model's own tokenizer in
//! `tests/fixtures/bert/minilm.safetensors`.
//!
//! A folder that ships `tokenizer.json` is tokenised by Hugging Face's own `tokenizers`
//! library instead ([`Tokenizer::from_tokenizer_json`]), which is what
//! sentence-transformers runs; the hand-written path serves folders with `vocab.txt`
//! alone. Both give the fixture's ids (`tests/bert.rs`).

use std::collections::HashMap;
use std::path::Path;

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// What `tokenizer_config.json` says, with `BertTokenizer`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerOptions {
    /// `do_lower_case` (default true).
    pub lowercase: bool,
    /// `strip_accents`; `None` (the default) follows `lowercase`, as in BERT.
    pub strip_accents: Option<bool>,
    /// `tokenize_chinese_chars` (default true): each CJK ideograph is its own word.
    pub handle_chinese_chars: bool,
    /// Longest sequence, special tokens included (sentence-transformers' max_seq_length).
    pub max_len: usize,
}

impl Default for TokenizerOptions {
    fn default() -> Self {
        Self {
            lowercase: true,
            strip_accents: None,
            handle_chinese_chars: true,
            max_len: 512,
        }
    }
}

/// Words longer than this (in characters) become `[UNK]`, as in WordPiece's default.
const MAX_INPUT_CHARS_PER_WORD: usize = 100;

/// What turns text into ids.
#[derive(Debug, Clone)]
enum Backend {
    /// The WordPiece below, over `vocab.txt`.
    WordPiece,
    /// Hugging Face's `tokenizers` over the folder's `tokenizer.json`, truncated to
    /// `max_len` and unpadded (as sentence-transformers sets it).
    Hf(Box<tokenizers::Tokenizer>),
}

/// A WordPiece vocabulary and the options to tokenise with it.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    backend: Backend,
    vocab: HashMap<String, i64>,
    tokens: Vec<String>,
    options: TokenizerOptions,
    cls: i64,
    sep: i64,
    unk: i64,
    pad: i64,
}

/// One tokenised sentence: ids and the matching token strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids, `[CLS]` first and `[SEP]` last: a row of the model's `input_ids`.
    pub ids: Vec<i64>,
    /// The token behind each id (`##` marks a word's continuation), for labels.
    pub tokens: Vec<String>,
}

impl Tokenizer {
    /// Reads `vocab.txt` (one token per line; its line number is its id).
    pub fn from_vocab_file(path: &Path, options: TokenizerOptions) -> Result<Self> {
        let text = crate::io::read_text(path)?;
        let tokens: Vec<String> = text.lines().map(str::to_string).collect();
        Self::new(tokens, options).map_err(|e| match e {
            Error::Invalid { reason, .. } => Error::malformed(path.display().to_string(), reason),
            other => other,
        })
    }

    /// A tokenizer from the vocabulary in id order.
    pub fn new(tokens: Vec<String>, options: TokenizerOptions) -> Result<Self> {
        if options.max_len < 2 {
            return Err(Error::invalid(
                "max_len",
                format!(
                    "must leave room for [CLS] and [SEP], got {}",
                    options.max_len
                ),
            ));
        }
        let vocab: HashMap<String, i64> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as i64))
            .collect();
        let special = |name: &str| {
            vocab
                .get(name)
                .copied()
                .ok_or_else(|| Error::invalid("vocab", format!("has no {name} token")))
        };
        Ok(Self {
            backend: Backend::WordPiece,
            cls: special("[CLS]")?,
            sep: special("[SEP]")?,
            unk: special("[UNK]")?,
            pad: special("[PAD]")?,
            vocab,
            tokens,
            options,
        })
    }

    /// Reads a Hugging Face `tokenizer.json` (a BERT WordPiece one, with `[CLS]`,
    /// `[SEP]`, `[UNK]` and `[PAD]`) and tokenises with the `tokenizers` library, each
    /// sequence truncated to `options.max_len` tokens and not padded (the file's own
    /// truncation and padding are replaced, as sentence-transformers does).
    pub fn from_tokenizer_json(path: &Path, options: TokenizerOptions) -> Result<Self> {
        let name = path.display().to_string();
        let text = crate::io::read_text(path)?;
        let bad = |e: tokenizers::Error| Error::malformed(&name, format!("tokenizer: {e}"));
        let mut hf: tokenizers::Tokenizer = text.parse().map_err(bad)?;
        let truncation = tokenizers::TruncationParams {
            max_length: options.max_len,
            ..Default::default()
        };
        hf.with_truncation(Some(truncation)).map_err(bad)?;
        hf.with_padding(None);
        let vocab = hf.get_vocab(true);
        let mut tokens = vec![String::new(); vocab.len()];
        for (token, id) in vocab {
            match tokens.get_mut(id as usize) {
                Some(slot) => *slot = token,
                None => {
                    return Err(Error::malformed(
                        &name,
                        format!("token id {id} out of range"),
                    ))
                }
            }
        }
        let mut tokenizer = Self::new(tokens, options).map_err(|e| match e {
            Error::Invalid { reason, .. } => Error::malformed(&name, reason),
            other => other,
        })?;
        tokenizer.backend = Backend::Hf(Box::new(hf));
        Ok(tokenizer)
    }

    /// The options it tokenises with.
    pub fn options(&self) -> &TokenizerOptions {
        &self.options
    }

    /// The id of `[PAD]`, what padded positions hold.
    pub fn pad_id(&self) -> i64 {
        self.pad
    }

    /// How many tokens the vocabulary holds (ids are `0..vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// `[CLS] wordpieces [SEP]`, the wordpieces truncated so the whole fits `max_len`.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        let Backend::Hf(hf) = &self.backend else {
            return Ok(self.encode_word_piece(text));
        };
        let e = hf
            .encode(text, true)
            .map_err(|e| Error::invalid("text", format!("tokenizer: {e}")))?;
        Ok(Encoding {
            ids: e.get_ids().iter().map(|&id| i64::from(id)).collect(),
            tokens: e.get_tokens().to_vec(),
        })
    }

    /// [`Tokenizer::encode`] by the hand-written WordPiece.
    fn encode_word_piece(&self, text: &str) -> Encoding {
        let mut ids = vec![self.cls];
        for word in pre_tokenize(&self.normalize(text)) {
            self.word_piece(&word, &mut ids);
        }
        ids.truncate(self.options.max_len - 1);
        ids.push(self.sep);
        let tokens = ids
            .iter()
            .map(|&i| self.tokens[i as usize].clone())
            .collect();
        Encoding { ids, tokens }
    }

    /// `BertNormalizer`: the four steps in its order.
    fn normalize(&self, text: &str) -> String {
        let o = &self.options;
        let mut s: String = text
            .chars()
            .filter(|&c| !(c == '\0' || c == '\u{fffd}' || is_control(c)))
            .map(|c| if is_whitespace(c) { ' ' } else { c })
            .collect();
        if o.handle_chinese_chars {
            s = s
                .chars()
                .flat_map(|c| {
                    if is_chinese_char(c) {
                        vec![' ', c, ' ']
                    } else {
                        vec![c]
                    }
                })
                .collect();
        }
        if o.strip_accents.unwrap_or(o.lowercase) {
            s = s.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
        }
        if o.lowercase {
            // Character by character, as the normalizer does (no final-sigma rule).
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    /// Greedy longest-match-first: the longest prefix in the vocabulary, then the longest
    /// `##`-continuation of the rest, and so on; a word with an unmatched rest (or over
    /// 100 characters) is one `[UNK]`.
    fn word_piece(&self, word: &str, out: &mut Vec<i64>) {
        if word.chars().count() > MAX_INPUT_CHARS_PER_WORD {
            out.push(self.unk);
            return;
        }
        let bounds: Vec<usize> = word
            .char_indices()
            .map(|(i, _)| i)
            .chain([word.len()])
            .collect();
        let mut pieces = Vec::new();
        let mut start = 0; // index into `bounds`
        while start + 1 < bounds.len() {
            let found = (start + 1..bounds.len()).rev().find_map(|end| {
                let sub = &word[bounds[start]..bounds[end]];
                let id = if start == 0 {
                    self.vocab.get(sub)
                } else {
                    self.vocab.get(&format!("##{sub}"))
                };
                id.map(|&id| (id, end))
            });
            match found {
                Some((id, end)) => {
                    pieces.push(id);
                    start = end;
                }
                None => {
                    out.push(self.unk);
                    return;
                }
            }
        }
        out.extend(pieces);
    }
}

/// `BertPreTokenizer`: whitespace separates words and is dropped; each punctuation
/// character is a word of its own.
fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for chunk in text.split(char::is_whitespace) {
        let mut word = String::new();
        for c in chunk.chars() {
            if c.is_ascii_punctuation() || c.is_punctuation() {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                words.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    words
}

/// Tab, newline and carriage return count as whitespace, though Unicode calls them
/// control characters.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Unicode's "other" categories (Cc, Cf, Cn, Co, Cs), but not tab, newline or return.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// The CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana, which are
/// written with spaces between words).
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Tokenizer {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "cafe", ",", "!",
        ];
        Tokenizer::new(
            vocab.iter().map(|s| s.to_string()).collect(),
            TokenizerOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn longest_match_first_and_unknown_words() {
        let t = tiny();
        let e = t.encode("UnAffable, Café!  unknown").unwrap();
        assert_eq!(
            e.tokens,
            ["[CLS]", "un", "##aff", "##able", ",", "cafe", "!", "[UNK]", "[SEP]"]
        );
    }

    #[test]
    fn truncation_keeps_sep() {
        let mut t = tiny();
        t.options.max_len = 3;
        assert_eq!(
            t.encode("un un un").unwrap().tokens,
            ["[CLS]", "un", "[SEP]"]
        );
    }
}
