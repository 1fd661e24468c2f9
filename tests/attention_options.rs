//! The attention options beyond PyTorch's SDPA arguments (sliding windows, soft-capping,
//! sinks, ALiBi, packed documents) and PyTorch's batch broadcasting: the fused kernel,
//! given the mask or bias an option amounts to, agrees with the math path; each option is
//! validated with a typed error naming it.

use proptest::prelude::*;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::{
    scaled_dot_product_attention, scaled_dot_product_attention_with_weights, Backend, SdpaOptions,
};
use tch_attention::attention::{alibi_slopes, Alibi, Documents, Mask, Window};
use tch_attention::Error;

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Double, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Sorted document ids for `t` positions, `docs` documents at most.
fn document_ids(t: i64, cuts: &[i64]) -> Tensor {
    let ids: Vec<i64> = (0..t)
        .map(|i| cuts.iter().filter(|&&c| c % t.max(1) <= i).count() as i64)
        .collect();
    Tensor::from_slice(&ids)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every option a mask or bias can express — windows, ALiBi, documents, alone or
    /// together, with causal or explicit masks, GQA and broadcast batches — gives the
    /// same output on libtorch's fused kernel as on the math path (f64).
    #[test]
    fn fused_equals_math_for_every_maskable_option(
        seed in 0i64..1000, l in 1i64..8, s in 1i64..8, e in 1i64..6, h in 1i64..3,
        window in proptest::option::of((-1i64..4, -1i64..4)), alibi in 0u8..3,
        documents: bool, cuts in proptest::collection::vec(0i64..8, 0..3),
        causal: bool, mask_kind in 0u8..3, gqa: bool, q_batch1: bool,
    ) {
        tch::manual_seed(seed);
        let hq = if gqa { 2 * h } else { h };
        let q = randn(&[if q_batch1 { 1 } else { 2 }, hq, l, e]);
        let (k, v) = (randn(&[2, h, s, e]), randn(&[2, h, s, 3]));
        let keep = Tensor::rand([l, s], (Kind::Double, Device::Cpu)).gt(0.3);
        let bias = randn(&[2, 1, l, s]);
        let slopes = Tensor::rand([hq], (Kind::Double, Device::Cpu));
        let options = |backend| SdpaOptions {
            attn_mask: match (causal, mask_kind) {
                (true, _) | (_, 0) => None,
                (_, 1) => Some(Mask::keep(keep.shallow_clone()).unwrap()),
                _ => Some(Mask::bias(bias.shallow_clone()).unwrap()),
            },
            is_causal: causal,
            enable_gqa: gqa,
            window: window.map(|(a, b)| Window::new(a, b).unwrap()),
            alibi: match alibi {
                0 => None,
                1 => Some(Alibi::Bloom),
                _ => Some(Alibi::Slopes(slopes.shallow_clone())),
            },
            documents: documents.then(|| {
                Documents::new(document_ids(l, &cuts), document_ids(s, &cuts)).unwrap()
            }),
            backend,
            ..SdpaOptions::default()
        };
        let fused = scaled_dot_product_attention(&q, &k, &v, &options(Backend::Fused)).unwrap();
        let math = scaled_dot_product_attention(&q, &k, &v, &options(Backend::Math)).unwrap();
        prop_assert_eq!(fused.size(), math.size());
        prop_assert!(max_diff(&fused, &math) < 1e-10, "max diff {}", max_diff(&fused, &math));
    }
}

/// Broadcast inputs get gradients of their own shape, summed over what was broadcast:
/// a query of batch 1 used against two batches of keys gets the sum of both.
#[test]
fn gradients_reduce_over_broadcast_dimensions() {
    tch::manual_seed(1);
    let mut q = randn(&[1, 2, 3, 4]).set_requires_grad(true);
    let (k, v) = (randn(&[2, 2, 5, 4]), randn(&[2, 2, 5, 4]));
    for backend in [Backend::Fused, Backend::Math] {
        let o = SdpaOptions {
            backend,
            ..SdpaOptions::default()
        };
        q.zero_grad();
        scaled_dot_product_attention(&q, &k, &v, &o)
            .unwrap()
            .sum(Kind::Double)
            .backward();
        let grad = q.grad();
        assert_eq!(grad.size(), [1, 2, 3, 4]);
        // The same as expanding the query by hand, then summing its gradient.
        let q2 = q
            .detach()
            .expand([2, 2, 3, 4], false)
            .copy()
            .set_requires_grad(true);
        scaled_dot_product_attention(&q2, &k, &v, &o)
            .unwrap()
            .sum(Kind::Double)
            .backward();
        let by_hand = q2
            .grad()
            .sum_dim_intlist([0i64].as_slice(), true, Kind::Double);
        assert!(max_diff(&grad, &by_hand) < 1e-12, "{backend:?}");
    }
}

