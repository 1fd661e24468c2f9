//! [`Decoder`] over any [`CausalLm`], one sequence at a time: each sequence has its own
//! cache and each step runs one forward per sequence, exactly as
//! [`generate`](crate::generate::generate) decodes one prompt (the same cache
//! capacity, the same float32 logits, the same [`choose`]), so a request's tokens are
//! `attn generate`'s.

use tch::{Kind, Tensor};

use super::decoder::{Decoder, FinishReason, SeqId, StepToken};
use crate::error::{Error, Result};
use crate::generate::{choose, Decoding, GenerateOptions};
use crate::models::CausalLm;

/// One forward per sequence per step.
pub struct Sequential<M: CausalLm> {
    model: M,
    sequences: Vec<Sequence<M::Cache>>,
    next_id: u64,
}

/// A sequence in flight.
struct Sequence<C> {
    id: SeqId,
    cache: C,
    /// The tokens not yet in the cache `(1, T)`: the prompt, then the last token.
    pending: Tensor,
    options: GenerateOptions,
    generated: i64,
}

impl<M: CausalLm> Sequential<M> {
    /// No sequence yet.
    pub fn new(model: M) -> Self {
        Self {
            model,
            sequences: Vec::new(),
            next_id: 0,
        }
    }

    /// The next token of `s`, which its forward adds to its cache.
    fn advance(model: &M, s: &mut Sequence<M::Cache>) -> Result<StepToken> {
        let logits = model.f_last_logits_cached(&s.pending, &mut s.cache)?;
        let next = choose(&logits.f_to_kind(Kind::Float)?, &s.options.decoding)?; // (1, 1)
        let token = next.f_int64_value(&[0, 0])?;
        s.pending = next;
        s.generated += 1;
        let finished = if s.options.eos_token_ids.contains(&token) {
            Some(FinishReason::Eos)
        } else if s.generated >= s.options.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        Ok(StepToken {
            id: s.id,
            token,
            finished,
        })
    }
}

impl<M: CausalLm> Decoder for Sequential<M> {
    fn join(&mut self, prompt: &[i64], options: &GenerateOptions) -> Result<SeqId> {
        options.validate()?;
        if prompt.is_empty() {
            return Err(Error::invalid("prompt", "needs at least one token"));
        }
        if options.max_new_tokens < 1 {
            return Err(Error::invalid(
                "max_new_tokens",
                format!("must be at least 1, got {}", options.max_new_tokens),
            ));
        }
        let capacity = prompt.len() as i64 + options.max_new_tokens;
        if let Some(m) = self.model.max_context().filter(|&m| capacity > m) {
            return Err(Error::invalid(
                "max_new_tokens",
                format!("the prompt and the new tokens ({capacity}) pass the context of {m}"),
            ));
        }
        // As `generate`: the default generator seeded before the prompt's forward.
        if let Decoding::Sample {
            seed: Some(seed), ..
        } = options.decoding
        {
            tch::manual_seed(seed as i64);
        }
        let pending = Tensor::f_from_slice(prompt)?
            .f_view([1, -1])?
            .f_to_device(self.model.device())?;
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.sequences.push(Sequence {
            id,
            cache: self.model.new_cache(1, capacity)?,
            pending,
            options: options.clone(),
            generated: 0,
        });
        Ok(id)
    }

    fn step(&mut self) -> Result<Vec<StepToken>> {
        let model = &self.model;
        let tokens = tch::no_grad(|| {
            self.sequences
                .iter_mut()
                .map(|s| Self::advance(model, s))
                .collect::<Result<Vec<_>>>()
        })?;
        self.sequences
            .retain(|s| tokens.iter().all(|t| t.id != s.id || t.finished.is_none()));
        Ok(tokens)
    }

    fn leave(&mut self, id: SeqId) {
        self.sequences.retain(|s| s.id != id);
    }

    fn active(&self) -> usize {
        self.sequences.len()
    }
}
