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
    pub const ALL: [Layout; 5] = [
        Layout::Lecture,
        Layout::NanoGpt,
        Layout::TorchMha,
        Layout::HfGpt2,
        Layout::HfBert,
    ];

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

/// Every attention block in `tensors`, by layout then prefix.
pub fn detect(tensors: &BTreeMap<String, Tensor>) -> Vec<Found> {
    let mut found = Vec::new();
    for layout in Layout::ALL {
        for prefix in candidate_prefixes(tensors, layout) {
            if let Ok((attn, _)) = extract(tensors, &prefix, layout, "detect") {
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
        None => candidate_prefixes(tensors, from),
    };
    if prefixes.is_empty() {
        let seen: Vec<String> = detect(tensors)
            .iter()
            .map(|f| format!("{} at {:?}", f.layout, f.prefix))
            .collect();
        return Err(Error::malformed(
            source,
            format!("no {from} attention weights found (recognised: {seen:?})"),
        ));
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

fn at_prefix(e: Error, prefix: &str, source: &str) -> Error {
    match e {
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

fn candidate_prefixes(tensors: &BTreeMap<String, Tensor>, layout: Layout) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in tensors.keys() {
        for anchor in anchors(layout) {
            if let Some(prefix) = key.strip_suffix(anchor) {
                if (prefix.is_empty() || prefix.ends_with('.'))
                    && extract(tensors, prefix, layout, "").is_ok()
                    && !out.iter().any(|p| p == prefix)
                {
                    out.push(prefix.to_string());
                }
            }
        }
    }
    out
}

/// The tensors under one prefix, each taken at most once.
struct Block<'a> {
    tensors: &'a BTreeMap<String, Tensor>,
    prefix: &'a str,
    source: &'a str,
    taken: BTreeSet<String>,
}

impl Block<'_> {
    fn get(&mut self, key: &str) -> Option<Tensor> {
        let full = format!("{}{key}", self.prefix);
        let t = self.tensors.get(&full)?.shallow_clone();
        self.taken.insert(full);
        Some(t)
    }

    fn need(&mut self, key: &str) -> Result<Tensor> {
        self.get(key).ok_or_else(|| {
            Error::malformed(self.source, format!("missing key {}{key}", self.prefix))
        })
    }

    fn err(&self, key: &str, reason: impl fmt::Display) -> Error {
        Error::malformed(self.source, format!("{}{key}: {reason}", self.prefix))
    }

    /// Checks `t`'s shape against `want` (`-1` = any), naming the key.
    fn shape(&self, key: &str, t: &Tensor, want: &[i64]) -> Result<()> {
        let got = t.size();
        let ok = got.len() == want.len() && got.iter().zip(want).all(|(&g, &w)| w < 0 || g == w);
        if ok {
            Ok(())
        } else {
            Err(self.err(key, format!("expected shape {want:?}, got {got:?}")))
        }
    }

    fn bias(&mut self, key: &str, n: i64) -> Result<Option<Tensor>> {
        match self.get(key) {
            Some(b) => {
                self.shape(key, &b, &[n])?;
                Ok(Some(b))
            }
            None => Ok(None),
        }
    }
}

fn split3(t: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let parts = t.f_chunk(3, 0)?;
    let [q, k, v]: [Tensor; 3] = parts
        .try_into()
        .map_err(|_| Error::invalid("stacked projection", "cannot split in three"))?;
    Ok((q, k, v))
}

fn split3_bias(b: Option<Tensor>) -> Result<Biases> {
    Ok(match b {
        Some(b) => {
            let (q, k, v) = split3(&b)?;
            (Some(q), Some(k), Some(v))
        }
        None => (None, None, None),
    })
}

/// A causal mask buffer must be the lower-triangular ones its module builds; anything
/// else carries information the other layouts cannot hold.
fn check_tril(block: &Block, key: &str, t: &Tensor) -> Result<i64> {
    let size = t.size();
    let n = *size.last().unwrap_or(&0);
    if size.len() < 2 || size[size.len() - 2] != n || t.numel() as i64 != n * n {
        return Err(block.err(key, format!("expected a square causal mask, got {size:?}")));
    }
    let want = Tensor::f_ones([n, n], (Kind::Bool, t.device()))?.f_tril(0)?;
    let same = t.f_reshape([n, n])?.f_ne(0)?.f_equal(&want)?;
    if !same {
        return Err(block.err(
            key,
            "not the lower-triangular causal mask; it cannot be converted",
        ));
    }
    Ok(n)
}

/// Reads the block of `layout` under `prefix` into [`Attn`], with the keys it used.
fn extract(
    tensors: &BTreeMap<String, Tensor>,
    prefix: &str,
    layout: Layout,
    source: &str,
) -> Result<(Attn, BTreeSet<String>)> {
    let mut b = Block {
        tensors,
        prefix,
        source,
        taken: BTreeSet::new(),
    };
    let attn = match layout {
        Layout::Lecture => extract_lecture(&mut b)?,
        Layout::NanoGpt | Layout::HfGpt2 => extract_gpt(&mut b, layout)?,
        Layout::TorchMha => extract_mha(&mut b)?,
        Layout::HfBert => extract_bert(&mut b)?,
    };
    check_dtypes(&b, &attn)?;
    Ok((attn, b.taken))
}

fn check_dtypes(b: &Block, a: &Attn) -> Result<()> {
    let kind = a.q.kind();
    if !matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    ) {
        return Err(b.err("", format!("weights are {kind:?}, not floating point")));
    }
    let all = [
        Some(&a.k),
        Some(&a.v),
        Some(&a.o),
        a.q_b.as_ref(),
        a.k_b.as_ref(),
    ]
    .into_iter()
    .chain([a.v_b.as_ref(), a.o_b.as_ref()])
    .flatten();
    for t in all {
        if t.kind() != kind {
            return Err(b.err(
                "",
                format!("mixed dtypes ({kind:?} and {:?}) in one block", t.kind()),
            ));
        }
    }
    Ok(())
}

fn extract_lecture(b: &mut Block) -> Result<Attn> {
    let mut heads = 0;
    while b
        .tensors
        .contains_key(&format!("{}heads.{heads}.query.weight", b.prefix))
    {
        heads += 1;
    }
    let first = b.need("heads.0.query.weight")?;
    let (hs, c) = match first.size()[..] {
        [hs, c] => (hs, c),
        _ => return Err(b.err("heads.0.query.weight", "expected 2 dims")),
    };
    let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let (mut q_b, mut k_b, mut v_b) = (Vec::new(), Vec::new(), Vec::new());
    let mut block_size = None;
    for h in 0..heads {
        for (name, list, blist) in [
            ("query", &mut q, &mut q_b),
            ("key", &mut k, &mut k_b),
            ("value", &mut v, &mut v_b),
        ] {
            let key = format!("heads.{h}.{name}.weight");
            let w = b.need(&key)?;
            b.shape(&key, &w, &[hs, c])?;
            list.push(w);
            if let Some(bias) = b.bias(&format!("heads.{h}.{name}.bias"), hs)? {
                blist.push(bias);
            }
        }
        let key = format!("heads.{h}.tril");
        if let Some(tril) = b.get(&key) {
            b.shape(&key, &tril, &[-1, -1])?;
            let n = check_tril(b, &key, &tril)?;
            if block_size.is_some_and(|bs| bs != n) {
                return Err(b.err(&key, "heads disagree on the block size"));
            }
            block_size = Some(n);
        }
    }
    let d = heads * hs;
    let o = b.need("proj.weight")?;
    b.shape("proj.weight", &o, &[c, d])?;
    let o_b = b.bias("proj.bias", c)?;
    let cat = |parts: &[Tensor], name: &str| -> Result<Option<Tensor>> {
        match parts.len() {
            0 => Ok(None),
            n if n as i64 == heads => Ok(Some(Tensor::f_cat(parts, 0)?)),
            _ => Err(b.err(
                &format!("heads.*.{name}.bias"),
                "some heads have a bias and some do not",
            )),
        }
    };
    let biases = (cat(&q_b, "query")?, cat(&k_b, "key")?, cat(&v_b, "value")?);
    let qkv = [
        Tensor::f_cat(&q, 0)?,
        Tensor::f_cat(&k, 0)?,
        Tensor::f_cat(&v, 0)?,
    ];
    let mut attn = Attn::new(Layout::Lecture, qkv, biases, o, o_b);
    attn.heads = Some(heads);
    attn.block_size = block_size;
    Ok(attn)
}

/// nanoGPT and Hugging Face GPT-2: the same stacked `c_attn`, transposed in GPT-2
/// (Conv1D computes `x @ W + b` with `W [in, out]`).
fn extract_gpt(b: &mut Block, layout: Layout) -> Result<Attn> {
    let transposed = layout == Layout::HfGpt2;
    let w = b.need("c_attn.weight")?;
    let (c, three_c) = match (&w.size()[..], transposed) {
        (&[rows, cols], false) => (cols, rows),
        (&[rows, cols], true) => (rows, cols),
        _ => return Err(b.err("c_attn.weight", "expected 2 dims")),
    };
    if three_c != 3 * c || c == 0 {
        let want = if transposed { "[C, 3C]" } else { "[3C, C]" };
        return Err(b.err(
            "c_attn.weight",
            format!("expected shape {want}, got {:?}", w.size()),
        ));
    }
    let w = if transposed { w.f_transpose(0, 1)? } else { w };
    let (q, k, v) = split3(&w)?;
    let biases = split3_bias(b.bias("c_attn.bias", 3 * c)?)?;
    let o = b.need("c_proj.weight")?;
    b.shape("c_proj.weight", &o, &[c, c])?;
    let o = if transposed { o.f_transpose(0, 1)? } else { o };
    let o_b = b.bias("c_proj.bias", c)?;
    let mut own = Vec::new();
    let mut block_size = None;
    if let Some(mask) = b.get("bias") {
        b.shape("bias", &mask, &[1, 1, -1, -1])?;
        block_size = Some(check_tril(b, "bias", &mask)?);
        own.push(("bias".to_string(), mask));
    }
    if transposed {
        if let Some(masked_bias) = b.get("masked_bias") {
            own.push(("masked_bias".to_string(), masked_bias));
        }
    }
    let mut attn = Attn::new(layout, [q, k, v], biases, o, o_b);
    attn.block_size = block_size;
    attn.own = own;
    Ok(attn)
}

fn extract_mha(b: &mut Block) -> Result<Attn> {
    let (q, k, v, unpacked) = match b.get("in_proj_weight") {
        Some(w) => {
            let e = w.size().get(1).copied().unwrap_or(0);
            b.shape("in_proj_weight", &w, &[3 * e, e])?;
            if e == 0 {
                return Err(b.err("in_proj_weight", "embed_dim is 0"));
            }
            let (q, k, v) = split3(&w)?;
            (q, k, v, false)
        }
        None => {
            let q = b.need("q_proj_weight")?;
            let e = q.size().first().copied().unwrap_or(0);
            b.shape("q_proj_weight", &q, &[e, e])?;
            let k = b.need("k_proj_weight")?;
            let v = b.need("v_proj_weight")?;
            for (key, t) in [("k_proj_weight", &k), ("v_proj_weight", &v)] {
                b.shape(key, t, &[e, -1])?;
                if t.size()[1] != e {
                    return Err(b.err(
                        key,
                        format!(
                            "kdim/vdim {} differs from embed_dim {e}: the other layouts \
                             project keys and values from the same C",
                            t.size()[1]
                        ),
                    ));
                }
            }
            (q, k, v, true)
        }
    };
    let e = q.size()[0];
    let biases = split3_bias(b.bias("in_proj_bias", 3 * e)?)?;
    let o = b.need("out_proj.weight")?;
    b.shape("out_proj.weight", &o, &[e, e])?;
    let o_b = b.bias("out_proj.bias", e)?;
    let mut own = Vec::new();
    for key in ["bias_k", "bias_v"] {
        if let Some(t) = b.get(key) {
            b.shape(key, &t, &[1, 1, e])?;
            own.push((key.to_string(), t));
        }
    }
    let mut attn = Attn::new(Layout::TorchMha, [q, k, v], biases, o, o_b);
    attn.own_is_lossy = !own.is_empty();
    attn.own = own;
    attn.mha_unpacked = unpacked;
    Ok(attn)
}

fn extract_bert(b: &mut Block) -> Result<Attn> {
    let q = b.need("self.query.weight")?;
    let (d, c) = match q.size()[..] {
        [d, c] => (d, c),
        _ => return Err(b.err("self.query.weight", "expected 2 dims")),
    };
    let k = b.need("self.key.weight")?;
    b.shape("self.key.weight", &k, &[d, c])?;
    let v = b.need("self.value.weight")?;
    b.shape("self.value.weight", &v, &[d, c])?;
    let biases = (
        b.bias("self.query.bias", d)?,
        b.bias("self.key.bias", d)?,
        b.bias("self.value.bias", d)?,
    );
    let o = b.need("output.dense.weight")?;
    b.shape("output.dense.weight", &o, &[c, d])?;
    let o_b = b.bias("output.dense.bias", c)?;
    Ok(Attn::new(Layout::HfBert, [q, k, v], biases, o, o_b))
}

/// A bias, or zeros of `n` (which change nothing) where the target needs one.
fn bias_or_zeros(b: &Option<Tensor>, n: i64, like: &Tensor) -> Result<Tensor> {
    match b {
        Some(b) => Ok(b.shallow_clone()),
        None => Ok(Tensor::f_zeros([n], (like.kind(), like.device()))?),
    }
}

fn is_nonzero(b: &Option<Tensor>) -> Result<bool> {
    match b {
        Some(b) => Ok(b.f_ne(0)?.f_any()?.f_int64_value(&[])? != 0),
        None => Ok(false),
    }
}

/// Writes [`Attn`] in `to`'s keys (relative to the block's prefix).
fn emit(a: &Attn, to: Layout, opts: &ConvertOptions) -> Result<Vec<(String, Tensor)>> {
    let (d, c) = (a.d(), a.c());
    if let (Some(h), Some(src)) = (opts.heads, a.heads) {
        if h != src {
            return Err(Error::invalid(
                "heads",
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
    if to != Layout::Lecture && d != c {
        return Err(Error::invalid(
            "layout",
            format!("{to} needs heads x head_size = embed_dim, got {d} and {c}"),
        ));
    }
    let with_bias = if to.bias_optional() {
        match opts.bias {
            BiasPolicy::Auto => a.has_bias(),
            BiasPolicy::Yes => true,
            BiasPolicy::No => false,
        }
    } else {
        true
    };
    if !with_bias || to == Layout::Lecture {
        let which: &[(&str, &Option<Tensor>)] = if with_bias {
            &[("query", &a.q_b), ("key", &a.k_b), ("value", &a.v_b)]
        } else {
            &[
                ("query", &a.q_b),
                ("key", &a.k_b),
                ("value", &a.v_b),
                ("output", &a.o_b),
            ]
        };
        for (name, bias) in which {
            if is_nonzero(bias)? {
                return Err(Error::invalid(
                    "bias",
                    format!(
                        "the {name} projection has a nonzero bias, which {to}{} cannot hold; \
                         converting would change the outputs",
                        if to == Layout::Lecture {
                            ""
                        } else {
                            " without biases"
                        }
                    ),
                ));
            }
        }
    }
    let mut out = Vec::new();
    let mask_buffer = opts.mask_buffer.unwrap_or(false);
    let keep_own = to == a.source && opts.mask_buffer != Some(false) && !a.own.is_empty();
    match to {
        Layout::Lecture => {
            let heads = opts.heads.or(a.heads).ok_or_else(|| {
                Error::invalid(
                    "heads",
                    "the lecture layout stores one key/query/value per head; give the head count (--heads)",
                )
            })?;
            if heads <= 0 || d % heads != 0 {
                return Err(Error::invalid(
                    "heads",
                    format!("{heads} heads do not divide the projection size {d}"),
                ));
            }
            let bs = opts.block_size.or(a.block_size).ok_or_else(|| {
                Error::invalid(
                    "block_size",
                    "the lecture layout stores each head's tril [block_size, block_size]; give it (--block-size)",
                )
            })?;
            if bs <= 0 {
                return Err(Error::invalid(
                    "block_size",
                    format!("must be positive, got {bs}"),
                ));
            }
            let tril = Tensor::f_ones([bs, bs], (a.q.kind(), a.q.device()))?.f_tril(0)?;
            let hs = d / heads;
            let chunks = |t: &Tensor| t.f_split(hs, 0);
            let (q, k, v) = (chunks(&a.q)?, chunks(&a.k)?, chunks(&a.v)?);
            for h in 0..heads as usize {
                out.push((format!("heads.{h}.key.weight"), k[h].shallow_clone()));
                out.push((format!("heads.{h}.query.weight"), q[h].shallow_clone()));
                out.push((format!("heads.{h}.value.weight"), v[h].shallow_clone()));
                out.push((format!("heads.{h}.tril"), tril.shallow_clone()));
            }
            out.push(("proj.weight".into(), a.o.shallow_clone()));
            out.push(("proj.bias".into(), bias_or_zeros(&a.o_b, c, &a.o)?));
        }
        Layout::NanoGpt | Layout::HfGpt2 => {
            let gpt2 = to == Layout::HfGpt2;
            let w = a.stacked_weight()?;
            let (w, o) = if gpt2 {
                (
                    w.f_transpose(0, 1)?.f_contiguous()?,
                    a.o.f_transpose(0, 1)?.f_contiguous()?,
                )
            } else {
                (w, a.o.shallow_clone())
            };
            out.push(("c_attn.weight".into(), w));
            out.push(("c_proj.weight".into(), o));
            if with_bias {
                let qkv_b = a.stacked_bias()?;
                out.push(("c_attn.bias".into(), qkv_b));
                out.push(("c_proj.bias".into(), bias_or_zeros(&a.o_b, c, &a.o)?));
            }
            if keep_own {
                out.extend(a.own.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
            } else if mask_buffer {
                let bs = opts.block_size.or(a.block_size).ok_or_else(|| {
                    Error::invalid("block_size", "the mask buffer needs --block-size")
                })?;
                let kind = if gpt2 { Kind::Bool } else { a.q.kind() };
                let tril = Tensor::f_ones([bs, bs], (kind, a.q.device()))?
                    .f_tril(0)?
                    .f_view([1, 1, bs, bs])?;
                out.push(("bias".into(), tril));
                if gpt2 {
                    let masked = Tensor::f_from_slice(&[-1e4f32])?.f_reshape([0i64; 0])?;
                    out.push(("masked_bias".into(), masked.f_to_kind(a.q.kind())?));
                }
            }
        }
        Layout::TorchMha => {
            if a.mha_unpacked && to == a.source {
                out.push(("q_proj_weight".into(), a.q.shallow_clone()));
                out.push(("k_proj_weight".into(), a.k.shallow_clone()));
                out.push(("v_proj_weight".into(), a.v.shallow_clone()));
            } else {
                let w = a.stacked_weight()?;
                out.push(("in_proj_weight".into(), w));
            }
            out.push(("out_proj.weight".into(), a.o.shallow_clone()));
            if with_bias {
                let qkv_b = a.stacked_bias()?;
                out.push(("in_proj_bias".into(), qkv_b));
                out.push(("out_proj.bias".into(), bias_or_zeros(&a.o_b, c, &a.o)?));
            }
            if to == a.source {
                out.extend(a.own.iter().map(|(k, t)| (k.clone(), t.shallow_clone())));
            }
        }
        Layout::HfBert => {
            for (name, w, bias) in [
                ("query", &a.q, &a.q_b),
                ("key", &a.k, &a.k_b),
                ("value", &a.v, &a.v_b),
            ] {
                out.push((format!("self.{name}.weight"), w.shallow_clone()));
                out.push((format!("self.{name}.bias"), bias_or_zeros(bias, d, w)?));
            }
            out.push(("output.dense.weight".into(), a.o.shallow_clone()));
            out.push(("output.dense.bias".into(), bias_or_zeros(&a.o_b, c, &a.o)?));
        }
    }
    Ok(out)
}
