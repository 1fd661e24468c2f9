//! The engine's view of decoding: sequences join (their prompt prefilled), every step
//! gives each active sequence one token, and a sequence leaves when it ends or its
//! client is gone. The crate's continuous batcher ([`Batcher`]: one forward for every
//! active sequence, a cached prompt prefix reused) implements it for any
//! [`RaggedLm`]; the engine's tests drive it with a scripted one.

use crate::error::Result;
use crate::generate::{Batcher, GenerateOptions};
pub use crate::generate::{FinishReason, SeqId, StepToken};
use crate::models::RaggedLm;

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

impl<M: RaggedLm> Decoder for Batcher<M> {
    fn join(&mut self, prompt: &[i64], options: &GenerateOptions) -> Result<SeqId> {
        Batcher::join(self, prompt, options)
    }

    fn step(&mut self) -> Result<Vec<StepToken>> {
        Batcher::step(self)
    }

    fn leave(&mut self, id: SeqId) {
        Batcher::leave(self, id)
    }

    fn active(&self) -> usize {
        Batcher::active(self)
    }
}
