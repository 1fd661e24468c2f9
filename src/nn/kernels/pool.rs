//! A persistent pool of worker threads for the kernels: started once, parked between
//! products, woken per call (llama.cpp's `ggml_threadpool` in miniature, `std` only).
//!
//! A matrix-vector product of a decoding step takes 5–100 µs; spawning and joining a
//! thread for each (`std::thread::scope`) costs 10–150 µs, so per-call threads made two
//! threads slower than one. Here a call publishes a job, bumps an epoch, and the
//! workers — spinning for [`SPIN`] after their last job, parked on a condition variable
//! after that — run it beside the caller's thread. The job takes its work in small
//! pieces from a shared counter (`split.rs`), so a worker that comes late (parked, or
//! descheduled on a busy machine) finds less or nothing left, and the caller never
//! waits for work that nobody started: when the caller runs out, it closes the call,
//! and waits only for the workers already inside it. Workers are spawned on first need,
//! up to the most threads ever asked for, and live as long as the process.
//!
//! One job at a time: a call that finds the pool busy (another thread's product, or a
//! product inside a worker's job) runs the job on its own thread alone, so nothing
//! deadlocks and the result is the same (each piece is computed alike wherever it runs).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it parks. A decoding step runs a
/// product every few tens of µs (norms, attention and the other libtorch ops between
/// them), so a spinning worker is there when the next comes; waking a parked one costs a
/// futex call and a context switch (10–50 µs on a loaded machine). Bounded, so an idle
/// process does not hold a core.
pub const SPIN: Duration = Duration::from_micros(200);

/// A job, run once by each thread taking part in the current call. Lifetime erased;
/// [`Pool::run`] does not return while a worker is inside it.
type Job = &'static (dyn Fn() + Sync);

/// The gate of a call, one atomic word: the call's epoch (bits 16 up), the number of
/// workers inside its job (bits 1–15, in steps of [`INSIDE`]) and whether it is closed
/// (bit 0). A worker enters only the epoch it was woken for, and only while it is open,
/// so a worker that wakes after its call has ended (and another has begun) cannot run
/// the old job.
const CLOSED: u64 = 1;
const INSIDE: u64 = 2;
const INSIDE_MASK: u64 = 0xfffe;
const EPOCH_SHIFT: u32 = 16;

struct State {
    /// The current call's job (`None` between calls) and its number of threads.
    job: Option<Job>,
    threads: usize,
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
    /// The current call's gate (see [`CLOSED`]).
    gate: AtomicU64,
    /// Whether a worker's run of the current job panicked.
    panicked: AtomicBool,
}

/// The pool: its shared state, and the number of workers started (under the lock that
/// also makes calls one at a time).
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Mutex<usize>,
}

impl Pool {
    /// The process's pool (no worker started until a call asks for two threads or more).
    pub(crate) fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    job: None,
                    threads: 0,
                    epoch: 0,
                    parked: 0,
                }),
                wake: Condvar::new(),
                epoch: AtomicU64::new(0),
                gate: AtomicU64::new(CLOSED),
                panicked: AtomicBool::new(false),
            }),
            workers: Mutex::new(0),
        })
    }

    /// Runs `job` on the caller's thread and on up to `threads - 1` workers at once
    /// (the caller's alone when the pool is busy); `job` shares its work out itself.
    /// Returns when the caller's run has returned and no worker is inside `job`; a
    /// worker's panic is the caller's.
    pub(crate) fn run(&self, threads: usize, job: &(dyn Fn() + Sync)) {
        if threads <= 1 {
            return job();
        }
        let mut workers = match self.workers.try_lock() {
            Ok(w) => w,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return job(),
        };
        while *workers < threads - 1 {
            let (shared, index) = (Arc::clone(&self.shared), *workers);
            let spawned = std::thread::Builder::new()
                .name(format!("attn-kernels-{}", index + 1))
                .spawn(move || work(&shared, index + 1));
            if spawned.is_err() {
                break;
            }
            *workers += 1;
        }
        // SAFETY: the reference outlives every use: `Finish` below closes the call and
        // waits, even when the caller's run panics, until no worker is inside the job,
        // and a worker enters only an open call of its own epoch.
        let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn() + Sync), Job>(job) };
        self.shared.panicked.store(false, Ordering::Relaxed);
        {
            let mut st = lock(&self.shared.state);
            st.job = Some(erased);
            st.threads = threads.min(*workers + 1);
            st.epoch += 1;
            self.shared
                .gate
                .store(st.epoch << EPOCH_SHIFT, Ordering::Release);
            self.shared.epoch.store(st.epoch, Ordering::Release);
            if st.parked > 0 {
                self.shared.wake.notify_all();
            }
        }
        let finish = Finish(&self.shared);
        job();
        drop(finish);
        if self.shared.panicked.load(Ordering::Acquire) {
            resume_unwind(Box::new("a kernel worker's job panicked"));
        }
    }
}

/// Closes the current call and waits until no worker is inside its job, then clears
/// it: on return or unwind alike.
struct Finish<'a>(&'a Shared);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut gate = self.0.gate.fetch_or(CLOSED, Ordering::AcqRel);
        let start = Instant::now();
        while gate & INSIDE_MASK != 0 {
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            gate = self.0.gate.load(Ordering::Acquire);
        }
        lock(&self.0.state).job = None;
    }
}

/// A worker's life: wait for a new epoch; run the job if the call wants this worker and
/// is still open.
fn work(shared: &Shared, index: usize) {
    let mut seen = 0;
    loop {
        let start = Instant::now();
        while shared.epoch.load(Ordering::Acquire) == seen && start.elapsed() < SPIN {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        let (job, threads) = {
            let mut st = lock(&shared.state);
            while st.epoch == seen {
                st.parked += 1;
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.parked -= 1;
            }
            seen = st.epoch;
            (st.job, st.threads)
        };
        let Some(job) = job.filter(|_| index < threads) else {
            continue;
        };
        if !enter(&shared.gate, seen) {
            continue;
        }
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            shared.panicked.store(true, Ordering::Release);
        }
        shared.gate.fetch_sub(INSIDE, Ordering::Release);
    }
}

/// Counts this worker inside the call of `epoch`, if that call is still open.
fn enter(gate: &AtomicU64, epoch: u64) -> bool {
    let mut g = gate.load(Ordering::Acquire);
    loop {
        if g >> EPOCH_SHIFT != epoch || g & CLOSED != 0 || g & INSIDE_MASK == INSIDE_MASK {
            return false;
        }
        match gate.compare_exchange_weak(g, g + INSIDE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(now) => g = now,
        }
    }
}

/// The lock, whether or not a panic poisoned it (the state stays consistent: every
/// field is written whole under it).
fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
