//! Quantised linear layers (src/nn/quantized_linear.rs) and the quantised Llama
//! (src/models/llama/quant.rs) against PyTorch's arithmetic: the fixtures of
//! scripts/llama_reference.py --only quant (quant_linear.*: gguf-py's Q4_0/Q4_1 blocks
//! parsed in numpy, the product in float64 rounded to bfloat16; tiny/model_q4_1.gguf: the
//! tiny model of tests/llama_modules.rs with its projections in Q4_1), compared with
//! `torch.testing.assert_close`'s bfloat16 tolerances.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use tch_attention::error::Error;
use tch_attention::io::{read_safetensors, Gguf};
use tch_attention::models::llama::{int4_from_gguf, LlamaForCausalLM, Quant};
use tch_attention::nn::{Int4Linear, Int8Linear, Projection};
use tch_attention::parity::compare_tensors;

fn llama_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama")
}

fn reference() -> BTreeMap<String, Tensor> {
    read_safetensors(&llama_fixtures().join("quant_linear.safetensors"))
        .unwrap()
        .tensors
}

fn linear_gguf() -> Gguf {
    Gguf::read(&llama_fixtures().join("quant_linear.gguf")).unwrap()
}

/// `torch.testing.assert_close(actual, expected)` with the expected dtype's tolerances.
fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) {
    let check = compare_tensors(name, actual, expected).unwrap();
    assert!(
        check.failure.is_none(),
        "{name}: {:?} (max abs {:.3e})",
        check.failure,
        check.max_abs
    );
}

#[test]
fn int4_layers_of_q4_blocks_equal_pytorch_arithmetic() {
    let (g, r) = (linear_gguf(), reference());
    for name in ["q4_0", "q4_1"] {
        let mut layer = int4_from_gguf(&g, name, None).unwrap();
        assert_eq!((layer.out_features, layer.in_features), (48, 96));
        let y = layer.f_forward(&r["x"]).unwrap(); // (2, 3, 96) -> (2, 3, 48)
        assert_close(name, &y, &r[&format!("y_{name}")]);
        layer.fused = false;
        assert_close(
            &format!("{name} unfused"),
            &layer.f_forward(&r["x"]).unwrap(),
            &y,
        );
        // A float32 input gives a float32 output, from the same bf16 arithmetic.
        let y32 = layer.f_forward(&r["x"].to_kind(Kind::Float)).unwrap();
        assert_eq!(y32.kind(), Kind::Float);
        assert_close(name, &y32.to_kind(Kind::BFloat16), &y);
    }
}

#[test]
fn int8_layer_equals_pytorch_arithmetic() {
    let (g, r) = (linear_gguf(), reference());
    let mut layer = Int8Linear::from_float(&g.tensor("f32").unwrap()).unwrap();
    let y = layer.f_forward(&r["x"]).unwrap();
    assert_close("int8", &y, &r["y_int8"]);
    layer.fused = false;
    assert_close("int8 unfused", &layer.f_forward(&r["x"]).unwrap(), &y);
}

fn set_fused(model: &mut LlamaForCausalLM, fused: bool) -> usize {
    let mut n = 0;
    for layer in &mut model.model.layers {
        let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
        for p in [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ] {
            match p {
                Projection::Int4(l) => l.fused = fused,
                Projection::Int8(l) => l.fused = fused,
                Projection::Float(_) | Projection::Block(_) => continue,
            }
            n += 1;
        }
    }
    n
}

#[test]
fn quantised_tiny_model_equals_its_math_path_in_bf16() {
    let g = Gguf::read(&llama_fixtures().join("tiny/model_q4_1.gguf")).unwrap();
    let ids = read_safetensors(&llama_fixtures().join("tiny/reference.safetensors"))
        .unwrap()
        .tensors["input_ids"]
        .shallow_clone();
    for quant in [Quant::Int4, Quant::Int8] {
        let (mut vs, mut model) =
            LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, quant).unwrap();
        vs.set_kind(Kind::BFloat16);
        let fused = model.f_forward(&ids, None).unwrap();
        assert_eq!(fused.kind(), Kind::BFloat16);
        assert_eq!(set_fused(&mut model, false), 14, "{quant:?}: 2 layers of 7");
        let unfused = model.f_forward(&ids, None).unwrap();
        assert_close(&format!("{quant:?} logits"), &fused, &unfused);
    }
}

