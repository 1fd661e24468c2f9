//! Every file format the crate reads or writes, each reader checking every declared
//! size against the bytes really there, one sub-module a format: [`safetensors`],
//! `torch.save` zip archives ([`torch`], through a restricted unpickler that never
//! imports or calls anything), [`gguf`] (every ggml block type); and the one entry point
//! that tells them apart by their bytes ([`sniff_file`], [`read_checkpoint`]). Every write is atomic and never leaves a
//! temporary file behind ([`atomic`]), and user-named inputs must be regular files.
//!
//! What the tensors mean (attention layouts, loading into modules) is
//! `crate::checkpoint`'s business; parity cases are `crate::parity`'s.

pub mod atomic;
mod checkpoint_file;
pub mod gguf;
mod mapped;
mod materialise;
mod regular;
pub mod safetensors;
mod stored;
pub mod torch;

pub(crate) use self::safetensors::read_safetensors_metadata;
pub use self::safetensors::{
    read_safetensors, write_safetensors, write_safetensors_new, Safetensors,
};
pub use self::safetensors::{write_safetensors_streamed, Planned, TensorSink};
pub use self::torch::{
    read_torch_object, strip_compile_prefix, to_pickle, write_torch_save, TorchValue,
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
pub use stored::StoredTensor;
