//! Fuzzing the readers of untrusted files: the checkpoint reader
//! (`io::read_checkpoint_bytes`, then layout detection and conversion) and the parity-case
//! reader (`parity::Case`, then running and comparing the case) get the committed
//! fixtures with bytes overwritten, flipped, inserted, removed or cut off. Each must give
//! `Ok` or an error naming the file, never a panic, an abort, a hang or a huge allocation.
//!
//! Two runs of the same property (proptest, on stable Rust and offline):
//! - `corrupted_fixtures_never_crash_the_readers`: a fixed seed and a few hundred
//!   mutations, part of every `cargo test` (seconds);
//! - `fuzz_corrupted_fixtures` and `fuzz_every_header_byte_of_every_checkpoint`, the long
//!   runs, `#[ignore]`d: `make fuzz` runs them (`FUZZ_CASES`, default 20000, sets the
//!   number of mutations; `FUZZ_SEED` a 64-bit seed to replay a run, printed at the start).

mod common;

use std::cell::Cell;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};
use tch::Device;
use tch_attention::checkpoint::{convert, detect, ConvertOptions, Layout};
use tch_attention::io::read_checkpoint_bytes;
use tch_attention::parity::{collect_case_files, Case};

/// Which reader a fixture goes to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reader {
    Checkpoint,
    Case,
}

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    reader: Reader,
}

fn fixtures_dir() -> PathBuf {
    common::fixtures()
}

/// The five checkpoints (one per layout and file format), then every parity case.
fn fixtures() -> Vec<Fixture> {
    let read = |path: &Path, reader| Fixture {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        bytes: std::fs::read(path).unwrap(),
        reader,
    };
    let checkpoints = fixtures_dir().join("checkpoints");
    let mut all: Vec<Fixture> = [
        "lecture.pt",
        "nanogpt_ckpt.pt",
        "torch_mha.pth",
        "hf_gpt2.bin",
        "hf_bert.safetensors",
    ]
    .iter()
    .map(|f| read(&checkpoints.join(f), Reader::Checkpoint))
    .collect();
    let (cases, _) = collect_case_files(&[fixtures_dir().join("cases")]).unwrap();
    assert!(cases.len() > 100, "only {} case files", cases.len());
    all.extend(cases.iter().map(|p| read(p, Reader::Case)));
    all
}

/// The checkpoint reader, and on what it reads, layout detection and conversion of every
/// block found to every layout: `Ok(true)` if the file read, `Ok(false)` if it was an
/// error naming the file, `Err` (a test failure) otherwise.
fn read_checkpoint(name: &str, bytes: &[u8]) -> Result<bool, String> {
    let ckpt = match read_checkpoint_bytes(name, bytes) {
        Ok(ckpt) => ckpt,
        Err(e) if e.to_string().contains(name) => return Ok(false),
        Err(e) => return Err(format!("an error that does not name {name}: {e}")),
    };
    for found in detect(&ckpt.tensors) {
        let opts = ConvertOptions {
            prefix: Some(found.prefix.clone()),
            heads: Some(found.heads.unwrap_or(2)),
            block_size: Some(6),
            ..ConvertOptions::default()
        };
        for to in Layout::ALL {
            // A conversion of what was read may fail (a corrupted shape, say), but only
            // with an error naming the file.
            if let Err(e) = convert(&ckpt.tensors, found.layout, to, &opts, name) {
                if !e.to_string().contains(name) {
                    return Err(format!("{} -> {to}: error lacks {name}: {e}", found.layout));
                }
            }
        }
    }
    Ok(true)
}

/// The parity-case reader, through a file (its only entry point), then the case run on
/// the CPU and compared: `Ok(true)` if the case read, `Ok(false)` if reading was an
/// error naming the file. Running a case that read may fail (its config and tensors
/// need not agree any more), as an error and not a panic.
fn read_case(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool, String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let case = match Case::read(&path) {
        Ok(case) => case,
        Err(e) if e.to_string().contains(&path.display().to_string()) => return Ok(false),
        Err(e) => {
            return Err(format!(
                "an error that does not name {}: {e}",
                path.display()
            ))
        }
    };
    if let Ok(outcome) = case.run(Device::Cpu) {
        // Compared only for the absence of a crash: the numbers may be anything now.
        drop(case.compare(&outcome));
    }
    Ok(true)
}

/// Where a mutation lands: near the start or the end of the file (the headers, the
/// pickle, the zip directory), or anywhere.
#[derive(Debug, Clone)]
enum Pos {
    Head(usize),
    Tail(usize),
    Anywhere(Index),
}

