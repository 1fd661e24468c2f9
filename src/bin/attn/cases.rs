//! `attn run` and `attn verify`: parity cases (docs/parity-cases.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tch::Device;
use tch_attention::io::{write_safetensors_new, Overwrite};
use tch_attention::parity::{collect_case_files, Case};

use crate::DeviceArg;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The case file (docs/parity-cases.md).
    case: PathBuf,
    /// Where to write output, attn_weights and gradients (safetensors).
    #[arg(long, short)]
    output: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Case files, or folders searched recursively for *.safetensors.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// One JSON object per case per line instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let RunArgs {
        case,
        output,
        device,
        force,
    } = args;
    let c = Case::read(&case)?;
    let outcome = c
        .run(device.device()?)
        .with_context(|| format!("{}", case.display()))?;
    let mut meta = BTreeMap::new();
    meta.insert("case".to_string(), case.display().to_string());
    meta.insert("module".to_string(), c.module().to_string());
    write_safetensors_new(
        &output,
        outcome.tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &meta,
        Overwrite::from(force),
    )?;
    eprintln!(
        "attn: wrote {} tensors to {}",
        outcome.tensors.len(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    verify_paths(&args.paths, args.json, args.device.device()?)
}

fn verify_paths(paths: &[PathBuf], json: bool, device: Device) -> Result<ExitCode> {
    let (files, skipped) = collect_case_files(paths)?;
    if !skipped.is_empty() {
        eprintln!(
            "attn: skipped {} safetensors file(s) without case metadata",
            skipped.len()
        );
    }
    if files.is_empty() {
        bail!("no *.safetensors case files under {paths:?}");
    }
    if !json {
        println!(
            "{:<60} {:<22} {:<9} {:>11} {:>11}  result",
            "case", "module", "dtype", "max abs", "max rel"
        );
    }
    let (mut failed, mut invalid) = (0, 0);
    for file in &files {
        let name = file.display().to_string();
        let result = Case::read(file).and_then(|case| {
            let outcome = case.run(device)?;
            let report = case.compare(&outcome)?;
            Ok((case, report))
        });
        match result {
            Ok((case, report)) => {
                let pass = report.passed();
                failed += usize::from(!pass);
                let dtype = format!("{:?}", case.kind());
                let failures: Vec<String> = report
                    .checks
                    .iter()
                    .filter_map(|c| c.failure.as_ref().map(|f| format!("{}: {f}", c.name)))
                    .collect();
                if json {
                    let obj = serde_json::json!({
                        "case": name, "module": case.module(), "dtype": dtype,
                        "max_abs": report.max_abs(), "max_rel": report.max_rel(),
                        "pass": pass, "failures": failures,
                    });
                    println!("{obj}");
                } else {
                    let verdict = if pass {
                        "pass".to_string()
                    } else {
                        format!("FAIL ({})", failures.join("; "))
                    };
                    println!(
                        "{name:<60} {:<22} {dtype:<9} {:>11.3e} {:>11.3e}  {verdict}",
                        case.module(),
                        report.max_abs(),
                        report.max_rel()
                    );
                }
            }
            Err(e) => {
                invalid += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "case": name, "error": e.to_string() })
                    );
                } else {
                    println!("{name:<60} invalid: {e}");
                }
            }
        }
    }
    let passed = files.len() - failed - invalid;
    eprintln!("verify: {passed} passed, {failed} failed");
    if invalid > 0 {
        eprintln!("attn: {invalid} case(s) could not be read or run");
        Ok(ExitCode::from(2))
    } else if failed > 0 {
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
