#![doc = include_str!("../README.md")]
pub mod attention;
pub mod bench;
mod check;
pub mod checkpoint;
pub mod device;
pub mod doctor;
pub mod error;
pub mod heatmap;
pub mod io;
pub mod models;
pub mod nn;
pub mod notebook;
pub mod parity;
pub mod pretty;
pub use error::{Error, Result};
