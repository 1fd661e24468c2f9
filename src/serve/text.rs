//! A request's tokens as text, piece by piece: the whole text is decoded again at each
//! token (a token can end inside a UTF-8 character, and the tokenizer's decoder joins
//! pieces), and only a grown, stable prefix is handed out. A trailing replacement
//! character waits for the rest of its bytes; a tail that could begin a stop string
//! waits until it cannot. The text ends before the first stop string; the
//! end-of-sequence token is counted but not shown.

use std::sync::Arc;

use super::decoder::FinishReason;
use super::model::ModelInfo;

/// Why a choice ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `stop`: an end-of-sequence token or a stop string.
    Stop,
    /// `length`: `max_tokens`, or the server's shutdown.
    Length,
}

impl Finish {
    /// `finish_reason`'s value.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// New text, and whether the choice ends with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Text not handed out before (may be empty).
    pub text: String,
    /// `Some` on the choice's last piece.
    pub finish: Option<Finish>,
}

/// The text of one request so far.
pub struct TextState {
    model: Arc<ModelInfo>,
    stops: Vec<String>,
    /// The tokens shown as text (not the end-of-sequence token).
    ids: Vec<i64>,
    /// Every token received, the end-of-sequence one included.
    pub tokens: usize,
    /// Bytes of the text handed out.
    sent: usize,
}

impl TextState {
    /// No token yet; the text will end before the first of `stops`.
    pub fn new(model: Arc<ModelInfo>, stops: Vec<String>) -> Self {
        Self {
            model,
            stops,
            ids: Vec::new(),
            tokens: 0,
            sent: 0,
        }
    }

    /// The text that `token` adds.
    pub fn push(&mut self, token: i64, finished: Option<FinishReason>) -> Piece {
        self.tokens += 1;
        if finished == Some(FinishReason::Eos) {
            return self.rest(Finish::Stop);
        }
        self.ids.push(token);
        let text = self.text();
        if let Some(at) = self.first_stop(&text) {
            let piece = text.get(self.sent..at).unwrap_or_default().to_string();
            self.sent = at;
            return Piece {
                text: piece,
                finish: Some(Finish::Stop),
            };
        }
        if finished == Some(FinishReason::Length) {
            return self.rest(Finish::Length);
        }
        let stable = text.trim_end_matches('\u{fffd}');
        let end = stable.len() - self.held_back(stable);
        let piece = match text.get(self.sent..end) {
            Some(p) if end > self.sent => p.to_string(),
            _ => String::new(),
        };
        self.sent = self.sent.max(end);
        Piece {
            text: piece,
            finish: None,
        }
    }

    /// Whatever is held back, and the end.
    pub fn rest(&mut self, finish: Finish) -> Piece {
        let text = self.text();
        let piece = text.get(self.sent..).unwrap_or_default().to_string();
        self.sent = text.len();
        Piece {
            text: piece,
            finish: Some(finish),
        }
    }

    fn text(&self) -> String {
        // Ids come from the model's own vocabulary: decoding cannot fail on them.
        self.model.tokenizer.decode(&self.ids).unwrap_or_default()
    }

    /// Where the first stop string begins, if one is in the text.
    fn first_stop(&self, text: &str) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
    }

    /// The length of the longest tail of `text` that begins a stop string.
    fn held_back(&self, text: &str) -> usize {
        self.stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .rev()
                    .filter(|&k| s.is_char_boundary(k))
                    .find(|&k| text.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0)
    }
}
