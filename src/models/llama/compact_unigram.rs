//! A Unigram (SentencePiece) model that tokenises exactly as the `tokenizers` crate's
//! `Unigram` (0.22: `models/unigram/model.rs`, `encode_optimized` then `tokenize`, the
//! model `Unigram::from(vocab, unk_id, byte_fallback)` builds), in a fraction of its
//! memory. `Unigram` keeps a trie with a hash map per node, a `String -> id` hash map and
//! a `Vec<(String, f64)>`: 182 MiB for Gemma 3's 262144 pieces. Here the pieces' bytes
//! lie in one buffer, and one sorted array of ids serves both the exact look-up and the
//! prefix search (a range narrowed byte by byte), about 6 MiB in all.
//!
//! What it keeps of `Unigram`, on purpose: the Viterbi over byte positions in f64 with
//! the candidates in increasing length and a strict `>` to replace a node; the unknown
//! piece's score `min_score - 10` (`K_UNK_PENALTY`), given where no piece is exactly the
//! next character; runs of unknown nodes fused into one token (`fuse_unk`, always on in
//! `Unigram::from`); a fused run that is no piece spelled as its bytes' `<0xXX>` pieces
//! when every one exists (`byte_fallback`), else the unknown id; a piece listed twice
//! found under its last id (as a hash map's insert keeps it); the empty piece never
//! matched. It has no cache (`Unigram`'s memoises whole words; the tokens are the same)
//! and cannot be trained ([`NoTrainer`]).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use tokenizers::models::unigram::UnigramError;
use tokenizers::{AddedToken, Model, Token, Trainer};

use crate::error::{Error, Result};

/// `Unigram`'s `K_UNK_PENALTY`: the unknown piece scores this much below the lowest piece.
const UNK_PENALTY: f64 = 10.0;

/// Pieces with scores, looked up by binary search over their sorted bytes.
#[derive(Clone)]
pub struct CompactUnigram {
    /// Every piece's bytes, one after another, in id order.
    bytes: Vec<u8>,
    /// Piece `id` is `bytes[starts[id]..starts[id + 1]]` (n + 1 entries).
    starts: Vec<u32>,
    /// Piece `id`'s score (log-probability).
    scores: Vec<f64>,
    /// The ids of the distinct pieces in the order of their bytes; a piece listed twice
    /// appears once, under its last id.
    sorted: Vec<u32>,
    /// `sorted[first[b]..first[b + 1]]`: the pieces that begin with byte `b`.
    first: Vec<u32>,
    /// The ids of the pieces `<0x00>` .. `<0xFF>`, for byte fallback.
    byte_ids: Vec<Option<u32>>,
    min_score: f64,
    unk_id: Option<usize>,
    byte_fallback: bool,
}

impl std::fmt::Debug for CompactUnigram {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("CompactUnigram")
            .field("vocab", &self.scores.len())
            .field("unk_id", &self.unk_id)
            .field("byte_fallback", &self.byte_fallback)
            .finish()
    }
}

impl CompactUnigram {
    /// The model `Unigram::from(pieces, unk_id, byte_fallback)` builds: piece `i` has id
    /// `i`. Fails as it does (an empty vocabulary or an `unk_id` past its end, when an
    /// `unk_id` is given), and on more than 4 GiB of pieces.
    pub fn new<S: AsRef<str>>(
        pieces: impl IntoIterator<Item = (S, f64)>,
        unk_id: Option<usize>,
        byte_fallback: bool,
    ) -> Result<Self> {
        let mut bytes = Vec::new();
        let mut starts = vec![0u32];
        let mut scores = Vec::new();
        for (piece, score) in pieces {
            bytes.extend_from_slice(piece.as_ref().as_bytes());
            starts.push(
                u32::try_from(bytes.len()).map_err(|_| {
                    Error::invalid("pieces", "under 4 GiB of text in all, got more")
                })?,
            );
            scores.push(score);
        }
        let n = scores.len();
        if u32::try_from(n).is_err() {
            return Err(Error::invalid(
                "pieces",
                format!("fewer than 2^32, got {n}"),
            ));
        }
        if let Some(unk) = unk_id {
            if unk >= n {
                return Err(Error::invalid(
                    "unk_id",
                    format!("an id in 0..{n}, got {unk}"),
                ));
            }
        }
        let mut model = Self {
            bytes,
            starts,
            // `Unigram::from`'s loop: a NaN score never becomes the minimum.
            min_score: scores
                .iter()
                .fold(f64::INFINITY, |min, &s| if s < min { s } else { min }),
            scores,
            sorted: Vec::new(),
            first: Vec::new(),
            byte_ids: Vec::new(),
            unk_id,
            byte_fallback,
        };
        model.index();
        Ok(model)
    }

