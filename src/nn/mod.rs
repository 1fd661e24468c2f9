//! PyTorch's `torch.nn` building blocks that tch lacks or initialises differently, each
//! under PyTorch's parameter names and drawing PyTorch's initial values from the same
//! seed. Whole models (`crate::models`) are assembled from these and from
//! `crate::attention`.

mod block_linear;
mod decode_linear;
pub mod kernels;
mod layer_norm;
mod linear;
mod quantized_linear;
mod rms_norm;
mod rotary;
pub(crate) mod state_dict;
pub mod token_ops;

pub use block_linear::{tiles_from_rows, BatchPath, BlockLinear, SharedBytes, TILE_FLOATS};
pub use decode_linear::{decode_kernel_applies, f_decode_linear, linear_slices, slices_apply};
pub use layer_norm::{layer_norm, LayerNorm};
pub use linear::{kaiming_uniform_bound, linear, Linear};
pub use quantized_linear::{Int4Linear, Int8Linear, Projection, INT4_GROUP_SIZES};
pub use rms_norm::{rms_norm, rms_norm_unit_offset, RmsNorm};
pub use rotary::{apply_rotary, rotate_half, RotaryEmbedding};
pub use state_dict::{load_into, state_dict};