/// A sliding window of `w` keys sees exactly those: the weights outside it are 0 and the
/// rows inside sum to 1; ALiBi's slopes follow BLOOM's rule.
#[test]
fn window_weights_and_alibi_slopes() {
    tch::manual_seed(2);
    let (q, k, v) = (
        randn(&[1, 1, 6, 4]),
        randn(&[1, 1, 6, 4]),
        randn(&[1, 1, 6, 2]),
    );
    let o = SdpaOptions {
        window: Some(Window::sliding(3).unwrap()),
        ..SdpaOptions::default()
    };
    let w = scaled_dot_product_attention_with_weights(&q, &k, &v, &o)
        .unwrap()
        .weights;
    let outside = Window::new(2, 0)
        .unwrap()
        .keep(6, 6, Device::Cpu)
        .unwrap()
        .logical_not();
    assert_eq!(
        w.masked_select(&outside)
            .abs()
            .sum(Kind::Double)
            .double_value(&[]),
        0.0
    );
    let sums = w.sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
    assert!(max_diff(&sums, &sums.ones_like()) < 1e-12);
    // BLOOM: 8 heads give 2^-1 .. 2^-8; 3 heads 2^-2, 2^-4 and the extra 2^-0.5... as
    // build_alibi_tensor computes (its powers of 2 are exact in float32).
    let eight: Vec<f32> = (1..=8).map(|k| 2f32.powi(-k)).collect();
    assert_eq!(alibi_slopes(8), eight);
    assert_eq!(alibi_slopes(3), vec![0.0625, 0.00390625, 0.25]);
    assert_eq!(alibi_slopes(0), Vec::<f32>::new());
}

/// With sinks, a row whose keys are all masked out attends to the sink alone: weights 0,
/// output 0, on both paths; and the weights of other rows sum to less than 1.
#[test]
fn sinks_absorb_weight() {
    tch::manual_seed(3);
    let (q, k, v) = (
        randn(&[1, 2, 3, 4]),
        randn(&[1, 2, 5, 4]),
        randn(&[1, 2, 5, 2]),
    );
    let keep = Tensor::from_slice(&[true, true, false, false, false]).view([1, 5]);
    let keep = Tensor::cat(&[keep.ones_like(), keep.zeros_like(), keep], 0); // row 1 empty
    let o = SdpaOptions {
        sinks: Some(Tensor::from_slice(&[0.5f64, -1.0])),
        attn_mask: Some(Mask::keep(keep).unwrap()),
        ..SdpaOptions::default()
    };
    let att = scaled_dot_product_attention_with_weights(&q, &k, &v, &o).unwrap();
    assert_eq!(
        att.output
            .get(0)
            .select(1, 1)
            .abs()
            .sum(Kind::Double)
            .double_value(&[]),
        0.0
    );
    let sums = att
        .weights
        .sum_dim_intlist([-1i64].as_slice(), false, Kind::Double);
    assert!(sums.lt(1.0).all().int64_value(&[]) == 1);
    let fused = scaled_dot_product_attention(&q, &k, &v, &o).unwrap();
    assert!(
        max_diff(&fused, &att.output) == 0.0,
        "the fused backend computes sinks on the math path"
    );
}

fn invalid_arg(r: tch_attention::Result<Tensor>) -> String {
    match r {
        Err(Error::Invalid { arg, .. })
        | Err(Error::Shape { arg, .. })
        | Err(Error::Dtype { arg, .. }) => arg,
        other => panic!("expected a typed error, got {:?}", other.map(|t| t.size())),
    }
}

