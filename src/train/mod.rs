//! Training, as the PyTorch scripts the crate follows do it, drawing the same random
//! numbers in the same order so that the losses are PyTorch's:
//!
//! - [`data`]: a text as the lecture encodes it (sorted characters, 90/10 split) and its
//!   random batches; the default corpus (Shakespeare's plays);
//! - [`adamw`]: `torch.optim.AdamW`'s exact update, with its state exposed;
//! - [`lecture`]: `gpt.py`'s loop (Karpathy's "Let's build GPT");
//! - [`nanogpt`]: nanoGPT's `train.py`, writing and resuming its `ckpt.pt`;
//! - [`checkpoint`]: the file `attn train` writes and `attn sample` reads;
//! - [`curve`]: the loss curve as a PNG.

pub mod adamw;
pub mod checkpoint;
pub mod curve;
pub mod estimate;
pub mod lecture;
pub mod nanogpt;

pub use adamw::{AdamW, AdamWConfig, ParamGroup, ParamState};
pub use lecture::{Event, TrainConfig, Trainer};
