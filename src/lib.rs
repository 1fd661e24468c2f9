#![doc = include_str!("../README.md")]
pub mod bench;
pub mod case;
pub mod causal_self_attention;
mod check;
pub mod checkpoint;
pub mod doctor;
pub mod error;
pub mod functional;
pub mod head;
pub mod kv_cache;
pub mod linear;
pub mod mask;
pub mod multi_head;
pub mod multihead_attention;
pub mod notebook;
pub mod pretty;
pub use error::{Error, Result};