/// Each option is validated: the error is typed and names it.
#[test]
fn bad_options_are_typed_errors_naming_the_option() {
    let (q, k, v) = (
        randn(&[2, 2, 3, 4]),
        randn(&[2, 2, 5, 4]),
        randn(&[2, 2, 5, 4]),
    );
    let run = |o: SdpaOptions| scaled_dot_product_attention(&q, &k, &v, &o);
    assert!(matches!(Window::new(-2, 0), Err(Error::Invalid { .. })));
    assert!(matches!(Window::sliding(0), Err(Error::Invalid { .. })));
    let window = Some(Window { left: 0, right: -3 });
    assert_eq!(
        invalid_arg(run(SdpaOptions {
            window,
            ..SdpaOptions::default()
        })),
        "window"
    );
    for cap in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let o = SdpaOptions {
            softcap: Some(cap),
            ..SdpaOptions::default()
        };
        assert_eq!(invalid_arg(run(o)), "softcap", "{cap}");
    }
    for sinks in [
        randn(&[3]),
        randn(&[2, 1]),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ] {
        let o = SdpaOptions {
            sinks: Some(sinks),
            ..SdpaOptions::default()
        };
        assert_eq!(invalid_arg(run(o)), "sinks");
    }
    for slopes in [randn(&[4]), Tensor::from_slice(&[1i64, 2])] {
        let o = SdpaOptions {
            alibi: Some(Alibi::Slopes(slopes)),
            ..SdpaOptions::default()
        };
        assert_eq!(invalid_arg(run(o)), "alibi");
    }
    // ALiBi and sinks need a heads dimension.
    let (q2, k2) = (randn(&[3, 4]), randn(&[5, 4]));
    let o = SdpaOptions {
        alibi: Some(Alibi::Bloom),
        ..SdpaOptions::default()
    };
    assert_eq!(
        invalid_arg(scaled_dot_product_attention(&q2, &k2, &k2, &o)),
        "alibi"
    );
    // Document ids of the wrong length, dtype or rank; cumulative lengths unsorted.
    let ids = |n: i64| Tensor::zeros([n], (Kind::Int64, Device::Cpu));
    let o = SdpaOptions {
        documents: Some(Documents::new(ids(3), ids(4)).unwrap()),
        ..SdpaOptions::default()
    };
    assert_eq!(invalid_arg(run(o)), "document_ids.key");
    assert!(matches!(
        Documents::same(Tensor::zeros([3], (Kind::Float, Device::Cpu))),
        Err(Error::Dtype { .. })
    ));
    assert!(matches!(
        Documents::new(ids(3), ids(5).view([1, 1, 5])),
        Err(Error::Shape { .. })
    ));
    let cu = |v: &[i64]| Tensor::from_slice(v);
    for bad in [&[0i64, 3, 2][..], &[1, 3, 5], &[]] {
        let e = Documents::from_cu_seqlens(&cu(bad), &cu(&[0, 2, 5])).unwrap_err();
        assert!(e.to_string().starts_with("cu_seqlens_q"), "{e}");
    }
    let e = Documents::from_cu_seqlens(&cu(&[0, 3]), &cu(&[0, 2, 5])).unwrap_err();
    assert!(e.to_string().starts_with("cu_seqlens_k"), "{e}");
    // Cumulative lengths that do not end at L (S) are named, with the last value needed.
    let o = SdpaOptions {
        documents: Some(Documents::from_cu_seqlens(&cu(&[0, 1, 2]), &cu(&[0, 2, 5])).unwrap()),
        ..SdpaOptions::default()
    };
    let e = run(o).unwrap_err().to_string();
    assert!(
        e.starts_with("cu_seqlens_q: the last value must be L = 3, the number of queries")
            && e.ends_with("got 2"),
        "{e}"
    );
    let o = SdpaOptions {
        documents: Some(Documents::from_cu_seqlens(&cu(&[0, 1, 3]), &cu(&[0, 2, 4])).unwrap()),
        ..SdpaOptions::default()
    };
    let e = run(o).unwrap_err().to_string();
    assert!(
        e.starts_with("cu_seqlens_k: the last value must be S = 5, the number of keys")
            && e.ends_with("got 4"),
        "{e}"
    );
}

/// The one documented difference from PyTorch (README, "Where results differ"): a query
/// of batch 1 against keys and values of batch 0 broadcasts to batch 0, as `q @ k^T`
/// does in PyTorch; PyTorch 2.13's SDPA returns batch 1 there. Both paths agree.
#[test]
fn batch_one_against_batch_zero_broadcasts_to_zero() {
    let q = randn(&[1, 2, 3, 4]);
    let (k, v) = (randn(&[0, 2, 5, 4]), randn(&[0, 2, 5, 4]));
    for backend in [Backend::Math, Backend::Fused] {
        let options = SdpaOptions {
            backend,
            ..SdpaOptions::default()
        };
        let out = scaled_dot_product_attention(&q, &k, &v, &options).expect("broadcasts");
        assert_eq!(out.size(), [0, 2, 3, 4], "{backend:?}");
    }
}
