//! `attn serve`: an OpenAI-compatible HTTP server on the crate's own generation
//! (llama.cpp's `llama-server`, vLLM and Ollama speak the same API).
//!
//! - [`api`]: the request and response bodies in OpenAI's field names;
//! - [`request`]: a body checked and encoded (chat template, sampling settings, stops);
//! - [`decoder`]: the step-wise decoding the engine drives, implemented by the crate's
//!   continuous batcher ([`crate::generate::Batcher`]: one forward for every active
//!   sequence, cached prompt prefixes reused);
//! - [`engine`]: the thread that owns the model, its bounded queue and its loop;
//! - [`text`]: tokens to text as they come, stop strings;
//! - [`completion`] and [`stream`]: the answers, whole or as server-sent events;
//! - [`routes`], [`body`], [`error`], [`state`]: the HTTP side;
//! - [`server`]: the listener and the graceful shutdown.
//!
//! ```no_run
//! # fn main() -> tch_attention::Result<()> {
//! use tch::Device;
//! use tch_attention::io::Gguf;
//! use tch_attention::models::llama::{LlamaForCausalLM, LlamaTokenizer};
//! use tch_attention::generate::Batcher;
//! use tch_attention::serve::{serve, ModelInfo, ServeConfig};
//!
//! let gguf = Gguf::read(std::path::Path::new("SmolLM2-135M-Instruct.Q4_1.gguf"))?;
//! let tokenizer = LlamaTokenizer::from_gguf(&gguf)?;
//! let (_vs, model) = LlamaForCausalLM::from_gguf(&gguf, Device::Cpu)?;
//! let info = ModelInfo {
//!     id: "SmolLM2-135M-Instruct".into(),
//!     tokenizer,
//!     context_length: model.config.max_position_embeddings as usize,
//!     eos_token_ids: model.config.eos_token_ids.clone(),
//! };
//! let context = model.config.max_position_embeddings;
//! let decoder = Batcher::new(model, ServeConfig::default().max_batch, context)?;
//! serve(ServeConfig::default(), info, decoder, |addr| {
//!     println!("listening on http://{addr}")
//! })?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod body;
pub mod completion;
pub mod decoder;
pub mod engine;
pub mod error;
pub mod model;
pub mod request;
pub mod routes;
pub mod server;
pub mod state;
pub mod stream;
pub mod text;

pub use decoder::{Decoder, FinishReason, SeqId, StepToken};
pub use error::ApiError;
pub use model::ModelInfo;
pub use server::{serve, ServeConfig};
