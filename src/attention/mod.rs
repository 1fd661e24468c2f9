//! Attention as PyTorch has it: functional scaled dot-product attention with typed
//! masks, the KV cache for incremental decoding, and a drop-in for
//! `torch.nn.MultiheadAttention`; and the options of current models' attention that
//! PyTorch's SDPA lacks: sliding windows, soft-capping, sinks, ALiBi, packed documents.
//! Model-specific attention blocks (the lecture's heads, nanoGPT's
//! `CausalSelfAttention`, BERT's) live with their models in `crate::models`.

pub mod alibi;
pub mod documents;
pub mod functional;
mod heads;
pub mod kv_cache;
pub mod mask;
mod mha_check;
mod mha_config;
mod mha_masks;
pub mod multihead_attention;
mod shapes;
mod sinks;
mod softcap;
pub mod window;

pub use alibi::{alibi_slopes, Alibi};
pub use documents::Documents;
pub use functional::{
    scaled_dot_product_attention, scaled_dot_product_attention_with_weights, Attention, Backend,
    MaskedRows, SdpaOptions,
};
pub(crate) use heads::{merge_heads, merge_heads_seq_first, split_heads, split_heads_seq_first};
pub use kv_cache::KvCache;
pub use mask::Mask;
pub use mha_config::{MhaOptions, MultiheadAttentionConfig};
pub use multihead_attention::MultiheadAttention;
pub use window::Window;
