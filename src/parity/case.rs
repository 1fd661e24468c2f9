//! Parity cases (`tch-attention-case/1`, see `docs/parity-cases.md`): one safetensors
//! file holding a module's config, parameters and inputs, and what PyTorch computed.
//! [`Case::run`] replays it through this crate; [`Case::compare`] checks the result at
//! `torch.testing.assert_close`'s default tolerances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use crate::attention::mask::Mask;
use crate::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use crate::checkpoint::load_into;
use crate::error::{Error, Result};
use crate::io::read_safetensors;
use crate::models::lecture::{Head, HeadConfig};
use crate::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use crate::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

/// The `format` a case must declare.
pub const FORMAT: &str = "tch-attention-case/1";

/// The modules a case may name; [`Case::read`] rejects any other.
pub const MODULES: [&str; 5] = [
    "head",
    "multi_head",
    "causal_self_attention",
    "multihead_attention",
    "sdpa",
];

/// A parity case read from disk.
#[derive(Debug)]
pub struct Case {
    pub path: PathBuf,
    /// `head` | `multi_head` | `causal_self_attention` | `multihead_attention` | `sdpa`.
    pub module: String,
    pub config: Map<String, Value>,
    pub forward: Map<String, Value>,
    pub seed: i64,
    /// `param.<name>` with the prefix removed.
    pub params: BTreeMap<String, Tensor>,
    /// `input.<name>` with the prefix removed (includes `grad_output` when present).
    pub inputs: BTreeMap<String, Tensor>,
    /// `expected.<name>` with the prefix removed: `output`, `attn_weights`,
    /// `grad.input.<name>`, `grad.param.<name>`.
    pub expected: BTreeMap<String, Tensor>,
}

/// What running a case produced, named as `attn run` writes it: `output`,
/// `attn_weights`, `grad.input.<name>`, `grad.param.<name>`.
#[derive(Debug)]
pub struct Outcome {
    pub tensors: BTreeMap<String, Tensor>,
}

/// One compared tensor.
#[derive(Debug, Clone)]
pub struct TensorCheck {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// The comparison of a case's outcome with its expected tensors.
#[derive(Debug, Clone)]
pub struct Report {
    pub checks: Vec<TensorCheck>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }
    pub fn max_abs(&self) -> f64 {
        self.checks.iter().map(|c| c.max_abs).fold(0.0, f64::max)
    }
    pub fn max_rel(&self) -> f64 {
        self.checks.iter().map(|c| c.max_rel).fold(0.0, f64::max)
    }
}

/// `torch.testing.assert_close`'s default `(rtol, atol)` for a dtype.
pub fn tolerance(kind: Kind) -> (f64, f64) {
    match kind {
        Kind::Double => (1e-7, 1e-7),
        Kind::Float => (1.3e-6, 1e-5),
        Kind::Half => (1e-3, 1e-5),
        Kind::BFloat16 => (1.6e-2, 1e-5),
        _ => (0.0, 0.0),
    }
}

impl Case {
    /// Reads and validates a case file.
    pub fn read(path: &Path) -> Result<Case> {
        let file = read_safetensors(path)?;
        let name = path.display().to_string();
        let bad = |reason: String| Error::malformed(&name, reason);
        let meta = |key: &str| {
            file.metadata.get(key).cloned().ok_or_else(|| {
                bad(format!(
                    "metadata has no {key:?} (see docs/parity-cases.md)"
                ))
            })
        };
        let format = meta("format")?;
        if format != FORMAT {
            return Err(bad(format!("format {format:?} is not {FORMAT:?}")));
        }
        let module = meta("module")?;
        if !MODULES.contains(&module.as_str()) {
            return Err(bad(format!("module {module:?} is not one of {MODULES:?}")));
        }
        let json = |key: &str| -> Result<Map<String, Value>> {
            match file.metadata.get(key) {
                None => Ok(Map::new()),
                Some(text) => match serde_json::from_str(text) {
                    Ok(Value::Object(map)) => Ok(map),
                    _ => Err(bad(format!(
                        "metadata {key:?} is not a JSON object: {text}"
                    ))),
                },
            }
        };
        let config = json("config")?;
        let forward = json("forward")?;
        let seed_text = meta("seed")?;
        let seed = seed_text
            .trim()
            .parse::<i64>()
            .map_err(|_| bad(format!("seed {seed_text:?} is not a decimal integer")))?;
        let (mut params, mut inputs, mut expected) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (key, t) in file.tensors {
            let (group, rest) = key.split_once('.').unwrap_or((key.as_str(), ""));
            let slot = match group {
                "param" => &mut params,
                "input" => &mut inputs,
                "expected" => &mut expected,
                _ => {
                    return Err(bad(format!(
                        "tensor {key:?} is not param.*, input.* or expected.*"
                    )))
                }
            };
            slot.insert(rest.to_string(), t);
        }
        if !expected.contains_key("output") {
            return Err(bad("no expected.output tensor".into()));
        }
        Ok(Case {
            path: path.to_path_buf(),
            module,
            config,
            forward,
            seed,
            params,
            inputs,
            expected,
        })
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.path.display().to_string(), reason)
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

