//! What `attn explain` shows, for any model: one layer's attention for one sentence, per
//! head or averaged over heads, drawn as a heatmap and summarised as each token's most
//! attended tokens. The encoder (`models::bert`) and the decoder (`models::llama`) each
//! compute their layer's weights and hand them to [`Explanation::new`].

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::heatmap::Heatmap;

/// Which heads of a layer to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// Every head, one panel each; the summary uses their average.
    All,
    /// The mean over heads, one panel.
    Average,
    /// One head.
    One(usize),
}

impl Heads {
    /// Whether these heads exist in a layer of `n_heads`: checked before any compute.
    pub fn check(self, n_heads: usize) -> Result<()> {
        match self {
            Heads::One(h) if h >= n_heads => Err(Error::invalid(
                "head",
                format!("must be in 0..{n_heads} for this model, got {h}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `layer` exists in a model of `n_layers`: checked before any compute.
pub fn check_layer(layer: usize, n_layers: usize) -> Result<()> {
    if layer >= n_layers {
        return Err(Error::invalid(
            "layer",
            format!("must be in 0..{n_layers} for this model, got {layer}"),
        ));
    }
    Ok(())
}

/// One layer's attention for one sentence.
#[derive(Debug)]
pub struct Explanation {
    /// The sentence as given.
    pub sentence: String,
    /// Its tokens (`[CLS]` first and `[SEP]` last for BERT): the rows and columns, in order.
    pub tokens: Vec<String>,
    /// Which tokens the model adds itself (`[CLS]`, `[SEP]`, a beginning-of-text token):
    /// what `skip_special` leaves out of the ranking.
    pub special: Vec<bool>,
    /// The layer, counted from 0.
    pub layer: usize,
    /// Which heads the panels and weights come from.
    pub heads: Heads,
    /// What the figure draws: `(H, L, L)` for [`Heads::All`], else `(1, L, L)`.
    pub panels: Tensor,
    /// What the summary ranks: `(L, L)`, rows = queries, columns = keys.
    pub weights: Tensor,
}

/// A token and the tokens it attends to most, with their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Focus {
    /// The token reading (the query).
    pub token: String,
    /// The tokens it reads most (the keys), with their weights, largest first.
    pub top: Vec<(String, f32)>,
}

impl Explanation {
    /// Layer `layer`'s weights `all` `(H, L, L)` (rows = queries) for `sentence`, whose
    /// tokens label the rows and columns; `heads` picks what is drawn and ranked.
    pub fn new(
        sentence: &str,
        tokens: Vec<String>,
        special: Vec<bool>,
        layer: usize,
        heads: Heads,
        all: &Tensor,
    ) -> Result<Self> {
        let size = all.size();
        let l = tokens.len() as i64;
        if size.len() != 3 || size[1] != l || size[2] != l || special.len() != tokens.len() {
            return Err(Error::shape(
                "attention weights",
                format!("(H, L, L) with L = {l} tokens"),
                &size,
            ));
        }
        heads.check(size[0] as usize)?;
        let all = all.f_to_kind(Kind::Float)?;
        let mean = all.f_mean_dim(0, false, None::<Kind>)?; // (L, L)
        let (panels, weights) = match heads {
            Heads::All => (all, mean),
            Heads::Average => (mean.f_unsqueeze(0)?, mean),
            Heads::One(h) => {
                let w = all.f_get(h as i64)?;
                (w.f_unsqueeze(0)?, w)
            }
        };
        Ok(Explanation {
            sentence: sentence.to_string(),
            tokens,
            special,
            layer,
            heads,
            panels,
            weights,
        })
    }

    /// Which weights these are, in words ("layer 5, head 11").
    pub fn describe(&self) -> String {
        match self.heads {
            Heads::All => format!("layer {}, all heads (summary: their mean)", self.layer),
            Heads::Average => format!("layer {}, mean over heads", self.layer),
            Heads::One(h) => format!("layer {}, head {h}", self.layer),
        }
    }

    /// For each token, the `k` tokens it attends to most, heaviest first. With
    /// `skip_special`, the tokens the model adds (`[CLS]`, `[SEP]`, ...) are left out of
    /// the ranking (not renormalised): models park much of their attention there.
    pub fn top(&self, k: usize, skip_special: bool) -> Result<Vec<Focus>> {
        let l = self.tokens.len();
        let mut out = Vec::with_capacity(l);
        for (q, token) in self.tokens.iter().enumerate() {
            let row = Vec::<f32>::try_from(self.weights.f_get(q as i64)?)?;
            let mut keys: Vec<usize> = (0..l)
                .filter(|&j| !(skip_special && self.special[j]))
                .collect();
            // Heaviest first; ties keep sentence order.
            keys.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let top = keys
                .into_iter()
                .take(k)
                .map(|j| (self.tokens[j].clone(), row[j]))
                .collect();
            out.push(Focus {
                token: token.clone(),
                top,
            });
        }
        Ok(out)
    }

    /// The summary `attn explain` prints: one line per token.
    pub fn summary(&self, k: usize, skip_special: bool) -> Result<String> {
        let focus = self.top(k, skip_special)?;
        let width = focus
            .iter()
            .map(|f| f.token.chars().count())
            .max()
            .unwrap_or(0);
        let mut s = format!(
            "{}: each token and the {k} tokens it attends to most{}\n",
            self.describe(),
            if skip_special {
                " (special tokens left out)"
            } else {
                ""
            }
        );
        for (i, f) in focus.iter().enumerate() {
            let top: Vec<String> = f.top.iter().map(|(t, w)| format!("{t} {w:.3}")).collect();
            s.push_str(&format!(
                "{i:>3} {:<width$}  -> {}\n",
                f.token,
                top.join(", ")
            ));
        }
        Ok(s)
    }

    /// The figure: tokens on both axes, one panel per head drawn.
    pub fn heatmap(&self, model_name: &str) -> Result<Heatmap> {
        let map = Heatmap::new(&self.panels)?
            .with_labels(self.tokens.clone(), self.tokens.clone())?
            .with_title(format!("{model_name}: {}", self.describe()))
            .with_subtitle(format!(
                "\"{}\"\nrows: the token reading (query); columns: the token read (key)",
                self.sentence
            ));
        Ok(match self.heads {
            Heads::All => map,
            Heads::Average => map.with_panel_titles(vec!["mean over heads".into()])?,
            Heads::One(h) => map.with_panel_titles(vec![format!("head {h}")])?,
        })
    }
}
