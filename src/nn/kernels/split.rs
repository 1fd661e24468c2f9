//! Output rows split into ranges that the threads of the persistent pool (`pool.rs`)
//! take in turn (one thread wakes nothing: the caller's takes them all), each range
//! handed to a row-range kernel in one call. Each weight row is read once per call
//! whatever `N`: the kernel takes its rows one by one and multiplies each with every
//! activation row.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Weight bytes (times activation rows) below which one more thread costs more than it
/// saves. With the persistent pool a worker spinning between products starts in about a
/// µs and a parked one in 10–50 µs, and since the rows are taken a piece at a time a
/// late worker costs the caller nothing; what remains is the call's own overhead (the
/// gate, the pieces' locks: a few µs), so a thread needs some µs of work: 64 KiB of
/// weights, about 4 µs of 4-bit rows at the kernels' ~15 bytes a ns. SmolLM2's
/// `[192, 576]` key/value projections (69 KB of Q4_1) stay on one thread; its
/// `[576, 576]` and `[1536, 576]` ones take two. (Per-call threads, `std::thread::scope`,
/// cost 40–150 µs on the loaded 2-core machine of this work, and needed half a MiB.)
pub const MIN_BYTES_PER_THREAD: usize = 64 * 1024;

/// How many of `threads` are worth spawning for a product reading `weight_bytes` of
/// weights against `n` activation rows: at least one, at most `threads`, and no more
/// than one per [`MIN_BYTES_PER_THREAD`] of work.
pub fn useful_threads(weight_bytes: usize, n: usize, threads: usize) -> usize {
    let work = weight_bytes.saturating_mul(n.max(1));
    threads.clamp(1, (work / MIN_BYTES_PER_THREAD).max(1))
}

/// Pieces of work a thread: a thread takes the rows a piece at a time, so that a
/// thread that starts late (or is descheduled) leaves its share to the others.
const PIECES_PER_THREAD: usize = 4;

/// Fills `y` `(N, rows)` by `f(start, parts)`, on up to `threads` threads of the
/// kernels' persistent pool ([`super::pool`]), each taking ranges of rows from a shared
/// counter until none is left: `f` writes `parts[i][k] = y[i, start + k]` for every
/// activation row `i` and every `k < parts[i].len()`, the whole range in one call (a
/// row-range kernel: no call per row). Rows are independent, so which thread computes
/// which range changes no bit.
pub(crate) fn for_rows<F>(rows: usize, y: &mut [f32], threads: usize, f: F)
where
    F: Fn(usize, &mut [&mut [f32]]) + Sync,
{
    let threads = threads.clamp(1, rows.max(1));
    let pieces = if threads == 1 {
        1
    } else {
        threads * PIECES_PER_THREAD
    };
    let chunk = rows.div_ceil(pieces).max(1);
    // parts[c][i]: range c's slice of output row i.
    let mut parts: Vec<Vec<&mut [f32]>> = (0..rows.div_ceil(chunk)).map(|_| Vec::new()).collect();
    for out_row in y.chunks_mut(rows) {
        for (c, part) in out_row.chunks_mut(chunk).enumerate() {
            parts[c].push(part);
        }
    }
    if let [only] = &mut parts[..] {
        f(0, only);
        return;
    }
    // Each range is locked once, by the one thread that took it from `next`.
    let parts: Vec<Mutex<Vec<&mut [f32]>>> = parts.into_iter().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    super::pool::Pool::global().run(threads, &|| loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        let Some(part) = parts.get(c) else {
            return;
        };
        let mut p = part.lock().unwrap_or_else(|e| e.into_inner());
        f(c * chunk, &mut p);
    });
}

/// `[f(0), f(1), …, f(n - 1)]`, computed on up to `threads` threads of the pool
/// ([`super::run_on_pool`]), each taking the next index from a shared counter (a late
/// thread finds less or nothing left): for pieces of work that call libtorch, one
/// matmul each (prefill's tiles and blocks of rows). The order of the results is the
/// indices', whoever computed them.
pub fn map_on_pool<T: Send>(threads: usize, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    super::run_on_pool(threads.clamp(1, n.max(1)), &|| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = slots.get(i) else {
            return;
        };
        let value = f(i);
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("run_on_pool returns after every index is taken and computed")
        })
        .collect()
}