    fn int(&self, map: &Map<String, Value>, key: &str, default: Option<i64>) -> Result<i64> {
        match map.get(key) {
            Some(v) => v
                .as_i64()
                .ok_or_else(|| self.err(format!("{key} must be an integer, got {v}"))),
            None => default.ok_or_else(|| self.err(format!("config has no {key:?}"))),
        }
    }

    fn float(&self, map: &Map<String, Value>, key: &str, default: f64) -> Result<f64> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("{key} must be a number, got {v}"))),
        }
    }

    fn flag(&self, map: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("{key} must be true or false, got {v}"))),
        }
    }

    /// Runs the case's module on its inputs on `device`: `manual_seed(seed)` right before
    /// the forward pass, then, when `input.grad_output` is present, the backward pass of
    /// `sum(output * grad_output)`.
    ///
    /// Dropout draws from libtorch's process-wide default generator, as PyTorch's does:
    /// cases with dropout reproduce PyTorch only when no other thread draws from it
    /// between the seed and the forward pass.
    pub fn run(&self, device: Device) -> Result<Outcome> {
        let kind = self.kind();
        let train = self.flag(&self.forward, "train", false)?;
        let grad_output = self.inputs.get("grad_output").map(|g| g.to_device(device));
        let mut vs = VarStore::new(device);
        vs.set_kind(kind);
        // Floating inputs among x/query/key/value take part in the gradient.
        let mut inputs = BTreeMap::new();
        for (name, t) in &self.inputs {
            let t = t.f_to_device(device)?;
            let wants_grad = grad_output.is_some()
                && t.is_floating_point()
                && ["x", "query", "key", "value"].contains(&name.as_str());
            inputs.insert(
                name.clone(),
                if wants_grad {
                    t.set_requires_grad(true)
                } else {
                    t
                },
            );
        }
        let get = |name: &str| -> Result<&Tensor> {
            inputs
                .get(name)
                .ok_or_else(|| self.err(format!("no input.{name} tensor")))
        };
        let forward: Box<dyn Fn() -> Result<(Tensor, Option<Tensor>)>> = match self.module.as_str()
        {
            "head" => {
                let c = &self.config;
                let cfg = HeadConfig::new(
                    self.int(c, "n_embd", None)?,
                    self.int(c, "head_size", None)?,
                    self.int(c, "block_size", None)?,
                )
                .with_dropout(self.float(c, "dropout", 0.0)?);
                let m = Head::new(vs.root(), cfg)?;
                let x = get("x")?;
                Box::new(move || Ok((m.f_forward_t(x, train)?, None)))
            }
            "multi_head" => {
                let c = &self.config;
                let cfg = MultiHeadConfig::new(
                    self.int(c, "n_embd", None)?,
                    self.int(c, "num_heads", None)?,
                    self.int(c, "head_size", None)?,
                    self.int(c, "block_size", None)?,
                )
                .with_dropout(self.float(c, "dropout", 0.0)?);
                let m = MultiHeadAttention::new(vs.root(), cfg)?;
                let x = get("x")?;
                Box::new(move || Ok((m.f_forward_t(x, train)?, None)))
            }
            "causal_self_attention" => {
                let c = &self.config;
                let cfg = CausalSelfAttentionConfig::new(
                    self.int(c, "n_embd", None)?,
                    self.int(c, "n_head", None)?,
                    self.int(c, "block_size", None)?,
                )
                .with_bias(self.flag(c, "bias", true)?)
                .with_dropout(self.float(c, "dropout", 0.0)?);
                let m = CausalSelfAttention::new(vs.root(), cfg)?;
                let x = get("x")?;
                Box::new(move || Ok((m.f_forward_t(x, train)?, None)))
            }
            "multihead_attention" => {
                let (c, f) = (&self.config, &self.forward);
                let opt_int = |key: &str| match c.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(_) => self.int(c, key, None).map(Some),
                };
                let cfg = MultiheadAttentionConfig {
                    embed_dim: self.int(c, "embed_dim", None)?,
                    num_heads: self.int(c, "num_heads", None)?,
                    dropout: self.float(c, "dropout", 0.0)?,
                    bias: self.flag(c, "bias", true)?,
                    add_bias_kv: self.flag(c, "add_bias_kv", false)?,
                    add_zero_attn: self.flag(c, "add_zero_attn", false)?,
                    kdim: opt_int("kdim")?,
                    vdim: opt_int("vdim")?,
                    batch_first: self.flag(c, "batch_first", false)?,
                };
                let m = MultiheadAttention::new(vs.root(), cfg)?;
                let (q, k, v) = (get("query")?, get("key")?, get("value")?);
                let kpm = inputs.get("key_padding_mask").map(|m| m.shallow_clone());
                let attn_mask = inputs.get("attn_mask").map(|m| m.shallow_clone());
                let need_weights = self.flag(f, "need_weights", true)?;
                let average_attn_weights = self.flag(f, "average_attn_weights", true)?;
                let is_causal = self.flag(f, "is_causal", false)?;
                Box::new(move || {
                    // nn.MultiheadAttention's convention: bool true = masked out.
                    let mha = |t: &Option<Tensor>| {
                        t.as_ref()
                            .map(|t| Mask::from_mha(t.shallow_clone()))
                            .transpose()
                    };
                    let options = MhaOptions {
                        key_padding_mask: mha(&kpm)?,
                        attn_mask: mha(&attn_mask)?,
                        need_weights,
                        average_attn_weights,
                        is_causal,
                    };
                    m.f_forward_t(q, k, v, &options, train)
                })
            }
            "sdpa" => {
                let f = &self.forward;
                let (q, k, v) = (get("query")?, get("key")?, get("value")?);
                let mask = inputs.get("attn_mask").map(|m| m.shallow_clone());
                let dropout_p = self.float(f, "dropout_p", 0.0)?;
                let is_causal = self.flag(f, "is_causal", false)?;
                let scale = match f.get("scale") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(self.float(f, "scale", 0.0)?),
                };
                let enable_gqa = self.flag(f, "enable_gqa", false)?;
                Box::new(move || {
                    let options = SdpaOptions {
                        attn_mask: mask
                            .as_ref()
                            .map(|m| Mask::from_sdpa(m.shallow_clone()))
                            .transpose()?,
                        dropout_p,
                        is_causal,
                        scale,
                        enable_gqa,
                        ..SdpaOptions::default()
                    };
                    Ok((scaled_dot_product_attention(q, k, v, &options)?, None))
                })
            }
            other => {
                return Err(self.err(format!("module {other:?} is not supported by this version")))
            }
        };
        load_into(&vs, &self.params, &self.path.display().to_string())?;
        tch::manual_seed(self.seed);
        let (output, weights) = forward()?;
        let mut tensors = BTreeMap::new();
        if let Some(g) = &grad_output {
            if g.size() != output.size() {
                return Err(self.err(format!(
                    "input.grad_output: expected shape {:?}, got {:?}",
                    output.size(),
                    g.size()
                )));
            }
            output
                .f_mul(&g.f_to_kind(output.kind())?)?
                .f_sum(None::<Kind>)?
                .f_backward()?;
            for (name, t) in &inputs {
                if t.requires_grad() {
                    tensors.insert(format!("grad.input.{name}"), t.grad());
                }
            }
            let mut vars: Vec<_> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, t) in vars {
                if t.requires_grad() {
                    tensors.insert(format!("grad.param.{name}"), t.grad());
                }
            }
        }
        tensors.insert("output".into(), output.detach());
        if let Some(w) = weights {
            tensors.insert("attn_weights".into(), w.detach());
        }
        Ok(Outcome { tensors })
    }

    /// Compares `outcome` with the expected tensors: the same names, shapes and dtypes,
    /// values within `assert_close`'s default tolerance, NaN in the same places.
    pub fn compare(&self, outcome: &Outcome) -> Result<Report> {
        let mut checks = Vec::new();
        for (name, expected) in &self.expected {
            let check = match outcome.tensors.get(name) {
                None => TensorCheck {
                    name: name.clone(),
                    max_abs: f64::NAN,
                    max_rel: f64::NAN,
                    failure: Some("not produced".into()),
                },
                Some(actual) => compare_tensors(name, actual, expected)?,
            };
            checks.push(check);
        }
        for name in outcome.tensors.keys() {
            if !self.expected.contains_key(name) {
                checks.push(TensorCheck {
                    name: name.clone(),
                    max_abs: f64::NAN,
                    max_rel: f64::NAN,
                    failure: Some("produced but the case expects no such tensor".into()),
                });
            }
        }
        Ok(Report { checks })
    }
}

