//! A request body checked and turned into what the engine decodes: the prompt's token
//! ids (a chat rendered by the model's template, as `attn generate --chat` renders
//! it), the generation options (`attn generate`'s reading of the sampling settings)
//! and the stop strings. Every refusal names the field.

use serde_json::{Map, Value};

use super::api::{Content, GenerationRequest, Message, Stop, FIELDS};
use super::error::ApiError;
use super::model::ModelInfo;
use crate::generate::{Decoding, GenerateOptions};
use crate::models::llama::ChatMessage;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// OpenAI's fields this server does not implement: refused by name when they ask for
/// something (a default value, such as `logprobs: false`, is accepted).
const UNSUPPORTED: &[&str] = &[
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "best_of",
    "echo",
    "suffix",
    "audio",
    "modalities",
    "prediction",
    "reasoning_effort",
    "web_search_options",
];

/// OpenAI's limit on `stop`.
const MAX_STOPS: usize = 4;

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The prompt (a chat rendered by the template), encoded.
    pub prompt_ids: Vec<i64>,
    /// `max_tokens`, the decoding and the end-of-sequence tokens.
    pub options: GenerateOptions,
    /// The text ends before the first of these.
    pub stops: Vec<String>,
    /// Server-sent events instead of one answer.
    pub stream: bool,
    /// With `stream`: a last chunk of token counts.
    pub include_usage: bool,
}

/// `body` checked for `endpoint` against the served `model`.
pub fn prepare(body: &[u8], endpoint: Endpoint, model: &ModelInfo) -> Result<Prepared, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_body("the body must be a JSON object"));
    };
    refuse_fields(&fields, endpoint)?;
    let request: GenerationRequest = serde_path_to_error::deserialize(Value::Object(fields))
        .map_err(|e| {
            let path = e.path().to_string();
            ApiError::invalid(path.clone(), format!("{path}: {}", e.inner()))
        })?;
    if request.model != model.id {
        return Err(ApiError::unknown_model(&request.model, &model.id));
    }
    if let Some(n) = request.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid(
            "n",
            format!("only n = 1 is served, got {n}"),
        ));
    }
    let (param, prompt_ids) = prompt_ids(&request, endpoint, model)?;
    let options = options(&request, prompt_ids.len(), param, model)?;
    let stream = request.stream.unwrap_or(false);
    if request.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            "stream_options",
            "stream_options is only allowed with stream: true",
        ));
    }
    let include_usage = request
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok(Prepared {
        prompt_ids,
        options,
        stops: stops(request.stop)?,
        stream,
        include_usage,
    })
}

/// Unknown fields, OpenAI's fields that are not implemented, and the other endpoint's
/// input, each refused by name.
fn refuse_fields(fields: &Map<String, Value>, endpoint: Endpoint) -> Result<(), ApiError> {
    for (name, value) in fields {
        let default = matches!(value, Value::Null | Value::Bool(false))
            || value.as_f64() == Some(0.0) && name.ends_with("_penalty");
        if UNSUPPORTED.contains(&name.as_str()) {
            if default {
                continue;
            }
            return Err(ApiError::invalid(
                name,
                format!("`{name}` is not supported by this server"),
            ));
        }
        if !FIELDS.contains(&name.as_str()) {
            return Err(ApiError::invalid(name, format!("unknown field `{name}`")));
        }
    }
    let (wrong, right) = match endpoint {
        Endpoint::Completions => ("messages", "/v1/chat/completions"),
        Endpoint::Chat => ("prompt", "/v1/completions"),
    };
    if fields.contains_key(wrong) {
        return Err(ApiError::invalid(
            wrong,
            format!("`{wrong}` belongs to {right}"),
        ));
    }
    Ok(())
}

