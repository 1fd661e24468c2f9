//! The attention weight layouts PyTorch users have, and lossless conversion between them.
//!
//! Every layout holds the same four projections — query, key, value (`[D, C]` as
//! `nn.Linear` stores them, D = heads x head size) and output (`[C, D]`), each with an
//! optional bias — cut, stacked or transposed differently:
//!
//! | layout      | keys (under any prefix)                                                   |
//! |-------------|---------------------------------------------------------------------------|
//! | `lecture`   | `heads.{h}.{query,key,value}.weight` `[hs, C]`, `heads.{h}.tril`, `proj.{weight,bias}` |
//! | `nanogpt`   | `c_attn.weight` `[3C, C]` (q, k, v stacked), `c_attn.bias`, `c_proj.{weight,bias}`, optional `bias` mask buffer |
//! | `torch-mha` | `in_proj_weight` `[3E, E]` (or `{q,k,v}_proj_weight`), `in_proj_bias`, `out_proj.{weight,bias}` |
//! | `hf-gpt2`   | `c_attn.weight` `[C, 3C]` and `c_proj.weight` stored transposed (Conv1D), `c_attn.bias`, `c_proj.bias` |
//! | `hf-bert`   | `self.{query,key,value}.{weight,bias}`, `output.dense.{weight,bias}`       |
//!
//! Converting goes through [`Attn`], the four projections in `nn.Linear` form; the
//! stacking, splitting and transposing are exact copies, so a conversion and its way
//! back give the original bits. What a target cannot hold is an error that says why,
//! never a silent change: a nonzero query/key/value bias going to `lecture` (which has
//! none), `add_bias_kv`'s `bias_k`/`bias_v` going anywhere but `torch-mha`, a head count
//! the target needs but the source does not record. A bias the target always has and the
//! source lacks is written as zeros, which changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::io::CheckpointFile;
use block::{bias_or_zeros, check_dtypes, is_nonzero, stand_in, Block};

mod block;
mod hf_bert;
mod hf_gpt2;
mod lecture;
mod nanogpt;
mod stream;
mod torch_mha;

pub use stream::convert_file;

/// The `arg` of an [`Error::Invalid`] about [`ConvertOptions::heads`]: what a caller
/// matches to point at its own way of setting it (the `attn` CLI names its flag).
pub const HEADS: &str = "ConvertOptions::heads";
/// The `arg` of an [`Error::Invalid`] about [`ConvertOptions::block_size`].
pub const BLOCK_SIZE: &str = "ConvertOptions::block_size";

/// An attention weight layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layout {
    /// The lecture's `MultiHeadAttention` of `Head`s (this crate's [`crate::models::lecture`]).
    Lecture,
    /// nanoGPT's `CausalSelfAttention` (this crate's [`crate::models::nanogpt`]).
    NanoGpt,
    /// `torch.nn.MultiheadAttention` (this crate's [`crate::attention::multihead_attention`]).
    TorchMha,
    /// Hugging Face `GPT2Attention`: Conv1D weights, stored `[in, out]`.
    HfGpt2,
    /// Hugging Face `BertAttention`: `BertSelfAttention` + `BertSelfOutput.dense`.
    HfBert,
}

impl Layout {
    /// Every layout, in the order `attn convert --help` lists them.
    pub const ALL: [Layout; 5] = [
        Layout::Lecture,
        Layout::NanoGpt,
        Layout::TorchMha,
        Layout::HfGpt2,
        Layout::HfBert,
    ];

    /// The layout's name, as `detect` reports it and the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Lecture => "lecture",
            Layout::NanoGpt => "nanogpt",
            Layout::TorchMha => "torch-mha",
            Layout::HfGpt2 => "hf-gpt2",
            Layout::HfBert => "hf-bert",
        }
    }

    /// Whether the layout's biases are optional (a module config switch). The others
    /// always have the output bias, and Hugging Face's always have all four.
    fn bias_optional(self) -> bool {
        matches!(self, Layout::NanoGpt | Layout::TorchMha)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Layout::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Layout::ALL.iter().map(|l| l.name()).collect();
                Error::invalid("layout", format!("expected one of {names:?}, got {s:?}"))
            })
    }
}

/// Whether biases are written where the target layout makes them optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BiasPolicy {
    /// As the source has them: written when it has any bias (missing ones as zeros).
    #[default]
    Auto,
    /// Always written (zeros where the source has none): `bias=True` modules.
    Yes,
    /// Never written; a nonzero bias in the source is an error. `bias=False` modules.
    No,
}

