//! PyTorch's `torch.save` zip archives (`.pt`, `.pth`, `.bin`), without Python: read
//! (`file.rs`) through a restricted unpickler that never imports or calls anything
//! (`pickle.rs`), over a block reader for the zip's tail (`blocks.rs`); written as
//! `torch.save` writes them ([`writer`]); and the values `torch.load` gives, with one
//! accessor per Python type (`value.rs`).

mod blocks;
mod file;
pub(crate) mod pickle;
mod value;
pub mod writer;

pub(crate) use blocks::BlockReader;
pub(crate) use file::read_torch_header;
pub use file::{read_torch_object, strip_compile_prefix};
pub use writer::{to_pickle, write_torch_save, TorchValue};
