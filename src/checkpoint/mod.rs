//! What the tensors of a checkpoint mean: the attention weight layouts PyTorch users
//! have (lecture, nanoGPT, `nn.MultiheadAttention`, Hugging Face GPT-2 and BERT) and
//! lossless conversion between them, and loading named tensors into a module with every
//! key and shape checked. Reading and writing the files is `crate::io`'s.

mod layout;
mod module;

pub use layout::{
    convert, convert_file, detect, detect_file, BiasPolicy, ConvertOptions, Found, Layout,
    BLOCK_SIZE, HEADS,
};
pub use module::{load_checkpoint, load_state_dict, save_checkpoint, FromCheckpoint, StateDict};
// Strict loading lives below the models, which use it (`crate::nn::state_dict`).
pub use crate::nn::{load_into, state_dict};