/// What a conversion needs beyond the tensors.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Convert only the block under this prefix (e.g. `transformer.h.3.attn.`); `None`
    /// converts every block of the source layout.
    pub prefix: Option<String>,
    /// Heads: needed to write `lecture`, which splits the projections per head.
    pub heads: Option<i64>,
    /// The causal mask's size: needed to write `lecture`'s `tril` buffers (or a mask
    /// buffer) when the source does not record it.
    pub block_size: Option<i64>,
    /// Biases where the target makes them optional (`nanogpt`, `torch-mha`).
    pub bias: BiasPolicy,
    /// Write the causal mask buffer of `nanogpt` (`bias`) / `hf-gpt2` (`bias`,
    /// `masked_bias`): `None` keeps the source's own when converting to its own layout.
    pub mask_buffer: Option<bool>,
}

/// An attention block found in a state_dict.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Which layout the keys follow.
    pub layout: Layout,
    /// The keys' common prefix, ending in `.` (or empty).
    pub prefix: String,
    /// C: the embedding size.
    pub embed_dim: i64,
    /// Heads, where the layout records them (only `lecture`).
    pub heads: Option<i64>,
    /// Whether the query, key and value projections have biases.
    pub qkv_bias: bool,
    /// Whether the output projection has a bias.
    pub out_bias: bool,
    /// The dtype of the block's weights.
    pub dtype: Kind,
}

/// The query, key and value biases, each optional.
type Biases = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// The four projections in `nn.Linear` form: query, key, value `[D, C]`, output `[C, D]`.
struct Attn {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_b: Option<Tensor>,
    k_b: Option<Tensor>,
    v_b: Option<Tensor>,
    o: Tensor,
    o_b: Option<Tensor>,
    heads: Option<i64>,
    block_size: Option<i64>,
    source: Layout,
    /// Tensors only the source layout can hold, by relative key: `bias_k`/`bias_v`
    /// (`lossy` if dropped) and mask buffers (derivable, dropped freely).
    own: Vec<(String, Tensor)>,
    own_is_lossy: bool,
    /// torch-mha's unpacked form (`q_proj_weight`...), kept for the way back.
    mha_unpacked: bool,
}

impl Attn {
    /// The projections read from `source`, with nothing else known yet.
    fn new(
        source: Layout,
        [q, k, v]: [Tensor; 3],
        qkv_b: Biases,
        o: Tensor,
        o_b: Option<Tensor>,
    ) -> Self {
        let (q_b, k_b, v_b) = qkv_b;
        Attn {
            q,
            k,
            v,
            q_b,
            k_b,
            v_b,
            o,
            o_b,
            heads: None,
            block_size: None,
            source,
            own: Vec::new(),
            own_is_lossy: false,
            mha_unpacked: false,
        }
    }

    /// `[W_q; W_k; W_v]`, `[3D, C]`: nanoGPT's `c_attn.weight`, the MHA's `in_proj_weight`.
    fn stacked_weight(&self) -> Result<Tensor> {
        Ok(Tensor::f_cat(&[&self.q, &self.k, &self.v], 0)?)
    }

    /// `[b_q; b_k; b_v]`, `[3D]`, zeros where a bias is missing.
    fn stacked_bias(&self) -> Result<Tensor> {
        let d = self.d();
        let parts = [
            bias_or_zeros(&self.q_b, d, &self.q)?,
            bias_or_zeros(&self.k_b, d, &self.q)?,
            bias_or_zeros(&self.v_b, d, &self.q)?,
        ];
        Ok(Tensor::f_cat(&parts, 0)?)
    }

    fn has_bias(&self) -> bool {
        self.q_b.is_some() || self.k_b.is_some() || self.v_b.is_some() || self.o_b.is_some()
    }
    fn d(&self) -> i64 {
        self.q.size()[0]
    }
    fn c(&self) -> i64 {
        self.q.size()[1]
    }
}

/// The error for a file holding no `from` block: what it does hold instead.
pub(crate) fn none_found(source: &str, from: Layout, found: &[Found]) -> Error {
    let seen: Vec<String> = found
        .iter()
        .map(|f| format!("{} at {:?}", f.layout, f.prefix))
        .collect();
    Error::malformed(
        source,
        format!("no {from} attention weights found (recognised: {seen:?})"),
    )
}

/// Every attention block in `tensors`, by layout then prefix.
pub fn detect(tensors: &BTreeMap<String, Tensor>) -> Vec<Found> {
    detect_with(tensors, true)
}

/// Every attention block a checkpoint file's header describes, by layout then prefix,
/// from keys, shapes and dtypes alone: no tensor is read. Unlike [`detect`], a causal
/// mask buffer's contents are not checked (converting checks them).
pub fn detect_file(file: &CheckpointFile) -> Result<Vec<Found>> {
    Ok(detect_with(&stand_ins(file)?, false))
}