    /// Builds `sorted`, `first` and `byte_ids` from the pieces.
    fn index(&mut self) {
        let mut ids: Vec<u32> = (0..self.scores.len() as u32).collect();
        // By bytes, then by id: of equal pieces the last id is the one to keep.
        ids.sort_unstable_by(|&a, &b| self.piece(a).cmp(self.piece(b)).then(a.cmp(&b)));
        let mut sorted: Vec<u32> = Vec::with_capacity(ids.len());
        for id in ids {
            match sorted.last_mut() {
                Some(last) if self.piece(*last) == self.piece(id) => *last = id,
                _ => sorted.push(id),
            }
        }
        sorted.shrink_to_fit();
        self.first = (0..=256u32)
            .map(|b| {
                sorted
                    .partition_point(|&id| self.piece(id).first().is_none_or(|&c| u32::from(c) < b))
                    as u32
            })
            .collect();
        self.sorted = sorted;
        self.byte_ids = (0..=255u8)
            .map(|b| self.find(format!("<0x{b:02X}>").as_bytes()))
            .collect();
    }

    /// The bytes of piece `id`.
    fn piece(&self, id: u32) -> &[u8] {
        let id = id as usize;
        &self.bytes[self.starts[id] as usize..self.starts[id + 1] as usize]
    }

    /// The id of the piece `bytes` (its last id if it is listed twice).
    fn find(&self, bytes: &[u8]) -> Option<u32> {
        let i = self
            .sorted
            .binary_search_by(|&id| self.piece(id).cmp(bytes))
            .ok()?;
        Some(self.sorted[i])
    }

    /// The number of distinct pieces (a piece listed twice counts once), as the length
    /// of [`Model::get_vocab`] without building it.
    pub fn distinct_pieces(&self) -> usize {
        self.sorted.len()
    }

    /// Calls `found(length, id)` for every piece that begins `text`, shortest first, as
    /// `Trie::common_prefix_search` yields them (the empty piece never).
    fn prefixes(&self, text: &[u8], mut found: impl FnMut(usize, u32)) {
        let Some(&b) = text.first() else { return };
        let mut range = self.first[b as usize] as usize..self.first[b as usize + 1] as usize;
        for depth in 1..=text.len() {
            if depth > 1 {
                range = self.narrow(range, depth - 1, text[depth - 1]);
            }
            // Every piece in `range` begins with text[..depth]; the one equal to it, if
            // any, sorts first.
            let Some(&id) = self.sorted.get(range.start).filter(|_| !range.is_empty()) else {
                return;
            };
            if self.piece(id).len() == depth {
                found(depth, id);
            }
        }
    }

    /// Of `range`, whose pieces share their first `depth` bytes, those whose next byte
    /// is `b`.
    fn narrow(&self, range: Range<usize>, depth: usize, b: u8) -> Range<usize> {
        let ids = &self.sorted[range.clone()];
        let lo = ids.partition_point(|&id| self.piece(id).get(depth).is_none_or(|&c| c < b));
        let hi = lo + ids[lo..].partition_point(|&id| self.piece(id).get(depth) == Some(&b));
        range.start + lo..range.start + hi
    }