/// The prompt's token ids, and the field they came from.
fn prompt_ids(
    request: &GenerationRequest,
    endpoint: Endpoint,
    model: &ModelInfo,
) -> Result<(&'static str, Vec<i64>), ApiError> {
    let (param, text) = match endpoint {
        Endpoint::Completions => {
            let prompt = request
                .prompt
                .as_ref()
                .ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required"))?;
            ("prompt", prompt.clone())
        }
        Endpoint::Chat => ("messages", chat_text(request.messages.as_deref(), model)?),
    };
    let ids = model
        .tokenizer
        .encode(&text)
        .map_err(|e| ApiError::invalid(param, e.to_string()))?;
    if ids.is_empty() {
        return Err(ApiError::invalid(param, format!("`{param}` is empty")));
    }
    if ids.len() >= model.context_length {
        return Err(ApiError::invalid(
            param,
            format!(
                "the prompt has {} tokens; the model's context is {}, which leaves no room \
                 to generate",
                ids.len(),
                model.context_length
            ),
        )
        .with_code("context_length_exceeded"));
    }
    Ok((param, ids))
}

/// The conversation rendered by the model's chat template, the assistant's turn opened.
fn chat_text(messages: Option<&[Message]>, model: &ModelInfo) -> Result<String, ApiError> {
    let messages =
        messages.ok_or_else(|| ApiError::invalid("messages", "`messages` is required"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` is empty"));
    }
    if model.tokenizer.chat_template.is_none() {
        return Err(ApiError::invalid(
            "messages",
            format!(
                "the model `{}` has no chat template (a base model): use /v1/completions",
                model.id
            ),
        ));
    }
    let mut chat = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        if !["system", "user", "assistant"].contains(&m.role.as_str()) {
            return Err(ApiError::invalid(
                format!("{param}.role"),
                format!("role `{}` is not served: system, user or assistant", m.role),
            ));
        }
        let content = match &m.content {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (&*part.kind, &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                format!("{param}.content"),
                                format!("content parts of type `{}` are not served", part.kind),
                            ))
                        }
                    }
                }
                text
            }
        };
        chat.push(ChatMessage::new(m.role.clone(), content));
    }
    model
        .tokenizer
        .apply_chat_template(&chat, true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))
}

/// The generation options: `attn generate`'s decoding for the same settings.
fn options(
    request: &GenerationRequest,
    prompt_len: usize,
    prompt_param: &str,
    model: &ModelInfo,
) -> Result<GenerateOptions, ApiError> {
    let room = model.context_length - prompt_len;
    let max_tokens = match (request.max_tokens, request.max_completion_tokens) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "max_completion_tokens",
                format!("max_tokens ({a}) and max_completion_tokens ({b}) differ"),
            ))
        }
        (Some(a), _) => Some(("max_tokens", a)),
        (None, b) => b.map(|b| ("max_completion_tokens", b)),
    };
    let max_new_tokens = match max_tokens {
        None => room as i64,
        Some((param, n)) if n < 1 => {
            return Err(ApiError::invalid(
                param,
                format!("must be at least 1, got {n}"),
            ))
        }
        Some((param, n)) if n as u64 > room as u64 => {
            return Err(ApiError::invalid(
                param,
                format!(
                    "{n} new tokens after the {prompt_len} of the {prompt_param} pass the \
                     model's context of {}",
                    model.context_length
                ),
            )
            .with_code("context_length_exceeded"))
        }
        Some((_, n)) => n,
    };
    if let Some(t) = request.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        return Err(ApiError::invalid(
            "temperature",
            format!("must be in [0, 2], got {t}"),
        ));
    }
    let decoding = Decoding::from_settings(
        request.temperature,
        request.top_k,
        request.top_p,
        request.seed,
    );
    if let Decoding::Sample { config, .. } = &decoding {
        config.validate().map_err(|e| match e {
            crate::error::Error::Invalid { arg, reason } => ApiError::invalid(arg, reason),
            e => ApiError::bad_body(e.to_string()),
        })?;
    }
    Ok(GenerateOptions {
        max_new_tokens,
        decoding,
        eos_token_ids: match request.ignore_eos {
            Some(true) => vec![],
            _ => model.eos_token_ids.clone(),
        },
        kv_cache: true,
    })
}

/// `stop` as a list: at most four non-empty strings.
fn stops(stop: Option<Stop>) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        None => vec![],
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            "stop",
            format!("at most {MAX_STOPS} stop strings, got {}", stops.len()),
        ));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "a stop string is empty"));
    }
    Ok(stops)
}
