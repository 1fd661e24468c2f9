//! `F.linear(x, weight, bias)` for decoding in float32: a few input rows against CPU
//! float32 weights go to the crate's own matrix-vector kernel ([`kernels::matmul_f32`],
//! reading the weight tensor's data in place); everything else — prefill, CUDA, other
//! dtypes, anything autograd must see — to libtorch's `linear`, the math path.
//!
//! libtorch's float32 `linear` with one row calls MKL's sgemv, which reads the weights
//! at half the memory's speed on AMD CPUs; a decoding step is mostly that read. The
//! kernel sums in its own order (`f32mv.rs`), so its outputs differ from libtorch's (and
//! transformers') in the last bits: logits stay within the float32 parity tolerances and
//! the tests' generated tokens equal transformers'.

use tch::{Device, Kind, Tensor};

use super::kernels::{self, MAX_F32_ROWS};
use crate::error::{Error, Result};

/// `F.linear(x, weight, bias)`: `x` `(*, K)`, `weight` `[N, K]`, `bias` `[N]`, giving
/// `(*, N)`. On the kernel where [`decode_kernel_applies`] says so, else libtorch's `linear`.
pub fn f_decode_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if !decode_kernel_applies(x, weight, bias) {
        return f_linear_on_kernel_threads(x, weight, bias);
    }
    let size = x.size();
    let (n, k) = (weight.size()[0], weight.size()[1]);
    let m = x.numel() as i64 / k;
    let x2 = x.f_contiguous()?;
    // (M, N)
    let y = Tensor::f_empty([m, n], (Kind::Float, Device::Cpu))?;
    // SAFETY: `weight` and `x2` are contiguous CPU float32 tensors of `N·K` and `M·K`
    // elements (checked by `decode_kernel_applies`), `y` a fresh one of `M·N`, all alive
    // and not otherwise touched until the product returns.
    let (w, xs, ys) = unsafe {
        (
            std::slice::from_raw_parts(weight.data_ptr() as *const f32, (n * k) as usize),
            std::slice::from_raw_parts(x2.data_ptr() as *const f32, (m * k) as usize),
            std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, (m * n) as usize),
        )
    };
    let threads = kernels::threads();
    kernels::matmul_f32(w, n as usize, xs, ys, threads)?;
    let mut out = size;
    *out.last_mut().expect("decode_kernel_applies checked x's K") = n;
    let y = y.f_view(out.as_slice())?;
    Ok(match bias {
        Some(b) => y.f_add(b)?,
        None => y,
    })
}

/// libtorch's `linear`; where the kernels have threads of their own
/// ([`kernels::dedicate_threads`]: libtorch on one) and the weight is a CPU float32 matrix,
/// its output columns shared out over those threads, one libtorch `linear` a block of
/// weight rows (a prompt's projections, on the threads `--threads` gave).
fn f_linear_on_kernel_threads(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let threads = kernels::threads();
    let wsize = weight.size();
    let split = threads > 1
        && tch::get_num_threads() == 1
        && wsize.len() == 2
        && wsize[0] >= 2 * threads as i64
        && weight.device() == Device::Cpu
        && !(grad_enabled() && (x.requires_grad() || weight.requires_grad()));
    if !split {
        return Ok(x.f_linear(weight, bias)?);
    }
    let pieces = threads * 4;
    let rows = wsize[0];
    let chunk = (rows + pieces as i64 - 1) / pieces as i64;
    let starts: Vec<i64> = (0..rows).step_by(chunk as usize).collect();
    let shared = ReadOnly((x, weight, bias));
    let parts = kernels::map_on_pool(threads, starts.len(), |i| -> Result<Tensor> {
        let (x, weight, bias) = shared.get();
        let n = chunk.min(rows - starts[i]);
        let w = weight.f_narrow(0, starts[i], n)?;
        let b = bias.map(|b| b.f_narrow(0, starts[i], n)).transpose()?;
        Ok(x.f_linear(&w, b.as_ref())?)
    })
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::f_cat(&parts, -1)?)
}

