//! What one benchmark runs, and the named suites of `bench/suites.json` (the file
//! scripts/bench_torch.py reads too, so both sides run the same configurations).

use serde_json::{Map, Value};
use tch::{Device, Kind};

use crate::error::{Error, Result};
use crate::parity::MODULES;

/// The suites, compiled in from `bench/suites.json`.
pub const SUITES_JSON: &str = include_str!("../../bench/suites.json");

/// The suite names, in the order `--suite all` runs them.
pub const SUITES: [&str; 4] = ["small", "gpt2", "long", "decode"];

/// What one timed step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One forward pass in eval mode, without grad.
    Forward,
    /// One forward pass in train mode (dropout 0), then `output.sum().backward()`.
    Backward,
    /// One new token attended to a KV cache holding `seq - 1` tokens (eval, no grad).
    Decode,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Backward => "backward",
            Mode::Decode => "decode",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "forward" => Ok(Mode::Forward),
            "backward" => Ok(Mode::Backward),
            "decode" => Ok(Mode::Decode),
            _ => Err(Error::config(
                "mode",
                format!("expected forward, backward or decode, got {s:?}"),
            )),
        }
    }
}

/// One configuration: a module of the parity cases (see [`MODULES`]) at one size.
///
/// Sizes use PyTorch's letters: `batch` B, `seq` T, `embd` C, `heads` nh, `head_size` hs.
/// `head` has one head of `head_size` over C channels; `multi_head` has nh of them;
/// `causal_self_attention` and `multihead_attention` need `C = nh * hs`; `sdpa` takes
/// q, k, v of `(B, nh, T, hs)` and ignores C. Every configuration is causal.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// The suite it belongs to, or `custom`.
    pub suite: String,
    /// Its name within the suite (joins the two sides of `make bench`).
    pub name: String,
    pub module: String,
    pub mode: Mode,
    pub batch: i64,
    pub seq: i64,
    pub embd: i64,
    pub heads: i64,
    pub head_size: i64,
    pub kind: Kind,
    pub device: Device,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub repeats: usize,
}

/// `f32`, `f64`, `f16`, `bf16` as dtypes.
pub fn parse_dtype(s: &str) -> Result<Kind> {
    match s {
        "f32" => Ok(Kind::Float),
        "f64" => Ok(Kind::Double),
        "f16" => Ok(Kind::Half),
        "bf16" => Ok(Kind::BFloat16),
        _ => Err(Error::config(
            "dtype",
            format!("expected f32, f64, f16 or bf16, got {s:?}"),
        )),
    }
}

/// The short name of a dtype, as [`parse_dtype`] reads it.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Double => "f64",
        Kind::Half => "f16",
        Kind::BFloat16 => "bf16",
        _ => "f32",
    }
}

impl BenchConfig {
    /// Checks every field once, before anything is built.
    pub fn validate(&self) -> Result<()> {
        if !MODULES.contains(&self.module.as_str()) {
            return Err(Error::config(
                "module",
                format!("expected one of {MODULES:?}, got {:?}", self.module),
            ));
        }
        for (field, v) in [
            ("batch", self.batch),
            ("seq", self.seq),
            ("embd", self.embd),
            ("heads", self.heads),
            ("head_size", self.head_size),
            ("repeats", self.repeats as i64),
        ] {
            if v < 1 {
                return Err(Error::config(field, format!("must be at least 1, got {v}")));
            }
        }
        let m = self.module.as_str();
        if m == "head" && self.heads != 1 {
            return Err(Error::config(
                "heads",
                format!("head has one head, got {}", self.heads),
            ));
        }
        if matches!(m, "causal_self_attention" | "multihead_attention")
            && self.embd != self.heads * self.head_size
        {
            return Err(Error::config(
                "embd",
                format!(
                    "{m} needs embd = heads * head_size = {}, got {}",
                    self.heads * self.head_size,
                    self.embd
                ),
            ));
        }
        if self.mode == Mode::Decode && (m != "causal_self_attention" || self.seq < 2) {
            return Err(Error::config(
                "mode",
                "decode runs causal_self_attention with seq >= 2 (seq - 1 cached tokens, one new)",
            ));
        }
        Ok(())
    }

