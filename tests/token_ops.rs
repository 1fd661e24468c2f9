//! One token's float32 operations on slices (src/nn/token_ops.rs) against the libtorch
//! modules they mirror, on seeded random inputs: `RmsNorm` (Llama's and Gemma's),
//! `apply_rotary` (bit for bit: the same products and sums in the same order) and
//! `scaled_dot_product_attention` with grouped heads, a window's rows and
//! soft-capping, within float32's `assert_close` tolerances (rtol 1.3e-6, atol 1e-5).

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::{scaled_dot_product_attention, SdpaOptions};
use tch_attention::nn::token_ops::{self, AttendOptions, KvHead};
use tch_attention::nn::{apply_rotary, rms_norm, rms_norm_unit_offset};

const F: (Kind, Device) = (Kind::Float, Device::Cpu);

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap()
}

/// torch.testing.assert_close for float32.
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound = 1e-5 + 1.3e-6 * w.abs();
        assert!((g - w).abs() <= bound, "{what}[{i}]: {g} against {w}");
    }
}

#[test]
fn rms_norm_matches_llamas_and_gemmas_modules() {
    tch::manual_seed(0);
    for (e, rows) in [(576, 1), (640, 1), (256, 4), (13, 3)] {
        for gemma in [false, true] {
            let vs = VarStore::new(Device::Cpu);
            let mut norm = match gemma {
                true => rms_norm_unit_offset(vs.root() / "n", e, 1e-6).unwrap(),
                false => rms_norm(vs.root() / "n", e, 1e-5).unwrap(),
            };
            norm.weight = Tensor::randn([e], F) * 0.5;
            let x = Tensor::randn([rows, e], F) * 3.0;
            let want = floats(&norm.f_forward(&x).unwrap());
            let (xs, w) = (floats(&x), floats(&norm.weight));
            let mut got = vec![0f32; xs.len()];
            token_ops::rms_norm(&xs, &w, gemma, norm.eps, &mut got);
            assert_close(&got, &want, &format!("E = {e}, gemma {gemma}"));
            let mut in_place = xs.clone();
            token_ops::rms_norm_in_place(&mut in_place, &w, gemma, norm.eps);
            assert_eq!(in_place, got, "in place, E = {e}");
        }
    }
}

#[test]
fn rotation_is_apply_rotary_bit_for_bit() {
    tch::manual_seed(1);
    for (heads, d) in [(9, 64), (4, 256), (1, 2)] {
        let x = Tensor::randn([1, heads, 1, d], F);
        let angles = Tensor::randn([1, 1, d / 2], F) * 100.0;
        let emb = Tensor::cat(&[&angles, &angles], -1);
        let (cos, sin) = (emb.cos(), emb.sin());
        let want = floats(&apply_rotary(&x, &cos, &sin).unwrap());
        let mut got = floats(&x);
        token_ops::rotate(&mut got, &floats(&cos), &floats(&sin));
        assert_eq!(got, want, "H = {heads}, D = {d}");
    }
}

/// `attend` against SDPA of one query `(1, H, 1, D)` over keys `(1, Hkv, S, D)`.
fn attention_case(h: i64, hkv: i64, s: i64, d: i64, softcap: Option<f64>) {
    let q = Tensor::randn([1, h, 1, d], F);
    let k = Tensor::randn([1, hkv, s, d], F);
    let v = Tensor::randn([1, hkv, s, d], F);
    let scale = 0.7 / (d as f64).sqrt();
    let options = SdpaOptions {
        enable_gqa: h != hkv,
        scale: Some(scale),
        softcap,
        ..Default::default()
    };
    let want = floats(&scaled_dot_product_attention(&q, &k, &v, &options).unwrap());
    let (ks, vs) = (floats(&k), floats(&v));
    let per_head = (s * d) as usize;
    let heads: Vec<KvHead> = (0..hkv as usize)
        .map(|g| KvHead {
            keys: &ks[g * per_head..(g + 1) * per_head],
            values: &vs[g * per_head..(g + 1) * per_head],
        })
        .collect();
    let mut got = vec![0f32; want.len()];
    let opts = AttendOptions {
        scale: scale as f32,
        softcap: softcap.map(|c| c as f32),
    };
    token_ops::attend(
        &floats(&q),
        &heads,
        d as usize,
        opts,
        &mut got,
        &mut Vec::new(),
    )
    .unwrap();
    let what = format!("H {h}, Hkv {hkv}, S {s}, D {d}, softcap {softcap:?}");
    assert_close(&got, &want, &what);
}

#[test]
fn one_query_attention_matches_sdpa_with_grouped_heads() {
    tch::manual_seed(2);
    for (h, hkv, s, d) in [
        (9, 3, 33, 64),
        (4, 1, 600, 256),
        (4, 4, 1, 16),
        (16, 2, 7, 8),
    ] {
        attention_case(h, hkv, s, d, None);
    }
    attention_case(8, 4, 40, 32, Some(50.0));
    attention_case(8, 4, 40, 32, Some(0.5));
}

#[test]
fn attention_rejects_mismatched_sizes() {
    let q = vec![0f32; 6 * 4];
    let keys = vec![0f32; 4 * 3];
    let heads = [KvHead {
        keys: &keys,
        values: &keys,
    }; 4];
    let mut out = vec![0f32; 24];
    let opts = AttendOptions {
        scale: 1.0,
        softcap: None,
    };
    // 6 query heads of D = 4 over 4 key/value heads: not a whole group each.
    let e = token_ops::attend(&q, &heads, 4, opts, &mut out, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("multiple of Hkv"), "{e}");
}
