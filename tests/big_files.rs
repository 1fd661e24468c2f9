//! Memory that must not grow with the file, and views that must not multiply it (issue
//! 16): `torch.save` views with stride 0 are described and kept as views, never copied
//! out unless an output needs them, and then only after a clear check; `inspect` reads
//! headers only; every reader refuses a bad file after its first bytes; `convert`
//! streams and writes the same bytes as the in-memory path. Every file is generated
//! here, small (or sparse), by the helpers below. Peak memory is the child process's
//! own, from wait4(), with margins far below what the broken behaviour takes.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use tch_attention::checkpoint::{
    convert, convert_file, detect, detect_file, ConvertOptions, Layout,
};
use tch_attention::io::{
    read_checkpoint, write_safetensors, write_safetensors_new, CheckpointFile, Overwrite,
};

mod common;

use common::peak::{measured, ok, refused, start_up, with_file_size_limit};
use common::torch_save::{self, Entry};
use common::{fixtures, tempdir};

const MIB: f64 = (1 << 20) as f64;

// ---------------------------------------------------------------------------------------
// Generated torch.save archives: a protocol-2 pickle of
// `{key: _rebuild_tensor_v2(storage, offset, size, stride)}` and its storage records.
// ---------------------------------------------------------------------------------------

/// One tensor of the pickle: a view of float storage `storage` (`numel` elements).
struct View<'a> {
    key: String,
    storage: &'a str,
    numel: u64,
    size: Vec<i32>,
    stride: Vec<i32>,
}

fn view(
    key: &str,
    storage: &'static str,
    numel: u64,
    size: &[i32],
    stride: &[i32],
) -> View<'static> {
    View {
        key: key.to_string(),
        storage,
        numel,
        size: size.to_vec(),
        stride: stride.to_vec(),
    }
}

/// `data.pkl` of `views`, each a float storage view at offset 0.
fn pickle(views: &[View]) -> Vec<u8> {
    let entries: Vec<Entry> = views
        .iter()
        .map(|v| Entry {
            key: &v.key,
            class: "FloatStorage",
            storage: v.storage,
            numel: v.numel,
            offset: 0,
            size: &v.size,
            stride: &v.stride,
        })
        .collect();
    torch_save::pickle(&entries)
}

