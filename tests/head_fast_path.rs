//! `Head::f_forward_t` in eval takes a fast path (stacked-weight matmul + fused causal
//! attention); `Head::f_forward_with_weights` is the lecture's cell line for line. They
//! must agree, gradients included, and the fast path must never use a stale `tril` or
//! stale weights.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::models::lecture::{Head, HeadConfig};

fn head(kind: Kind, c: i64, hs: i64, bs: i64) -> (VarStore, Head) {
    tch::manual_seed(7);
    let mut vs = VarStore::new(Device::Cpu);
    let h = Head::new(vs.root(), HeadConfig::new(c, hs, bs)).unwrap();
    vs.set_kind(kind);
    (vs, h)
}

fn assert_close(a: &Tensor, b: &Tensor, kind: Kind) {
    let (rtol, atol) = if kind == Kind::Double {
        (1e-12, 1e-12)
    } else {
        (1e-5, 1e-6)
    };
    assert_eq!(a.size(), b.size());
    assert!(
        a.allclose(b, rtol, atol, true),
        "max abs diff {}",
        (a - b).abs().max().double_value(&[])
    );
}

#[test]
fn fast_path_matches_the_lecture_ops() {
    for kind in [Kind::Float, Kind::Double] {
        for (b, t, c, hs, bs) in [
            (4, 8, 32, 16, 8),
            (2, 5, 32, 16, 8),
            (1, 1, 8, 4, 3),
            (3, 64, 48, 24, 64),
        ] {
            let (_vs, h) = head(kind, c, hs, bs);
            let x = Tensor::randn([b, t, c], (kind, Device::Cpu));
            let fast = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
            let math = tch::no_grad(|| h.f_forward_with_weights(&x, false).unwrap().output);
            assert_close(&fast, &math, kind);
        }
    }
}

#[test]
fn fast_path_gradients_match_the_lecture_ops() {
    let kind = Kind::Double;
    let (vs, h) = head(kind, 32, 16, 8);
    let x = Tensor::randn([4, 8, 32], (kind, Device::Cpu)).set_requires_grad(true);
    let grads = |y: Tensor| {
        let wrt = [&x, &h.key.weight, &h.query.weight, &h.value.weight];
        Tensor::run_backward(&[y.sum(None)], &wrt, false, false)
    };
    let fast = grads(h.f_forward_t(&x, false).unwrap());
    let math = grads(h.f_forward_with_weights(&x, false).unwrap().output);
    for (f, m) in fast.iter().zip(&math) {
        assert_close(f, m, kind);
    }
    drop(vs);
}

#[test]
fn a_loaded_tril_that_is_not_causal_takes_the_lecture_path() {
    let (_vs, h) = head(Kind::Float, 32, 16, 8);
    let x = Tensor::randn([2, 8, 32], (Kind::Float, Device::Cpu));
    let causal = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
    // As a checkpoint load does: copy_ into the buffer. Row 0 loses its only key.
    let mut tril = h.tril.shallow_clone();
    let odd = Tensor::ones([8, 8], (Kind::Float, Device::Cpu)).tril(0);
    let _ = odd.get(0).get(0).fill_(0.0);
    tch::no_grad(|| tril.copy_(&odd));
    let out = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
    let math = tch::no_grad(|| h.f_forward_with_weights(&x, false).unwrap().output);
    // The lecture's plain softmax gives NaN for the fully masked row; so must forward.
    assert!(out.get(0).get(0).isnan().all().int64_value(&[]) == 1);
    assert!(out.allclose(&math, 1e-5, 1e-6, true));
    assert!(!out.allclose(&causal, 1e-5, 1e-6, true));
    // And back to the causal mask: the fast path's answer again.
    tch::no_grad(|| tril.copy_(&Tensor::ones([8, 8], (Kind::Float, Device::Cpu)).tril(0)));
    let again = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
    assert_close(&again, &causal, Kind::Float);
}

#[test]
fn changed_weights_are_seen_at_once() {
    let (_vs, h) = head(Kind::Float, 32, 16, 8);
    let x = Tensor::randn([2, 8, 32], (Kind::Float, Device::Cpu));
    let before = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
    // An optimizer step writes the Parameters in place.
    let mut w = h.value.weight.shallow_clone();
    tch::no_grad(|| {
        let _ = w.g_mul_scalar_(2.0);
    });
    let after = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
    assert_close(&after, &(&before * 2.0), Kind::Float);
    let math = tch::no_grad(|| h.f_forward_with_weights(&x, false).unwrap().output);
    assert_close(&after, &math, Kind::Float);
}

#[test]
fn half_precision_and_train_mode_keep_the_lecture_ops() {
    for kind in [Kind::Half, Kind::BFloat16] {
        let (_vs, h) = head(kind, 32, 16, 8);
        let x = Tensor::randn([4, 8, 32], (kind, Device::Cpu));
        let out = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
        let math = tch::no_grad(|| h.f_forward_with_weights(&x, false).unwrap().output);
        assert!(out.equal(&math), "{kind:?}: bit for bit");
    }
    let (_vs, h) = head(Kind::Float, 32, 16, 8);
    let x = Tensor::randn([4, 8, 32], (Kind::Float, Device::Cpu));
    let train = tch::no_grad(|| h.f_forward_t(&x, true).unwrap());
    let math = tch::no_grad(|| h.f_forward_with_weights(&x, true).unwrap().output);
    assert!(train.equal(&math), "train mode, dropout 0: bit for bit");
}

#[test]
fn bad_input_is_a_typed_error_on_the_fast_path() {
    let (_vs, h) = head(Kind::Float, 32, 16, 8);
    for x in [
        Tensor::zeros([2, 9, 32], (Kind::Float, Device::Cpu)), // T > block_size
        Tensor::zeros([2, 8, 31], (Kind::Float, Device::Cpu)), // wrong C
        Tensor::zeros([2, 8, 32], (Kind::Double, Device::Cpu)), // wrong dtype
        Tensor::zeros([8, 32], (Kind::Float, Device::Cpu)),    // not (B, T, C)
    ] {
        let err = tch::no_grad(|| h.f_forward_t(&x, false)).unwrap_err();
        assert!(err.to_string().starts_with("x: expected"), "{err}");
    }
}
