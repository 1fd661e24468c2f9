//! Packed documents as flash-attention's varlen API means them (`flash_attn_varlen_func`
//! with `cu_seqlens_q` / `cu_seqlens_k`, `causal`, `window_size`): causal masking and the
//! window apply within each document, aligned at its end. Checked against the worked
//! example of docs/parity-cases.md, against each document run alone, fused against math
//! (outputs and gradients), and a decode over packed documents against the full forward.
//! The parity cases `tests/fixtures/cases/sdpa/varlen_*` check it against PyTorch
//! (scripts/reference_modules.py `varlen_keep`).

use proptest::prelude::*;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::{
    scaled_dot_product_attention, scaled_dot_product_attention_with_weights, Backend, SdpaOptions,
};
use tch_attention::attention::{Documents, Mask, Window};

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Double, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    if a.numel() == 0 {
        return 0.0;
    }
    (a - b).abs().max().double_value(&[])
}

/// Cumulative lengths `[0, l_0, l_0 + l_1, ..]`.
fn cu(lengths: &[i64]) -> Tensor {
    let mut ends = vec![0];
    for l in lengths {
        ends.push(ends[ends.len() - 1] + l);
    }
    Tensor::from_slice(&ends)
}

fn window(w: Option<(i64, i64)>) -> Option<Window> {
    w.map(|(l, r)| Window::new(l, r).unwrap())
}

/// Which keys each query sees (weights not 0), row by row.
fn seen(weights: &Tensor) -> Vec<Vec<bool>> {
    let w = weights
        .ne(0.0)
        .view([-1, weights.size()[weights.dim() - 1]]);
    (0..w.size()[0])
        .map(|i| Vec::<bool>::try_from(w.get(i)).unwrap())
        .collect()
}

fn rows(pattern: &[[u8; 5]; 2]) -> Vec<Vec<bool>> {
    pattern
        .iter()
        .map(|r| r.iter().map(|&b| b == 1).collect())
        .collect()
}

