//! What every handler shares: the model's description, the engine and the limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::engine::Engine;
use super::model::ModelInfo;

/// The handlers' shared state.
pub struct AppState {
    /// The served model's description.
    pub model: Arc<ModelInfo>,
    /// The thread that decodes.
    pub engine: Engine,
    /// `--api-key`: requests must carry `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// How long a client may take to send its request.
    pub read_timeout: Duration,
    /// When the server started (the model card's `created`).
    pub started: u64,
    next_id: AtomicU64,
}

impl AppState {
    /// The state of a server that has just started.
    pub fn new(
        model: ModelInfo,
        engine: Engine,
        api_key: Option<String>,
        body_limit: usize,
        read_timeout: Duration,
    ) -> Self {
        Self {
            model: Arc::new(model),
            engine,
            api_key,
            body_limit,
            read_timeout,
            started: now(),
            next_id: AtomicU64::new(0),
        }
    }

    /// A fresh answer id: `prefix` and a number unique to this server's life.
    pub fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", self.started)
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
