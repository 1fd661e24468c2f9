//! The float32 matrix-vector kernels (`kernels::matmul_f32`, `nn::f_decode_linear`)
//! against a float64 reference and against libtorch's `linear`, every kernel set this
//! CPU runs: odd row counts, K not a multiple of 8 or 16, every M from 1 to 8, several
//! threads. The kernels sum in their own order (`src/nn/kernels/f32mv.rs`), so they are
//! compared with float32 tolerances, never bit for bit, against libtorch.

use tch::{Device, Kind, Tensor};
use tch_attention::nn::kernels::{self, KernelSet, MAX_F32_ROWS};
use tch_attention::nn::{decode_kernel_applies, f_decode_linear};

/// The crate's float32 parity tolerances.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let (a, e) = (actual.to_kind(Kind::Double), expected.to_kind(Kind::Double));
    let excess = ((&a - &e).abs() - (e.abs() * RTOL + ATOL))
        .max()
        .double_value(&[]);
    assert!(
        excess <= 0.0,
        "{what}: beyond rtol {RTOL} atol {ATOL} by {excess:e}, max abs diff {:e}",
        (&a - &e).abs().max().double_value(&[])
    );
}

/// `w` `[n, k]` with weights like a model's (std 1/√k) and `x` `(m, k)` standard normal.
fn operands(n: i64, k: i64, m: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let opts = (Kind::Float, Device::Cpu);
    let w = Tensor::randn([n, k], opts) / (k as f64).sqrt();
    let x = Tensor::randn([m, k], opts);
    (w, x)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.reshape([-1])).unwrap()
}

/// `y` `(m, n)` from the kernels of `set` on `threads` threads.
fn kernel_product(set: KernelSet, w: &Tensor, x: &Tensor, threads: usize) -> Tensor {
    let (n, m) = (w.size()[0], x.size()[0]);
    let mut y = vec![0f32; (m * n) as usize];
    kernels::matmul_f32_with(set, &to_vec(w), n as usize, &to_vec(x), &mut y, threads).unwrap();
    Tensor::from_slice(&y).view([m, n])
}

#[test]
fn every_set_matches_a_float64_reference_and_libtorch() {
    let shapes = [
        (1, 1),
        (3, 7),
        (5, 8),
        (17, 9),
        (37, 15),
        (64, 16),
        (33, 17),
        (100, 131),
        (7, 640),
    ];
    for set in KernelSet::available() {
        for (s, &(n, k)) in shapes.iter().enumerate() {
            for m in 1..=MAX_F32_ROWS as i64 {
                let (w, x) = operands(n, k, m, 100 * s as i64 + m);
                let y = kernel_product(set, &w, &x, 1);
                let f64_ref = x
                    .to_kind(Kind::Double)
                    .linear::<Tensor>(&w.to_kind(Kind::Double), None);
                let what = format!("{set} n={n} k={k} m={m}");
                assert_close(&format!("{what} vs float64"), &y, &f64_ref);
                assert_close(
                    &format!("{what} vs linear"),
                    &y,
                    &x.linear::<Tensor>(&w, None),
                );
            }
        }
    }
}

#[test]
fn the_scalar_set_sums_in_order() {
    let (w, x) = operands(3, 11, 2, 5);
    let y = to_vec(&kernel_product(KernelSet::Scalar, &w, &x, 1));
    let (wv, xv) = (to_vec(&w), to_vec(&x));
    for i in 0..2 {
        for r in 0..3 {
            let mut sum = 0f32;
            for j in 0..11 {
                sum += wv[r * 11 + j] * xv[i * 11 + j];
            }
            assert_eq!(
                y[i * 3 + r].to_bits(),
                sum.to_bits(),
                "row {r} of input {i}"
            );
        }
    }
}

#[test]
fn a_row_does_not_depend_on_threads_or_blocking() {
    // 1000 rows of 640: above the threshold at which a second thread joins, so that the
    // rows are split into pieces, blocks of four and a tail.
    let (w, x) = operands(1003, 640, 3, 11);
    for set in KernelSet::available() {
        let one = kernel_product(set, &w, &x, 1);
        for threads in [2, 3, 4] {
            let many = kernel_product(set, &w, &x, threads);
            assert!(one.equal(&many), "{set}: {threads} threads differ from one");
        }
        for r in [0, 1, 2, 3, 4, 999, 1000, 1001, 1002] {
            let alone = kernel_product(set, &w.narrow(0, r, 1), &x, 1);
            assert!(
                alone.equal(&one.narrow(1, r, 1)),
                "{set}: row {r} alone differs from row {r} among all"
            );
        }
    }
}

