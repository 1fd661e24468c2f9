//! The lecture's `MultiHeadAttention` runs its heads together in eval (one matmul, one
//! fused attention over all heads); it must give what running the lecture's heads one by
//! one and concatenating them gives, and fall back to that when a head's `tril` is not
//! causal.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::models::lecture::{MultiHeadAttention, MultiHeadConfig};

/// The lecture's forward: each head's own ops, concatenated, projected.
fn lecture(m: &MultiHeadAttention, x: &Tensor) -> Tensor {
    let outs: Vec<Tensor> = m
        .heads
        .iter()
        .map(|h| h.f_forward_with_weights(x, false).unwrap().output)
        .collect();
    m.proj.f_forward(&Tensor::cat(&outs, -1)).unwrap()
}

#[test]
fn heads_together_match_heads_one_by_one() {
    for kind in [Kind::Float, Kind::Double] {
        for (b, t, c, nh, hs, bs) in [
            (4, 8, 32, 4, 8, 8),
            (2, 5, 32, 3, 16, 8),
            (1, 1, 8, 2, 4, 4),
        ] {
            tch::manual_seed(5);
            let mut vs = VarStore::new(Device::Cpu);
            let m =
                MultiHeadAttention::new(vs.root(), MultiHeadConfig::new(c, nh, hs, bs)).unwrap();
            vs.set_kind(kind);
            let x = Tensor::randn([b, t, c], (kind, Device::Cpu));
            let fast = tch::no_grad(|| m.f_forward_t(&x, false).unwrap());
            let slow = tch::no_grad(|| lecture(&m, &x));
            let tol = if kind == Kind::Double { 1e-12 } else { 1e-5 };
            assert!(
                fast.allclose(&slow, tol, tol, false),
                "{kind:?} {b} {t} {c} {nh} {hs}"
            );
        }
    }
}

#[test]
fn a_head_with_a_non_causal_tril_sends_all_heads_the_lecture_way() {
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let m = MultiHeadAttention::new(vs.root(), MultiHeadConfig::new(32, 4, 8, 8)).unwrap();
    let x = Tensor::randn([2, 8, 32], (Kind::Float, Device::Cpu));
    let causal = tch::no_grad(|| m.f_forward_t(&x, false).unwrap());
    let mut tril = m.heads[2].tril.shallow_clone();
    tch::no_grad(|| tril.copy_(&Tensor::ones([8, 8], (Kind::Float, Device::Cpu))));
    let out = tch::no_grad(|| m.f_forward_t(&x, false).unwrap());
    let slow = tch::no_grad(|| lecture(&m, &x));
    assert!(out.allclose(&slow, 1e-5, 1e-6, false));
    // The new tril must matter, or the check above would pass on the causal path too.
    assert!(!out.allclose(&causal, 1e-5, 1e-6, false));
}
