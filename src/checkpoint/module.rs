//! The crate's modules as PyTorch state_dicts: strict loading (`load_state_dict(strict=
//! True)`), loading from any layout in any checkpoint file, and saving in any layout.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::Path;

use tch::nn;
use tch::Tensor;

use super::layout::{convert_block, BiasPolicy, ConvertOptions, Layout};
use crate::attention::multihead_attention::{MultiheadAttention, MultiheadAttentionConfig};
use crate::error::Result;
use crate::io::read_checkpoint;
use crate::io::write_safetensors_new;
use crate::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use crate::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
use crate::nn::state_dict::load_strict;

/// A module whose tensors are a PyTorch state_dict in one of the [`Layout`]s.
pub trait StateDict {
    /// The layout of [`StateDict::named_tensors`]' keys.
    fn layout(&self) -> Layout;
    /// Parameters and persistent buffers under PyTorch's keys, relative to the module;
    /// the tensors share storage with the module's.
    fn named_tensors(&self) -> Vec<(String, Tensor)>;
    /// What converting to or from this module's layout needs: heads, block size, and
    /// whether it has biases.
    fn convert_options(&self) -> ConvertOptions;
}

/// Copies `tensors` into `module`, like `load_state_dict(strict=True)`: every key
/// present, nothing else, every shape equal. Values are converted to each tensor's
/// dtype and device. `source` names where they came from, for errors.
pub fn load_state_dict(
    module: &(impl StateDict + ?Sized),
    tensors: &BTreeMap<String, Tensor>,
    source: &str,
) -> Result<()> {
    load_strict(module.named_tensors(), tensors, source)
}

/// Loads the block under `prefix` of a checkpoint file (safetensors or torch.save) in
/// `layout` into `module`, converting to the module's own layout.
pub fn load_checkpoint(
    module: &(impl StateDict + ?Sized),
    file: impl AsRef<Path>,
    prefix: &str,
    layout: Layout,
) -> Result<()> {
    let file = file.as_ref();
    let source = file.display().to_string();
    let ckpt = read_checkpoint(file)?;
    let mut opts = module.convert_options();
    opts.prefix = Some(prefix.to_string());
    let tensors = match convert_block(&ckpt.tensors, layout, module.layout(), &opts, &source) {
        Ok(t) => t,
        // Forms only the module's own layout has (torch-mha with kdim != embed_dim) do
        // not convert: then the keys under the prefix, as they are, for the strict load.
        Err(_) if layout == module.layout() => {
            let prefix = match prefix {
                "" => String::new(),
                p if p.ends_with('.') => p.to_string(),
                p => format!("{p}."),
            };
            ckpt.tensors
                .iter()
                .filter_map(|(k, v)| {
                    Some((k.strip_prefix(&prefix)?.to_string(), v.shallow_clone()))
                })
                .collect()
        }
        Err(e) => return Err(e),
    };
    load_state_dict(
        module,
        &tensors,
        &format!("{source} ({layout} at {prefix:?})"),
    )
}

/// Writes `module` as a safetensors state_dict in `layout`, atomically; an existing
/// `file` is an error unless `replace`. PyTorch loads it with `load_state_dict(strict=
/// True)` into the module of that layout.
pub fn save_checkpoint(
    module: &(impl StateDict + ?Sized),
    file: impl AsRef<Path>,
    layout: Layout,
    replace: bool,
) -> Result<()> {
    let file = file.as_ref();
    let source = file.display().to_string();
    let own: BTreeMap<String, Tensor> = module.named_tensors().into_iter().collect();
    let tensors = if layout == module.layout() {
        own
    } else {
        convert_block(
            &own,
            module.layout(),
            layout,
            &module.convert_options(),
            &source,
        )?
    };
    let mut meta = BTreeMap::new();
    meta.insert("layout".to_string(), layout.name().to_string());
    write_safetensors_new(
        file,
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &meta,
        replace,
    )
}

/// Builds a module and loads it from a checkpoint file.
pub trait FromCheckpoint: StateDict + Sized {
    /// The module's configuration (`CausalSelfAttentionConfig`, ...): the sizes the
    /// checkpoint's tensors must have.
    type Config;
    /// The module under `path` with `config`, its weights read from the block under
    /// `prefix` of `file`, which holds them in `layout`.
    fn from_checkpoint<'a>(
        path: impl Borrow<nn::Path<'a>>,
        config: Self::Config,
        file: impl AsRef<Path>,
        prefix: &str,
        layout: Layout,
    ) -> Result<Self>;
}

