//! `MultiheadAttention` takes a shorter path for batch-first self-attention without
//! weights (one tensor as query, key and value): one packed projection and strided head
//! views instead of PyTorch's layout changes. It must agree with the general path, which
//! a copy of the input (another tensor, same values) still takes.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::mask::Mask;
use tch_attention::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};

fn mha(bias: bool) -> (VarStore, MultiheadAttention) {
    tch::manual_seed(3);
    let mut vs = VarStore::new(Device::Cpu);
    let cfg = MultiheadAttentionConfig::new(32, 4)
        .with_batch_first(true)
        .with_bias(bias);
    let m = MultiheadAttention::new(vs.root(), cfg).unwrap();
    // Nonzero biases, so the packed projection's bias is exercised.
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.3));
        }
    });
    vs.set_kind(Kind::Double);
    (vs, m)
}

fn causal_bias(t: i64) -> Mask {
    let future = Tensor::ones([t, t], (Kind::Bool, Device::Cpu)).triu(1);
    Mask::Bias(
        Tensor::zeros([t, t], (Kind::Double, Device::Cpu)).masked_fill(&future, f64::NEG_INFINITY),
    )
}

fn options(causal: Option<i64>) -> MhaOptions {
    MhaOptions {
        need_weights: false,
        attn_mask: causal.map(causal_bias),
        is_causal: causal.is_some(),
        ..MhaOptions::default()
    }
}

#[test]
fn self_attention_path_matches_the_general_path() {
    for bias in [true, false] {
        for causal in [None, Some(7)] {
            let (_vs, m) = mha(bias);
            let x = Tensor::randn([3, 7, 32], (Kind::Double, Device::Cpu));
            let (k, v) = (x.copy(), x.copy());
            let o = options(causal);
            let fast = m.f_forward_t(&x, &x, &x, &o, false).unwrap().0;
            let general = m.f_forward_t(&x, &k, &v, &o, false).unwrap().0;
            assert_eq!(fast.size(), [3, 7, 32]);
            assert!(
                fast.allclose(&general, 1e-12, 1e-12, false),
                "bias {bias}, causal {causal:?}: max diff {}",
                (&fast - &general).abs().max().double_value(&[])
            );
        }
    }
}

#[test]
fn self_attention_path_gradients_match_the_general_path() {
    let (vs, m) = mha(true);
    let x = Tensor::randn([2, 5, 32], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let params: Vec<Tensor> = vs.trainable_variables();
    let mut wrt: Vec<&Tensor> = vec![&x];
    wrt.extend(params.iter());
    let o = options(Some(5));
    let fast = m.f_forward_t(&x, &x, &x, &o, true).unwrap().0;
    let g_fast = Tensor::run_backward(&[fast.sum(None)], &wrt, false, false);
    // The general path: key and value are copies of x, so x's grad sums all three.
    let general = m.f_forward_t(&x, &x.copy(), &x.copy(), &o, true).unwrap().0;
    let g_general = Tensor::run_backward(&[general.sum(None)], &wrt, false, false);
    for (i, (a, b)) in g_fast.iter().zip(&g_general).enumerate() {
        assert!(a.allclose(b, 1e-10, 1e-12, false), "gradient {i} (0 = x)");
    }
}
