//! The notebook "Self attention from scratch using PyTorch" (`shared/notebook.txt`),
//! replayed cell by cell on tch tensors.
//!
//! Part one is the notebook's code, line for line: `manual_seed(1337)`;
//! `x = randn(B, T, C)`; `key` and `query` `Linear(C, head_size, bias=False)` drawn as
//! `torch.nn.Linear` draws them (key first); `wei = q @ k^T`; `tril`;
//! `masked_fill(tril == 0, -inf)`; softmax; `out = wei @ x`. Every number equals the
//! notebook's.
//!
//! Part two goes on as the lecture does: a `value` projection (`out = wei @ v` instead
//! of `wei @ x`) and the `head_size ** -0.5` scaling that the notebook's text describes
//! but its code leaves out.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::check;
use crate::error::Result;
use crate::heatmap::Heatmap;
use crate::nn::{linear, Linear};
use crate::pretty::{size_repr, tensor_repr, tensor_repr_with};

/// The notebook's sizes; the defaults are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotebookConfig {
    /// `torch.manual_seed(seed)` before anything is drawn. Default 1337.
    pub seed: i64,
    /// B: sequences in the batch. Default 4.
    pub batch: i64,
    /// T: tokens per sequence. Default 8.
    pub time: i64,
    /// C: channels per token. Default 32.
    pub channels: i64,
    /// `head_size`: channels of the key, query and value projections. Default 16.
    pub head_size: i64,
}

impl Default for NotebookConfig {
    fn default() -> Self {
        Self {
            seed: 1337,
            batch: 4,
            time: 8,
            channels: 32,
            head_size: 16,
        }
    }
}

impl NotebookConfig {
    /// Checks that every size is at least 1 (any seed is fine).
    pub fn validate(&self) -> Result<()> {
        check::positive("batch", self.batch)?;
        check::positive("time", self.time)?;
        check::positive("channels", self.channels)?;
        check::positive("head_size", self.head_size)
    }
}

/// Part one: the notebook's tensors.
#[derive(Debug)]
pub struct PartOne {
    /// `x = torch.randn(B, T, C)`, the first thing drawn after the seed.
    pub x: Tensor,
    /// `key = nn.Linear(C, head_size, bias=False)`, drawn first.
    pub key: Linear,
    /// `query = nn.Linear(C, head_size, bias=False)`, drawn after `key`.
    pub query: Linear,
    /// `k = key(x)`, `(B, T, head_size)`.
    pub k: Tensor,
    /// `q = query(x)`, `(B, T, head_size)`.
    pub q: Tensor,
    /// `torch.tril(torch.ones(T, T))`: 1 where a query may see a key, 0 in the future.
    pub tril: Tensor,
    /// Softmax of the masked, unscaled scores `(B, T, T)`.
    pub wei: Tensor,
    /// `wei @ x`, `(B, T, C)`.
    pub out: Tensor,
}

/// Part two: the lecture's head, with a value projection and scaling.
#[derive(Debug)]
pub struct PartTwo {
    /// `value = nn.Linear(C, head_size, bias=False)`, drawn after `key` and `query`.
    pub value: Linear,
    /// `v = value(x)`, `(B, T, head_size)`.
    pub v: Tensor,
    /// Variance of the raw scores `q @ k^T` (about `head_size` for unit inputs).
    pub raw_var: f64,
    /// Variance after scaling by `head_size ** -0.5` (about 1).
    pub scaled_var: f64,
    /// Softmax of the masked, scaled scores.
    pub wei: Tensor,
    /// `wei @ v`, `(B, T, head_size)`.
    pub out: Tensor,
}

/// The notebook, replayed.
#[derive(Debug)]
pub struct Notebook {
    /// The sizes and seed it was replayed with.
    pub config: NotebookConfig,
    /// The VarStore holding the projections, under `key.weight`, `query.weight`,
    /// `value.weight`.
    pub vs: VarStore,
    /// Part one: the notebook's code.
    pub one: PartOne,
    /// Part two: the lecture's value projection and scaling.
    pub two: PartTwo,
}

