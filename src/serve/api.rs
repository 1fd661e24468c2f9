//! OpenAI's request and response bodies, in the API's own field names: one request
//! type for `/v1/completions` (`prompt`) and `/v1/chat/completions` (`messages`), the
//! answers, the stream's chunks and the model list.

// The fields are OpenAI's, named and documented by its API reference
// (platform.openai.com/docs/api-reference); a comment here says only what differs.
#![allow(missing_docs)]

use serde::{Deserialize, Serialize};

/// The fields this server reads. Anything else is refused by name before this is
/// deserialised (`request.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationRequest {
    pub model: String,
    /// `/v1/completions`: the text to continue.
    pub prompt: Option<String>,
    /// `/v1/chat/completions`: the conversation.
    pub messages: Option<Vec<Message>>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// An extension (transformers' and llama.cpp's `top_k`).
    pub top_k: Option<i64>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Only 1 is served.
    pub n: Option<i64>,
    /// An extension (llama.cpp's): keep generating after the end-of-sequence token.
    pub ignore_eos: Option<bool>,
    /// An end-user id: accepted and not used.
    #[allow(dead_code)]
    pub user: Option<String>,
}

/// The names [`GenerationRequest`] reads.
pub const FIELDS: &[&str] = &[
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "ignore_eos",
    "user",
];

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

/// A message's content: a string, or a list of text parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a message's content; only `{"type": "text", "text": ...}` is served.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// `stop`: one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// The assistant's message of a chat answer.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

/// One choice of an answer: a chat's `message` or a completion's `text`.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<AssistantMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

/// A whole answer: `chat.completion` or `text_completion`.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

/// A chunk's delta (chat): the role in the first chunk, then text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a stream's chunk.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

/// One server-sent event: `chat.completion.chunk` or `text_completion`.
#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// With `stream_options.include_usage`: `null` on every chunk but the last, which
    /// has no choices and the counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// `GET /v1/models`' entries.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}
