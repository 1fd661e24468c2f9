//! What the HTTP side knows of the served model: its id, its tokenizer (with the chat
//! template), its context length and its end-of-sequence tokens. The weights stay on
//! the engine's thread.

use crate::models::llama::LlamaTokenizer;

/// The served model, as requests are checked and encoded against it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The id clients name in `model` (the GGUF file's name without `.gguf`).
    pub id: String,
    /// Text to token ids and back, with the chat template.
    pub tokenizer: LlamaTokenizer,
    /// The most positions, prompt and generated tokens together
    /// (`max_position_embeddings`).
    pub context_length: usize,
    /// The tokens that end a generation.
    pub eos_token_ids: Vec<i64>,
}
