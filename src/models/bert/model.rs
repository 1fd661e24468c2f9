//! `transformers.BertModel` at inference: embeddings, `num_hidden_layers` encoder
//! layers, and the pooler (`tanh(dense(h[:, 0]))`) when the checkpoint has one.
//!
//! Built under the VarStore root, so its names are the checkpoint's keys
//! (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`,
//! `pooler.dense.weight`, ...) and [`load_into`] checks every key and shape. Dropout is
//! left out: this is the model in `eval()` mode, which is how sentence-transformers runs
//! it.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::config::BertConfig;
use super::embeddings::BertEmbeddings;
use super::layer::BertLayer;
use crate::error::{Error, Result};
use crate::io::read_safetensors;
use crate::nn::load_into;
use crate::nn::{linear, Linear};

/// `transformers.BertModel` in eval mode: token ids `(N, L)` to hidden states
/// `(N, L, E)`.
#[derive(Debug)]
pub struct BertModel {
    /// The model's `config.json`.
    pub config: BertConfig,
    /// `embeddings`: word, position and token-type embeddings with their LayerNorm.
    pub embeddings: BertEmbeddings,
    /// `encoder.layer.{i}`: the `num_hidden_layers` encoder layers, in order.
    pub layers: Vec<BertLayer>,
    /// `pooler.dense`, present when the checkpoint has it.
    pub pooler: Option<Linear>,
}

/// What one forward pass gives.
#[derive(Debug)]
pub struct BertOutput {
    /// `(N, L, E)`.
    pub last_hidden_state: Tensor,
    /// Each layer's attention weights `(N, H, L, L)`, when asked for; padded keys get 0.
    pub attentions: Vec<Tensor>,
}

impl BertModel {
    /// A randomly initialised model in `vs`, with a pooler iff `pooler`.
    pub fn new(vs: &VarStore, config: BertConfig, pooler: bool) -> Result<Self> {
        config.validate()?;
        let root = vs.root();
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::new(&root / "encoder" / "layer" / i, &config))
            .collect::<Result<Vec<_>>>()?;
        let e = config.hidden_size;
        Ok(Self {
            embeddings: BertEmbeddings::new(&root / "embeddings", &config)?,
            layers,
            pooler: if pooler {
                Some(linear(&root / "pooler" / "dense", e, e, true)?)
            } else {
                None
            },
            config,
        })
    }

    /// Builds the model for `config` and loads `weights` (a `model.safetensors`) into a
    /// new VarStore on `device`, strictly. `embeddings.position_ids` is dropped, as
    /// transformers drops it (a buffer, not a parameter); the pooler is built when the
    /// file has it.
    pub fn load(config: BertConfig, weights: &Path, device: Device) -> Result<(VarStore, Self)> {
        let name = weights.display().to_string();
        let mut tensors: BTreeMap<String, Tensor> = read_safetensors(weights)?.tensors;
        tensors.remove("embeddings.position_ids");
        let pooler = tensors.contains_key("pooler.dense.weight");
        check_parameter_count(&config, pooler, &tensors, &name)?;
        let vs = VarStore::new(device);
        let model = Self::new(&vs, config, pooler)?;
        for (k, t) in tensors.iter_mut() {
            if t.kind() != Kind::Float {
                return Err(Error::malformed(
                    &name,
                    format!("{k}: expected float32, got {:?}", t.kind()),
                ));
            }
            *t = t.f_to_device(device)?;
        }
        load_into(&vs, &tensors, &name)?;
        Ok((vs, model))
    }

    /// The number of parameters a model of `config` has (with the pooler iff `pooler`);
    /// `None` when it overflows `u64`.
    pub fn parameter_count(config: &BertConfig, pooler: bool) -> Option<u64> {
        let [v, h, l, i, p, t] = [
            config.vocab_size,
            config.hidden_size,
            config.num_hidden_layers,
            config.intermediate_size,
            config.max_position_embeddings,
            config.type_vocab_size,
        ]
        .map(|x| u64::try_from(x).unwrap_or(u64::MAX));
        let linear = |i: u64, o: u64| i.checked_mul(o)?.checked_add(o);
        let norm = h.checked_mul(2)?;
        let embeddings = v
            .checked_add(p)?
            .checked_add(t)?
            .checked_mul(h)?
            .checked_add(norm)?;
        let attention = linear(h, h)?.checked_mul(4)?.checked_add(norm)?;
        let ffn = linear(h, i)?
            .checked_add(linear(i, h)?)?
            .checked_add(norm)?;
        let layers = attention.checked_add(ffn)?.checked_mul(l)?;
        let pooler = if pooler { linear(h, h)? } else { 0 };
        embeddings.checked_add(layers)?.checked_add(pooler)
    }

    /// `input_ids (N, L)` int64 and `attention_mask (N, L)` (nonzero = a real token,
    /// 0 = padding; any integer or bool dtype) -> [`BertOutput`].
    pub fn f_forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        output_attentions: bool,
    ) -> Result<BertOutput> {
        if attention_mask.size() != input_ids.size() {
            return Err(Error::shape(
                "attention_mask",
                format!("{:?} like input_ids", input_ids.size()),
                &attention_mask.size(),
            ));
        }
        let mut x = self.embeddings.f_forward(input_ids)?; // (N, L, E)
        let keep = attention_mask.f_ne(0)?.f_unsqueeze(1)?.f_unsqueeze(1)?; // (N, 1, 1, L)
        let mut attentions = Vec::new();
        for layer in &self.layers {
            let (y, w) = layer.f_forward(&x, &keep, output_attentions)?;
            x = y;
            attentions.extend(w);
        }
        Ok(BertOutput {
            last_hidden_state: x,
            attentions,
        })
    }

    /// BertPooler: `tanh(dense(h[:, 0]))`, `(N, L, E) -> (N, E)`; `None` without a pooler.
    pub fn f_pool(&self, last_hidden_state: &Tensor) -> Result<Option<Tensor>> {
        match &self.pooler {
            None => Ok(None),
            Some(dense) => Ok(Some(
                dense
                    .f_forward(&last_hidden_state.f_select(1, 0)?)?
                    .f_tanh()?,
            )),
        }
    }
}

/// A config must describe exactly the parameters the weights file holds, checked before
/// anything is allocated: a config.json of 64 layers x 16384 beside a 112-byte weights
/// file used to build every parameter (tens of GB) before the shapes were compared.
/// `load_into` then checks every key and shape.
fn check_parameter_count(
    config: &BertConfig,
    pooler: bool,
    tensors: &BTreeMap<String, Tensor>,
    name: &str,
) -> Result<()> {
    config.validate()?;
    let in_file: u64 = tensors.values().map(|t| t.numel() as u64).sum();
    match BertModel::parameter_count(config, pooler) {
        Some(n) if n == in_file => Ok(()),
        n => Err(Error::malformed(
            name,
            format!(
                "config.json describes a model of {} parameters, but the file holds {in_file}",
                n.map_or("more than 2^64".to_string(), |n| n.to_string())
            ),
        )),
    }
}
