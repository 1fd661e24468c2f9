//! The modules this crate ports, named once: parity cases (`docs/parity-cases.md`) and
//! benchmark configurations (`bench/suites.json`) both name a module by these strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A module a parity case or a benchmark runs, with the reference it mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// `head`: the lecture's single causal `Head`.
    Head,
    /// `multi_head`: the lecture's `MultiHeadAttention` (heads run one by one, then `proj`).
    MultiHead,
    /// `causal_self_attention`: nanoGPT's `CausalSelfAttention` (flash variant).
    CausalSelfAttention,
    /// `multihead_attention`: `torch.nn.MultiheadAttention`.
    MultiheadAttention,
    /// `sdpa`: `torch.nn.functional.scaled_dot_product_attention`.
    Sdpa,
}

impl ModuleKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ModuleKind; 5] = [
        ModuleKind::Head,
        ModuleKind::MultiHead,
        ModuleKind::CausalSelfAttention,
        ModuleKind::MultiheadAttention,
        ModuleKind::Sdpa,
    ];

    /// The name cases and suites use, e.g. `causal_self_attention`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleKind::Head => "head",
            ModuleKind::MultiHead => "multi_head",
            ModuleKind::CausalSelfAttention => "causal_self_attention",
            ModuleKind::MultiheadAttention => "multihead_attention",
            ModuleKind::Sdpa => "sdpa",
        }
    }
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that table columns (`{:<22}`) line up.
        f.pad(self.as_str())
    }
}

impl FromStr for ModuleKind {
    type Err = Error;

    /// Parses one of the names in [`ModuleKind::ALL`]; anything else is an
    /// [`Error::Config`] for `module` that lists them.
    fn from_str(s: &str) -> Result<Self, Error> {
        ModuleKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names = ModuleKind::ALL.map(ModuleKind::as_str);
                Error::config("module", format!("expected one of {names:?}, got {s:?}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::ModuleKind;

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for kind in ModuleKind::ALL {
            let name = kind.to_string();
            assert_eq!(name.parse::<ModuleKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ModuleKind>(&json).unwrap(), kind);
        }
        let err = "multihead".parse::<ModuleKind>().unwrap_err().to_string();
        assert!(
            err.contains("\"multihead\"") && err.contains("sdpa"),
            "{err}"
        );
        assert_eq!(format!("{:<6}|", ModuleKind::Head), "head  |");
    }
}