/// A torch.save archive of `views` over `storages` (name, f32 values).
fn torch_file(path: &Path, views: &[View], storages: &[(&str, Vec<f32>)]) {
    let pkl = pickle(views);
    let data: Vec<(String, Vec<u8>)> = storages
        .iter()
        .map(|(name, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (format!("archive/data/{name}"), bytes)
        })
        .collect();
    let mut records: Vec<(&str, &[u8])> =
        vec![("archive/data.pkl", &pkl), ("archive/byteorder", b"little")];
    records.extend(data.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    std::fs::write(path, torch_save::zip(&records)).unwrap();
}

/// A tiny nanoGPT block (C = 4) of real storages "q" (c_attn) and "o" (c_proj), plus
/// `extra` views; storage "one" holds the single float 7.
fn nanogpt_with(path: &Path, extra: Vec<View<'static>>) {
    let p = "transformer.h.0.attn.";
    let mut views = vec![
        view(&format!("{p}c_attn.weight"), "q", 48, &[12, 4], &[4, 1]),
        view(&format!("{p}c_proj.weight"), "o", 16, &[4, 4], &[4, 1]),
    ];
    views.extend(extra);
    let values = |n: usize| (0..n).map(|i| i as f32 * 0.5).collect::<Vec<_>>();
    torch_file(
        path,
        &views,
        &[("q", values(48)), ("o", values(16)), ("one", vec![7.0])],
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// Views that multiply memory.
// ---------------------------------------------------------------------------------------

#[test]
fn a_stride_0_view_of_4_bytes_is_described_and_kept_a_view() {
    let dir = tempdir("stride0");
    let path = dir.join("stride0.pt");
    // 10^9 floats (3.7 GiB contiguous) that are one float repeated.
    nanogpt_with(&path, vec![view("wte", "one", 1, &[1_000_000_000], &[0])]);

    let file = CheckpointFile::open(&path).unwrap();
    assert_eq!(file.tensors["wte"].numel(), 1_000_000_000);
    assert_eq!(file.tensors["wte"].stride, [0]);
    let wte = file.load("wte").unwrap().unwrap();
    assert_eq!(wte.stride(), [0], "loaded as a view, not copied out");
    assert_eq!(wte.double_value(&[999_999_999]), 7.0);
    let all = read_checkpoint(&path).unwrap();
    assert_eq!(all.tensors["wte"].stride(), [0]);

    let base = start_up(&dir);
    let run = measured(&dir, &["inspect", s(&path)]);
    ok(&run);
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("wte "));
    assert!(
        line.is_some_and(|l| l.ends_with("Float     [1000000000]")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("nanogpt    1 block(s), C = 4"),
        "{}",
        run.stdout
    );
    assert!(
        run.peak_mib < base + 64.0,
        "inspect peaked at {:.0} MiB, start-up {base:.0} MiB",
        run.peak_mib
    );
}

#[test]
fn convert_materialises_a_view_only_when_it_fits_and_says_why_not() {
    let dir = tempdir("stride0-convert");
    let out = dir.join("out.safetensors");
    // A small stride-0 view, inside a block and outside: written out in full.
    let small = dir.join("small.pt");
    let p = "transformer.h.0.attn.";
    nanogpt_with(
        &small,
        vec![
            view(&format!("{p}c_proj.bias"), "one", 1, &[4], &[0]),
            view("wpe", "one", 1, &[3, 5], &[0, 0]),
        ],
    );
    let base = start_up(&dir);
    let run = measured(
        &dir,
        &[
            "convert",
            "--from",
            "nanogpt",
            "--to",
            "hf-gpt2",
            s(&small),
            s(&out),
        ],
    );
    ok(&run);
    let got = read_checkpoint(&out).unwrap().tensors;
    assert!(got["wpe"].equal(&Tensor::full([3, 5], 7.0, (Kind::Float, tch::Device::Cpu))));
    assert!(got[&format!("{p}c_proj.bias")].equal(&Tensor::full(
        [4],
        7.0,
        (Kind::Float, tch::Device::Cpu)
    )));

    // 2^40 floats (4 TiB) outside the block, then inside it: a clear error before any
    // allocation, and no output. Outside, it would be written in pieces: the disk's free
    // space (or, on a disk of terabytes, the file-size limit) refuses it.
    let huge = dir.join("huge.pt");
    let gone = dir.join("gone.safetensors");
    nanogpt_with(
        &huge,
        vec![view("wte", "one", 1, &[1 << 20, 1 << 20], &[0, 0])],
    );
    let run = with_file_size_limit(
        &dir,
        1 << 30,
        &[
            "convert",
            "--from",
            "nanogpt",
            "--to",
            "hf-gpt2",
            s(&huge),
            s(&gone),
        ],
    );
    refused(&run, "gone.safetensors");
    assert!(
        run.stderr
            .contains("the output needs 4.0 TiB, more than the"),
        "{}",
        run.stderr
    );
    assert!(!gone.exists());
    assert!(run.peak_mib < base + 64.0, "{:.0} MiB", run.peak_mib);

    let block = dir.join("block.pt");
    let views = [
        view(
            &format!("{p}c_attn.weight"),
            "one",
            1,
            &[3 << 19, 1 << 19],
            &[0, 0],
        ),
        view(
            &format!("{p}c_proj.weight"),
            "one",
            1,
            &[1 << 19, 1 << 19],
            &[0, 0],
        ),
    ];
    torch_file(&block, &views, &[("one", vec![1.0])]);
    let run = measured(
        &dir,
        &[
            "convert",
            "--from",
            "nanogpt",
            "--to",
            "hf-gpt2",
            s(&block),
            s(&gone),
        ],
    );
    refused(&run, "c_attn.weight");
    assert!(
        run.stderr.contains("3.0 TiB in memory, more than"),
        "{}",
        run.stderr
    );
    assert!(!gone.exists());
    assert!(run.peak_mib < base + 64.0, "{:.0} MiB", run.peak_mib);
}

/// Issue 26: convert held the whole output of a 611-byte view of 2^29 floats (2 GiB).
/// Here 2^27 (512 MiB): written with the memory of one piece; refused, before anything
/// is written, when the output cannot fit.
#[test]
fn convert_writes_a_big_view_in_pieces_after_checking_the_disk() {
    let dir = tempdir("stride0-pieces");
    let path = dir.join("view.pt");
    let n: u64 = 1 << 27;
    let stride_0 = view("w", "one", 1, &[n as i32], &[0]);
    torch_file(&path, &[stride_0], &[("one", vec![7.0])]);
    assert!(std::fs::metadata(&path).unwrap().len() < 2048);
    let out = dir.join("out.safetensors");
    let args = ["convert", "--from", "nanogpt", "--to", "nanogpt"];
    // The baseline is the same conversion of a 4 MiB view (one piece): what convert
    // itself touches (libtorch's code pages above all, which differ between builds by
    // tens of MiB) is in both, and only what grows with the tensor is compared.
    let small = dir.join("small.pt");
    torch_file(
        &small,
        &[view("w", "one", 1, &[1 << 20], &[0])],
        &[("one", vec![7.0])],
    );
    let small_out = dir.join("small.safetensors");
    let base = measured(&dir, &[&args[..], &[s(&small), s(&small_out)]].concat());
    ok(&base);
    let args = [&args[..], &[s(&path), s(&out)]].concat();
    let run = measured(&dir, &args);
    ok(&run);
    // One 16 MiB piece at a time (two with the allocator's slack); the whole tensor
    // would be 512 MiB more.
    assert!(
        run.peak_mib < base.peak_mib + 48.0,
        "convert peaked at {:.0} MiB, {:.0} MiB for a 4 MiB view",
        run.peak_mib,
        base.peak_mib
    );
    assert_eq!(
        CheckpointFile::open(&out).unwrap().tensors["w"].shape,
        [n as i64]
    );
    let header = std::fs::metadata(&out).unwrap().len() - 4 * n;
    // The first element, one on each side of a piece's edge, and the last.
    let f = std::fs::File::open(&out).unwrap();
    for i in [0, (4 << 20) - 1, 4 << 20, n - 1] {
        let mut buf = [0u8; 4];
        FileExt::read_exact_at(&f, &mut buf, header + 4 * i).unwrap();
        assert_eq!(f32::from_le_bytes(buf), 7.0, "element {i}");
    }
    std::fs::remove_file(&out).unwrap();

    // Under a file-size limit of 64 MiB: refused before a byte is written.
    let run = with_file_size_limit(&dir, 64 << 20, &args);
    refused(&run, "out.safetensors");
    assert!(
        run.stderr
            .contains("the output needs 512.0 MiB, more than the file-size limit of 64.0 MiB"),
        "{}",
        run.stderr
    );
    assert!(
        run.peak_mib < start_up(&dir) + 64.0,
        "{:.0} MiB",
        run.peak_mib
    );
    let left = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name());
    let left: Vec<_> = left
        .filter(|n| n.to_string_lossy().contains("out."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn many_stride_0_views_of_one_storage_share_it() {
    let dir = tempdir("views256");
    let path = dir.join("views.pt");
    // 256 views of 10^6 floats each (1 GB contiguous in all) over one 4-byte storage.
    let mut views: Vec<View> = (0..256)
        .map(|i| view(&format!("v.{i}"), "one", 1, &[1_000_000], &[0]))
        .collect();
    views.push(view("w", "q", 4, &[4], &[1]));
    torch_file(
        &path,
        &views,
        &[("one", vec![3.0]), ("q", vec![1., 2., 3., 4.])],
    );

    let ckpt = read_checkpoint(&path).unwrap();
    let first = ckpt.tensors["v.0"].data_ptr();
    for i in 0..256 {
        let v = &ckpt.tensors[&format!("v.{i}")];
        assert_eq!(v.data_ptr(), first, "v.{i} shares the one storage");
        assert_eq!(v.stride(), [0]);
    }
    let base = start_up(&dir);
    let run = measured(&dir, &["inspect", s(&path)]);
    ok(&run);
    assert!(
        run.stdout.contains("257 tensors, 256000004 elements"),
        "{}",
        run.stdout
    );
    assert!(run.peak_mib < base + 64.0, "{:.0} MiB", run.peak_mib);
}

// ---------------------------------------------------------------------------------------
// Bad or oversized files are refused after their first bytes.
// ---------------------------------------------------------------------------------------

/// A sparse file of 1 GiB that starts with `head`: reading it whole would take a GiB.
fn sparse(path: &Path, head: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(head).unwrap();
    f.set_len(1 << 30).unwrap();
}

#[test]
fn a_big_bad_file_is_refused_after_its_header() {
    let dir = tempdir("bigbad");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage.pt",
            b"\x13\x37garbage!\xff\xfe\x00\x01junk".to_vec(),
            "neither a safetensors",
        ),
        (
            "long.safetensors",
            {
                let mut h = (1u64 << 40).to_le_bytes().to_vec();
                h.extend(b"{\"a\":1}");
                h
            },
            "not a valid safetensors file",
        ),
        (
            "short.safetensors",
            {
                let json = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
                let mut h = (json.len() as u64).to_le_bytes().to_vec();
                h.extend(json);
                h
            },
            "the header describes 16 bytes of data",
        ),
        (
            "zip.pt",
            b"PK\x03\x04garbage garbage".to_vec(),
            "not a readable torch.save zip",
        ),
    ];
    let base = start_up(&dir);
    for (name, head, needle) in &cases {
        let path = dir.join(name);
        sparse(&path, head);
        let started = Instant::now();
        let e = read_checkpoint(&path).unwrap_err().to_string();
        assert!(e.contains(needle), "{name}: {e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            started.elapsed()
        );
        let png = dir.join("map.png");
        let out = dir.join("out.safetensors");
        for args in [
            vec!["inspect", s(&path)],
            vec![
                "convert",
                "--from",
                "nanogpt",
                "--to",
                "hf-gpt2",
                s(&path),
                s(&out),
            ],
            vec!["heatmap", s(&path), "-o", s(&png)],
        ] {
            let run = measured(&dir, &args);
            refused(&run, needle);
            assert!(
                run.peak_mib < base + 64.0,
                "{name} {}: {:.0} MiB above a start-up of {base:.0}",
                args[0],
                run.peak_mib - base
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// inspect reads headers; convert streams and writes what the in-memory path writes.
// ---------------------------------------------------------------------------------------

#[test]
fn inspect_of_a_48_mib_file_reads_no_tensor_data() {
    let dir = tempdir("inspect48");
    let path = dir.join("blocks.safetensors");
    let c = 512;
    let mut state = BTreeMap::new();
    for i in 0..12 {
        let p = format!("transformer.h.{i}.attn.");
        state.insert(
            format!("{p}c_attn.weight"),
            Tensor::randn([3 * c, c], (Kind::Float, tch::Device::Cpu)),
        );
        state.insert(
            format!("{p}c_proj.weight"),
            Tensor::randn([c, c], (Kind::Float, tch::Device::Cpu)),
        );
    }
    write_safetensors(
        &path,
        state.iter().map(|(k, v)| (k.as_str(), v)),
        &BTreeMap::new(),
    )
    .unwrap();
    let size = std::fs::metadata(&path).unwrap().len() as f64 / MIB;
    assert!(size > 47.0, "{size}");

    let base = start_up(&dir);
    let run = measured(&dir, &["inspect", s(&path)]);
    ok(&run);
    assert!(
        run.stdout.contains("nanogpt    12 block(s), C = 512"),
        "{}",
        run.stdout
    );
    assert!(
        run.peak_mib < base + 24.0,
        "inspect of a {size:.0} MiB file added {:.0} MiB",
        run.peak_mib - base
    );
    let file = CheckpointFile::open(&path).unwrap();
    let found = detect_file(&file).unwrap();
    assert_eq!(found, detect(&file.load_all().unwrap().tensors));

    // convert: the same bytes as reading it all, converting and writing.
    let out = dir.join("out.safetensors");
    let run = measured(
        &dir,
        &[
            "convert",
            "--from",
            "nanogpt",
            "--to",
            "hf-gpt2",
            s(&path),
            s(&out),
        ],
    );
    ok(&run);
    let want = in_memory(
        &path,
        Layout::NanoGpt,
        Layout::HfGpt2,
        &ConvertOptions::default(),
        &dir,
    )
    .unwrap();
    assert!(
        std::fs::read(&out).unwrap() == want,
        "streamed bytes differ"
    );
}

/// What `attn convert` wrote before it streamed: read all, convert, write.
fn in_memory(
    input: &Path,
    from: Layout,
    to: Layout,
    opts: &ConvertOptions,
    dir: &Path,
) -> tch_attention::Result<Vec<u8>> {
    let ckpt = read_checkpoint(input)?;
    let out = convert(&ckpt.tensors, from, to, opts, &input.display().to_string())?;
    let mut meta = ckpt.metadata.clone();
    meta.insert("layout".into(), to.name().into());
    meta.insert("converted_from".into(), from.name().into());
    let path = dir.join("in_memory.safetensors");
    write_safetensors_new(
        &path,
        out.iter().map(|(k, v)| (k.as_str(), v)),
        &meta,
        Overwrite::Replace,
    )?;
    Ok(std::fs::read(path).unwrap())
}

fn checkpoint(name: &str) -> PathBuf {
    fixtures().join("checkpoints").join(name)
}

#[test]
fn streamed_conversions_are_byte_identical_and_fail_alike() {
    let dir = tempdir("streamed");
    let files = [
        ("lecture.pt", Layout::Lecture),
        ("nanogpt_ckpt.pt", Layout::NanoGpt),
        ("torch_mha.pth", Layout::TorchMha),
        ("hf_gpt2.bin", Layout::HfGpt2),
        ("hf_bert.safetensors", Layout::HfBert),
    ];
    let out = dir.join("streamed.safetensors");
    let mut compared = 0;
    for (file, from) in files {
        let input = checkpoint(file);
        let ckpt = CheckpointFile::open(&input).unwrap();
        assert_eq!(
            detect_file(&ckpt).unwrap(),
            detect(&read_checkpoint(&input).unwrap().tensors),
            "{file}"
        );
        for to in Layout::ALL {
            for opts in [
                ConvertOptions::default(),
                ConvertOptions {
                    heads: Some(2),
                    block_size: Some(6),
                    mask_buffer: Some(true),
                    ..Default::default()
                },
                ConvertOptions {
                    prefix: Some("nowhere.".into()),
                    ..Default::default()
                },
            ] {
                let want = in_memory(&input, from, to, &opts, &dir);
                let got = convert_file(&input, &out, from, to, &opts, Overwrite::Replace);
                match (want, got) {
                    (Ok(want), Ok(_)) => {
                        assert!(
                            std::fs::read(&out).unwrap() == want,
                            "{file} -> {to} {opts:?}"
                        );
                        compared += 1;
                    }
                    (Err(w), Err(g)) => assert_eq!(g.to_string(), w.to_string(), "{file} -> {to}"),
                    (w, g) => panic!(
                        "{file} -> {to} {opts:?}: in memory {:?}, streamed {:?}",
                        w.map(|_| ()),
                        g
                    ),
                }
            }
        }
    }
    assert!(compared >= 20, "{compared}");
}
