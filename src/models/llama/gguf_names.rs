//! Hugging Face parameter names <-> llama.cpp's GGUF names, as transformers' GGUF loader
//! maps them: Llama's (`model.layers.3.self_attn.q_proj.weight` <-> `blk.3.attn_q.weight`),
//! and what each family's files name otherwise (Qwen2's biases, Qwen3's query/key norms,
//! Phi-3's fused projections, Gemma's norms).

use super::config::LlamaConfig;

/// The non-layer parameters' GGUF names.
const FIXED_NAMES: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// The GGUF name of the Hugging Face parameter `hf`, as transformers' GGUF loader maps
/// llama.cpp's names (`model.layers.3.self_attn.q_proj.weight` <-> `blk.3.attn_q.weight`).
pub fn gguf_name(hf: &str) -> Option<String> {
    gguf_name_with(hf, &FIXED_NAMES, llama_module)
}

/// A Llama layer's module under its GGUF name (`self_attn.q_proj.weight` ->
/// `attn_q.weight`).
fn llama_module(module: &str) -> Option<&'static str> {
    Some(match module {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        _ => return None,
    })
}

/// `hf`'s GGUF name: one of `fixed`, or `blk.{i}.{module(rest)}` for
/// `model.layers.{i}.{rest}`; the family's names differ only in `fixed` and `module`.
fn gguf_name_with(
    hf: &str,
    fixed: &[(&str, &str)],
    module: impl Fn(&str) -> Option<&'static str>,
) -> Option<String> {
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, m) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    Some(format!("blk.{layer}.{}", module(m)?))
}

/// The GGUF name of the checkpoint parameter `hf` of a model of `config`'s family, as
/// transformers' GGUF loader maps llama.cpp's names: Llama's, with Qwen2's biases,
/// Qwen3's query/key norms, Phi-3's fused `attn_qkv` and `ffn_up`, and Gemma's norms
/// (`gemma.rs`).
pub fn gguf_name_for(config: &LlamaConfig, hf: &str) -> Option<String> {
    if config.sandwich_norms {
        return gemma3_gguf_name(hf);
    }
    gguf_name_with(hf, &FIXED_NAMES, |module| match module {
        "self_attn.q_proj.bias" => Some("attn_q.bias"),
        "self_attn.k_proj.bias" => Some("attn_k.bias"),
        "self_attn.v_proj.bias" => Some("attn_v.bias"),
        "self_attn.q_norm.weight" => Some("attn_q_norm.weight"),
        "self_attn.k_norm.weight" => Some("attn_k_norm.weight"),
        "self_attn.qkv_proj.weight" => Some("attn_qkv.weight"),
        "mlp.gate_up_proj.weight" => Some("ffn_up.weight"),
        other => llama_module(other),
    })
}

/// The GGUF name of a Gemma 3 parameter, as transformers' GGUF loader maps llama.cpp's
/// names (`model.layers.3.pre_feedforward_layernorm.weight` <-> `blk.3.ffn_norm.weight`).
pub fn gemma3_gguf_name(hf: &str) -> Option<String> {
    // Tied head: no `lm_head.weight`. Gemma's four norms per layer and its query/key
    // norms have names of their own; the projections and the input norm are Llama's.
    gguf_name_with(hf, &FIXED_NAMES[..2], |module| match module {
        "self_attn.q_norm.weight" => Some("attn_q_norm.weight"),
        "self_attn.k_norm.weight" => Some("attn_k_norm.weight"),
        "post_attention_layernorm.weight" => Some("post_attention_norm.weight"),
        "pre_feedforward_layernorm.weight" => Some("ffn_norm.weight"),
        "post_feedforward_layernorm.weight" => Some("post_ffw_norm.weight"),
        other => llama_module(other),
    })
}
