//! A decoder layer's seven projections under their GGUF names, for the loaders that
//! replace them (int4/int8 in `quant.rs`, the file's blocks in `blocks.rs`).

use super::layer::LlamaDecoderLayer;
use crate::nn::Projection;

/// The layer's projections under their GGUF names (`blk.{i}.{name}.weight`).
pub(super) fn projections_mut(
    layer: &mut LlamaDecoderLayer,
) -> [(&'static str, &mut Projection); 7] {
    let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
    [
        ("attn_q", &mut a.q_proj),
        ("attn_k", &mut a.k_proj),
        ("attn_v", &mut a.v_proj),
        ("attn_output", &mut a.o_proj),
        ("ffn_gate", &mut m.gate_proj),
        ("ffn_up", &mut m.up_proj),
        ("ffn_down", &mut m.down_proj),
    ]
}

/// Whether the GGUF tensor `name` is a layer projection (`blk.{i}.{attn_q ...}.weight`,
/// the names of [`projections_mut`]).
pub(super) fn is_projection(name: &str) -> bool {
    const NAMES: [&str; 7] = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    name.strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(_, r)| r.strip_suffix(".weight"))
        .is_some_and(|m| NAMES.contains(&m))
}