/// Stand-ins ([`block::stand_in`]) for every tensor of `file`: its keys, shapes and
/// dtypes at the cost of one element each.
fn stand_ins(file: &CheckpointFile) -> Result<BTreeMap<String, Tensor>> {
    file.tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), stand_in(t.kind, &t.shape)?)))
        .collect()
}

/// [`detect`]; `data` says whether `tensors` hold their data or are stand-ins.
fn detect_with(tensors: &BTreeMap<String, Tensor>, data: bool) -> Vec<Found> {
    let mut found = Vec::new();
    for layout in Layout::ALL {
        for prefix in candidate_prefixes(tensors, layout, data) {
            if let Ok((attn, _)) = extract_with(tensors, &prefix, layout, "detect", data) {
                found.push(Found {
                    layout,
                    prefix,
                    embed_dim: attn.c(),
                    heads: attn.heads,
                    qkv_bias: attn.q_b.is_some() || attn.k_b.is_some() || attn.v_b.is_some(),
                    out_bias: attn.o_b.is_some(),
                    dtype: attn.q.kind(),
                });
            }
        }
    }
    found
}

/// Converts every `from` block in `tensors` (or only the one under `opts.prefix`) to
/// `to`, keeping each block's prefix; keys outside the blocks pass through unchanged.
/// `source` names the file for errors. From a layout to itself, every tensor passes
/// through as it is (a change of file format only).
pub fn convert(
    tensors: &BTreeMap<String, Tensor>,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
    source: &str,
) -> Result<BTreeMap<String, Tensor>> {
    if from == to {
        return Ok(tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect());
    }
    let prefixes = match &opts.prefix {
        Some(p) => vec![normalise_prefix(p)],
        None => candidate_prefixes(tensors, from, true),
    };
    if prefixes.is_empty() {
        return Err(none_found(source, from, &detect(tensors)));
    }
    let mut consumed = BTreeSet::new();
    let mut written = Vec::new();
    for prefix in &prefixes {
        let (attn, keys) = extract(tensors, prefix, from, source)?;
        consumed.extend(keys);
        for (key, t) in emit(&attn, to, opts).map_err(|e| at_prefix(e, prefix, source))? {
            written.push((format!("{prefix}{key}"), t));
        }
    }
    let mut out: BTreeMap<String, Tensor> = tensors
        .iter()
        .filter(|(k, _)| !consumed.contains(*k))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    for (key, t) in written {
        if out.insert(key.clone(), t).is_some() {
            return Err(Error::malformed(
                source,
                format!("{key}: the converted block would overwrite a key already there"),
            ));
        }
    }
    Ok(out)
}

/// The converted tensors of the one block under `prefix`, with relative keys and
/// nothing else: what a module loads.
pub(crate) fn convert_block(
    tensors: &BTreeMap<String, Tensor>,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
    source: &str,
) -> Result<BTreeMap<String, Tensor>> {
    let prefix = normalise_prefix(opts.prefix.as_deref().unwrap_or(""));
    let (attn, _) = extract(tensors, &prefix, from, source)?;
    Ok(emit(&attn, to, opts)
        .map_err(|e| at_prefix(e, &prefix, source))?
        .into_iter()
        .collect())
}

/// Names the file and block in an error from writing one block. An error about an
/// option ([`HEADS`], [`BLOCK_SIZE`]) stays [`Error::Invalid`] with that `arg`, so that a
/// caller can tell the user how to set it; the others are about the file's contents.
fn at_prefix(e: Error, prefix: &str, source: &str) -> Error {
    match e {
        Error::Invalid { arg, reason } if arg == HEADS || arg == BLOCK_SIZE => Error::Invalid {
            arg,
            reason: format!("{reason} (block {prefix:?} of {source})"),
        },
        Error::Invalid { arg, reason } => {
            Error::malformed(source, format!("block {prefix:?}: {arg}: {reason}"))
        }
        e => e,
    }
}

fn normalise_prefix(p: &str) -> String {
    if p.is_empty() || p.ends_with('.') {
        p.to_string()
    } else {
        format!("{p}.")
    }
}

/// The key each layout is found by; its prefix is the block's.
fn anchors(layout: Layout) -> &'static [&'static str] {
    match layout {
        Layout::Lecture => &["heads.0.query.weight"],
        Layout::NanoGpt | Layout::HfGpt2 => &["c_attn.weight"],
        Layout::TorchMha => &["in_proj_weight", "q_proj_weight"],
        Layout::HfBert => &["self.query.weight"],
    }
}

