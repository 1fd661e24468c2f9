//! The routes: `GET /health`, `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions`; every other path is 404 and every other method 405,
//! both in OpenAI's error shape; with an API key, every route checks
//! `Authorization: Bearer KEY` first.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::api::{ModelCard, ModelList};
use super::completion::{chat_completions, completions};
use super::error::ApiError;
use super::state::AppState;

/// The server's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// 401 unless the request carries the API key (when the server has one).
async fn authorize(
    State(app): State<Arc<AppState>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    if let Some(key) = &app.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

async fn health(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let load = app.engine.load();
    Json(json!({
        "status": "ok",
        "model": app.model.id,
        "active": load.active.load(Ordering::SeqCst),
        "queued": load.queued.load(Ordering::SeqCst),
    }))
}

async fn models(State(app): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: app.model.id.clone(),
            object: "model",
            created: app.started,
            owned_by: "tch-attention",
        }],
    })
}

async fn no_route(request: Request<Body>) -> ApiError {
    ApiError::no_route(request.method().as_str(), request.uri().path())
}

async fn wrong_method(request: Request<Body>) -> ApiError {
    ApiError::wrong_method(request.method().as_str(), request.uri().path())
}