impl Pos {
    fn at(&self, len: usize) -> usize {
        match self {
            Pos::Head(i) => (*i).min(len.saturating_sub(1)),
            Pos::Tail(i) => len.saturating_sub(1 + *i),
            Pos::Anywhere(i) => i.index(len.max(1)),
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(Pos, u8),
    FlipBit(Pos, u8),
    Insert(Pos, Vec<u8>),
    Remove(Pos, usize),
    Truncate(Pos),
}

impl Mutation {
    fn apply(&self, b: &mut Vec<u8>) {
        if b.is_empty() {
            return;
        }
        match self {
            Mutation::Set(p, v) => {
                let i = p.at(b.len());
                b[i] = *v;
            }
            Mutation::FlipBit(p, bit) => {
                let i = p.at(b.len());
                b[i] ^= 1 << (bit % 8);
            }
            Mutation::Insert(p, bytes) => {
                let i = p.at(b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove(p, n) => {
                let i = p.at(b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Truncate(p) => {
                let i = p.at(b.len());
                b.truncate(i);
            }
        }
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        (0usize..600).prop_map(Pos::Head),
        (0usize..600).prop_map(Pos::Tail),
        any::<Index>().prop_map(Pos::Anywhere),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that mean something to the parsers: zip and pickle opcodes, JSON syntax.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![
            0x00, 0xff, b'P', b'K', b'{', b'}', b'"', b',', b'9', 0x80
        ])
    ];
    prop_oneof![
        4 => (pos(), byte).prop_map(|(p, v)| Mutation::Set(p, v)),
        2 => (pos(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        1 => (pos(), prop::collection::vec(any::<u8>(), 1..9)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (pos(), 1usize..64).prop_map(|(p, n)| Mutation::Remove(p, n)),
        1 => pos().prop_map(Mutation::Truncate),
    ]
}

/// Runs `cases` random mutations (one to three each) of random fixtures through their
/// readers, from `seed`; fails on a panic or an error that does not name the file, and
/// unless both readers both read and refused some of what they got.
fn fuzz(cases: u32, seed: u64) {
    let fixtures = fixtures();
    let dir = common::tempdir(&format!("fuzz-{seed}"));
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    // (read, refused) per reader.
    let counts = [Cell::new((0, 0)), Cell::new((0, 0))];
    // Half the runs on the five checkpoints, half on the hundred-odd cases.
    let n_checkpoints = fixtures
        .iter()
        .filter(|f| f.reader == Reader::Checkpoint)
        .count();
    let strategy = (
        prop_oneof![0..n_checkpoints, n_checkpoints..fixtures.len()],
        prop::collection::vec(mutation(), 1..4),
    );
    let result = runner.run(&strategy, |(i, mutations)| {
        let f = &fixtures[i];
        let mut bytes = f.bytes.clone();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        let read = match f.reader {
            Reader::Checkpoint => read_checkpoint(&f.name, &bytes),
            Reader::Case => read_case(&dir, &f.name, &bytes),
        }
        .map_err(TestCaseError::fail)?;
        let c = &counts[f.reader as usize];
        let (ok, err) = c.get();
        c.set(if read { (ok + 1, err) } else { (ok, err + 1) });
        Ok(())
    });
    std::fs::remove_dir_all(&dir).ok();
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
    for (reader, c) in ["checkpoint", "case"].iter().zip(&counts) {
        let (ok, err) = c.get();
        assert!(
            ok > 0 && err > 0,
            "{reader} reader: {ok} read, {err} refused; the mutations must hit both"
        );
    }
}

#[test]
fn corrupted_fixtures_never_crash_the_readers() {
    fuzz(400, 0x7c4a_11d0);
}

#[test]
#[ignore = "the long fuzzing run (minutes): `make fuzz`, FUZZ_CASES and FUZZ_SEED set it"]
fn fuzz_corrupted_fixtures() {
    let env = |key: &str| std::env::var(key).ok().map(|v| v.parse().expect(key));
    let cases = env("FUZZ_CASES").unwrap_or(20_000);
    let seed = env("FUZZ_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.unwrap().as_nanos() as u64
    });
    eprintln!("fuzz_corrupted_fixtures: FUZZ_CASES={cases} FUZZ_SEED={seed}");
    fuzz(cases as u32, seed);
}

/// Every byte of the first and last 600 of each checkpoint (the headers, the pickle and
/// the zip directory live there) and every 7th between, overwritten with 0xff and with
/// one bit flipped: what was `tests/checkpoint.rs`'s byte-corruption test (~15.9k reads).
#[test]
#[ignore = "the exhaustive sweep (~16k reads, each converted to every layout; minutes): `make fuzz`"]
fn fuzz_every_header_byte_of_every_checkpoint() {
    let (mut refused, mut reads) = (0, 0);
    for f in fixtures().iter().filter(|f| f.reader == Reader::Checkpoint) {
        let n = f.bytes.len();
        let positions = (0..n).filter(|&p| p < 600 || p + 600 >= n || p % 7 == 0);
        for p in positions {
            for value in [0xff, f.bytes[p] ^ 0x01] {
                let mut b = f.bytes.clone();
                b[p] = value;
                reads += 1;
                match read_checkpoint(&f.name, &b) {
                    Ok(true) => {}
                    Ok(false) => refused += 1,
                    Err(e) => panic!("{} byte {p} = {value:#04x}: {e}", f.name),
                }
            }
        }
    }
    assert!(refused > 0 && refused < reads, "{refused} of {reads}");
}
