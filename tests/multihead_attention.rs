//! nn.MultiheadAttention's checks, as typed errors; the masked-row policy; PyTorch's init.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::MaskedRows;
use tch_attention::attention::mask::Mask;
use tch_attention::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use tch_attention::Error;

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn module(config: MultiheadAttentionConfig) -> (VarStore, MultiheadAttention) {
    let vs = VarStore::new(Device::Cpu);
    let m = MultiheadAttention::new(vs.root(), config).expect("valid config");
    (vs, m)
}

fn error(m: &MultiheadAttention, q: &Tensor, k: &Tensor, v: &Tensor, o: MhaOptions) -> String {
    match m.f_forward_t(q, k, v, &o, false) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_configs_are_typed_errors() {
    let vs = VarStore::new(Device::Cpu);
    for config in [
        MultiheadAttentionConfig::new(10, 3),
        MultiheadAttentionConfig::new(0, 1),
        MultiheadAttentionConfig::new(8, 0),
        MultiheadAttentionConfig::new(8, 2).with_kdim(0),
        MultiheadAttentionConfig::new(8, 2).with_dropout(-0.1),
    ] {
        let e = MultiheadAttention::new(vs.root(), config).expect_err("invalid");
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }
}

#[test]
fn forward_checks_mirror_pytorch() {
    let (_vs, m) = module(MultiheadAttentionConfig::new(8, 2));
    let x = randn(&[5, 2, 8]); // (L, N, E)
    let none = MhaOptions::default;
    // Wrong embedding dim.
    let e = error(&m, &randn(&[5, 2, 6]), &x, &x, none());
    assert!(
        e.starts_with("query: expected shape") && e.contains("last dimension 8"),
        "{e}"
    );
    // Key and value disagree on sequence length.
    let e = error(&m, &x, &randn(&[4, 2, 8]), &randn(&[3, 2, 8]), none());
    assert!(e.starts_with("value:"), "{e}");
    // Batched query with unbatched key.
    assert!(error(&m, &x, &randn(&[5, 8]), &randn(&[5, 8]), none()).starts_with("key:"));
    // Self-attention on x with the given key_padding_mask and attn_mask.
    let self_attention_error = |key_padding_mask, attn_mask| {
        let options = MhaOptions {
            key_padding_mask,
            attn_mask,
            ..none()
        };
        error(&m, &x, &x, &x, options)
    };
    // A 2-D attn_mask of the wrong size.
    let mask = Mask::from_mha(Tensor::zeros([5, 4], (Kind::Bool, Device::Cpu))).unwrap();
    let e = self_attention_error(None, Some(mask));
    assert!(
        e.starts_with(
            "attn_mask: expected shape (L, S) = [5, 5] or (N * num_heads, L, S) = [4, 5, 5]"
        ),
        "{e}"
    );
    // key_padding_mask must be (N, S).
    let mask = Mask::from_mha(Tensor::zeros([5, 2], (Kind::Bool, Device::Cpu))).unwrap();
    let e = self_attention_error(Some(mask), None);
    assert!(e.starts_with("key_padding_mask:"), "{e}");
    // Integer masks are refused, as PyTorch refuses them.
    assert!(Mask::from_mha(Tensor::zeros([5, 5], (Kind::Int64, Device::Cpu))).is_err());
    // A float mask of another dtype.
    let mask = Mask::from_mha(Tensor::zeros([5, 5], (Kind::Double, Device::Cpu))).unwrap();
    let e = self_attention_error(None, Some(mask));
    assert!(e.starts_with("attn_mask: expected dtype"), "{e}");
    // is_causal is a hint that needs attn_mask.
    let e = error(
        &m,
        &x,
        &x,
        &x,
        MhaOptions {
            is_causal: true,
            ..none()
        },
    );
    assert!(e.starts_with("is_causal:"), "{e}");
    // Input dtype differs from the parameters'.
    let xd = x.to_kind(Kind::Double);
    assert!(error(&m, &xd, &xd, &xd, none()).starts_with("query: expected dtype"));
}

#[test]
fn fully_masked_rows_follow_pytorch_then_the_policy() {
    tch::manual_seed(1);
    let (_vs, mut m) = module(MultiheadAttentionConfig::new(8, 2).with_batch_first(true));
    let x = randn(&[2, 3, 8]); // (N, L, E)
                               // Every key of batch element 1 is padding.
    let kpm = Tensor::from_slice(&[false, false, false, true, true, true]).view([2, 3]);
    let run = |m: &MultiheadAttention, need_weights: bool| {
        let o = MhaOptions {
            key_padding_mask: Some(Mask::block(kpm.shallow_clone()).unwrap()),
            need_weights,
            ..MhaOptions::default()
        };
        m.f_forward_t(&x, &x, &x, &o, false).unwrap().0
    };
    let nan_rows = |t: &Tensor| t.get(1).isnan().all().int64_value(&[]) == 1;
    // PyTorch: NaN when it computes the weights, zeros (so out_proj.bias) without.
    assert!(nan_rows(&run(&m, true)));
    assert!(!nan_rows(&run(&m, false)));
    assert!(run(&m, true).get(0).isnan().any().int64_value(&[]) == 0);
    m.masked_rows = Some(MaskedRows::Zero);
    let zero = run(&m, true);
    assert!(!nan_rows(&zero));
    let bias = m.out_proj.bias.as_ref().unwrap();
    assert!((zero.get(1) - bias).abs().max().double_value(&[]) < 1e-6);
    m.masked_rows = Some(MaskedRows::Nan);
    assert!(nan_rows(&run(&m, false)));
}

#[test]
fn parameters_have_pytorchs_names_and_shapes() {
    let (vs, _m) = module(MultiheadAttentionConfig::new(8, 2).with_add_bias_kv(true));
    let mut names: Vec<(String, Vec<i64>)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect();
    names.sort();
    let expected = [
        ("bias_k", vec![1, 1, 8]),
        ("bias_v", vec![1, 1, 8]),
        ("in_proj_bias", vec![24]),
        ("in_proj_weight", vec![24, 8]),
        ("out_proj.bias", vec![8]),
        ("out_proj.weight", vec![8, 8]),
    ];
    assert_eq!(
        names,
        expected
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<Vec<_>>()
    );
    let (vs, _m) = module(
        MultiheadAttentionConfig::new(8, 2)
            .with_kdim(3)
            .with_vdim(5)
            .with_bias(false),
    );
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "k_proj_weight",
            "out_proj.weight",
            "q_proj_weight",
            "v_proj_weight"
        ]
    );
}
