//! Parity cases: one safetensors file holding a module's config, parameters, inputs and
//! what PyTorch computed (`docs/parity-cases.md`); running a case through the crate's
//! module and comparing with `torch.testing.assert_close`'s tolerances.

mod case;

pub use case::{
    collect_case_files, compare_tensors, tolerance, Case, Outcome, Report, TensorCheck, FORMAT,
    MODULES,
};