/// `torch.testing.assert_close(actual, expected)` with default tolerances, reporting the
/// largest absolute and relative errors.
pub fn compare_tensors(name: &str, actual: &Tensor, expected: &Tensor) -> Result<TensorCheck> {
    let mut check = TensorCheck {
        name: name.into(),
        max_abs: 0.0,
        max_rel: 0.0,
        failure: None,
    };
    if actual.size() != expected.size() {
        check.failure = Some(format!(
            "shape {:?}, expected {:?}",
            actual.size(),
            expected.size()
        ));
        return Ok(check);
    }
    if actual.kind() != expected.kind() {
        check.failure = Some(format!(
            "dtype {:?}, expected {:?}",
            actual.kind(),
            expected.kind()
        ));
        return Ok(check);
    }
    let (rtol, atol) = tolerance(expected.kind());
    let a = actual.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    let e = expected.f_to_kind(Kind::Double)?;
    let (a_nan, e_nan) = (a.f_isnan()?, e.f_isnan()?);
    if a_nan.f_ne_tensor(&e_nan)?.f_any()?.f_int64_value(&[])? != 0 {
        check.failure = Some("NaN in different places".into());
    }
    // Equal values (infinities included) count as exact; NaN positions were checked above.
    let same = a.f_eq_tensor(&e)?.f_logical_or(&e_nan)?;
    let diff = a.f_sub(&e)?.f_abs()?.f_masked_fill(&same, 0.0)?;
    let rel = diff.f_div(&e.f_abs()?)?.f_masked_fill(&same, 0.0)?;
    if diff.numel() > 0 {
        check.max_abs = diff.f_max()?.f_double_value(&[])?;
        check.max_rel = rel
            .f_nan_to_num(None, None, None)?
            .f_max()?
            .f_double_value(&[])?;
    }
    let allowed = e.f_abs()?.f_mul_scalar(rtol)?.f_add_scalar(atol)?;
    let bad = diff.f_gt_tensor(&allowed)?.f_logical_or(&diff.f_isnan()?)?;
    let n_bad = bad.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    if n_bad > 0 && check.failure.is_none() {
        check.failure = Some(format!(
            "{n_bad} of {} elements differ by more than atol={atol:e} + rtol={rtol:e} * |expected|",
            e.numel()
        ));
    }
    Ok(check)
}

