//! Reading and writing state_dicts: safetensors files, atomic writes, and loading named
//! tensors into a module's VarStore with every key and shape checked.

mod safetensors;
mod state_dict;

pub use self::safetensors::{read_safetensors, write_atomic, write_safetensors, Safetensors};
pub use state_dict::{load_into, state_dict};
