//! Parity cases: one safetensors file holding a module's config, parameters, inputs and
//! what PyTorch computed (`docs/parity-cases.md`); running a case through the crate's
//! module and comparing with `torch.testing.assert_close`'s tolerances.
//!
//! - `kind.rs`: [`ModuleKind`], the modules by name (shared with `bench`);
//! - `case.rs`, `spec.rs`: the format, its typed metadata, and reading it (through `crate::io`'s safetensors header reader, which checks shapes first);
//! - `run.rs`: running a case; `compare.rs`: checking the result;
//! - `collect.rs`: finding case files in folders.

mod case;
mod collect;
mod compare;
mod kind;
mod run;
mod spec;

pub use case::{Case, FORMAT};
pub use collect::collect_case_files;
pub use compare::{compare_tensors, tolerance, Report, TensorCheck};
pub use kind::ModuleKind;
pub use run::Outcome;
pub use spec::{
    CausalSelfAttentionArgs, HeadArgs, MultiHeadArgs, MultiheadAttentionArgs,
    MultiheadAttentionForward, NoArgs, SdpaForward, Spec, TrainForward,
};