impl Notebook {
    /// Replays both parts on the CPU in float32, the notebook's default dtype.
    pub fn replay(config: NotebookConfig) -> Result<Self> {
        config.validate()?;
        let NotebookConfig {
            seed,
            batch: b,
            time: t,
            channels: c,
            head_size,
        } = config;
        tch::manual_seed(seed);
        let x = Tensor::f_randn([b, t, c], (Kind::Float, Device::Cpu))?; // (batch, time, channels)
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let key = linear(&root / "key", c, head_size, false)?;
        let query = linear(&root / "query", c, head_size, false)?;
        let k = key.f_forward(&x)?; // (B, T, head_size)
        let q = query.f_forward(&x)?; // (B, T, head_size)
        let scores = q.f_matmul(&k.f_transpose(-2, -1)?)?; // (B, T, hs) @ (B, hs, T) -> (B, T, T)
        let tril = Tensor::f_ones([t, t], (Kind::Float, Device::Cpu))?.f_tril(0)?;
        let future = tril.f_eq(0.0)?;
        // The notebook's two lines: hide the future, then normalise each row.
        let masked_softmax = |scores: &Tensor| -> Result<Tensor> {
            let masked = scores.f_masked_fill(&future, f64::NEG_INFINITY)?;
            Ok(masked.f_softmax(-1, None::<Kind>)?)
        };
        let wei = masked_softmax(&scores)?;
        let out = wei.f_matmul(&x)?; // (B, T, T) @ (B, T, C) -> (B, T, C)
        let one = PartOne {
            x,
            key,
            query,
            k,
            q,
            tril,
            wei,
            out,
        };

        // Part two: the value projection is drawn after key and query, as in the lecture.
        let value = linear(&root / "value", c, head_size, false)?;
        let v = value.f_forward(&one.x)?; // (B, T, head_size)
        let scale = (head_size as f64).powf(-0.5);
        let scaled = scores.f_mul_scalar(scale)?;
        let raw_var = scores.f_var(true)?.f_double_value(&[])?;
        let scaled_var = scaled.f_var(true)?.f_double_value(&[])?;
        let wei2 = masked_softmax(&scaled)?;
        let out2 = wei2.f_matmul(&v)?; // (B, T, T) @ (B, T, hs) -> (B, T, hs)
        let two = PartTwo {
            value,
            v,
            raw_var,
            scaled_var,
            wei: wei2,
            out: out2,
        };
        Ok(Self {
            config,
            vs,
            one,
            two,
        })
    }

    /// What `attn notebook` prints: part one as the notebook prints it (cell markers,
    /// then each cell's output), then part two.
    pub fn render(&self) -> Result<String> {
        let (one, two) = (&self.one, &self.two);
        let mut s = String::new();
        s.push_str("In [8]:\n");
        s.push_str(&format!("{}\n", size_repr(&one.x.size())));
        s.push_str(&format!("{}\n", tensor_repr(&one.x.f_narrow(0, 0, 1)?)?));
        s.push_str(&format!("{}\n", size_repr(&one.out.size())));
        s.push_str("\nIn [10]:\n");
        s.push_str(&first_row_repr(&one.wei)?);

        let hs = self.config.head_size;
        s.push_str(&format!(
            "\n\
             ---- Part two: the lecture's single head, beyond the notebook's code ----\n\
             The notebook's code mixes the raw inputs (out = wei @ x) and leaves the scores\n\
             unscaled. The lecture's head adds a value projection, v = value(x), so a token\n\
             passes on what it chooses to share rather than itself, and scales the scores by\n\
             head_size ** -0.5: each score sums head_size products, so its variance is about\n\
             head_size * var(q) * var(k), and softmax of large scores tends to one-hot.\n\n\
             value = nn.Linear({c}, {hs}, bias=False)   # drawn after key and query\n",
            c = self.config.channels,
        ));
        let var = |t: &Tensor| t.f_var(true).and_then(|v| v.f_double_value(&[]));
        s.push_str(&format!(
            "k.var() = {:.4}, q.var() = {:.4}\n\
             (q @ k^T).var()                   = {:.4}\n\
             (q @ k^T * head_size**-0.5).var() = {:.4}\n",
            var(&one.k)?,
            var(&one.q)?,
            two.raw_var,
            two.scaled_var
        ));
        s.push_str("wei[0] with scaling:\n");
        s.push_str(&first_row_repr(&two.wei)?);
        s.push_str(&format!("out = wei @ v: {}\n", size_repr(&two.out.size())));
        Ok(s)
    }
}

impl Notebook {
    /// The first sequence's attention, `wei[0]`, of both parts side by side: what the
    /// notebook computes (unscaled) and the lecture's scaled head.
    pub fn heatmap(&self) -> Result<Heatmap> {
        let panels = Tensor::f_stack(&[self.one.wei.f_get(0)?, self.two.wei.f_get(0)?], 0)?; // (2, T, T)
        let c = &self.config;
        Heatmap::new(&panels.f_detach()?)?
            .with_title(format!(
                "The notebook's wei[0] (seed {}, B={}, T={}, C={}, head_size={})",
                c.seed, c.batch, c.time, c.channels, c.head_size
            ))
            .with_subtitle(
                "rows: query position t, columns: key position; causal: row t sees keys 0..t; colour: attention weight",
            )
            .with_panel_titles(vec![
                "q @ k^T (notebook)".into(),
                "* head_size**-0.5".into(),
            ])
    }
}

/// `wei[0]` as the notebook displays it. wei comes from Linear weights that require grad,
/// so PyTorch appends the grad_fn of the last op, `wei[0]`'s select; tch cannot name
/// grad_fns itself.
fn first_row_repr(wei: &Tensor) -> Result<String> {
    let wei0 = wei.f_get(0)?;
    let suffix: &[&str] = if wei0.requires_grad() {
        &["grad_fn=<SelectBackward0>"]
    } else {
        &[]
    };
    Ok(format!("{}\n", tensor_repr_with(&wei0, suffix)?))
}