#[test]
fn int4_keeps_the_files_codes_in_hugging_face_row_order() {
    // The int4 weights, dequantised, are gguf-py's Q4_1 values up to the bfloat16
    // rounding of each block's scale and zero, with the query/key rows unpermuted as
    // from_gguf unpermutes the float ones.
    let g = Gguf::read(&llama_fixtures().join("tiny/model_q4_1.gguf")).unwrap();
    let (_, float) = LlamaForCausalLM::from_gguf(&g, Device::Cpu).unwrap();
    let (_, int4) = LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, Quant::Int4).unwrap();
    let pairs = [
        (
            &float.model.layers[1].self_attn.q_proj,
            &int4.model.layers[1].self_attn.q_proj,
        ),
        (
            &float.model.layers[1].self_attn.k_proj,
            &int4.model.layers[1].self_attn.k_proj,
        ),
        (
            &float.model.layers[0].mlp.down_proj,
            &int4.model.layers[0].mlp.down_proj,
        ),
    ];
    for (f, q) in pairs {
        let (Projection::Float(f), Projection::Int4(q)) = (f, q) else {
            panic!("expected a float and an int4 projection");
        };
        let w = q.dequantized_weight().unwrap();
        let diff = (&w - &f.weight).abs().max().double_value(&[]);
        let bound = f.weight.abs().max().double_value(&[]) * 2f64.powi(-7);
        assert!(
            diff <= bound,
            "max |int4 - float| = {diff:.3e} > {bound:.3e}"
        );
    }
}

#[test]
fn int4_needs_q4_blocks_and_kernel_shapes() {
    let g = Gguf::read(&llama_fixtures().join("tiny/model.gguf")).unwrap();
    match LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, Quant::Int4) {
        Err(Error::Invalid { arg, reason }) => {
            assert_eq!(arg, "quant");
            assert!(
                reason.contains("blk.0.attn_q.weight") && reason.contains("F32"),
                "{reason}"
            );
        }
        other => panic!("expected Error::Invalid, got {:?}", other.map(|_| ())),
    }
    // int8 quantises float weights of any type.
    assert!(LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, Quant::Int8).is_ok());
    let ones = |n, k| Tensor::ones([n, k], (Kind::Float, Device::Cpu));
    let codes = |n, k| Tensor::zeros([n, k], (Kind::Uint8, Device::Cpu));
    // K = 48 is not a multiple of the group size 32.
    let e = Int4Linear::new(&codes(16, 48), &ones(16, 1), &ones(16, 1), 32).unwrap_err();
    assert!(
        matches!(e, Error::Shape { ref arg, .. } if arg == "codes"),
        "{e}"
    );
    // N = 8: the kernel tiles rows by 16.
    let e = Int4Linear::new(&codes(8, 32), &ones(8, 1), &ones(8, 1), 32).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    let e = Int4Linear::new(&codes(16, 32), &ones(16, 1), &ones(16, 1), 16).unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref arg, .. } if arg == "group_size"),
        "{e}"
    );
    let e = Int4Linear::new(
        &Tensor::full([16, 32], 16, (Kind::Uint8, Device::Cpu)),
        &ones(16, 1),
        &ones(16, 1),
        32,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref arg, .. } if arg == "codes"),
        "{e}"
    );
    let e = Int4Linear::new(&codes(16, 32), &ones(16, 2), &ones(16, 1), 32).unwrap_err();
    assert!(
        matches!(e, Error::Shape { ref arg, .. } if arg == "scales"),
        "{e}"
    );
    let layer = Int4Linear::new(&codes(16, 32), &ones(16, 1), &ones(16, 1), 32).unwrap();
    let e = layer.f_forward(&ones(2, 31)).unwrap_err();
    assert!(
        matches!(e, Error::Shape { ref arg, .. } if arg == "x"),
        "{e}"
    );
}

/// The tiny model's int4 layers in bfloat16, its ids, and its float embedding table.
fn tiny_int4() -> (LlamaForCausalLM, Tensor, Tensor) {
    let g = Gguf::read(&llama_fixtures().join("tiny/model_q4_1.gguf")).unwrap();
    let ids = read_safetensors(&llama_fixtures().join("tiny/reference.safetensors"))
        .unwrap()
        .tensors["input_ids"]
        .shallow_clone();
    let (mut vs, model) =
        LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, Quant::Int4).unwrap();
    vs.set_kind(Kind::BFloat16);
    let table = model.model.embed_tokens.copy();
    (model, ids, table)
}

