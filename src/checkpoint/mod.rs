//! Checkpoints in and out: reading safetensors and `torch.save` files, the attention
//! weight layouts PyTorch users have (and lossless conversion between them), atomic
//! writes, and loading named tensors into a module with every key and shape checked.

mod file;
mod layout;
mod module;
mod pickle;
mod safetensors;
mod state_dict;
mod torch_file;

pub use self::safetensors::{
    read_safetensors, write_atomic, write_safetensors, write_safetensors_new, Safetensors,
};
pub use file::{read_checkpoint, read_checkpoint_bytes, Checkpoint, Format};
pub use layout::{convert, detect, BiasPolicy, ConvertOptions, Found, Layout};
pub use module::{load_checkpoint, load_state_dict, save_checkpoint, FromCheckpoint, StateDict};
pub use state_dict::{load_into, state_dict};
