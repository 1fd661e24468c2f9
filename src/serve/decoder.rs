//! The engine's view of decoding: sequences join (their prompt prefilled), every step
//! gives each active sequence one token, and a sequence leaves when it ends or its
//! client is gone. [`Sequential`](super::sequential::Sequential) implements it over any
//! [`CausalLm`](crate::models::CausalLm) today; a batched decoder that runs every
//! sequence in one forward implements the same four methods.

use crate::error::Result;
use crate::generate::GenerateOptions;

/// A sequence's handle, unique for the decoder's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced one of its end-of-sequence tokens (kept as its last token).
    Eos,
    /// It produced `max_new_tokens` tokens.
    Length,
}

/// One token of one sequence from a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepToken {
    /// The sequence.
    pub id: SeqId,
    /// Its new token.
    pub token: i64,
    /// `Some` on a sequence's last token: it has left the decoder.
    pub finished: Option<FinishReason>,
}

/// Step-wise decoding of several sequences.
pub trait Decoder {
    /// Adds a sequence of `prompt` (at least one token) decoded under `options`
    /// (`max_new_tokens` at least 1); its first token comes from the next step.
    fn join(&mut self, prompt: &[i64], options: &GenerateOptions) -> Result<SeqId>;

    /// One token for every active sequence; those that finish leave.
    fn step(&mut self) -> Result<Vec<StepToken>>;

    /// Ends `id` early and frees what it holds (unknown ids are ignored).
    fn leave(&mut self, id: SeqId);

    /// How many sequences are active.
    fn active(&self) -> usize;
}