/// Whether a file found in a folder should be treated as a case: its header declares a
/// `format` (any value, so a wrong one is reported), or its header cannot be read (so
/// the damage is reported). Other safetensors files, such as a plain state_dict next to
/// the cases, are not cases. Only the header is read: the case itself is read later.
fn looks_like_case(path: &Path) -> bool {
    use std::io::Read;
    let header = || -> Option<Value> {
        let mut file = std::fs::File::open(path).ok()?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).ok()?;
        let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
        // The safetensors crate's own header limit: nothing larger is a valid file.
        if len > 100_000_000 {
            return None;
        }
        let mut json = vec![0u8; len];
        file.read_exact(&mut json).ok()?;
        serde_json::from_slice(&json).ok()
    };
    match header() {
        None => true,
        Some(h) => h
            .get("__metadata__")
            .and_then(|m| m.get("format"))
            .and_then(Value::as_str)
            // Hugging Face writes format "pt" (or "np", "tf") into its safetensors files:
            // those are checkpoints, not cases.
            .is_some_and(|f| f.starts_with("tch-attention-case")),
    }
}

/// The case files under `paths`: files given by name as they are; in folders, searched
/// recursively, every `*.safetensors` whose `format` is a case format or that cannot be read (see
/// `looks_like_case`), sorted. Returns the cases and the other safetensors files skipped.
pub fn collect_case_files(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let io = |source| Error::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<std::result::Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "safetensors") {
                out.push(p);
            }
        }
        Ok(())
    }
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            let (cases, others): (Vec<_>, Vec<_>) =
                found.into_iter().partition(|f| looks_like_case(f));
            files.extend(cases);
            skipped.extend(others);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(Error::Io {
                path: p.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
    }
    Ok((files, skipped))
}
