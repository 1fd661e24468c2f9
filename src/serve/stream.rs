//! `stream: true`: server-sent events, one chunk per token as it is decoded (a chat's
//! first chunk carries the role), a last chunk with the `finish_reason`, with
//! `stream_options.include_usage` a chunk of the counts, then `data: [DONE]`. A client
//! that goes away drops the stream, and with it the engine's channel: the sequence
//! leaves at the next step.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{Chunk, ChunkChoice, Delta, Usage};
use super::engine::Event;
use super::error::ApiError;
use super::request::{Endpoint, Prepared};
use super::state::{now, AppState};
use super::text::{Finish, Piece, TextState};

/// What the stream needs between events.
struct StreamState {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    prompt_tokens: usize,
    text: TextState,
    events: UnboundedReceiver<Event>,
    /// Events ready to be sent.
    ready: VecDeque<SseEvent>,
    /// Whether the end (`[DONE]` or an error) is in `ready`.
    ended: bool,
}

/// The SSE response, its first token's `piece` already decoded.
pub fn stream_response(
    app: Arc<AppState>,
    endpoint: Endpoint,
    prepared: Prepared,
    text: TextState,
    piece: Piece,
    events: UnboundedReceiver<Event>,
) -> Response {
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completions => "cmpl",
    };
    let mut state = StreamState {
        endpoint,
        id: app.new_id(prefix),
        created: now(),
        model: app.model.id.clone(),
        include_usage: prepared.include_usage,
        prompt_tokens: prepared.prompt_ids.len(),
        text,
        events,
        ready: VecDeque::new(),
        ended: false,
    };
    if endpoint == Endpoint::Chat {
        let role = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        state.push_chunk(Some(role), None, None);
    }
    state.push_piece(piece);
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((Ok::<_, Infallible>(event), state));
            }
            if state.ended {
                return None;
            }
            state.next_event().await;
        }
    });
    Sse::new(stream).into_response()
}

impl StreamState {
    /// Waits for the engine's next event and queues what it gives.
    async fn next_event(&mut self) {
        match self.events.recv().await {
            Some(Event::Token { token, finished }) => {
                let piece = self.text.push(token, finished);
                self.push_piece(piece);
            }
            Some(Event::Cut) => {
                let piece = self.text.rest(Finish::Length);
                self.push_piece(piece);
            }
            Some(Event::Failed(message)) => self.push_error(ApiError::internal(message)),
            None => self.push_error(ApiError::internal("the engine stopped")),
        }
    }

    /// The chunk of one token; at the end, the finish chunk, the usage and `[DONE]`.
    fn push_piece(&mut self, piece: Piece) {
        let text_chunk = piece.finish.is_none() || !piece.text.is_empty();
        if text_chunk {
            let delta = Delta {
                role: None,
                content: Some(piece.text.clone()),
            };
            self.push_chunk(Some(delta), Some(piece.text), None);
        }
        let Some(finish) = piece.finish else {
            return;
        };
        self.push_chunk(Some(Delta::default()), Some(String::new()), Some(finish));
        if self.include_usage {
            let usage = Usage::new(self.prompt_tokens, self.text.tokens);
            self.push(self.chunk(Vec::new(), Some(Some(usage))));
        }
        self.ready.push_back(SseEvent::default().data("[DONE]"));
        self.ended = true;
        // The engine frees the sequence (a stop string may end it before its last token).
        self.events.close();
    }

    /// A chunk of one choice: a chat's `delta` or a completion's `text`.
    fn push_chunk(&mut self, delta: Option<Delta>, text: Option<String>, finish: Option<Finish>) {
        let choice = match self.endpoint {
            Endpoint::Chat => ChunkChoice {
                index: 0,
                delta,
                text: None,
                logprobs: None,
                finish_reason: finish.map(Finish::as_str),
            },
            Endpoint::Completions => ChunkChoice {
                index: 0,
                delta: None,
                text: Some(text.unwrap_or_default()),
                logprobs: None,
                finish_reason: finish.map(Finish::as_str),
            },
        };
        let usage = self.include_usage.then_some(None);
        self.push(self.chunk(vec![choice], usage));
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Option<Usage>>) -> Chunk {
        Chunk {
            id: self.id.clone(),
            object: match self.endpoint {
                Endpoint::Chat => "chat.completion.chunk",
                Endpoint::Completions => "text_completion",
            },
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn push(&mut self, chunk: Chunk) {
        let data = serde_json::to_string(&chunk).unwrap_or_default();
        self.ready.push_back(SseEvent::default().data(data));
    }

    /// An error in the middle of a stream: OpenAI's error body as the last event.
    fn push_error(&mut self, error: ApiError) {
        self.ready
            .push_back(SseEvent::default().data(error.body().to_string()));
        self.ended = true;
    }
}
