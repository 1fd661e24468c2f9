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
    let mut own: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    own.sort_by(|a, b| a.0.cmp(&b.0));
    load_strict(own, tensors, source)
}

/// Copies `tensors` into the tensors `own` (which share storage with a module), after
/// checking that the names are the same set and every shape is equal.
pub(crate) fn load_strict(
    own: Vec<(String, Tensor)>,
    tensors: &BTreeMap<String, Tensor>,
    source: &str,
) -> Result<()> {
    if let Some(extra) = tensors.keys().find(|k| !own.iter().any(|(n, _)| n == *k)) {
        let expected: Vec<&str> = own.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::malformed(
            source,
            format!("unexpected key {extra:?}; the module has {expected:?}"),
        ));
    }
    for (name, dst) in &own {
        let src = tensors
            .get(name)
            .ok_or_else(|| Error::malformed(source, format!("missing key {name:?}")))?;
        if src.size() != dst.size() {
            return Err(Error::malformed(
                source,
                format!(
                    "{name}: expected shape {:?}, got {:?}",
                    dst.size(),
                    src.size()
                ),
            ));
        }
    }
    for (name, mut dst) in own {
        tch::no_grad(|| dst.f_copy_(&tensors[&name]))?;
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
