//! nanoGPT's modules (Karpathy, `model.py`), under its state_dict names:
//! [`CausalSelfAttention`], with incremental decoding through a
//! [`KvCache`](crate::attention::KvCache).

mod cached;
mod causal_self_attention;

pub use causal_self_attention::{CausalSelfAttention, CausalSelfAttentionConfig};
