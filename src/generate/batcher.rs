//! Continuous batching (Yu et al., "Orca", OSDI 2022; vLLM's scheduler): sequences
//! join and leave between steps, each with its own cache of its own length, and one
//! step decodes one token of every active sequence in one forward
//! ([`RaggedLm::f_logits_ragged`]: the projections, MLP and head over the N new tokens
//! together, attention per sequence against its own cache).
//!
//! A sequence's prompt is prefilled alone when it joins (the cached forward
//! [`generate`](super::generate) runs), and its tokens are chosen by the same rule
//! (`decode.rs`'s `choose`, shared): greedy tokens are `generate`'s whatever else decodes
//! beside them. A seeded sampled sequence decoded alone draws `generate`'s tokens too;
//! with several, every draw comes from libtorch's one default generator, which each
//! seeded join reseeds, so their draws interleave and differ from a lone run's.
//!
//! Prefix reuse: a prompt that begins with tokens whose keys and values are still
//! cached (by an active sequence, or by one of the last few finished ones, kept in a
//! small store bounded by count) starts from a copy of those positions and computes
//! only the rest; at least its last token is always computed, for its logits.

use std::collections::VecDeque;

use tch::{Kind, Tensor};

use super::decode::choose;
use super::options::{Decoding, GenerateOptions};
use crate::error::{Error, Result};
use crate::models::RaggedLm;

/// A sequence's handle, unique within its [`Batcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// Why a sequence ended (OpenAI's `finish_reason` `stop` and `length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It chose one of its `eos_token_ids` (kept as its last token).
    Eos,
    /// It reached `max_new_tokens`.
    Length,
}

/// One sequence's token of one [`Batcher::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepToken {
    /// The sequence.
    pub id: SeqId,
    /// Its new token.
    pub token: i64,
    /// `Some` when this was its last token: it has left the batch.
    pub finished: Option<FinishReason>,
}

/// What a sequence's next step does.
#[derive(Debug)]
enum Next {
    /// Choose its first token from its prompt's last logits `(1, V)`.
    Prefilled(Tensor),
    /// Feed its last token through the batched forward, then choose from its logits.
    Feed(i64),
}

/// An active sequence.
#[derive(Debug)]
struct Sequence<C> {
    id: SeqId,
    /// The tokens whose keys and values `cache` holds, in order.
    cached: Vec<i64>,
    cache: C,
    next: Next,
    /// How many tokens it has been given.
    generated: i64,
    options: GenerateOptions,
}

/// Cached positions kept for prefix reuse after their sequence finished.
#[derive(Debug)]
struct Prefix<C> {
    /// The tokens whose keys and values `cache` holds.
    tokens: Vec<i64>,
    cache: C,
}

/// The batch of active sequences of one model, driven one [`Batcher::step`] at a time
/// by its owner (a server's engine thread).
#[derive(Debug)]
pub struct Batcher<M: RaggedLm> {
    model: M,
    max_batch: usize,
    max_context: i64,
    /// The most finished sequences' caches kept for reuse (default 4).
    store_size: usize,
    active: Vec<Sequence<M::Cache>>,
    /// Finished sequences' caches, the most recently used first.
    store: VecDeque<Prefix<M::Cache>>,
    next_id: u64,
    reused_tokens: u64,
}

impl<M: RaggedLm> Batcher<M> {
    /// A batcher that owns `model`, decodes at most `max_batch` sequences at once
    /// (>= 1), each of at most `max_context` positions, prompt and new tokens together
    /// (>= 2; within the model's own [`crate::models::CausalLm::max_context`] if it has
    /// one; for a Llama, its config's `max_position_embeddings`); it keeps the caches
    /// of the last 4 finished sequences for prefix reuse ([`Self::with_prefix_store`]).
    /// It is `Send` where the model is, so that an engine thread can own it.
    pub fn new(model: M, max_batch: usize, max_context: i64) -> Result<Self> {
        if max_batch == 0 {
            return Err(Error::invalid("max_batch", "must be at least 1, got 0"));
        }
        let limit = model.max_context();
        if max_context < 2 || limit.is_some_and(|m| max_context > m) {
            let range = limit.map_or("at least 2".into(), |m| format!("in 2..={m}, the model's"));
            let got = format!("must be {range}, got {max_context}");
            return Err(Error::invalid("max_context", got));
        }
        Ok(Self {
            model,
            max_batch,
            max_context,
            store_size: 4,
            active: Vec::new(),
            store: VecDeque::new(),
            next_id: 0,
            reused_tokens: 0,
        })
    }

