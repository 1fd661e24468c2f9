//! `attn run` and `attn verify`: parity cases (docs/parity-cases.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    let skipped_note = (!skipped.is_empty()).then(|| {
        format!(
            "skipped {} safetensors file(s) without case metadata",
            skipped.len()
        )
    });
    if files.is_empty() {
        let why = skipped_note.map_or(String::new(), |n| format!(" ({n})"));
        bail!("no *.safetensors case files under {paths:?}{why}");
    }
    if !json {
        println!(
            "{:<60} {:<22} {:<9} {:>11} {:>11}  result",
            "case", "module", "dtype", "max abs", "max rel"
        );
    }
    let (mut failed, mut invalid) = (0, Vec::new());
    for file in &files {
        match verify_one(file, json, device) {
            Ok(pass) => failed += usize::from(!pass),
            Err(e) => invalid.push((file, e)),
        }
    }
    let passed = files.len() - failed - invalid.len();
    let summary = format!("verify: {passed} passed, {failed} failed");
    if let Some((file, e)) = invalid.first() {
        // A user error: one line, the first case that could not be read or run, with
        // the counts (every such case also has its row on stdout).
        let name = file.display().to_string();
        let e = e.to_string();
        let first = if e.contains(&name) {
            e
        } else {
            format!("{name}: {e}")
        };
        let more = match invalid.len() {
            1 => String::new(),
            n => format!("; {} more case(s) could not be read or run", n - 1),
        };
        let note = skipped_note.map_or(String::new(), |n| format!(", {n}"));
        bail!("{first}{more} ({summary}{note})");
    }
    if let Some(note) = skipped_note {
        eprintln!("attn: {note}");
    }
    eprintln!("{summary}");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads, runs and compares one case and prints its row (a table row, or one JSON
/// object); whether it passed. A case that cannot be read or run has its row too, and
/// is the error.
fn verify_one(file: &Path, json: bool, device: Device) -> Result<bool> {
    let name = file.display().to_string();
    let result = Case::read(file).and_then(|case| {
        let outcome = case.run(device)?;
        let report = case.compare(&outcome)?;
        Ok((case, report))
    });
    let (case, report) = match result {
        Ok(done) => done,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "case": name, "error": e.to_string() })
                );
            } else {
                println!("{name:<60} invalid: {e}");
            }
            return Err(e.into());
        }
    };
    let pass = report.passed();
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
    Ok(pass)
}