/// The worked example of the docs: one document of 2 queries over 5 keys.
#[test]
fn a_document_of_two_queries_over_five_keys() {
    tch::manual_seed(0);
    let (q, k, v) = (
        randn(&[1, 1, 2, 4]),
        randn(&[1, 1, 5, 4]),
        randn(&[1, 1, 5, 3]),
    );
    let weights = |causal: bool, w: Option<(i64, i64)>, documents: bool| {
        let o = SdpaOptions {
            is_causal: causal,
            window: window(w),
            documents: documents.then(|| Documents::from_cu_seqlens(&cu(&[2]), &cu(&[5])).unwrap()),
            ..SdpaOptions::default()
        };
        seen(
            &scaled_dot_product_attention_with_weights(&q, &k, &v, &o)
                .unwrap()
                .weights,
        )
    };
    // Per document, bottom-right: query 0 sees keys 0-3, query 1 keys 0-4.
    let causal = rows(&[[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]);
    assert_eq!(weights(true, None, true), causal);
    assert_eq!(weights(false, Some((-1, 0)), true), causal);
    // The window (1, 0): query 0 keys 2-3, query 1 keys 3-4; (1, -1) with is_causal is
    // the same within a document, and (1, 1) with is_causal too.
    let sliding = rows(&[[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]);
    assert_eq!(weights(false, Some((1, 0)), true), sliding);
    assert_eq!(weights(true, Some((1, -1)), true), sliding);
    assert_eq!(weights(true, Some((1, 1)), true), sliding);
    assert_eq!(
        weights(false, Some((1, 1)), true),
        rows(&[[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
    );
    // Without documents is_causal stays PyTorch's top-left mask, the window bottom-right:
    // (1, -1) with is_causal leaves these rows no key at all (weights 0, SDPA's rows).
    assert_eq!(
        weights(true, None, false),
        rows(&[[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    );
    assert_eq!(weights(false, Some((1, 0)), false), sliding);
    assert_eq!(weights(true, Some((1, -1)), false), rows(&[[0; 5], [0; 5]]));
}

/// The window of a document run alone, where `is_causal` must be spelled as a window to
/// be aligned bottom-right: what flash-attention's `causal=True` is for one sequence.
fn alone(causal: bool, w: Option<Window>) -> Option<Window> {
    match (causal, w) {
        (false, w) => w,
        (true, None) => Some(Window::new(-1, 0).unwrap()),
        // Causal masking cuts the window's right side at the query itself.
        (true, Some(w)) => Some(Window::new(w.left, 0).unwrap()),
    }
}

/// Each document's rows are what that document gives alone, for documents with fewer,
/// as many, and more queries than keys, and empty ones, on both paths.
#[test]
fn each_document_attends_as_if_alone() {
    tch::manual_seed(1);
    let (lq, lk) = ([2i64, 1, 0, 3, 1, 2], [5i64, 2, 2, 2, 0, 2]);
    let (l, s): (i64, i64) = (lq.iter().sum(), lk.iter().sum());
    let (q, k, v) = (
        randn(&[2, 3, l, 4]),
        randn(&[2, 3, s, 4]),
        randn(&[2, 3, s, 3]),
    );
    let combos = [
        (true, None),
        (false, Some((1, 0))),
        (false, Some((2, 1))),
        (true, Some((2, -1))),
        (true, Some((0, 3))),
        (false, Some((-1, 1))),
        (false, Some((0, -1))),
    ];
    for (causal, w) in combos {
        for backend in [Backend::Fused, Backend::Math] {
            let o = SdpaOptions {
                is_causal: causal,
                window: window(w),
                documents: Some(Documents::from_cu_seqlens(&cu(&lq), &cu(&lk)).unwrap()),
                backend,
                ..SdpaOptions::default()
            };
            let full = scaled_dot_product_attention(&q, &k, &v, &o).unwrap();
            let (mut q0, mut k0) = (0, 0);
            for (d, (&nq, &nk)) in lq.iter().zip(&lk).enumerate() {
                let o = SdpaOptions {
                    window: alone(causal, window(w)),
                    backend,
                    ..SdpaOptions::default()
                };
                let got = scaled_dot_product_attention(
                    &q.narrow(-2, q0, nq),
                    &k.narrow(-2, k0, nk),
                    &v.narrow(-2, k0, nk),
                    &o,
                )
                .unwrap();
                let diff = max_diff(&full.narrow(-2, q0, nq), &got);
                assert!(
                    diff < 1e-12,
                    "{causal} {w:?} {backend:?} document {d}: {diff}"
                );
                (q0, k0) = (q0 + nq, k0 + nk);
            }
        }
    }
}

/// Shared ids (`document_ids` `(T,)`) keep FlexAttention's reading, global positions:
/// `q_idx >= kv_idx` and the window over global offsets, within the same document, even
/// for documents that interleave.
#[test]
fn shared_ids_keep_flex_attentions_reading() {
    tch::manual_seed(2);
    let ids = Tensor::from_slice(&[0i64, 1, 0, 0, 1, 2, 1, 0]);
    let (q, k, v) = (
        randn(&[1, 2, 8, 4]),
        randn(&[1, 2, 8, 4]),
        randn(&[1, 2, 8, 4]),
    );
    for (causal, w) in [(true, None), (false, Some((2, 1))), (true, Some((3, -1)))] {
        let o = SdpaOptions {
            is_causal: causal,
            window: window(w),
            documents: Some(Documents::same(ids.shallow_clone()).unwrap()),
            ..SdpaOptions::default()
        };
        let got = scaled_dot_product_attention(&q, &k, &v, &o).unwrap();
        let mut keep = ids.unsqueeze(1).eq_tensor(&ids.unsqueeze(0));
        if causal {
            keep = keep.logical_and(&Tensor::ones([8, 8], (Kind::Bool, Device::Cpu)).tril(0));
        }
        if let Some(w) = window(w) {
            keep = keep.logical_and(&w.keep(8, 8, Device::Cpu).unwrap());
        }
        let o = SdpaOptions {
            attn_mask: Some(Mask::keep(keep).unwrap()),
            ..SdpaOptions::default()
        };
        let want = scaled_dot_product_attention(&q, &k, &v, &o).unwrap();
        assert!(max_diff(&got, &want) < 1e-12, "{causal} {w:?}");
    }
}

/// Decoding packed documents — a chunk of each document's prompt first (chunked
/// prefill), then one new token per unfinished document per step, each over its
/// document's cached and new keys and values — gives the rows of one forward over the
/// whole packed sequence, with and without a sliding window, on both paths; and that
/// forward is the same given as shared ids or as cumulative lengths.
#[test]
fn decoding_packed_documents_equals_the_full_forward() {
    tch::manual_seed(3);
    let lens = [5i64, 3, 6, 1];
    let t: i64 = lens.iter().sum();
    let ids: Vec<i64> = (0..lens.len() as i64)
        .flat_map(|d| std::iter::repeat_n(d, lens[d as usize] as usize))
        .collect();
    let (q, k, v) = (
        randn(&[2, 2, t, 4]),
        randn(&[2, 2, t, 4]),
        randn(&[2, 2, t, 3]),
    );
    let starts: Vec<i64> = (0..lens.len()).map(|d| lens[..d].iter().sum()).collect();
    for w in [
        None,
        Some(Window::sliding(2).unwrap()),
        Some(Window::new(3, -1).unwrap()),
    ] {
        for backend in [Backend::Fused, Backend::Math] {
            let full = |documents| {
                let o = SdpaOptions {
                    is_causal: true,
                    window: w,
                    documents: Some(documents),
                    backend,
                    ..SdpaOptions::default()
                };
                scaled_dot_product_attention(&q, &k, &v, &o).unwrap()
            };
            let by_ids = full(Documents::same(Tensor::from_slice(&ids)).unwrap());
            let by_cu = full(Documents::from_cu_seqlens(&cu(&lens), &cu(&lens)).unwrap());
            assert_eq!(max_diff(&by_ids, &by_cu), 0.0);

            // Per document: its cached keys and values, and how many tokens it has done.
            let mut cache: Vec<(Tensor, Tensor)> = (0..lens.len())
                .map(|_| (k.narrow(-2, 0, 0), v.narrow(-2, 0, 0)))
                .collect();
            let mut done = vec![0i64; lens.len()];
            let mut chunk = vec![2i64, 3, 1, 1]; // the prefill chunks, then 1 per step
            while done.iter().zip(&lens).any(|(d, l)| d < l) {
                let new: Vec<i64> = (0..lens.len())
                    .map(|d| chunk[d].min(lens[d] - done[d]))
                    .collect();
                let (mut qs, mut ks, mut vs) = (vec![], vec![], vec![]);
                for d in 0..lens.len() {
                    let at = starts[d] + done[d];
                    qs.push(q.narrow(-2, at, new[d]));
                    let (ck, cv) = &cache[d];
                    let nk = Tensor::cat(&[ck, &k.narrow(-2, at, new[d])], -2);
                    let nv = Tensor::cat(&[cv, &v.narrow(-2, at, new[d])], -2);
                    ks.push(nk.shallow_clone());
                    vs.push(nv.shallow_clone());
                    cache[d] = (nk, nv);
                }
                let kept: Vec<i64> = cache.iter().map(|(ck, _)| ck.size()[2]).collect();
                let o = SdpaOptions {
                    is_causal: true,
                    window: w,
                    documents: Some(Documents::from_cu_seqlens(&cu(&new), &cu(&kept)).unwrap()),
                    backend,
                    ..SdpaOptions::default()
                };
                let out = scaled_dot_product_attention(
                    &Tensor::cat(&qs, -2),
                    &Tensor::cat(&ks, -2),
                    &Tensor::cat(&vs, -2),
                    &o,
                )
                .unwrap();
                let mut row = 0;
                for d in 0..lens.len() {
                    let want = by_ids.narrow(-2, starts[d] + done[d], new[d]);
                    let diff = max_diff(&out.narrow(-2, row, new[d]), &want);
                    assert!(
                        diff < 1e-12,
                        "{w:?} {backend:?} document {d} at {}: {diff}",
                        done[d]
                    );
                    row += new[d];
                    done[d] += new[d];
                }
                chunk = vec![1; lens.len()];
            }
        }
    }
}

/// Ids `(N, L)`: row 0 from the document lengths, row 1 one document of everything.
fn per_row_ids(lengths: &[i64]) -> Tensor {
    let total: i64 = lengths.iter().sum();
    let row0: Vec<i64> = (0..lengths.len() as i64)
        .flat_map(|d| std::iter::repeat_n(d, lengths[d as usize] as usize))
        .collect();
    Tensor::stack(
        &[
            Tensor::from_slice(&row0),
            Tensor::zeros([total], (Kind::Int64, Device::Cpu)),
        ],
        0,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Documents of unequal query and key lengths (empty ones too) with causal masking,
    /// windows, GQA and ALiBi: the fused kernel given the mask agrees with the math path,
    /// outputs and the gradients of query, key and value (f64).
    #[test]
    fn fused_equals_math_for_documents_of_unequal_lengths(
        seed in 0i64..1000,
        docs in proptest::collection::vec((0i64..4, 0i64..5), 1..4),
        causal: bool, w in proptest::option::of((-1i64..3, -1i64..3)),
        gqa: bool, alibi: bool, per_row: bool,
    ) {
        tch::manual_seed(seed);
        let lq: Vec<i64> = docs.iter().map(|d| d.0).collect();
        let lk: Vec<i64> = docs.iter().map(|d| d.1).collect();
        let (l, s): (i64, i64) = (lq.iter().sum(), lk.iter().sum());
        let hq = if gqa { 4 } else { 2 };
        let q = randn(&[2, hq, l, 3]).set_requires_grad(true);
        let k = randn(&[2, 2, s, 3]).set_requires_grad(true);
        let v = randn(&[2, 2, s, 2]).set_requires_grad(true);
        let mut got = vec![];
        for backend in [Backend::Fused, Backend::Math] {
            let documents = if per_row {
                Documents::new(per_row_ids(&lq), per_row_ids(&lk)).unwrap()
            } else {
                Documents::from_cu_seqlens(&cu(&lq), &cu(&lk)).unwrap()
            };
            let o = SdpaOptions {
                is_causal: causal,
                window: window(w),
                enable_gqa: gqa,
                alibi: alibi.then_some(tch_attention::attention::Alibi::Bloom),
                documents: Some(documents),
                backend,
                ..SdpaOptions::default()
            };
            let out = scaled_dot_product_attention(&q, &k, &v, &o).unwrap();
            for t in [&q, &k, &v] {
                let mut t = t.shallow_clone();
                t.zero_grad();
            }
            if out.numel() > 0 {
                (&out * out.ones_like().cumsum(-1, Kind::Double)).sum(Kind::Double).backward();
            }
            let grads: Vec<Tensor> = [&q, &k, &v]
                .iter()
                .map(|t| if t.grad().defined() { t.grad().copy() } else { t.zeros_like() })
                .collect();
            got.push((out.detach(), grads));
        }
        let ((fused, fg), (math, mg)) = (&got[0], &got[1]);
        prop_assert!(max_diff(fused, math) < 1e-10, "output {}", max_diff(fused, math));
        for (a, b) in fg.iter().zip(mg) {
            prop_assert!(max_diff(a, b) < 1e-10, "gradient {}", max_diff(a, b));
        }
    }
}