    /// The floating-point operations of one step: matmuls only, 2 per multiply-add.
    /// Causal attention counts the `T (T + 1) / 2` query-key pairs it keeps (as
    /// FlashAttention's papers do); a backward pass counts twice its forward.
    pub fn flops(&self) -> f64 {
        let (b, t, c, nh, hs) = (
            self.batch as f64,
            self.seq as f64,
            self.embd as f64,
            self.heads as f64,
            self.head_size as f64,
        );
        // Queries in this step, and the query-key pairs they score.
        let (tq, pairs) = match self.mode {
            Mode::Decode => (1.0, t),
            _ => (t, t * (t + 1.0) / 2.0),
        };
        let attention = 2.0 * 2.0 * b * nh * pairs * hs; // q @ k^T and weights @ v
        let linear = |inp: f64, out: f64| 2.0 * b * tq * inp * out;
        let forward = attention
            + match self.module.as_str() {
                "head" | "multi_head" => {
                    let proj = if self.module == "multi_head" {
                        linear(nh * hs, c)
                    } else {
                        0.0
                    };
                    nh * linear(c, 3.0 * hs) + proj
                }
                "causal_self_attention" | "multihead_attention" => {
                    linear(c, 3.0 * c) + linear(c, c)
                }
                _ => 0.0,
            };
        match self.mode {
            Mode::Backward => 3.0 * forward,
            _ => forward,
        }
    }
}

/// The configurations of suite `name` (one of [`SUITES`]); `smoke` applies the suite's
/// smoke caps (sizes and repeats) for a run of seconds.
pub fn suite(name: &str, kind: Kind, device: Device, smoke: bool) -> Result<Vec<BenchConfig>> {
    let all: Map<String, Value> = serde_json::from_str(SUITES_JSON)
        .map_err(|e| Error::malformed("bench/suites.json", e.to_string()))?;
    let bad = |reason: String| Error::malformed("bench/suites.json", reason);
    let s = all
        .get(name)
        .filter(|_| SUITES.contains(&name))
        .ok_or_else(|| {
            Error::config(
                "suite",
                format!("expected one of {SUITES:?} or all, got {name:?}"),
            )
        })?;
    let caps = s.get("smoke").cloned().unwrap_or(Value::Null);
    let cap = |key: &str| caps.get(key).and_then(Value::as_i64);
    let configs = s
        .get("configs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("suite {name} has no configs")))?;
    configs
        .iter()
        .map(|c| {
            let int = |key: &str| {
                c.get(key)
                    .and_then(Value::as_i64)
                    .ok_or_else(|| bad(format!("suite {name}: a config lacks integer {key}")))
            };
            let text = |key: &str| {
                c.get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("suite {name}: a config lacks string {key}")))
            };
            let mut config = BenchConfig {
                suite: name.to_string(),
                name: text("name")?.to_string(),
                module: text("module")?.to_string(),
                mode: Mode::parse(text("mode")?)?,
                batch: int("batch")?,
                seq: int("seq")?,
                embd: int("embd")?,
                heads: int("heads")?,
                head_size: int("head_size")?,
                kind,
                device,
                warmup: int("warmup")? as usize,
                repeats: int("repeats")? as usize,
            };
            if smoke {
                config.batch = config.batch.min(cap("max_batch").unwrap_or(i64::MAX));
                config.seq = config.seq.min(cap("max_seq").unwrap_or(i64::MAX));
                config.repeats = config
                    .repeats
                    .min(cap("repeats").unwrap_or(i64::MAX) as usize);
                config.warmup = config
                    .warmup
                    .min(cap("warmup").unwrap_or(i64::MAX) as usize);
            }
            config.validate()?;
            Ok(config)
        })
        .collect()
}
