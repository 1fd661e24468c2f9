//! A persistent pool of worker threads for the kernels: started once, parked between
//! products, woken per call (llama.cpp's `ggml_threadpool` in miniature, `std` only).
//!
//! A matrix-vector product of a decoding step takes 5–100 µs; spawning and joining a
//! thread for each (`std::thread::scope`) costs 10–150 µs, so per-call threads made two
//! threads slower than one. Here a call publishes a job, bumps an epoch, and the
//! workers — spinning for [`SPIN`] after their last job, parked on a condition variable
//! after that — take their parts; the caller's thread takes part 0 and then waits for
//! the others. Workers are spawned on first need, up to the most parts ever asked for,
//! and live as long as the process.
//!
//! One job at a time: a call that finds the pool busy (another thread's product, or a
//! product inside a worker's part) runs all its parts on its own thread, so nothing
//! deadlocks and the result is the same (each part is computed alike wherever it runs).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it parks. A decoding step runs a
/// product every few tens of µs (norms, attention and the other libtorch ops between
/// them), so a spinning worker is there when the next comes; waking a parked one costs a
/// futex call and a context switch (10–50 µs on a loaded machine). Bounded, so an idle
/// process does not hold a core.
pub const SPIN: Duration = Duration::from_micros(200);

/// A job: part `i` of the current call. Lifetime erased; [`Pool::run`] does not return
/// before every part that a worker took has finished.
type Job = &'static (dyn Fn(usize) + Sync);

struct State {
    /// The current call's job (`None` between calls) and its number of parts.
    job: Option<Job>,
    parts: usize,
    /// Bumped once per call, under the lock and in `epoch` below.
    epoch: u64,
    /// Workers waiting on `wake`: a call notifies only when some are.
    parked: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// `state.epoch`, read by spinning workers without the lock.
    epoch: AtomicU64,
    /// Worker parts of the current call not yet finished.
    pending: AtomicUsize,
    /// Whether a worker's part panicked in the current call.
    panicked: AtomicBool,
}

/// The pool: its shared state, and the number of workers started (under the lock that
/// also makes calls one at a time).
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Mutex<usize>,
}

impl Pool {
    /// The process's pool (no worker started until a call asks for two parts or more).
    pub(crate) fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    job: None,
                    parts: 0,
                    epoch: 0,
                    parked: 0,
                }),
                wake: Condvar::new(),
                epoch: AtomicU64::new(0),
                pending: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
            }),
            workers: Mutex::new(0),
        })
    }

    /// Runs `f(0)`, ..., `f(parts - 1)`: part 0 on the caller's thread, the others on
    /// workers (on the caller's thread too when the pool is busy or a worker cannot be
    /// started). Returns when every part has finished; a part's panic is the caller's.
    pub(crate) fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        if parts <= 1 {
            return (0..parts).for_each(f);
        }
        let mut workers = match self.workers.try_lock() {
            Ok(w) => w,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return (0..parts).for_each(f),
        };
        while *workers < parts - 1 {
            let (shared, index) = (Arc::clone(&self.shared), *workers);
            let spawned = std::thread::Builder::new()
                .name(format!("attn-kernels-{}", index + 1))
                .spawn(move || work(&shared, index + 1));
            if spawned.is_err() {
                break;
            }
            *workers += 1;
        }
        let parts = parts.min(*workers + 1);
        // SAFETY: the reference outlives every use: `Finish` below waits, even when part
        // 0 panics, until no worker runs a part, and clears the job before returning.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        self.shared.panicked.store(false, Ordering::Relaxed);
        self.shared.pending.store(parts - 1, Ordering::Relaxed);
        {
            let mut st = lock(&self.shared.state);
            st.job = Some(job);
            st.parts = parts;
            st.epoch += 1;
            self.shared.epoch.store(st.epoch, Ordering::Release);
            if st.parked > 0 {
                self.shared.wake.notify_all();
            }
        }
        let finish = Finish(&self.shared);
        f(0);
        drop(finish);
        if self.shared.panicked.load(Ordering::Acquire) {
            resume_unwind(Box::new("a kernel worker's part panicked"));
        }
    }
}

/// Waits for the workers' parts of the current call and clears its job, on return or
/// unwind alike.
struct Finish<'a>(&'a Shared);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let start = Instant::now();
        while self.0.pending.load(Ordering::Acquire) > 0 {
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        lock(&self.0.state).job = None;
    }
}

/// A worker's life: wait for a new epoch, run its part if the call has one for it.
fn work(shared: &Shared, part: usize) {
    let mut seen = 0;
    loop {
        let start = Instant::now();
        while shared.epoch.load(Ordering::Acquire) == seen && start.elapsed() < SPIN {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        let (job, parts) = {
            let mut st = lock(&shared.state);
            while st.epoch == seen {
                st.parked += 1;
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.parked -= 1;
            }
            seen = st.epoch;
            (st.job, st.parts)
        };
        // A worker past the call's parts, or one that woke after the call ended (its
        // job cleared), has nothing to do this epoch.
        let Some(job) = job.filter(|_| part < parts) else {
            continue;
        };
        if catch_unwind(AssertUnwindSafe(|| job(part))).is_err() {
            shared.panicked.store(true, Ordering::Release);
        }
        shared.pending.fetch_sub(1, Ordering::Release);
    }
}

/// The lock, whether or not a panic poisoned it (the state stays consistent: every
/// field is written whole under it).
fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
