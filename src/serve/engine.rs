//! The engine: one dedicated thread owns the model (libtorch never runs on the async
//! runtime's threads). It takes requests from a bounded queue, admits up to
//! `max_batch` of them into the [`Decoder`], and each iteration advances every active
//! sequence by one token, sending it to its request's channel. A closed channel (the
//! client is gone, or its text reached a stop string) makes the sequence leave, which
//! frees its cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::decoder::{Decoder, FinishReason, SeqId};
use super::error::ApiError;
use crate::generate::GenerateOptions;

/// How often an idle engine looks at the shutdown flag.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// What a request's channel receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next token; `Some` reason on the last.
    Token {
        /// The token id.
        token: i64,
        /// Why the sequence ended, on its last token.
        finished: Option<FinishReason>,
    },
    /// The server shut down before the sequence ended: no more tokens.
    Cut,
    /// The model failed on this sequence: no more tokens.
    Failed(String),
}

/// One queued request.
struct Job {
    prompt: Vec<i64>,
    options: GenerateOptions,
    events: UnboundedSender<Event>,
}

/// Counts for `/health`, shared with the engine's thread.
#[derive(Debug, Default)]
pub struct Load {
    /// Requests waiting in the queue.
    pub queued: AtomicUsize,
    /// Sequences being decoded.
    pub active: AtomicUsize,
}

/// The handle the HTTP side holds.
pub struct Engine {
    queue: SyncSender<Job>,
    max_queue: usize,
    load: Arc<Load>,
    /// Set once: stop admitting; end what is active by the grace deadline.
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine's thread over `decoder`.
    pub fn start<D: Decoder + Send + 'static>(
        decoder: D,
        max_batch: usize,
        max_queue: usize,
        grace: Duration,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(max_queue);
        let load = Arc::new(Load::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            decoder,
            jobs,
            max_batch,
            grace,
            load: load.clone(),
            stopping: stopping.clone(),
            running: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("attn-engine".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            queue,
            max_queue,
            load,
            stopping,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a request; its tokens arrive on the returned channel. A full queue is
    /// 429, a stopping engine 503.
    pub fn submit(
        &self,
        prompt: Vec<i64>,
        options: GenerateOptions,
    ) -> Result<UnboundedReceiver<Event>, ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::shutting_down());
        }
        let (events, receiver) = unbounded_channel();
        let job = Job {
            prompt,
            options,
            events,
        };
        self.load.queued.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(e) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => ApiError::queue_full(self.max_queue),
                    TrySendError::Disconnected(_) => ApiError::shutting_down(),
                })
            }
        }
    }

    /// The counts for `/health`.
    pub fn load(&self) -> &Load {
        &self.load
    }

    /// Stops admitting; the sequences in flight go on until they end or the grace
    /// period does.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Waits for the engine's thread to end (after [`Engine::begin_shutdown`]).
    pub fn join(&self) {
        self.begin_shutdown();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The engine's thread.
struct Worker<D> {
    decoder: D,
    jobs: Receiver<Job>,
    max_batch: usize,
    grace: Duration,
    load: Arc<Load>,
    stopping: Arc<AtomicBool>,
    running: HashMap<SeqId, UnboundedSender<Event>>,
}

impl<D: Decoder> Worker<D> {
    fn run(mut self) {
        let mut deadline: Option<Instant> = None;
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                let end = *deadline.get_or_insert_with(|| Instant::now() + self.grace);
                self.refuse_queued();
                if Instant::now() >= end {
                    self.cut_all();
                }
                if self.running.is_empty() {
                    return;
                }
            } else {
                self.admit();
            }
            self.drop_abandoned();
            if !self.running.is_empty() {
                self.step();
            }
            self.load.active.store(self.running.len(), Ordering::SeqCst);
        }
    }

    /// Takes queued jobs while there is room; waits (briefly) when nothing runs.
    fn admit(&mut self) {
        while self.running.len() < self.max_batch {
            let job = if self.running.is_empty() {
                match self.jobs.recv_timeout(IDLE_POLL) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => return,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.stopping.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            } else {
                match self.jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
                }
            };
            self.load.queued.fetch_sub(1, Ordering::SeqCst);
            if job.events.is_closed() {
                continue; // its client left while it waited
            }
            match self.decoder.join(&job.prompt, &job.options) {
                Ok(id) => {
                    self.running.insert(id, job.events);
                }
                Err(e) => {
                    let _ = job.events.send(Event::Failed(e.to_string()));
                }
            }
        }
    }

    /// Sequences whose clients are gone leave before the next forward.
    fn drop_abandoned(&mut self) {
        let gone: Vec<SeqId> = self
            .running
            .iter()
            .filter(|(_, events)| events.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.running.remove(&id);
            self.decoder.leave(id);
        }
    }

    /// One token for every active sequence, each sent to its request.
    fn step(&mut self) {
        let tokens = match self.decoder.step() {
            Ok(tokens) => tokens,
            Err(e) => {
                let message = e.to_string();
                for (id, events) in self.running.drain() {
                    let _ = events.send(Event::Failed(message.clone()));
                    self.decoder.leave(id);
                }
                return;
            }
        };
        for t in tokens {
            let Some(events) = self.running.get(&t.id) else {
                continue;
            };
            let sent = events.send(Event::Token {
                token: t.token,
                finished: t.finished,
            });
            if t.finished.is_some() {
                self.running.remove(&t.id);
            } else if sent.is_err() {
                self.running.remove(&t.id);
                self.decoder.leave(t.id);
            }
        }
    }

    /// While stopping: the requests still queued are answered 503.
    fn refuse_queued(&mut self) {
        while let Ok(job) = self.jobs.try_recv() {
            self.load.queued.fetch_sub(1, Ordering::SeqCst);
            let _ = job.events.send(Event::Cut);
        }
    }

    /// The grace period is over: every active sequence ends now.
    fn cut_all(&mut self) {
        for (id, events) in self.running.drain() {
            let _ = events.send(Event::Cut);
            self.decoder.leave(id);
        }
    }
}
