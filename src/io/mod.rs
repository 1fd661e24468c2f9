//! Every file format the crate reads or writes, each reader checking every declared
//! size against the bytes really there: safetensors, `torch.save` zip archives (through
//! a restricted unpickler that never imports or calls anything), and the one entry point
//! that tells them apart by their bytes. Every write is atomic and never leaves a
//! temporary file behind ([`atomic`]), and user-named inputs must be regular files.
//!
//! What the tensors mean (attention layouts, loading into modules) is
//! `crate::checkpoint`'s business; parity cases are `crate::parity`'s.

pub mod atomic;
mod blocks;
mod checkpoint_file;
pub mod gguf;
mod mapped;
mod materialise;
pub(crate) mod pickle;
mod regular;
mod safetensors;
mod safetensors_writer;
mod stored;
mod torch_file;
mod torch_value;
pub mod torch_writer;

pub(crate) use self::safetensors::read_safetensors_metadata;
pub use self::safetensors::{
    read_safetensors, write_safetensors, write_safetensors_new, Safetensors,
};
pub use atomic::{remove_in_progress_temporaries, write_file, write_file_with, Overwrite};
pub use checkpoint_file::{
    read_checkpoint, read_checkpoint_bytes, sniff_file, Checkpoint, CheckpointFile, Format,
};
pub use gguf::{GgmlType, Gguf, GgufTensorInfo, GgufValue};
pub use mapped::{FileBytes, Mapping};
pub(crate) use materialise::check_fits;
pub use materialise::contiguous_checked;
pub(crate) use regular::open_regular;
pub use regular::{read_regular, read_text};
pub use safetensors_writer::{write_safetensors_streamed, Planned, TensorSink};
pub use stored::StoredTensor;
pub use torch_file::{read_torch_object, strip_compile_prefix};
pub use torch_writer::{to_pickle, write_torch_save, TorchValue};