/// The prefixes of `layout`'s anchor keys under which a block can be read (`data` as
/// in [`detect_with`]).
fn candidate_prefixes(
    tensors: &BTreeMap<String, Tensor>,
    layout: Layout,
    data: bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in tensors.keys() {
        for anchor in anchors(layout) {
            if let Some(prefix) = key.strip_suffix(anchor) {
                if (prefix.is_empty() || prefix.ends_with('.'))
                    && extract_with(tensors, prefix, layout, "", data).is_ok()
                    && !out.iter().any(|p| p == prefix)
                {
                    out.push(prefix.to_string());
                }
            }
        }
    }
    out
}

/// Reads the block of `layout` under `prefix` into [`Attn`], with the keys it used.
fn extract(
    tensors: &BTreeMap<String, Tensor>,
    prefix: &str,
    layout: Layout,
    source: &str,
) -> Result<(Attn, BTreeSet<String>)> {
    extract_with(tensors, prefix, layout, source, true)
}

/// [`extract`]; `data` says whether `tensors` hold their data or are stand-ins.
fn extract_with(
    tensors: &BTreeMap<String, Tensor>,
    prefix: &str,
    layout: Layout,
    source: &str,
    data: bool,
) -> Result<(Attn, BTreeSet<String>)> {
    let mut b = Block {
        tensors,
        prefix,
        source,
        taken: BTreeSet::new(),
        data,
    };
    let attn = match layout {
        Layout::Lecture => lecture::extract(&mut b)?,
        Layout::NanoGpt => nanogpt::extract(&mut b)?,
        Layout::TorchMha => torch_mha::extract(&mut b)?,
        Layout::HfGpt2 => hf_gpt2::extract(&mut b)?,
        Layout::HfBert => hf_bert::extract(&mut b)?,
    };
    check_dtypes(&b, &attn)?;
    Ok((attn, b.taken))
}

/// Writes [`Attn`] in `to`'s keys (relative to the block's prefix), after refusing what
/// `to` cannot hold.
fn emit(a: &Attn, to: Layout, opts: &ConvertOptions) -> Result<Vec<(String, Tensor)>> {
    check_target(a, to, opts)?;
    let with_bias = if to.bias_optional() {
        match opts.bias {
            BiasPolicy::Auto => a.has_bias(),
            BiasPolicy::Yes => true,
            BiasPolicy::No => false,
        }
    } else {
        true
    };
    refuse_lost_biases(a, to, with_bias)?;
    match to {
        Layout::Lecture => lecture::emit(a, opts),
        Layout::NanoGpt => nanogpt::emit(a, opts, with_bias),
        Layout::TorchMha => torch_mha::emit(a, with_bias),
        Layout::HfGpt2 => hf_gpt2::emit(a, opts),
        Layout::HfBert => hf_bert::emit(a),
    }
}

/// A head count that differs from the source's, tensors only the source can hold, and
/// a projection size the target cannot hold.
fn check_target(a: &Attn, to: Layout, opts: &ConvertOptions) -> Result<()> {
    if let (Some(h), Some(src)) = (opts.heads, a.heads) {
        if h != src {
            return Err(Error::invalid(
                HEADS,
                format!("the source has {src} heads; {h} would change what the model computes"),
            ));
        }
    }
    if !a.own.is_empty() && a.own_is_lossy && to != a.source {
        let keys: Vec<&str> = a.own.iter().map(|(k, _)| k.as_str()).collect();
        return Err(Error::invalid(
            "layout",
            format!("{keys:?} (add_bias_kv) have no counterpart in {to}"),
        ));
    }
    let (d, c) = (a.d(), a.c());
    if to != Layout::Lecture && d != c {
        return Err(Error::invalid(
            "layout",
            format!("{to} needs heads x head_size = embed_dim, got {d} and {c}"),
        ));
    }
    Ok(())
}

/// A nonzero bias the target would drop (lecture has no query/key/value biases; a
/// target written without biases has none at all) is an error, never a silent change.
fn refuse_lost_biases(a: &Attn, to: Layout, with_bias: bool) -> Result<()> {
    if with_bias && to != Layout::Lecture {
        return Ok(());
    }
    let qkv = [("query", &a.q_b), ("key", &a.k_b), ("value", &a.v_b)];
    let output = [("output", &a.o_b)];
    let which = qkv
        .iter()
        .chain(if with_bias { &output[..0] } else { &output[..] });
    for (name, bias) in which {
        if is_nonzero(bias)? {
            let without = if to == Layout::Lecture {
                ""
            } else {
                " without biases"
            };
            return Err(Error::invalid(
                "bias",
                format!(
                    "the {name} projection has a nonzero bias, which {to}{without} cannot \
                     hold; converting would change the outputs"
                ),
            ));
        }
    }
    Ok(())
}
