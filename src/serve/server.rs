//! The listener: an accept loop on tokio with hyper's HTTP/1 connections (a timeout on
//! reading each request's head, which `axum::serve` does not set), and the graceful
//! shutdown on SIGTERM or SIGINT: stop accepting, let the engine finish the sequences
//! in flight (or end them when the grace period is over), wait for every connection
//! to close, stop the engine's thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::decoder::Decoder;
use super::engine::Engine;
use super::model::ModelInfo;
use super::routes::router;
use super::state::AppState;
use crate::error::{Error, Result};

/// How the server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The address to listen on (default 127.0.0.1: this machine only).
    pub host: String,
    /// The port (0: one the system picks).
    pub port: u16,
    /// The most sequences decoded together.
    pub max_batch: usize,
    /// The most requests waiting for a place; more are answered 429.
    pub max_queue: usize,
    /// Requests must carry `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// The largest request body, in bytes (413 past it).
    pub body_limit: usize,
    /// How long a client may take to send a request's head, and then its body (408).
    pub read_timeout: Duration,
    /// On shutdown, how long the sequences in flight may go on before they are ended.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            max_batch: 8,
            max_queue: 64,
            api_key: None,
            body_limit: 4 << 20,
            read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The most sequences one batched step may hold: far past what a CPU decodes at once.
pub const MAX_BATCH: usize = 1024;
/// The most requests that may wait: the queue's slots are allocated up front.
pub const MAX_QUEUE: usize = 65_536;
/// The largest request body accepted: 1 GiB.
pub const MAX_BODY_LIMIT: usize = 1 << 30;

impl ServeConfig {
    /// Checks the counts and durations.
    pub fn validate(&self) -> Result<()> {
        for (name, n, most) in [
            ("max_batch", self.max_batch, MAX_BATCH),
            ("max_queue", self.max_queue, MAX_QUEUE),
            ("body_limit", self.body_limit, MAX_BODY_LIMIT),
        ] {
            if !(1..=most).contains(&n) {
                return Err(Error::invalid(
                    name,
                    format!("must be in [1, {most}], got {n}"),
                ));
            }
        }
        if self.read_timeout.is_zero() {
            return Err(Error::invalid("read_timeout", "must be positive"));
        }
        if self.api_key.as_deref() == Some("") {
            return Err(Error::invalid("api_key", "must not be empty"));
        }
        Ok(())
    }
}

/// Serves `model` through `decoder` until SIGTERM or SIGINT; `on_listening` is told
/// the bound address once requests are accepted.
pub fn serve<D: Decoder + Send + 'static>(
    config: ServeConfig,
    model: ModelInfo,
    decoder: D,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attn-http")
        .enable_all()
        .build()
        .map_err(|e| io_error("the async runtime", e))?;
    let engine = Engine::start(
        decoder,
        config.max_batch,
        config.max_queue,
        config.shutdown_grace,
    )
    .map_err(|e| io_error("the engine's thread", e))?;
    let state = Arc::new(AppState::new(
        model,
        engine,
        config.api_key.clone(),
        config.body_limit,
        config.read_timeout,
    ));
    let result = runtime.block_on(run(&config, state.clone(), on_listening));
    state.engine.join();
    result
}

async fn run(
    config: &ServeConfig,
    state: Arc<AppState>,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .await
        .map_err(|e| {
            Error::invalid(
                "port",
                format!("cannot listen on {}:{}: {e}", config.host, config.port),
            )
        })?;
    on_listening(
        listener
            .local_addr()
            .map_err(|e| io_error("the listener", e))?,
    );
    let app = router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(shutdown_signal());
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait, keep serving the others.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.read_timeout)
            .serve_connection(TokioIo::new(socket), service);
        tokio::spawn(graceful.watch(connection));
    }
    drop(listener);
    // Queued requests are refused, active ones finish or are ended at the grace
    // deadline; their responses then complete and the connections close.
    state.engine.begin_shutdown();
    graceful.shutdown().await;
    Ok(())
}

/// A system error while starting: what failed and why.
fn io_error(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: what.to_string(),
        source,
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