#[test]
fn a_quantised_head_runs_the_logits_and_equals_its_math_path() {
    for head in [Quant::Int8, Quant::Int4] {
        let (mut model, ids, table) = tiny_int4();
        model.quantize_head(head).unwrap();
        let fused = model.f_forward(&ids, None).unwrap();
        let last = model.f_forward_last(&ids, None).unwrap();
        assert_close(&format!("{head:?} last"), &last, &fused.select(1, -1));
        match model.quantized_head.as_mut().unwrap() {
            Projection::Int4(l) => l.fused = false,
            Projection::Int8(l) => l.fused = false,
            Projection::Float(_) | Projection::Block(_) => panic!("{head:?}: not an int head"),
        }
        let unfused = model.f_forward(&ids, None).unwrap();
        assert_close(&format!("{head:?} head logits"), &fused, &unfused);
        // The embedding lookup still reads the float table, untouched.
        assert!(model.model.embed_tokens.equal(&table), "{head:?}");
    }
    // The logits come from the quantised head: with its scales zeroed they are zero.
    let (mut model, ids, _) = tiny_int4();
    model.quantize_head(Quant::Int8).unwrap();
    if let Some(Projection::Int8(l)) = model.quantized_head.as_mut() {
        l.scales = l.scales.zeros_like();
    }
    let logits = model.f_forward(&ids, None).unwrap();
    assert_eq!(logits.abs().max().double_value(&[]), 0.0);
}

#[test]
fn int4_from_float_is_within_half_a_step_of_the_weight() {
    // Round to nearest between each group's minimum and maximum: every weight is within
    // half a step (scale / 2) of its dequantised value, plus the bf16 rounding of the
    // group's zero; a constant group is exact.
    tch::manual_seed(0);
    let w = Tensor::randn([32, 64], (Kind::Float, Device::Cpu));
    let _ = w.narrow(1, 32, 32).narrow(0, 0, 1).fill_(0.25);
    let layer = Int4Linear::from_float(&w, 32).unwrap();
    let err = (layer.dequantized_weight().unwrap() - &w)
        .abs()
        .view([32, 2, 32]);
    let sz = layer.scales_and_zeros.to_kind(Kind::Float); // [K/G, N, 2]
    let scale = sz.select(2, 0).transpose(0, 1).unsqueeze(2); // [N, K/G, 1]
    let zero = sz.select(2, 1).transpose(0, 1).unsqueeze(2).abs();
    let bound = scale / 2.0 + zero * 2f64.powi(-8);
    let excess = (err - bound).max().double_value(&[]);
    assert!(
        excess <= 1e-6,
        "int4 error exceeds its bound by {excess:.3e}"
    );
    let e = Int4Linear::from_float(&w, 48).unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref arg, .. } if arg == "group_size"),
        "{e}"
    );
}

#[test]
fn file_blocks_keep_every_projection_and_the_head_in_hugging_face_row_order() {
    // Quant::Blocks: each projection's weight, dequantised, is exactly the float model's
    // (the file's Q4_1 values with llama.cpp's query/key rows unpermuted), the head is
    // the embedding's blocks, and the logits are the float model's up to the 8-bit
    // activations the integer kernels quantise to.
    let g = Gguf::read(&llama_fixtures().join("tiny/model_q4_1.gguf")).unwrap();
    let (_, float) = LlamaForCausalLM::from_gguf(&g, Device::Cpu).unwrap();
    let (_, blocks) =
        LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, Quant::Blocks).unwrap();
    let weight = |p: &Projection| match p {
        Projection::Block(b) => b.dequantized().unwrap(),
        Projection::Float(l) => l.weight.shallow_clone(),
        other => panic!("{other:?}"),
    };
    let mut n = 0;
    for (f, b) in float.model.layers.iter().zip(&blocks.model.layers) {
        for (pf, pb) in [
            (&f.self_attn.q_proj, &b.self_attn.q_proj),
            (&f.self_attn.k_proj, &b.self_attn.k_proj),
            (&f.self_attn.v_proj, &b.self_attn.v_proj),
            (&f.self_attn.o_proj, &b.self_attn.o_proj),
            (&f.mlp.gate_proj, &b.mlp.gate_proj),
            (&f.mlp.up_proj, &b.mlp.up_proj),
            (&f.mlp.down_proj, &b.mlp.down_proj),
        ] {
            n += usize::from(matches!(pb, Projection::Block(_)));
            assert!(weight(pf).equal(&weight(pb)));
        }
    }
    assert_eq!(n, 14, "2 layers of 7 Q4_1 projections");
    let ids = read_safetensors(&llama_fixtures().join("tiny/reference.safetensors"))
        .unwrap()
        .tensors["input_ids"]
        .shallow_clone();
    let want = float.f_forward(&ids, None).unwrap();
    let got = blocks.f_forward(&ids, None).unwrap();
    let rel = (&got - &want).norm().double_value(&[]) / want.norm().double_value(&[]);
    eprintln!("blocks against float logits: relative error {rel:.2e}");
    // Each projection's error is bounded by its activations' quantisation step
    // (tests/block_linear.rs); over two layers of a 32-wide model that compounds to a
    // few percent (3.9e-2 measured). A wrong row order or block decoding gives O(1).
    assert!(rel < 1e-1, "relative error {rel}");
}
