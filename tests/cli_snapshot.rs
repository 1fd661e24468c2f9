//! Every command, flag and default of `attn` as a snapshot: `attn --help` and each
//! `attn COMMAND --help` equal tests/fixtures/cli/*.txt, so a refactor cannot move a
//! flag or a default unnoticed. A deliberate change rewrites the snapshot:
//! `ATTN_CLI_SNAPSHOT=write cargo test --test cli_snapshot`, then review the diff
//! (the snapshot was first written from the binary before the spine refactor, issue 22).

mod common;

use std::path::PathBuf;

fn snapshot_dir() -> PathBuf {
    common::fixtures().join("cli")
}

fn help(args: &[&str]) -> String {
    let out = common::attn(args);
    assert_eq!(out.status.code(), Some(0), "attn {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The command names of `attn --help`'s "Commands:" section, `help` left out.
fn commands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_flag_and_default_equals_the_snapshot() {
    let top = help(&["--help"]);
    let mut pages = vec![("attn".to_string(), top.clone())];
    for c in commands(&top) {
        pages.push((c.clone(), help(&[c.as_str(), "--help"])));
    }
    assert!(pages.len() > 10, "{top}");
    let write = std::env::var("ATTN_CLI_SNAPSHOT").as_deref() == Ok("write");
    let mut differ = Vec::new();
    for (name, text) in &pages {
        let path = snapshot_dir().join(format!("{name}.txt"));
        if write {
            std::fs::create_dir_all(snapshot_dir()).unwrap();
            std::fs::write(&path, text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            differ.push(format!("{name}: {}\n{text}", path.display()));
        }
    }
    let snapshots = std::fs::read_dir(snapshot_dir()).unwrap().count();
    assert_eq!(snapshots, pages.len(), "a command was added or removed");
    assert!(
        differ.is_empty(),
        "help differs from the snapshot:\n{}",
        differ.join("\n")
    );
}
