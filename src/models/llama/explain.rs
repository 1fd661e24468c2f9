//! `attn explain` for the decoder: one layer's causal attention for one text, the
//! weights transformers' eager attention returns with `output_attentions=True`.

use tch::Tensor;

use super::{LlamaAttention, LlamaForCausalLM, LlamaModel, LlamaTokenizer};
use crate::attention::{scaled_dot_product_attention_with_weights, SdpaOptions};
use crate::error::{Error, Result};
use crate::explain::{check_layer, Explanation, Heads};

impl LlamaAttention {
    /// The weights `(N, H, L, L)` of `x` `(N, L, E)` with the rotary `cos`, `sin`
    /// `(N, L, D)` of positions `0..L`, no cache: each query's softmax over the keys up to
    /// its own, within the sliding window if the layer has one (the math path; key/value
    /// heads serve their groups of query heads).
    pub fn f_weights(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.f_qkv(x, cos, sin)?;
        let options = SdpaOptions {
            is_causal: true,
            enable_gqa: self.num_heads != self.num_kv_heads,
            window: self.window,
            scale: self.scale,
            softcap: self.softcap,
            ..Default::default()
        };
        Ok(scaled_dot_product_attention_with_weights(&q, &k, &v, &options)?.weights)
    }
}

impl LlamaModel {
    /// Layer `layer`'s attention weights `(N, H, L, L)` for `input_ids` `(N, L)`: the
    /// layers below it run as in [`LlamaModel::f_forward`], without a cache.
    pub fn f_attentions(&self, input_ids: &Tensor, layer: usize) -> Result<Tensor> {
        check_layer(layer, self.layers.len())?;
        let (mut x, rope) = self.f_embed(input_ids, &[0])?;
        for below in &self.layers[..layer] {
            let (cos, sin) = rope.of(below);
            x = below.f_forward(&x, cos, sin, None)?;
        }
        let at = &self.layers[layer];
        let h = at.input_layernorm.f_forward(&x)?;
        let (cos, sin) = rope.of(at);
        at.self_attn.f_weights(&h, cos, sin)
    }
}

impl LlamaForCausalLM {
    /// Runs `text` (tokenised as `tokenizer(text)`) through the decoder and keeps layer
    /// `layer`'s attention; each token is labelled with its own text.
    pub fn explain(
        &self,
        tokenizer: &LlamaTokenizer,
        text: &str,
        layer: usize,
        heads: Heads,
    ) -> Result<Explanation> {
        check_layer(layer, self.model.layers.len())?;
        heads.check(self.config.num_attention_heads as usize)?;
        let ids = tokenizer.encode(text)?;
        if ids.is_empty() {
            return Err(Error::invalid("text", "has no tokens"));
        }
        let device = self.lm_head_weight().device();
        let input = Tensor::from_slice(&ids).f_to(device)?.f_unsqueeze(0)?; // (1, L)
        let all = self.model.f_attentions(&input, layer)?.f_squeeze_dim(0)?; // (H, L, L)
        let tokens = ids
            .iter()
            .map(|&id| tokenizer.decode(&[id]))
            .collect::<Result<Vec<_>>>()?;
        let special = ids.iter().map(|&id| tokenizer.is_special(id)).collect();
        Explanation::new(text, tokens, special, layer, heads, &all)
    }
}
