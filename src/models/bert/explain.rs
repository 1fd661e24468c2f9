//! `attn explain` for the encoder: one layer's attention for one sentence
//! ([`crate::explain`] draws and ranks it).

use super::Pretrained;
use crate::error::Result;
use crate::explain::{check_layer, Explanation, Heads};

/// The tokens a BERT tokenizer adds around every sentence.
fn is_special(token: &str) -> bool {
    matches!(token, "[CLS]" | "[SEP]" | "[PAD]")
}

impl Pretrained {
    /// Runs `sentence` through the encoder and keeps layer `layer`'s attention.
    pub fn explain(&self, sentence: &str, layer: usize, heads: Heads) -> Result<Explanation> {
        check_layer(layer, self.model.layers.len())?;
        heads.check(self.model.config.num_attention_heads as usize)?;
        let (encoding, attentions) = self.attentions(sentence)?;
        let special = encoding.tokens.iter().map(|t| is_special(t)).collect();
        // (H, L, L)
        Explanation::new(
            sentence,
            encoding.tokens,
            special,
            layer,
            heads,
            &attentions[layer],
        )
    }
}
