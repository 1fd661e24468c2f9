//! `POST /v1/completions` and `POST /v1/chat/completions`: the body read and checked,
//! the request queued on the engine, and its tokens answered whole or streamed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{Answer, AssistantMessage, Choice, Usage};
use super::body::read_body;
use super::engine::Event;
use super::error::ApiError;
use super::request::{prepare, Endpoint, Prepared};
use super::state::{now, AppState};
use super::stream::stream_response;
use super::text::{Finish, Piece, TextState};

/// `POST /v1/completions`.
pub async fn completions(State(app): State<Arc<AppState>>, request: Request<Body>) -> Response {
    answer(app, request, Endpoint::Completions).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(app): State<Arc<AppState>>,
    request: Request<Body>,
) -> Response {
    answer(app, request, Endpoint::Chat).await
}

async fn answer(app: Arc<AppState>, request: Request<Body>, endpoint: Endpoint) -> Response {
    match respond(app, request, endpoint).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn respond(
    app: Arc<AppState>,
    request: Request<Body>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, app.body_limit, app.read_timeout).await?;
    let prepared = prepare(&body, endpoint, &app.model)?;
    let mut events = app
        .engine
        .submit(prepared.prompt_ids.clone(), prepared.options.clone())?;
    // The first event before any header: a request that fails (or is cut by a
    // shutdown while queued) gets its error status, streamed or not.
    let first = match events.recv().await {
        Some(Event::Token { token, finished }) => (token, finished),
        Some(Event::Cut) => return Err(ApiError::shutting_down()),
        Some(Event::Failed(message)) => return Err(ApiError::internal(message)),
        None => return Err(ApiError::internal("the engine stopped")),
    };
    let mut text = TextState::new(app.model.clone(), prepared.stops.clone());
    let piece = text.push(first.0, first.1);
    if prepared.stream {
        return Ok(stream_response(
            app, endpoint, prepared, text, piece, events,
        ));
    }
    let (content, finish) = collect(&mut text, piece, &mut events).await?;
    drop(events); // a stop string: the engine sees the closed channel and frees the cache
    Ok(axum::Json(whole_answer(
        &app, endpoint, &prepared, &text, content, finish,
    ))
    .into_response())
}

/// The rest of the text after `piece`.
async fn collect(
    text: &mut TextState,
    mut piece: Piece,
    events: &mut UnboundedReceiver<Event>,
) -> Result<(String, Finish), ApiError> {
    let mut content = String::new();
    loop {
        content.push_str(&piece.text);
        if let Some(finish) = piece.finish {
            return Ok((content, finish));
        }
        piece = match events.recv().await {
            Some(Event::Token { token, finished }) => text.push(token, finished),
            Some(Event::Cut) => text.rest(Finish::Length),
            Some(Event::Failed(message)) => return Err(ApiError::internal(message)),
            None => return Err(ApiError::internal("the engine stopped")),
        };
    }
}

/// A `chat.completion` or `text_completion` body.
fn whole_answer(
    app: &AppState,
    endpoint: Endpoint,
    prepared: &Prepared,
    text: &TextState,
    content: String,
    finish: Finish,
) -> Answer {
    let (object, prefix, message, text_field) = match endpoint {
        Endpoint::Chat => (
            "chat.completion",
            "chatcmpl",
            Some(AssistantMessage {
                role: "assistant",
                content,
            }),
            None,
        ),
        Endpoint::Completions => ("text_completion", "cmpl", None, Some(content)),
    };
    Answer {
        id: app.new_id(prefix),
        object,
        created: now(),
        model: app.model.id.clone(),
        choices: vec![Choice {
            index: 0,
            message,
            text: text_field,
            logprobs: None,
            finish_reason: finish.as_str(),
        }],
        usage: Usage::new(prepared.prompt_ids.len(), text.tokens),
    }
}
