//! Properties of the attention core: the math path agrees with the fused one, masks of
//! either polarity mean what they say, causality holds, rows sum to one, the modules
//! compose, and bad input is an `Err`, never a panic or a libtorch abort.

use proptest::prelude::*;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::{
    scaled_dot_product_attention, scaled_dot_product_attention_with_weights, Backend, MaskedRows,
    SdpaOptions,
};
use tch_attention::attention::mask::Mask;
use tch_attention::models::lecture::{Head, HeadConfig};
use tch_attention::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use tch_attention::Error;

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn both(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    make: impl Fn(Backend) -> SdpaOptions,
) -> (Tensor, Tensor) {
    let fused = scaled_dot_product_attention(q, k, v, &make(Backend::Fused)).expect("fused");
    let math = scaled_dot_product_attention(q, k, v, &make(Backend::Math)).expect("math");
    (fused, math)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The notebook's ops and libtorch's fused kernel agree, in f64, with and without
    /// causal masking, masks of both kinds, and GQA.
    #[test]
    fn math_equals_fused(seed in 0i64..1000, n in 1i64..3, h in 1i64..3, l in 1i64..7, s in 1i64..7,
                         e in 1i64..9, ev in 1i64..9, causal: bool, mask_kind in 0u8..3, gqa: bool) {
        tch::manual_seed(seed);
        let hq = if gqa { 2 * h } else { h };
        let q = randn(&[n, hq, l, e], Kind::Double);
        let k = randn(&[n, h, s, e], Kind::Double);
        let v = randn(&[n, h, s, ev], Kind::Double);
        let keep = Tensor::rand([l, s], (Kind::Double, Device::Cpu)).gt(0.3);
        let bias = randn(&[n, 1, l, s], Kind::Double);
        let (fused, math) = both(&q, &k, &v, |backend| SdpaOptions {
            attn_mask: match (causal, mask_kind) {
                (true, _) | (_, 0) => None,
                (_, 1) => Some(Mask::keep(keep.shallow_clone()).unwrap()),
                _ => Some(Mask::bias(bias.shallow_clone()).unwrap()),
            },
            is_causal: causal,
            enable_gqa: gqa,
            backend,
            ..SdpaOptions::default()
        });
        prop_assert!(max_diff(&fused, &math) < 1e-10, "max diff {}", max_diff(&fused, &math));
    }

    /// Changing future tokens leaves earlier outputs unchanged.
    #[test]
    fn causal_outputs_ignore_the_future(seed in 0i64..1000, t in 2i64..8, cut in 1i64..7) {
        let cut = cut.min(t - 1);
        tch::manual_seed(seed);
        let vs = VarStore::new(Device::Cpu);
        let head = Head::new(vs.root(), HeadConfig::new(8, 4, 8)).unwrap();
        let x = randn(&[2, t, 8], Kind::Float);
        let x2 = x.copy();
        x2.narrow(1, cut, t - cut).copy_(&randn(&[2, t - cut, 8], Kind::Float));
        let a = head.f_forward_t(&x, false).unwrap().narrow(1, 0, cut);
        let b = head.f_forward_t(&x2, false).unwrap().narrow(1, 0, cut);
        prop_assert!(max_diff(&a, &b) == 0.0);
    }

    /// Attention weights are a distribution over the keys.
    #[test]
    fn weight_rows_sum_to_one(seed in 0i64..1000, l in 1i64..7, s in 1i64..7, e in 1i64..6) {
        tch::manual_seed(seed);
        let q = randn(&[2, l, e], Kind::Double);
        let k = randn(&[2, s, e], Kind::Double);
        let v = randn(&[2, s, 3], Kind::Double);
        let att = scaled_dot_product_attention_with_weights(&q, &k, &v, &SdpaOptions::default()).unwrap();
        let sums = att.weights.sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
        prop_assert!(max_diff(&sums, &sums.ones_like()) < 1e-12);
    }

    /// Any shapes at all give an output of shape (batch dimensions broadcast, L, Ev) or a
    /// shape error that names query, key or value and reports that argument's shape:
    /// never a panic, an abort or an error from inside libtorch.
    #[test]
    fn any_shapes_give_an_output_or_a_shape_error(
        dims in proptest::collection::vec(0i64..4, 0..5),
        kdims in proptest::collection::vec(0i64..4, 0..5),
        vdims in proptest::collection::vec(0i64..4, 0..5),
    ) {
        let (q, k, v) = (randn(&dims, Kind::Float), randn(&kdims, Kind::Float), randn(&vdims, Kind::Float));
        for backend in [Backend::Fused, Backend::Math] {
            let options = SdpaOptions { backend, ..SdpaOptions::default() };
            match scaled_dot_product_attention(&q, &k, &v, &options) {
                Ok(out) => {
                    let batch = |s: &[i64]| s[..s.len() - 2].to_vec();
                    let mut want = broadcast(&broadcast(&batch(&dims), &batch(&kdims)).unwrap(), &batch(&vdims)).unwrap();
                    want.extend([dims[dims.len() - 2], vdims[vdims.len() - 1]]);
                    prop_assert_eq!(out.size(), want, "{:?}", backend);
                }
                Err(Error::Shape { arg, got, .. }) => {
                    let shapes = [("query", &dims), ("key", &kdims), ("value", &vdims)];
                    let named = shapes.iter().find(|(name, _)| *name == arg);
                    prop_assert!(named.is_some(), "{:?}: error names {:?}", backend, arg);
                    prop_assert_eq!(&got, named.unwrap().1, "{:?}: {}'s shape", backend, arg);
                }
                Err(e) => prop_assert!(false, "{:?}: not a shape error: {}", backend, e),
            }
        }
    }

    /// A valid (query, key, value) with one thing broken, in each way [`broken`] knows,
    /// is an `Error::Shape` naming the broken argument, reporting its shape and saying
    /// what was expected.
    #[test]
    fn each_broken_shape_is_an_error_naming_its_argument(
        dims in proptest::collection::vec(1i64..4, 6), four_d: bool,
    ) {
        let (qs, ks, vs) = valid_shapes(&dims, four_d);
        for backend in [Backend::Fused, Backend::Math] {
            let options = SdpaOptions { backend, ..SdpaOptions::default() };
            let (q, k, v) = (randn(&qs, Kind::Float), randn(&ks, Kind::Float), randn(&vs, Kind::Float));
            prop_assert!(scaled_dot_product_attention(&q, &k, &v, &options).is_ok());
            for which in 0..BREAKS {
                let (shapes, want_arg, needle) = broken(which, [qs.clone(), ks.clone(), vs.clone()]);
                let [q, k, v] = shapes.each_ref().map(|s| randn(s, Kind::Float));
                match scaled_dot_product_attention(&q, &k, &v, &options) {
                    Err(Error::Shape { arg, expected, got }) => {
                        let named = ["query", "key", "value"].iter().position(|a| *a == want_arg);
                        prop_assert_eq!(arg.as_str(), want_arg, "{:?} {:?}", backend, shapes);
                        prop_assert_eq!(&got, &shapes[named.unwrap()], "{:?} {:?}", backend, shapes);
                        prop_assert!(expected.contains(needle), "{:?}: {:?} lacks {:?}", backend, expected, needle);
                    }
                    other => prop_assert!(false, "{:?} {:?}: {:?}", backend, shapes, other.map(|t| t.size())),
                }
            }
        }
    }
}