    /// Keeps the caches of the last `count` finished sequences for prefix reuse (0:
    /// none; active sequences' caches are reused in any case).
    pub fn with_prefix_store(mut self, count: usize) -> Self {
        self.store_size = count;
        self.store.truncate(count);
        self
    }

    /// The model it decodes with.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// How many sequences are decoding.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// The most sequences it decodes at once.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Whether a [`Self::join`] would be refused for want of room.
    pub fn is_full(&self) -> bool {
        self.active.len() >= self.max_batch
    }

    /// The most positions of one sequence, prompt and new tokens together.
    pub fn max_context(&self) -> i64 {
        self.max_context
    }

    /// Whether `id` is decoding.
    pub fn contains(&self, id: SeqId) -> bool {
        self.active.iter().any(|s| s.id == id)
    }

    /// How many prompt tokens every join so far took from a cached prefix instead of
    /// computing them.
    pub fn prefix_tokens_reused(&self) -> u64 {
        self.reused_tokens
    }

    /// How many finished sequences' caches are kept for reuse.
    pub fn stored_prefixes(&self) -> usize {
        self.store.len()
    }
}

impl<M: RaggedLm> Batcher<M> {
    /// Adds the sequence of `prompt` (token ids) under `options`: prefills the prompt
    /// into its own cache (from a cached prefix where one matches), seeding the default
    /// generator first if `options` has a seed. Its first token comes with the next
    /// [`Self::step`]. Refused, with the batch unchanged, for an empty prompt, invalid
    /// options, `max_new_tokens < 1`, more than `max_context` positions in all, a full
    /// batch, or ids outside the vocabulary.
    pub fn join(&mut self, prompt: &[i64], options: &GenerateOptions) -> Result<SeqId> {
        self.check_join(prompt, options)?;
        if let Decoding::Sample {
            seed: Some(seed), ..
        } = options.decoding
        {
            tch::manual_seed(seed as i64);
        }
        let capacity = prompt.len() as i64 + options.max_new_tokens;
        let mut cache = self.model.new_cache(1, capacity)?;
        let reused = self.f_reuse_prefix(prompt, &mut cache)?;
        let rest = Tensor::f_from_slice(&prompt[reused..])?
            .f_view([1, -1])?
            .f_to_device(self.model.device())?; // (1, L)
        let logits = tch::no_grad(|| self.model.f_last_logits_cached(&rest, &mut cache))?; // (1, V)
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.reused_tokens += reused as u64;
        self.active.push(Sequence {
            id,
            cached: prompt.to_vec(),
            cache,
            next: Next::Prefilled(logits),
            generated: 0,
            options: options.clone(),
        });
        Ok(id)
    }

    /// Errors naming the argument that keeps `prompt` and `options` from joining.
    fn check_join(&self, prompt: &[i64], options: &GenerateOptions) -> Result<()> {
        if prompt.is_empty() {
            return Err(Error::invalid("prompt", "needs at least one token"));
        }
        options.validate()?;
        if !options.kv_cache {
            let why = "batched decoding always uses the cache, got kv_cache = false";
            return Err(Error::invalid("kv_cache", why));
        }
        if options.max_new_tokens < 1 {
            let got = format!("must be at least 1, got {}", options.max_new_tokens);
            return Err(Error::invalid("max_new_tokens", got));
        }
        let (t, c) = (prompt.len() as i64, self.max_context);
        if t >= c {
            let got = format!("{t} tokens leave no room for a new one in the context of {c}");
            return Err(Error::invalid("prompt", got));
        }
        if t + options.max_new_tokens > c {
            let got = format!(
                "{} after a prompt of {t} tokens is past the context of {c} (at most {})",
                options.max_new_tokens,
                c - t
            );
            return Err(Error::invalid("max_new_tokens", got));
        }
        if self.is_full() {
            let got = format!("all {} sequences are decoding", self.max_batch);
            return Err(Error::invalid("max_batch", got));
        }
        Ok(())
    }

