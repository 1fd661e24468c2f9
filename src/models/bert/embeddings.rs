//! `transformers.models.bert.modeling_bert.BertEmbeddings`: word + absolute position +
//! token type embeddings, summed, then LayerNorm (dropout is a no-op at inference).
//!
//! VarStore names (under `embeddings`): `word_embeddings.weight`,
//! `position_embeddings.weight`, `token_type_embeddings.weight`, `LayerNorm.weight`,
//! `LayerNorm.bias`. The checkpoint's `position_ids` buffer (`arange(512)`) is not a
//! parameter: positions are `0..L` here, as in transformers, which ignores that key.

use std::borrow::Borrow;

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::config::BertConfig;
use crate::error::{Error, Result};
use crate::nn::{layer_norm, LayerNorm};

/// transformers' `BertEmbeddings`: token ids `(N, L)` to vectors `(N, L, E)`.
#[derive(Debug)]
pub struct BertEmbeddings {
    /// `word_embeddings.weight`, `[vocab_size, E]`: one row per token id.
    pub word_embeddings: Tensor,
    /// `position_embeddings.weight`, `[max_position_embeddings, E]`: one row per position.
    pub position_embeddings: Tensor,
    /// `token_type_embeddings.weight`, `[type_vocab_size, E]`: one row per segment (only
    /// row 0 is used).
    pub token_type_embeddings: Tensor,
    /// `LayerNorm`: `LayerNorm(E)` over the sum of the three embeddings.
    pub layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// Builds the tables under `path` for `c`'s sizes, drawn from `normal(0, 0.02)` as
    /// BERT initialises them, until a checkpoint is loaded.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, c: &BertConfig) -> Result<Self> {
        let p = path.borrow();
        // BertPreTrainedModel's init: normal(0, initializer_range); loading replaces it.
        let init = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let table =
            |name: &str, rows: i64| (p / name).f_var("weight", &[rows, c.hidden_size], init);
        Ok(Self {
            word_embeddings: table("word_embeddings", c.vocab_size)?,
            position_embeddings: table("position_embeddings", c.max_position_embeddings)?,
            token_type_embeddings: table("token_type_embeddings", c.type_vocab_size)?,
            layer_norm: layer_norm(p / "LayerNorm", c.hidden_size, c.layer_norm_eps)?,
        })
    }

    /// `input_ids (N, L)` int64 -> `(N, L, E)`; every token has type 0 (one segment).
    /// Ids must be in the vocabulary and `L <= max_position_embeddings`.
    pub fn f_forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let size = input_ids.size();
        let (vocab, max_len) = (
            self.word_embeddings.size()[0],
            self.position_embeddings.size()[0],
        );
        let &[_, l] = size.as_slice() else {
            return Err(Error::shape("input_ids", "(N, L)", &size));
        };
        if input_ids.kind() != Kind::Int64 {
            return Err(Error::Dtype {
                arg: "input_ids".into(),
                expected: "Int64".into(),
                got: input_ids.kind(),
            });
        }
        if l < 1 || l > max_len {
            return Err(Error::shape(
                "input_ids",
                format!("(N, L) with 1 <= L <= max_position_embeddings = {max_len}"),
                &size,
            ));
        }
        if input_ids.numel() > 0 {
            let (lo, hi) = (
                input_ids.f_min()?.f_int64_value(&[])?,
                input_ids.f_max()?.f_int64_value(&[])?,
            );
            if lo < 0 || hi >= vocab {
                return Err(Error::invalid(
                    "input_ids",
                    format!("ids must be in 0..{vocab}, got {lo}..={hi}"),
                ));
            }
        }
        let device = input_ids.device();
        let positions = Tensor::f_arange(l, (Kind::Int64, device))?; // (L)
        let types = Tensor::f_zeros_like(input_ids)?; // (N, L)
        let x = Tensor::f_embedding(&self.word_embeddings, input_ids, -1, false, false)? // (N, L, E)
            .f_add(&Tensor::f_embedding(
                &self.token_type_embeddings,
                &types,
                -1,
                false,
                false,
            )?)?
            .f_add(&Tensor::f_embedding(
                &self.position_embeddings,
                &positions,
                -1,
                false,
                false,
            )?)?; // (L, E) broadcast over N
        self.layer_norm.f_forward(&x)
    }
}
