//! Training, as the PyTorch scripts the crate follows do it, drawing the same random
//! numbers in the same order so that the losses are PyTorch's:
//!
//! - [`adamw`]: `torch.optim.AdamW`'s exact update, with its state exposed, and
//!   `clip_grad_norm_`;
//! - [`estimate`]: `estimate_loss()` for any model;
//! - [`lecture`]: `gpt.py`'s loop (Karpathy's "Let's build GPT");
//! - [`nanogpt`]: nanoGPT's `train.py`, writing and resuming its `ckpt.pt`;
//! - [`checkpoint`]: the file `attn train` writes and `attn sample` reads;
//! - [`curve`]: the loss curve as a PNG.
//!
//! The data they train on is [`crate::data`]'s.

pub mod adamw;
pub mod checkpoint;
pub mod curve;
pub mod estimate;
pub mod lecture;
pub mod nanogpt;

pub use adamw::{AdamW, AdamWConfig, ParamGroup, ParamState};
pub use lecture::{Event, TrainConfig, Trainer};