/// Query, key and value shapes that go together: `(N, [H,] L, E)`, `(N, [H,] S, E)` and
/// `(N, [H,] S, Ev)` from `dims = [N, H, L, S, E, Ev]`.
fn valid_shapes(dims: &[i64], four_d: bool) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let [n, h, l, s, e, ev] = dims.try_into().unwrap();
    let lead = if four_d { vec![n, h] } else { vec![n] };
    let with = |a: i64, b: i64| [lead.clone(), vec![a, b]].concat();
    (with(l, e), with(s, e), with(s, ev))
}

/// NumPy's broadcasting of two shapes, right-aligned (written here independently of
/// the crate's).
fn broadcast(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let n = a.len().max(b.len());
    let pad = |s: &[i64]| [vec![1; n - s.len()], s.to_vec()].concat();
    let (a, b) = (pad(a), pad(b));
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// How many ways [`broken`] knows.
const BREAKS: usize = 8;

/// `[query, key, value]` shapes with one thing broken (the `which`-th way), the argument the error must name, and a piece of what it
/// must say was expected. Batch dimensions that differ break only when neither is 1:
/// PyTorch broadcasts them otherwise.
fn broken(which: usize, mut s: [Vec<i64>; 3]) -> ([Vec<i64>; 3], &'static str, &'static str) {
    let rank = s[0].len();
    let (arg, needle) = match which {
        0 => {
            s[0] = s[0][rank - 1..].to_vec();
            ("query", "at least 2-D")
        }
        1 | 2 => {
            s[which] = s[which][rank - 1..].to_vec();
            (["query", "key", "value"][which], "at least 2-D")
        }
        // Key and value batches that do not broadcast with the query's.
        3 => {
            s[0][0] += 1;
            s[1][0] = s[0][0] + 1;
            s[2][0] = s[0][0] + 1;
            ("key", "broadcast with query")
        }
        4 => {
            s[1][rank - 1] += 1;
            ("key", "last dimension E")
        }
        5 => {
            s[2][rank - 2] += 1;
            ("value", "(.., S, Ev)")
        }
        // Only the value's batch is off.
        6 => {
            s[0][0] += 1;
            s[1][0] = s[0][0];
            s[2][0] = s[0][0] + 1;
            ("value", "broadcast with query")
        }
        // Heads differ (4-D; GQA off), neither being 1; 3-D has no heads, so its batch
        // differs instead.
        _ => {
            let d = if rank == 4 { 1 } else { 0 };
            s[0][d] += 1;
            s[1][d] = s[0][d] + 1;
            s[2][d] = s[0][d] + 1;
            ("key", "broadcast with query")
        }
    };
    (s, arg, needle)
}

#[test]
fn one_head_multi_head_is_head_then_proj() {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let mha = MultiHeadAttention::new(vs.root(), MultiHeadConfig::new(8, 1, 4, 6)).unwrap();
    let x = randn(&[3, 5, 8], Kind::Float);
    let ours = mha.f_forward_t(&x, false).unwrap();
    let by_hand = mha
        .proj
        .f_forward(&mha.heads[0].f_forward_t(&x, false).unwrap())
        .unwrap();
    assert_eq!(max_diff(&ours, &by_hand), 0.0);
}

#[test]
fn keep_and_block_masks_mean_opposite_things() {
    tch::manual_seed(3);
    let (q, k, v) = (
        randn(&[1, 3, 4], Kind::Double),
        randn(&[1, 5, 4], Kind::Double),
        randn(&[1, 5, 2], Kind::Double),
    );
    let keep = Tensor::from_slice(&[true, false, true, true, false]).view([1, 5]);
    let run = |mask: Mask| {
        let o = SdpaOptions {
            attn_mask: Some(mask),
            ..SdpaOptions::default()
        };
        scaled_dot_product_attention(&q, &k, &v, &o).unwrap()
    };
    let a = run(Mask::keep(keep.shallow_clone()).unwrap());
    let b = run(Mask::block(keep.logical_not()).unwrap());
    let c = run(Mask::bias(
        Mask::keep(keep.shallow_clone())
            .unwrap()
            .to_bias(Kind::Double)
            .unwrap(),
    )
    .unwrap());
    assert!(max_diff(&a, &b) < 1e-12 && max_diff(&a, &c) < 1e-12);
    // Flipping the convention flips which keys take part.
    let flipped = run(Mask::keep(keep.shallow_clone())
        .unwrap()
        .flip_convention()
        .unwrap()
        .flip_convention()
        .unwrap());
    assert!(max_diff(&a, &flipped) < 1e-12);
    assert!(Mask::keep(Tensor::zeros([2, 2], (Kind::Float, Device::Cpu))).is_err());
    assert!(
        Mask::bias(Tensor::from_slice(&[0.5f64]))
            .unwrap()
            .to_keep()
            .is_err(),
        "a soft bias has no bool form"
    );
}

#[test]
fn fully_masked_rows_follow_the_policy() {
    tch::manual_seed(5);
    let (q, k, v) = (
        randn(&[1, 2, 4], Kind::Double),
        randn(&[1, 3, 4], Kind::Double),
        randn(&[1, 3, 2], Kind::Double),
    );
    let keep = Tensor::from_slice(&[true, true, false, false, false, false]).view([2, 3]);
    for backend in [Backend::Fused, Backend::Math] {
        let run = |masked_rows| {
            let o = SdpaOptions {
                attn_mask: Some(Mask::keep(keep.shallow_clone()).unwrap()),
                backend,
                masked_rows,
                ..SdpaOptions::default()
            };
            scaled_dot_product_attention(&q, &k, &v, &o).unwrap()
        };
        let default = run(None);
        assert_eq!(
            default
                .get(0)
                .get(1)
                .abs()
                .sum(Kind::Double)
                .double_value(&[]),
            0.0,
            "{backend:?}: SDPA gives 0"
        );
        let nan = run(Some(MaskedRows::Nan));
        assert!(
            nan.get(0).get(1).isnan().all().int64_value(&[]) == 1,
            "{backend:?}: NaN policy"
        );
        assert!(
            nan.get(0).get(0).isnan().any().int64_value(&[]) == 0,
            "{backend:?}: other rows untouched"
        );
        assert!(max_diff(&run(Some(MaskedRows::Zero)), &default) == 0.0);
    }
}

fn err_text(r: tch_attention::Result<Tensor>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_inputs_name_the_argument() {
    let q = randn(&[2, 3, 4], Kind::Float);
    let sdpa = |q: &Tensor, k: &Tensor, v: &Tensor, o: SdpaOptions| {
        scaled_dot_product_attention(q, k, v, &o)
    };
    // Key and value lengths differ: libtorch's CPU flash kernel would read out of bounds.
    let e = err_text(sdpa(
        &q,
        &randn(&[2, 5, 4], Kind::Float),
        &randn(&[2, 6, 4], Kind::Float),
        SdpaOptions::default(),
    ));
    assert!(e.starts_with("value:") && e.contains("[2, 6, 4]"), "{e}");
    let e = err_text(sdpa(
        &q,
        &randn(&[2, 5, 3], Kind::Float),
        &randn(&[2, 5, 4], Kind::Float),
        SdpaOptions::default(),
    ));
    assert!(e.starts_with("key:"), "{e}");
    let e = err_text(sdpa(
        &randn(&[4], Kind::Float),
        &q,
        &q,
        SdpaOptions::default(),
    ));
    assert!(e.starts_with("query:"), "{e}");
    let e = err_text(sdpa(
        &q,
        &q.to_kind(Kind::Double),
        &q,
        SdpaOptions::default(),
    ));
    assert!(e.starts_with("key: expected dtype"), "{e}");
    // A mask together with is_causal: libtorch's flash kernel would accept it silently.
    let mask = Mask::keep(Tensor::ones([3, 3], (Kind::Bool, Device::Cpu))).unwrap();
    let e = err_text(sdpa(
        &q,
        &q,
        &q,
        SdpaOptions {
            attn_mask: Some(mask),
            is_causal: true,
            ..SdpaOptions::default()
        },
    ));
    assert!(e.starts_with("attn_mask:"), "{e}");
    let mask = Mask::keep(Tensor::ones([4, 3], (Kind::Bool, Device::Cpu))).unwrap();
    let e = err_text(sdpa(
        &q,
        &q,
        &q,
        SdpaOptions {
            attn_mask: Some(mask),
            ..SdpaOptions::default()
        },
    ));
    assert!(
        e.starts_with("attn_mask: expected shape broadcastable to [2, 3, 3]"),
        "{e}"
    );
    let mask = Mask::bias(Tensor::zeros([3, 3], (Kind::Double, Device::Cpu))).unwrap();
    let e = err_text(sdpa(
        &q,
        &q,
        &q,
        SdpaOptions {
            attn_mask: Some(mask),
            ..SdpaOptions::default()
        },
    ));
    assert!(e.starts_with("attn_mask: expected dtype"), "{e}");
    let e = err_text(sdpa(
        &q,
        &q,
        &q,
        SdpaOptions {
            dropout_p: 1.5,
            ..SdpaOptions::default()
        },
    ));
    assert!(e.starts_with("dropout_p:"), "{e}");
    let q4 = randn(&[1, 4, 3, 2], Kind::Float);
    let k4 = randn(&[1, 3, 3, 2], Kind::Float);
    let o = SdpaOptions {
        enable_gqa: true,
        ..SdpaOptions::default()
    };
    assert!(err_text(sdpa(&q4, &k4, &k4, o)).starts_with("key:"));
}

#[test]
fn modules_reject_bad_input_and_config() {
    let vs = VarStore::new(Device::Cpu);
    let head = Head::new(vs.root() / "h", HeadConfig::new(8, 4, 6)).unwrap();
    let e = err_text(head.f_forward_t(&randn(&[2, 7, 8], Kind::Float), false));
    assert!(
        e.starts_with("x: expected shape") && e.contains("block_size = 6"),
        "{e}"
    );
    assert!(err_text(head.f_forward_t(&randn(&[2, 5, 9], Kind::Float), false)).starts_with("x:"));
    assert!(err_text(head.f_forward_t(&randn(&[5, 8], Kind::Float), false)).starts_with("x:"));
    assert!(
        err_text(head.f_forward_t(&randn(&[2, 5, 8], Kind::Double), false))
            .starts_with("x: expected dtype")
    );
    assert!(matches!(
        Head::new(vs.root() / "bad", HeadConfig::new(8, 0, 6)),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        Head::new(
            vs.root() / "bad2",
            HeadConfig::new(8, 2, 6).with_dropout(2.0)
        ),
        Err(Error::Config { .. })
    ));
    use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
    let e = CausalSelfAttention::new(vs.root() / "c", CausalSelfAttentionConfig::new(10, 3, 8))
        .unwrap_err();
    assert!(e.to_string().contains("divisible by n_head"), "{e}");
}

#[test]
fn causal_self_attention_math_path_equals_fused() {
    use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
    tch::manual_seed(11);
    let mut vs = VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let mut m =
        CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(12, 3, 8)).unwrap();
    let x = randn(&[2, 7, 12], Kind::Double);
    let fused = m.f_forward_t(&x, false).unwrap();
    m.backend = Backend::Math;
    let math = m.f_forward_t(&x, false).unwrap();
    assert!(max_diff(&fused, &math) < 1e-12);
}
