//! The case format (`tch-attention-case/1`, see `docs/parity-cases.md`): one safetensors
//! file holding a module's config, parameters and inputs, and what PyTorch computed.
//! [`Case::read`] loads and validates one; `run.rs` replays it and `compare.rs` checks
//! the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Kind, Tensor};

use super::kind::ModuleKind;
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::io::read_safetensors;

/// The `format` a case must declare.
pub const FORMAT: &str = "tch-attention-case/1";

/// A parity case read from disk.
#[derive(Debug)]
pub struct Case {
    /// The file it was read from (errors name it).
    pub path: PathBuf,
    /// The module, with its typed `config` and `forward` metadata.
    pub spec: Spec,
    /// `seed`: `manual_seed(seed)` runs right before the forward pass.
    pub seed: i64,
    /// `param.<name>` with the prefix removed.
    pub params: BTreeMap<String, Tensor>,
    /// `input.<name>` with the prefix removed (includes `grad_output` when present).
    pub inputs: BTreeMap<String, Tensor>,
    /// `expected.<name>` with the prefix removed: `output`, `attn_weights`,
    /// `grad.input.<name>`, `grad.param.<name>`.
    pub expected: BTreeMap<String, Tensor>,
}

/// The header metadata a case must have. Other keys (`torch_version`, `description`)
/// are informational and allowed.
#[derive(Debug, Deserialize)]
struct Metadata {
    format: String,
    module: String,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    forward: Option<String>,
    seed: String,
}

impl Case {
    /// Reads and validates a case file: its metadata (`docs/parity-cases.md`), then its
    /// shapes, before any tensor is built.
    pub fn read(path: &Path) -> Result<Case> {
        let name = path.display().to_string();
        let bad = |reason: String| Error::malformed(&name, reason);
        // The header is read and checked first (shapes libtorch cannot represent
        // included), before any tensor is built.
        let file = read_safetensors(path)?;
        let (spec, seed) = parse_metadata(&file.metadata).map_err(bad)?;
        let (params, inputs, expected) = split_tensors(file.tensors).map_err(bad)?;
        Ok(Case {
            path: path.to_path_buf(),
            spec,
            seed,
            params,
            inputs,
            expected,
        })
    }

    /// The module it runs.
    pub fn module(&self) -> ModuleKind {
        self.spec.kind()
    }

    /// The dtype the case computes in: its parameters' (its inputs', for sdpa).
    pub fn kind(&self) -> Kind {
        let floating = |m: &BTreeMap<String, Tensor>| {
            m.values().find(|t| t.is_floating_point()).map(|t| t.kind())
        };
        floating(&self.params)
            .or_else(|| floating(&self.inputs))
            .unwrap_or(Kind::Float)
    }

    /// An error naming the case's file.
    pub(crate) fn err(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.path.display().to_string(), reason)
    }
}

/// The module, its typed config and forward arguments, and the seed.
fn parse_metadata(metadata: &BTreeMap<String, String>) -> Result<(Spec, i64), String> {
    let value = serde_json::to_value(metadata).map_err(|e| e.to_string())?;
    let meta = Metadata::deserialize(value)
        .map_err(|e| format!("metadata: {e} (see docs/parity-cases.md)"))?;
    if meta.format != FORMAT {
        return Err(format!("format {:?} is not {FORMAT:?}", meta.format));
    }
    let kind: ModuleKind = meta.module.parse().map_err(|e: Error| e.to_string())?;
    let spec = Spec::parse(kind, meta.config.as_deref(), meta.forward.as_deref())?;
    let seed = meta
        .seed
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("seed {:?} is not a decimal integer", meta.seed))?;
    Ok((spec, seed))
}

type Tensors = BTreeMap<String, Tensor>;

/// `param.*`, `input.*` and `expected.*`, each without its prefix; anything else is an
/// error, and so is a case without `expected.output`.
fn split_tensors(tensors: Tensors) -> Result<(Tensors, Tensors, Tensors), String> {
    let (mut params, mut inputs, mut expected) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (key, t) in tensors {
        let (group, rest) = key.split_once('.').unwrap_or((key.as_str(), ""));
        let slot = match group {
            "param" => &mut params,
            "input" => &mut inputs,
            "expected" => &mut expected,
            _ => {
                return Err(format!(
                    "tensor {key:?} is not param.*, input.* or expected.*"
                ))
            }
        };
        slot.insert(rest.to_string(), t);
    }
    if !expected.contains_key("output") {
        return Err("no expected.output tensor".into());
    }
    Ok((params, inputs, expected))
}
