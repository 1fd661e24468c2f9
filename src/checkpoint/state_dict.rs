//! A module's VarStore <-> a PyTorch state_dict (name -> tensor).
//!
//! The modules are built from `nn::Path`, so their VarStore names are PyTorch's
//! state_dict keys; loading is a strict `load_state_dict`: every key must be present,
//! nothing else may be, and every shape must match — the first that does not is named.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::{Error, Result};

/// Copies `tensors` into the variables of `vs`, like `load_state_dict(strict=True)`.
/// Values are converted to each variable's dtype and device. `source` names where the
/// tensors came from, for the error message.
pub fn load_into(vs: &VarStore, tensors: &BTreeMap<String, Tensor>, source: &str) -> Result<()> {
    let variables = vs.variables();
    let mut expected: Vec<&String> = variables.keys().collect();
    expected.sort();
    if let Some(extra) = tensors.keys().find(|k| !variables.contains_key(*k)) {
        return Err(Error::load(
            source,
            format!("unexpected key {extra:?}; the module has {expected:?}"),
        ));
    }
    for name in expected {
        let var = &variables[name];
        let src = tensors
            .get(name)
            .ok_or_else(|| Error::load(source, format!("missing key {name:?}")))?;
        if src.size() != var.size() {
            return Err(Error::load(
                source,
                format!(
                    "{name}: expected shape {:?}, got {:?}",
                    var.size(),
                    src.size()
                ),
            ));
        }
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.f_copy_(src))?;
    }
    Ok(())
}

/// The VarStore as a state_dict, sorted by name.
pub fn state_dict(vs: &VarStore) -> BTreeMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach()))
        .collect()
}
