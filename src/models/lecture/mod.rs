//! The modules of Karpathy's lecture "Let's build GPT: from scratch, in code, spelled
//! out" (`gpt.py` in karpathy/ng-video-lecture), under its state_dict names: the
//! single causal self-attention [`Head`] and [`MultiHeadAttention`], several heads side
//! by side with an output projection, and the whole character-level
//! [`GptLanguageModel`] built from them.

mod gpt;
mod head;
mod multi_head;

pub use gpt::{Block, FeedForward, GptConfig, GptLanguageModel};
pub(crate) use head::fused_causal_heads;
pub use head::{Head, HeadConfig};
pub use multi_head::{MultiHeadAttention, MultiHeadConfig};