/// Tensors read by several threads at once: libtorch's reads of a tensor (its data, its
/// views, its atomic reference count) are thread-safe; nothing here writes them.
struct ReadOnly<'a>((&'a Tensor, &'a Tensor, Option<&'a Tensor>));
// SAFETY: see above; the tensors outlive the pool's call, which returns only after every
// thread's run.
unsafe impl Sync for ReadOnly<'_> {}

impl<'a> ReadOnly<'a> {
    fn get(&self) -> (&'a Tensor, &'a Tensor, Option<&'a Tensor>) {
        self.0
    }
}

/// Whether [`f_decode_linear`] takes the kernel: `x` `(*, K)` of 1 to
/// [`MAX_F32_ROWS`] rows, `weight` `[N, K]` contiguous, both (and `bias`) float32 on the
/// CPU, and no gradient to record (grad mode off, or nothing requiring grad).
pub fn decode_kernel_applies(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> bool {
    let on_cpu_f32 = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    let wsize = weight.size();
    let [n, k] = wsize[..] else {
        return false;
    };
    let rows = if k > 0 { x.numel() as i64 / k } else { 0 };
    let tensors_fit = on_cpu_f32(x)
        && on_cpu_f32(weight)
        && bias.is_none_or(|b| on_cpu_f32(b) && b.size() == [n])
        && n > 0
        && x.size().last() == Some(&k)
        && (1..=MAX_F32_ROWS as i64).contains(&rows)
        && weight.is_contiguous();
    let tracked =
        x.requires_grad() || weight.requires_grad() || bias.is_some_and(|b| b.requires_grad());
    tensors_fit && !(tracked && grad_enabled())
}

/// Whether [`linear_slices`] takes `weight` and `bias`: a contiguous CPU float32
/// `[N, K]` weight (and `[N]` bias) that autograd is not tracking.
pub fn slices_apply(weight: &Tensor, bias: Option<&Tensor>) -> bool {
    let on_cpu_f32 = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    let wsize = weight.size();
    let tracked = weight.requires_grad() || bias.is_some_and(|b| b.requires_grad());
    wsize.len() == 2
        && on_cpu_f32(weight)
        && weight.is_contiguous()
        && bias.is_none_or(|b| on_cpu_f32(b) && b.size() == [wsize[0]] && b.is_contiguous())
        && !(tracked && grad_enabled())
}

/// [`f_decode_linear`]'s kernel on plain slices: `x` `(M, K)` with `M` at most
/// [`MAX_F32_ROWS`], `y` `(M, N)`, the same products and bias additions, where
/// [`slices_apply`] says so (an error otherwise).
pub fn linear_slices(
    weight: &Tensor,
    bias: Option<&Tensor>,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    if !slices_apply(weight, bias) {
        return Err(Error::invalid(
            "weight",
            "a contiguous CPU float32 [N, K] weight that autograd does not track",
        ));
    }
    let n = weight.size()[0] as usize;
    // SAFETY: `slices_apply` checked contiguous CPU float32 tensors of `N·K` and `N`
    // elements, alive and not written while borrowed here.
    let w = unsafe { std::slice::from_raw_parts(weight.data_ptr() as *const f32, weight.numel()) };
    kernels::matmul_f32(w, n, x, y, kernels::threads())?;
    if let Some(b) = bias {
        let b = unsafe { std::slice::from_raw_parts(b.data_ptr() as *const f32, n) };
        for row in y.chunks_exact_mut(n.max(1)) {
            for (v, &c) in row.iter_mut().zip(b) {
                *v += c;
            }
        }
    }
    Ok(())
}

/// Whether autograd records operations on this thread (`torch.is_grad_enabled()`);
/// tch reads it only by setting it, so this sets it back.
fn grad_enabled() -> bool {
    // SAFETY: libtch's `at_grad_set_enabled` sets the thread's grad mode and returns the
    // one before (or -1 on an error, taken as enabled: the caller then falls back).
    unsafe {
        let prev = torch_sys::at_grad_set_enabled(0);
        torch_sys::at_grad_set_enabled(i32::from(prev != 0));
        prev != 0
    }
}