    /// Copies into the empty `cache` the longest prefix of `prompt` (all but its last
    /// token at most) that an active sequence or a stored one holds; returns its length
    /// (0: none).
    fn f_reuse_prefix(&mut self, prompt: &[i64], cache: &mut M::Cache) -> Result<usize> {
        let most = prompt.len() - 1;
        let shared = |tokens: &[i64]| common_prefix(tokens, prompt).min(most);
        // (length, Some(store index) or None for an active sequence's, its cache)
        let mut candidates: Vec<(usize, Option<usize>, &M::Cache)> = self
            .active
            .iter()
            .map(|s| (shared(&s.cached), None, &s.cache))
            .chain(
                self.store
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (shared(&p.tokens), Some(i), &p.cache)),
            )
            .filter(|c| c.0 > 0)
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut used = None;
        for (len, stored, from) in candidates {
            if self.model.f_copy_prefix(from, len as i64, cache)? {
                used = Some((len, stored));
                break;
            }
        }
        let Some((len, stored)) = used else {
            return Ok(0);
        };
        // The store is least-recently-used: what was just reused moves to the front.
        if let Some(entry) = stored.and_then(|i| self.store.remove(i)) {
            self.store.push_front(entry);
        }
        Ok(len)
    }
}

impl<M: RaggedLm> Batcher<M> {
    /// One token for every active sequence, in the order they joined: one batched
    /// forward for those past their first token (a just-joined sequence's first token
    /// comes from its prefill's logits). Sequences that end with this token leave the
    /// batch; their caches go to the prefix store. Empty when nothing is active.
    pub fn step(&mut self) -> Result<Vec<StepToken>> {
        // (N fed, V), in float32 for `choose` at once rather than row by row.
        let logits = self.f_forward_fed()?.f_to_kind(Kind::Float)?;
        let mut fed = 0;
        let mut out = Vec::with_capacity(self.active.len());
        for seq in &mut self.active {
            let row = match &seq.next {
                Next::Prefilled(logits) => logits.shallow_clone(),
                Next::Feed(_) => {
                    fed += 1;
                    logits.f_narrow(0, fed - 1, 1)? // (1, V)
                }
            };
            let next = choose(&row.f_to_kind(Kind::Float)?, &seq.options.decoding)?; // (1, 1)
            let token = next.f_int64_value(&[0, 0])?;
            seq.generated += 1;
            let finished = if seq.options.eos_token_ids.contains(&token) {
                Some(FinishReason::Eos)
            } else if seq.generated >= seq.options.max_new_tokens {
                Some(FinishReason::Length)
            } else {
                None
            };
            seq.next = Next::Feed(token);
            out.push(StepToken {
                id: seq.id,
                token,
                finished,
            });
        }
        for t in out.iter().filter(|t| t.finished.is_some()) {
            self.finish(t.id)?;
        }
        Ok(out)
    }

    /// The batched forward of every sequence's fed token, each after its own cache:
    /// logits `(N, V)` in the order of the sequences that feed one (`(0)` if none).
    fn f_forward_fed(&mut self) -> Result<Tensor> {
        let (tokens, mut caches): (Vec<i64>, Vec<&mut M::Cache>) = self
            .active
            .iter_mut()
            .filter_map(|s| match s.next {
                Next::Feed(token) => Some((token, &mut s.cache)),
                Next::Prefilled(_) => None,
            })
            .unzip();
        if tokens.is_empty() {
            return Ok(Tensor::f_zeros([0], (Kind::Float, self.model.device()))?);
        }
        let tokens_t = Tensor::f_from_slice(&tokens)?.f_to_device(self.model.device())?; // (N)
        let logits = tch::no_grad(|| self.model.f_logits_ragged(&tokens_t, &mut caches))?;
        for seq in &mut self.active {
            if let Next::Feed(token) = seq.next {
                seq.cached.push(token);
            }
        }
        Ok(logits)
    }

    /// Ends `id` at once, dropping its cache (a client gone, a stop string matched);
    /// nothing if it is not active.
    pub fn leave(&mut self, id: SeqId) {
        self.active.retain(|s| s.id != id);
    }

    /// Ends `id` after its last token: its cache, cut to the positions it holds, goes
    /// to the front of the prefix store.
    fn finish(&mut self, id: SeqId) -> Result<()> {
        let Some(i) = self.active.iter().position(|s| s.id == id) else {
            return Ok(());
        };
        let seq = self.active.remove(i);
        if self.store_size == 0 {
            return Ok(());
        }
        let len = self.model.cached_len(&seq.cache);
        let mut cache = self.model.new_cache(1, len.max(1))?;
        if self.model.f_copy_prefix(&seq.cache, len, &mut cache)? {
            self.store.push_front(Prefix {
                tokens: seq.cached,
                cache,
            });
            self.store.truncate(self.store_size);
        }
        Ok(())
    }
}

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
