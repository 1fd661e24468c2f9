//! Row-range kernels: a range of weight rows times every activation row in one call,
//! the loop over the rows inside the kernel's `#[target_feature]` function, so that the
//! row dot product inlines into it (no call through a pointer, no closure per row).
//! Each weight row is read once a call: multiplied with each activation row in turn,
//! the second and later from the caches. Each output is exactly the row dot product's,
//! so the float order is that of the per-row kernels (documented in their files).

use super::activations::Q8Row;
#[cfg(target_arch = "x86_64")]
use super::simd::DotU8I8;
use super::{kquants, legacy};
#[cfg(target_arch = "x86_64")]
use super::{x86_kquants, x86_legacy};

/// `out[i][k] = row k of w · acts[i]` for the `w.len() / row_bytes` rows of `w`.
///
/// # Safety
/// The CPU has the features of the kernel's set ([`super::KernelSet::is_available`]).
/// Sizes are checked (a panic, never an out-of-bounds read): `out` holds one slice of at
/// least `w.len() / row_bytes` outputs per activation row.
pub(crate) type RowsDot = unsafe fn(&[u8], usize, &[Q8Row<'_>], &mut [&mut [f32]]);

/// Defines `unsafe fn $name(w, row_bytes, acts, out)` (a [`RowsDot`]) looping over the
/// rows with the row dot product `$dot`, with the given attributes (the set's features).
macro_rules! row_range {
    ($(#[$attr:meta])* $name:ident $(<$d:ident>)?, $dot:expr) => {
        $(#[$attr])*
        #[allow(unused_unsafe)]
        pub(crate) unsafe fn $name$(<$d: DotU8I8>)?(
            w: &[u8],
            row_bytes: usize,
            acts: &[Q8Row<'_>],
            out: &mut [&mut [f32]],
        ) {
            assert_eq!(acts.len(), out.len());
            for (k, row) in w.chunks_exact(row_bytes).enumerate() {
                for (a, o) in acts.iter().zip(out.iter_mut()) {
                    o[k] = unsafe { $dot(row, *a) };
                }
            }
        }
    };
}

row_range!(scalar_q8_0, legacy::dot_q8_0);
row_range!(scalar_q4_0, legacy::dot_q4_0);
row_range!(scalar_q4_1, legacy::dot_q4_1);
row_range!(scalar_q5_0, legacy::dot_q5_0);
row_range!(scalar_q4_k, kquants::dot_q4_k);
row_range!(scalar_q5_k, kquants::dot_q5_k);
row_range!(scalar_q6_k, kquants::dot_q6_k);

row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q8_0<D>,
    x86_legacy::dot_q8_0::<D>
);
row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q4_0<D>,
    x86_legacy::dot_q4_0::<D>
);
row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q4_1<D>,
    x86_legacy::dot_q4_1::<D>
);
row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q5_0<D>,
    x86_legacy::dot_q5_0::<D>
);
row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q4_k,
    x86_kquants::dot_q4_k
);
row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q5_k,
    x86_kquants::dot_q5_k
);
row_range!(
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    x86_q6_k,
    x86_kquants::dot_q6_k
);