#[test]
fn decode_linear_takes_the_kernel_for_few_float32_rows_only() {
    let _guard = tch::no_grad_guard();
    let (w, x) = operands(50, 24, 8, 3);
    let bias = Tensor::randn([50], (Kind::Float, Device::Cpu));
    // (2, 4, K): M = 8 rows, any leading shape.
    let x3 = x.view([2, 4, 24]);
    assert!(decode_kernel_applies(&x3, &w, Some(&bias)));
    let got = f_decode_linear(&x3, &w, Some(&bias)).unwrap();
    assert_close("(2, 4, K) with bias", &got, &x3.linear(&w, Some(&bias)));
    // Nine rows, double, a transposed weight, a bias of the wrong shape: libtorch.
    let x9 = Tensor::randn([9, 24], (Kind::Float, Device::Cpu));
    let wt = w.transpose(0, 1).contiguous().transpose(0, 1);
    let cases: [(&str, Tensor, Tensor, Option<Tensor>); 4] = [
        ("nine rows", x9, w.shallow_clone(), None),
        (
            "double",
            x.to_kind(Kind::Double),
            w.to_kind(Kind::Double),
            None,
        ),
        ("non-contiguous weight", x.shallow_clone(), wt, None),
        (
            "bias [1]",
            x.shallow_clone(),
            w.shallow_clone(),
            Some(bias.narrow(0, 0, 1)),
        ),
    ];
    for (what, x, w, b) in cases {
        assert!(!decode_kernel_applies(&x, &w, b.as_ref()), "{what}");
        let got = f_decode_linear(&x, &w, b.as_ref()).unwrap();
        assert!(
            got.equal(&x.linear(&w, b.as_ref())),
            "{what}: not libtorch's linear"
        );
    }
}

#[test]
fn decode_linear_leaves_autograd_to_libtorch() {
    let (w, x) = operands(6, 10, 1, 4);
    let w = w.set_requires_grad(true);
    // Grad mode on: the product must be recorded, so libtorch computes it.
    assert!(!decode_kernel_applies(&x, &w, None));
    let y = f_decode_linear(&x, &w, None).unwrap();
    assert!(y.requires_grad());
    y.sum(Kind::Float).backward();
    assert!(w.grad().defined());
    // Grad mode off (generation): the kernel, and grad mode is on again after.
    tch::no_grad(|| {
        assert!(decode_kernel_applies(&x, &w, None));
        let y = f_decode_linear(&x, &w, None).unwrap();
        assert!(!y.requires_grad());
        assert_close("no_grad", &y, &x.linear::<Tensor>(&w, None));
    });
    assert!(
        !decode_kernel_applies(&x, &w, None),
        "grad mode not restored"
    );
}

#[test]
fn bad_sizes_are_errors() {
    let w = vec![0f32; 12];
    let mut y = vec![0f32; 3];
    let set = KernelSet::Scalar;
    assert!(kernels::matmul_f32_with(set, &w, 3, &[0.0; 5], &mut y, 1).is_err());
    assert!(kernels::matmul_f32_with(set, &w, 0, &[0.0; 4], &mut y, 1).is_err());
    assert!(kernels::matmul_f32_with(set, &w, 5, &[0.0; 4], &mut y, 1).is_err());
    assert!(kernels::matmul_f32_with(set, &w, 3, &[0.0; 36], &mut [0.0; 27], 1).is_err());
    assert!(kernels::matmul_f32_with(set, &w, 3, &[0.0; 4], &mut [0.0; 4], 1).is_err());
    assert!(kernels::matmul_f32_with(set, &w, 3, &[0.0; 4], &mut y, 1).is_ok());
}

/// The kernel's time per matrix-vector product and the bandwidth at which it reads the
/// weights, beside libtorch's float32 `linear` on the same `x` `(1, K)` and weight:
/// SmolLM2-135M's and Gemma 3 270M's projections and heads.
#[test]
#[ignore = "timing, not a check; meaningful only optimised: cargo test --release \
            --test f32_matvec -- --ignored --nocapture"]
fn timing_against_libtorch_linear() {
    let shapes = [
        (192, 576),
        (576, 576),
        (1536, 576),
        (576, 1536),
        (49152, 576),
        (1024, 640),
        (2048, 640),
        (640, 2048),
        (262144, 640),
    ];
    println!("rows x cols      threads  ours µs (GB/s)      torch µs (GB/s)");
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        for (n, k) in shapes {
            let (w, x) = operands(n, k, 1, 1);
            let gbs = |ns: f64| (n * k * 4) as f64 / ns;
            let _guard = tch::no_grad_guard();
            let ours = kernels::ns_per_call(|| {
                let _ = std::hint::black_box(f_decode_linear(&x, &w, None).unwrap());
            });
            let torch = kernels::ns_per_call(|| {
                let _ = std::hint::black_box(x.linear::<Tensor>(&w, None));
            });
            println!(
                "{n:>6} x {k:<6} {threads:>3}     {:>9.1} ({:>5.1})   {:>9.1} ({:>5.1})",
                ours / 1e3,
                gbs(ours),
                torch / 1e3,
                gbs(torch)
            );
        }
    }
}
