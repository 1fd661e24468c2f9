//! Every parity case under tests/fixtures/cases, made by PyTorch 2.13 with
//! scripts/make_fixtures.py, runs through the library and matches at
//! `torch.testing.assert_close`'s default tolerances.

mod common;

use std::path::PathBuf;

use tch::Device;
use tch_attention::parity::{collect_case_files, Case, ModuleKind, Spec};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases")
}

#[test]
fn every_fixture_case_matches_pytorch() {
    // The fixtures' kernels (tests/common: FIXTURE_PINS), before any tensor operation.
    common::pin_kernels_like_fixtures();
    let (files, skipped) = collect_case_files(&[cases_dir()]).expect("list cases");
    assert!(skipped.is_empty(), "{skipped:?}");
    assert!(
        files.len() >= 20,
        "expected the fixture cases, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let case = Case::read(file).unwrap_or_else(|e| panic!("{e}"));
        let outcome = case
            .run(Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let report = case.compare(&outcome).expect("compare");
        for check in report.checks.iter().filter(|c| c.failure.is_some()) {
            failures.push(format!(
                "{}: {}: {}",
                file.display(),
                check.name,
                check.failure.as_ref().unwrap()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_module_has_cases_in_every_mode() {
    common::pin_kernels_like_fixtures(); // both tests: whichever starts first pins
    let (files, skipped) = collect_case_files(&[cases_dir()]).expect("list cases");
    assert!(skipped.is_empty(), "{skipped:?}");
    let cases: Vec<Case> = files.iter().map(|f| Case::read(f).expect("read")).collect();
    for module in [
        ModuleKind::Head,
        ModuleKind::MultiHead,
        ModuleKind::CausalSelfAttention,
        ModuleKind::Sdpa,
    ] {
        let of = |pred: &dyn Fn(&Case) -> bool| {
            cases
                .iter()
                .filter(|c| c.module() == module && pred(c))
                .count()
        };
        assert!(
            of(&|c| c.inputs.contains_key("grad_output")) > 0,
            "{module}: no gradient case"
        );
        assert!(
            of(&|c| c.spec.train()
                || matches!(&c.spec, Spec::Sdpa(f) if f.dropout_p.unwrap_or(0.0) > 0.0))
                > 0,
            "{module}: no dropout case"
        );
        for kind in [
            tch::Kind::Double,
            tch::Kind::Float,
            tch::Kind::BFloat16,
            tch::Kind::Half,
        ] {
            assert!(of(&|c| c.kind() == kind) > 0, "{module}: no {kind:?} case");
        }
    }
}
