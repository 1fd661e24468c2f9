//! Output rows split into one contiguous range per thread (the persistent pool of
//! `pool.rs`; the first range runs on the caller's thread, so one thread wakes nothing). Each weight
//! row is read once per call whatever `N`: a thread takes its rows one by one and
//! multiplies each with every activation row.

use std::sync::Mutex;

/// Weight bytes (times activation rows) below which one more thread costs more than it
/// saves. A `std::thread::scope` spawn and join costs some tens of µs (measured on the
/// 2-core AVX-512 machine of this work, loaded: 40–150 µs; a quiet machine: 10–20 µs),
/// and the SIMD kernels read about 15 bytes of 4-bit weights a ns (SmolLM2's
/// `[1536, 576]` Q4_1, 553 KB, in about 35 µs), so a thread needs about half a MiB
/// of weights to earn its spawn. A persistent pool of workers would lower this.
pub const MIN_BYTES_PER_THREAD: usize = 512 * 1024;

/// How many of `threads` are worth spawning for a product reading `weight_bytes` of
/// weights against `n` activation rows: at least one, at most `threads`, and no more
/// than one per [`MIN_BYTES_PER_THREAD`] of work.
pub fn useful_threads(weight_bytes: usize, n: usize, threads: usize) -> usize {
    let work = weight_bytes.saturating_mul(n.max(1));
    threads.clamp(1, (work / MIN_BYTES_PER_THREAD).max(1))
}

/// Fills `y` `(N, rows)` with `y[i, r] = f(r, i)`, rows split across `threads` parts
/// of the kernels' persistent pool ([`super::pool`]).
pub(crate) fn for_rows<F>(rows: usize, y: &mut [f32], threads: usize, f: F)
where
    F: Fn(usize, usize) -> f32 + Sync,
{
    let threads = threads.clamp(1, rows.max(1));
    let chunk = rows.div_ceil(threads).max(1);
    // parts[c][i]: part c's slice of output row i.
    let mut parts: Vec<Vec<&mut [f32]>> = (0..threads).map(|_| Vec::new()).collect();
    for out_row in y.chunks_mut(rows) {
        for (c, part) in out_row.chunks_mut(chunk).enumerate() {
            parts[c].push(part);
        }
    }
    parts.retain(|p| !p.is_empty());
    // Each part is locked once, by the one thread that fills it.
    let parts: Vec<Mutex<Vec<&mut [f32]>>> = parts.into_iter().map(Mutex::new).collect();
    super::pool::Pool::global().run(parts.len(), &|c| {
        let mut p = parts[c].lock().unwrap_or_else(|e| e.into_inner());
        fill(c * chunk, &mut p, &f);
    });
}

/// `parts[i][k] = f(start + k, i)`, weight row by weight row.
fn fill<F: Fn(usize, usize) -> f32>(start: usize, parts: &mut [&mut [f32]], f: &F) {
    let len = parts.first().map_or(0, |p| p.len());
    for k in 0..len {
        for (i, part) in parts.iter_mut().enumerate() {
            part[k] = f(start + k, i);
        }
    }
}