    /// `Unigram::encode_optimized`: the best segmentation of `text` as (byte range, id),
    /// runs of unknown nodes fused into one with the unknown id.
    fn viterbi(&self, text: &str) -> tokenizers::Result<Vec<(Range<usize>, usize)>> {
        /// The best path ending at a byte position: its last piece and where it starts.
        #[derive(Clone, Copy)]
        struct Best {
            id: usize,
            score: f64,
            start: Option<usize>,
        }
        let size = text.len();
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![
            Best {
                id: 0,
                score: 0.0,
                start: None
            };
            size + 1
        ];
        // The first path to reach `end`, or a strictly better one, is kept.
        fn offer(best: &mut [Best], start: usize, end: usize, id: usize, score: f64) {
            let node = &mut best[end];
            if node.start.is_none() || score > node.score {
                *node = Best {
                    id,
                    score,
                    start: Some(start),
                };
            }
        }
        let mut start = 0;
        while start < size {
            let here = best[start].score;
            let char_len = text[start..].chars().next().map_or(1, char::len_utf8);
            let mut has_char = false;
            self.prefixes(&text.as_bytes()[start..], |len, id| {
                offer(
                    &mut best,
                    start,
                    start + len,
                    id as usize,
                    self.scores[id as usize] + here,
                );
                has_char |= len == char_len;
            });
            if !has_char {
                let unk = self.unk_id.ok_or(UnigramError::MissingUnkId)?;
                offer(&mut best, start, start + char_len, unk, unk_score + here);
            }
            start += char_len;
        }
        let mut path: Vec<(Range<usize>, usize)> = Vec::new();
        let mut end = size;
        while end > 0 {
            let node = best[end];
            // Every character boundary is reached: by a piece of that character, or
            // else by the unknown node.
            let Some(start) = node.start else {
                return Err(format!("no path reaches byte {end}").into());
            };
            match path.last_mut() {
                Some((range, id)) if Some(node.id) == self.unk_id && Some(*id) == self.unk_id => {
                    range.start = start
                }
                _ => path.push((start..end, node.id)),
            }
            end = start;
        }
        path.reverse();
        Ok(path)
    }
}

impl Model for CompactUnigram {
    type Trainer = NoTrainer;

    /// `Unigram::tokenize`.
    fn tokenize(&self, text: &str) -> tokenizers::Result<Vec<Token>> {
        let mut tokens = Vec::new();
        for (range, id) in self.viterbi(text)? {
            let piece = &text[range.clone()];
            let offsets = (range.start, range.end);
            // A fused run of unknowns may still spell a piece.
            let id = match Some(id) == self.unk_id {
                true => self.find(piece.as_bytes()),
                false => Some(id as u32),
            };
            if let Some(id) = id {
                tokens.push(Token::new(id, piece.to_string(), offsets));
                continue;
            }
            if self.byte_fallback {
                let bytes: Option<Vec<u32>> =
                    piece.bytes().map(|b| self.byte_ids[b as usize]).collect();
                if let Some(bytes) = bytes {
                    for (b, id) in piece.bytes().zip(bytes) {
                        tokens.push(Token::new(id, format!("<0x{b:02X}>"), offsets));
                    }
                    continue;
                }
            }
            let unk = self.unk_id.ok_or(UnigramError::MissingUnkId)?;
            tokens.push(Token::new(unk as u32, piece.to_string(), offsets));
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.find(token.as_bytes())
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        if id as usize >= self.scores.len() {
            return None;
        }
        Some(String::from_utf8_lossy(self.piece(id)).into_owned())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.sorted
            .iter()
            .map(|&id| (String::from_utf8_lossy(self.piece(id)).into_owned(), id))
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.scores.len()
    }

    /// `Unigram::save`'s file, `{prefix}-unigram.json`, which `Unigram::load` reads.
    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        let name = match prefix {
            Some(prefix) => format!("{prefix}-unigram.json"),
            None => "unigram.json".to_string(),
        };
        let vocab: Vec<(String, f64)> = (0..self.scores.len() as u32)
            .map(|id| {
                (
                    self.id_to_token(id).unwrap_or_default(),
                    self.scores[id as usize],
                )
            })
            .collect();
        let json = serde_json::json!({
            "type": "Unigram",
            "unk_id": self.unk_id,
            "vocab": vocab,
            "byte_fallback": self.byte_fallback,
        });
        let path = folder.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        Ok(vec![path])
    }

    fn get_trainer(&self) -> NoTrainer {
        NoTrainer
    }
}

/// [`CompactUnigram`]'s trainer: the model is built from a file's pieces, never
/// trained; [`Trainer::train`] says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTrainer;

impl Trainer for NoTrainer {
    type Model = CompactUnigram;

    fn should_show_progress(&self) -> bool {
        false
    }

    fn train(&self, _model: &mut CompactUnigram) -> tokenizers::Result<Vec<AddedToken>> {
        Err("a CompactUnigram is built from its pieces, it cannot be trained".into())
    }

    fn feed<I, S, F>(&mut self, _iterator: I, _process: F) -> tokenizers::Result<()>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
        F: Fn(&str) -> tokenizers::Result<Vec<String>> + Sync,
    {
        Err("a CompactUnigram is built from its pieces, it cannot be trained".into())
    }
}