fn bias_policy(bias: bool) -> BiasPolicy {
    if bias {
        BiasPolicy::Yes
    } else {
        BiasPolicy::No
    }
}

fn linear_tensors(out: &mut Vec<(String, Tensor)>, name: &str, l: &crate::nn::Linear) {
    out.push((format!("{name}.weight"), l.weight.shallow_clone()));
    if let Some(b) = &l.bias {
        out.push((format!("{name}.bias"), b.shallow_clone()));
    }
}

impl StateDict for MultiHeadAttention {
    fn layout(&self) -> Layout {
        Layout::Lecture
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (h, head) in self.heads.iter().enumerate() {
            linear_tensors(&mut out, &format!("heads.{h}.key"), &head.key);
            linear_tensors(&mut out, &format!("heads.{h}.query"), &head.query);
            linear_tensors(&mut out, &format!("heads.{h}.value"), &head.value);
            out.push((format!("heads.{h}.tril"), head.tril.shallow_clone()));
        }
        linear_tensors(&mut out, "proj", &self.proj);
        out
    }
    fn convert_options(&self) -> ConvertOptions {
        ConvertOptions {
            heads: Some(self.config.num_heads),
            block_size: Some(self.config.block_size),
            bias: BiasPolicy::Yes,
            mask_buffer: Some(false),
            ..Default::default()
        }
    }
}

impl StateDict for CausalSelfAttention {
    fn layout(&self) -> Layout {
        Layout::NanoGpt
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        linear_tensors(&mut out, "c_attn", &self.c_attn);
        linear_tensors(&mut out, "c_proj", &self.c_proj);
        if let Some(sinks) = &self.sinks {
            out.push(("sinks".into(), sinks.shallow_clone()));
        }
        out
    }
    fn convert_options(&self) -> ConvertOptions {
        // nanoGPT's flash path: no `bias` mask buffer in the state_dict.
        ConvertOptions {
            heads: Some(self.config.n_head),
            block_size: Some(self.config.block_size),
            bias: bias_policy(self.config.bias),
            mask_buffer: Some(false),
            ..Default::default()
        }
    }
}

impl StateDict for MultiheadAttention {
    fn layout(&self) -> Layout {
        Layout::TorchMha
    }
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        if let Some(w) = &self.in_proj_weight {
            out.push(("in_proj_weight".to_string(), w.shallow_clone()));
        }
        if let Some([q, k, v]) = &self.qkv_proj_weight {
            out.push(("q_proj_weight".to_string(), q.shallow_clone()));
            out.push(("k_proj_weight".to_string(), k.shallow_clone()));
            out.push(("v_proj_weight".to_string(), v.shallow_clone()));
        }
        if let Some(b) = &self.in_proj_bias {
            out.push(("in_proj_bias".to_string(), b.shallow_clone()));
        }
        linear_tensors(&mut out, "out_proj", &self.out_proj);
        for (name, t) in [("bias_k", &self.bias_k), ("bias_v", &self.bias_v)] {
            if let Some(t) = t {
                out.push((name.to_string(), t.shallow_clone()));
            }
        }
        out
    }
    fn convert_options(&self) -> ConvertOptions {
        ConvertOptions {
            heads: Some(self.config.num_heads),
            bias: bias_policy(self.config.bias),
            mask_buffer: Some(false),
            ..Default::default()
        }
    }
}

macro_rules! from_checkpoint {
    ($module:ty, $config:ty) => {
        impl FromCheckpoint for $module {
            type Config = $config;
            fn from_checkpoint<'a>(
                path: impl Borrow<nn::Path<'a>>,
                config: $config,
                file: impl AsRef<Path>,
                prefix: &str,
                layout: Layout,
            ) -> Result<Self> {
                let module = <$module>::new(path, config)?;
                load_checkpoint(&module, file, prefix, layout)?;
                Ok(module)
            }
        }
    };
}

from_checkpoint!(MultiHeadAttention, MultiHeadConfig);
from_checkpoint!(CausalSelfAttention, CausalSelfAttentionConfig);
from_checkpoint!(MultiheadAttention, MultiheadAttentionConfig);
