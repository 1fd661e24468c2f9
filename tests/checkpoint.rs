//! Checkpoints written by PyTorch (scripts/checkpoint_reference.py): reading every file
//! format, finding the layouts, loading them into the crate's modules with PyTorch's
//! outputs as the reference, lossless round trips, and hostile files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
mod common;

use common::tempdir;
use common::torch_save::{pickle, unicode, zip, Entry};
use tch_attention::attention::mask::Mask;
use tch_attention::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use tch_attention::checkpoint::{
    convert, detect, load_state_dict, save_checkpoint, ConvertOptions, FromCheckpoint, Layout,
    StateDict, BLOCK_SIZE, HEADS,
};
use tch_attention::io::{read_checkpoint, read_safetensors, Format};
use tch_attention::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

const C: i64 = 8;
const NH: i64 = 2;
const BS: i64 = 6;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoints")
        .join(name)
}

/// The five checkpoints: file, layout, block prefix.
const FILES: [(&str, Layout, &str); 5] = [
    ("lecture.pt", Layout::Lecture, ""),
    ("nanogpt_ckpt.pt", Layout::NanoGpt, "transformer.h.1.attn."),
    ("torch_mha.pth", Layout::TorchMha, ""),
    ("hf_gpt2.bin", Layout::HfGpt2, "h.0.attn."),
    (
        "hf_bert.safetensors",
        Layout::HfBert,
        "encoder.layer.0.attention.",
    ),
];

fn reference() -> BTreeMap<String, Tensor> {
    read_safetensors(&fixture("reference.safetensors"))
        .unwrap()
        .tensors
}

/// `torch.testing.assert_close` for float32: |a - b| <= 1e-5 + 1.3e-6 |b|.
fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let diff = (got - want).abs();
    let allowed = want.abs() * 1.3e-6 + 1e-5;
    let bad = diff.gt_tensor(&allowed).sum(Kind::Int64).int64_value(&[]);
    let max = diff.max().double_value(&[]);
    assert_eq!(bad, 0, "{what}: {bad} elements differ, max abs {max:e}");
}

fn bits_equal(a: &Tensor, b: &Tensor) -> bool {
    a.kind() == b.kind() && a.size() == b.size() && a.equal(b)
}

#[test]
fn every_file_format_reads_and_names_its_layout() {
    for (file, layout, prefix) in FILES {
        let ckpt = read_checkpoint(fixture(file)).unwrap();
        let want_format = if file.ends_with(".safetensors") {
            Format::Safetensors
        } else {
            Format::TorchZip
        };
        assert_eq!(ckpt.format, want_format, "{file}");
        let found = detect(&ckpt.tensors);
        assert_eq!(found.len(), 1, "{file}: {found:?}");
        assert_eq!(
            (found[0].layout, found[0].prefix.as_str()),
            (layout, prefix)
        );
        assert_eq!(found[0].embed_dim, C);
        let heads = (layout == Layout::Lecture).then_some(NH);
        assert_eq!(found[0].heads, heads, "{file}");
    }
}

#[test]
fn nanogpt_ckpt_is_the_model_entry_without_the_compile_prefix() {
    let ckpt = read_checkpoint(fixture("nanogpt_ckpt.pt")).unwrap();
    let keys: Vec<&str> = ckpt.tensors.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "transformer.h.1.attn.c_attn.bias",
            "transformer.h.1.attn.c_attn.weight",
            "transformer.h.1.attn.c_proj.bias",
            "transformer.h.1.attn.c_proj.weight",
            "transformer.h.1.ln_1.weight",
        ]
    );
    assert_eq!(
        ckpt.tensors["transformer.h.1.attn.c_attn.weight"].size(),
        [3 * C, C]
    );
}

#[test]
fn the_same_tensors_whatever_the_file_format() {
    // hf_gpt2.bin is a torch.save zip; its tensors must be what PyTorch saved, which the
    // reference outputs below check numerically. Here: a safetensors copy written by the
    // crate reads back bit for bit.
    let dir = tempdir("formats");
    for (file, _, _) in FILES {
        let ckpt = read_checkpoint(fixture(file)).unwrap();
        let copy = dir.join(format!("{file}.safetensors"));
        tch_attention::io::write_safetensors(
            &copy,
            ckpt.tensors.iter().map(|(k, v)| (k.as_str(), v)),
            &BTreeMap::new(),
        )
        .unwrap();
        let back = read_checkpoint(&copy).unwrap();
        assert_eq!(back.tensors.len(), ckpt.tensors.len());
        for (k, v) in &ckpt.tensors {
            assert!(bits_equal(&back.tensors[k], v), "{file}: {k}");
        }
    }
}

fn causal_mha(m: &MultiheadAttention, x: &Tensor) -> Tensor {
    let t = x.size()[1];
    let opts = MhaOptions {
        attn_mask: Some(Mask::causal(t, t, Device::Cpu).unwrap()),
        need_weights: false,
        ..Default::default()
    };
    m.f_forward_t(x, x, x, &opts, false).unwrap().0
}

#[test]
fn modules_load_every_layout_and_compute_what_pytorch_computed() {
    let refs = reference();
    let x = &refs["x"];
    for (file, layout, prefix) in FILES {
        let want = &refs[&format!("{file}.output")];
        let path = fixture(file);

        let vs = VarStore::new(Device::Cpu);
        let config = CausalSelfAttentionConfig::new(C, NH, BS);
        let csa = CausalSelfAttention::from_checkpoint(vs.root(), config, &path, prefix, layout)
            .unwrap_or_else(|e| panic!("{file} into CausalSelfAttention: {e}"));
        let got = tch::no_grad(|| csa.f_forward_t(x, false)).unwrap();
        assert_close(&got, want, &format!("{file} as CausalSelfAttention"));

        let vs = VarStore::new(Device::Cpu);
        let config = MultiheadAttentionConfig::new(C, NH).with_batch_first(true);
        let mha = MultiheadAttention::from_checkpoint(vs.root(), config, &path, prefix, layout)
            .unwrap_or_else(|e| panic!("{file} into MultiheadAttention: {e}"));
        let got = tch::no_grad(|| causal_mha(&mha, x));
        assert_close(&got, want, &format!("{file} as MultiheadAttention"));
    }
    // The lecture module has no query/key/value biases: only bias-free sources load.
    let vs = VarStore::new(Device::Cpu);
    let config = MultiHeadConfig::new(C, NH, C / NH, BS);
    let mh = MultiHeadAttention::from_checkpoint(
        vs.root(),
        config,
        fixture("lecture.pt"),
        "",
        Layout::Lecture,
    )
    .unwrap();
    let got = tch::no_grad(|| mh.f_forward_t(x, false)).unwrap();
    assert_close(
        &got,
        &refs["lecture.pt.output"],
        "lecture.pt as MultiHeadAttention",
    );
    let vs = VarStore::new(Device::Cpu);
    let e = MultiHeadAttention::from_checkpoint(
        vs.root(),
        MultiHeadConfig::new(C, NH, C / NH, BS),
        fixture("hf_bert.safetensors"),
        "encoder.layer.0.attention.",
        Layout::HfBert,
    )
    .expect_err("BERT's query bias cannot go to the lecture's heads");
    assert!(e.to_string().contains("nonzero bias"), "{e}");
}

#[test]
fn every_conversion_and_its_way_back_gives_the_original_bits() {
    for (file, from, prefix) in FILES {
        let ckpt = read_checkpoint(fixture(file)).unwrap();
        for to in Layout::ALL {
            let opts = ConvertOptions {
                heads: Some(NH),
                block_size: Some(BS),
                mask_buffer: (from == Layout::HfGpt2 && to != from).then_some(false),
                ..Default::default()
            };
            let there = match convert(&ckpt.tensors, from, to, &opts, file) {
                Ok(t) => t,
                Err(e) => {
                    // Only the lecture layout refuses, for a nonzero query/key/value bias.
                    assert_eq!(to, Layout::Lecture, "{file} -> {to}: {e}");
                    assert!(e.to_string().contains("nonzero bias"), "{e}");
                    continue;
                }
            };
            let found = detect(&there);
            assert!(
                found.iter().any(|f| f.layout == to && f.prefix == prefix),
                "{file} -> {to}: {found:?}"
            );
            let back_opts = ConvertOptions {
                heads: Some(NH),
                block_size: Some(BS),
                mask_buffer: (from == Layout::HfGpt2).then_some(true),
                ..Default::default()
            };
            let back = convert(&there, to, from, &back_opts, file).unwrap();
            let keys = |m: &BTreeMap<String, Tensor>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&back), keys(&ckpt.tensors), "{file} -> {to} -> {from}");
            for (k, v) in &ckpt.tensors {
                assert!(bits_equal(&back[k], v), "{file} -> {to} -> back: {k}");
            }
        }
    }
}

#[test]
fn save_checkpoint_writes_any_layout_atomically_and_never_clobbers() {
    let dir = tempdir("save");
    let vs = VarStore::new(Device::Cpu);
    let csa = CausalSelfAttention::from_checkpoint(
        vs.root(),
        CausalSelfAttentionConfig::new(C, NH, BS),
        fixture("hf_gpt2.bin"),
        "h.0.attn",
        Layout::HfGpt2,
    )
    .unwrap();
    let out = dir.join("as_bert.safetensors");
    save_checkpoint(&csa, &out, Layout::HfBert, false).unwrap();
    let e = save_checkpoint(&csa, &out, Layout::HfBert, false).expect_err("exists");
    assert!(e.to_string().contains("exists"), "{e}");
    save_checkpoint(&csa, &out, Layout::HfBert, true).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    // Loading it back as BERT's layout gives the same module.
    let vs2 = VarStore::new(Device::Cpu);
    let again = CausalSelfAttention::from_checkpoint(
        vs2.root(),
        CausalSelfAttentionConfig::new(C, NH, BS),
        &out,
        "",
        Layout::HfBert,
    )
    .unwrap();
    for ((k, a), (_, b)) in csa.named_tensors().iter().zip(again.named_tensors()) {
        assert!(bits_equal(a, &b), "{k}");
    }
}

#[test]
fn strict_loading_names_missing_extra_and_misshapen_keys() {
    let vs = VarStore::new(Device::Cpu);
    let csa =
        CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(C, NH, BS)).unwrap();
    let good: BTreeMap<String, Tensor> = csa.named_tensors().into_iter().collect();
    let mut missing = clone(&good);
    missing.remove("c_proj.bias");
    let e = load_state_dict(&csa, &missing, "f")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing key \"c_proj.bias\""), "{e}");
    let mut extra = clone(&good);
    extra.insert(
        "c_proj.scale".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    );
    let e = load_state_dict(&csa, &extra, "f").unwrap_err().to_string();
    assert!(e.contains("unexpected key \"c_proj.scale\""), "{e}");
    let mut shape = clone(&good);
    shape.insert(
        "c_proj.weight".into(),
        Tensor::zeros([C, C + 1], (Kind::Float, Device::Cpu)),
    );
    let e = load_state_dict(&csa, &shape, "f").unwrap_err().to_string();
    assert!(
        e.contains("c_proj.weight: expected shape [8, 8], got [8, 9]"),
        "{e}"
    );
}

#[test]
fn layout_errors_name_the_key_and_the_reason() {
    let ckpt = read_checkpoint(fixture("nanogpt_ckpt.pt")).unwrap();
    let p = "transformer.h.1.attn.";
    let opts = |prefix: &str| ConvertOptions {
        prefix: Some(prefix.into()),
        heads: Some(NH),
        ..Default::default()
    };
    let mut t = clone(&ckpt.tensors);
    t.remove(&format!("{p}c_proj.weight"));
    let e = convert(&t, Layout::NanoGpt, Layout::HfBert, &opts(p), "f.pt").unwrap_err();
    assert!(
        e.to_string()
            .contains("missing key transformer.h.1.attn.c_proj.weight"),
        "{e}"
    );
    let e = convert(
        &t,
        Layout::NanoGpt,
        Layout::HfBert,
        &ConvertOptions::default(),
        "f.pt",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("no nanogpt attention weights found"),
        "{e}"
    );
    let mut t = clone(&ckpt.tensors);
    t.insert(
        format!("{p}c_proj.weight"),
        Tensor::zeros([C, 3], (Kind::Float, Device::Cpu)),
    );
    let e = convert(&t, Layout::NanoGpt, Layout::HfBert, &opts(p), "f.pt").unwrap_err();
    assert!(
        e.to_string()
            .contains("c_proj.weight: expected shape [8, 8], got [8, 3]"),
        "{e}"
    );
    // Heads: needed for the lecture layout, and never a different split than the source's.
    let lecture = read_checkpoint(fixture("lecture.pt")).unwrap().tensors;
    let e = convert(
        &lecture,
        Layout::Lecture,
        Layout::Lecture,
        &opts(""),
        "l.pt",
    );
    assert!(e.is_ok(), "same layout passes through");
    let nogo = ConvertOptions {
        heads: Some(4),
        ..Default::default()
    };
    let e = convert(&lecture, Layout::Lecture, Layout::NanoGpt, &nogo, "l.pt").unwrap_err();
    assert!(e.to_string().contains("the source has 2 heads"), "{e}");
    let no_heads = ConvertOptions::default();
    let bert = read_checkpoint(fixture("hf_bert.safetensors"))
        .unwrap()
        .tensors;
    let mut zero_bias = clone(&bert);
    for (k, v) in zero_bias.iter_mut() {
        if k.ends_with("query.bias") || k.ends_with("key.bias") || k.ends_with("value.bias") {
            *v = v.zeros_like();
        }
    }
    let e = convert(&zero_bias, Layout::HfBert, Layout::Lecture, &no_heads, "b").unwrap_err();
    // In the library's terms, typed so that the CLI can name its flag
    // (tests/cli_convert_options.rs).
    assert!(
        matches!(&e, tch_attention::Error::Invalid { arg, .. } if arg == HEADS),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("ConvertOptions::heads: not set, and hf-bert does not record the head count")
            && e.contains("of b)")
            && !e.contains("--"),
        "{e}"
    );
    let with_heads = ConvertOptions {
        heads: Some(NH),
        ..Default::default()
    };
    let e = convert(
        &zero_bias,
        Layout::HfBert,
        Layout::Lecture,
        &with_heads,
        "b",
    )
    .unwrap_err();
    assert!(
        matches!(&e, tch_attention::Error::Invalid { arg, .. } if arg == BLOCK_SIZE),
        "{e:?}"
    );
    assert!(!e.to_string().contains("--"), "{e}");
}

fn clone(m: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    m.iter().map(|(k, v)| (k.clone(), v.copy())).collect()
}

// ---------------------------------------------------------------------------------------
// Hostile files: each must be an error naming the file (and the tensor where there is
// one), never a crash, a hang or a huge allocation.
// ---------------------------------------------------------------------------------------

fn floats(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn read_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = read_checkpoint(&path).expect_err(name).to_string();
    assert!(e.contains(name), "the error names the file: {e}");
    e
}

fn entry<'a>(numel: u64, offset: i32, size: &'a [i32], stride: &'a [i32]) -> Entry<'a> {
    Entry {
        key: "w",
        class: "FloatStorage",
        storage: "0",
        numel,
        offset,
        size,
        stride,
    }
}

#[test]
fn a_hand_built_torch_zip_reads_and_views_are_honoured() {
    let dir = tempdir("handmade");
    let pkl = pickle(&[entry(6, 1, &[2, 2], &[1, 2])]);
    let bytes = zip(&[
        ("archive/data.pkl", &pkl),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &floats(6)),
    ]);
    let path = dir.join("ok.pt");
    std::fs::write(&path, bytes).unwrap();
    let ckpt = read_checkpoint(&path).unwrap();
    let w = &ckpt.tensors["w"];
    // storage [0..6], offset 1, size (2, 2), stride (1, 2): [[1, 3], [2, 4]]
    let want = Tensor::from_slice(&[1f32, 3., 2., 4.]).reshape([2, 2]);
    assert!(w.equal(&want), "{w}");
}

#[test]
fn hostile_torch_files_are_errors_naming_file_and_tensor() {
    let dir = tempdir("hostile");
    let data = floats(4);
    let good = pickle(&[entry(4, 0, &[4], &[1])]);
    let archive =
        |pkl: &[u8], storage: &[u8]| zip(&[("archive/data.pkl", pkl), ("archive/data/0", storage)]);

    // A storage that declares 2^60 elements: never allocated.
    let e = read_err(
        &dir,
        "huge.pt",
        &archive(&pickle(&[entry(1 << 60, 0, &[4], &[1])]), &data),
    );
    assert!(e.contains("tensor w") && e.contains("bytes"), "{e}");
    // More elements declared than the record holds.
    let e = read_err(
        &dir,
        "short.pt",
        &archive(&pickle(&[entry(8, 0, &[8], &[1])]), &data),
    );
    assert!(e.contains("holds 16 bytes, the pickle declares 32"), "{e}");
    // A view reaching past its storage (libtorch would read out of bounds).
    let e = read_err(
        &dir,
        "view.pt",
        &archive(&pickle(&[entry(4, 2, &[3], &[1])]), &data),
    );
    assert!(
        e.contains("tensor w") && e.contains("outside its storage"),
        "{e}"
    );
    let e = read_err(
        &dir,
        "stride.pt",
        &archive(&pickle(&[entry(4, 0, &[2, 2], &[2, 3])]), &data),
    );
    assert!(e.contains("outside its storage"), "{e}");
    let e = read_err(
        &dir,
        "neg.pt",
        &archive(&pickle(&[entry(4, -1, &[2], &[1])]), &data),
    );
    assert!(e.contains("negative"), "{e}");
    // An unknown dtype.
    let mut odd = entry(4, 0, &[4], &[1]);
    odd.class = "Float8_e4m3fnStorage";
    let e = read_err(&dir, "dtype.pt", &archive(&pickle(&[odd]), &data));
    assert!(
        e.contains("tensor w") && e.contains("Float8_e4m3fnStorage"),
        "{e}"
    );
    // A bool that is neither 0 nor 1.
    let mut flag = entry(4, 0, &[4], &[1]);
    flag.class = "BoolStorage";
    let e = read_err(&dir, "bool.pt", &archive(&pickle(&[flag]), &[0, 1, 7, 0]));
    assert!(e.contains("tensor w: bool element 2 is 7"), "{e}");
    // A storage record that is not there.
    let mut gone = entry(4, 0, &[4], &[1]);
    gone.storage = "7";
    let e = read_err(&dir, "gone.pt", &archive(&pickle(&[gone]), &data));
    assert!(e.contains("archive/data/7"), "{e}");
    // Truncated archives and pickles.
    let whole = archive(&good, &data);
    for cut in [whole.len() / 2, whole.len() - 10, 30] {
        let e = read_err(&dir, "cut.pt", &whole[..cut]);
        assert!(!e.is_empty());
    }
    let e = read_err(&dir, "cutpkl.pt", &archive(&good[..good.len() - 5], &data));
    assert!(e.contains("data.pkl") && e.contains("truncated"), "{e}");
    // Not a state_dict: a list, or a dict holding a non-tensor.
    let e = read_err(&dir, "list.pt", &archive(b"\x80\x02]q\x00.", &data));
    assert!(e.contains("not a state_dict"), "{e}");
    let mut p = vec![0x80, 2, b'}', b'('];
    unicode(&mut p, "lr");
    p.extend(b"K\x03u.");
    let e = read_err(&dir, "int.pt", &archive(&p, &data));
    assert!(e.contains("lr is an int, not a tensor"), "{e}");
    // Formats libtorch users meet that need Python: each says what to do.
    let e = read_err(
        &dir,
        "legacy.pt",
        b"\x80\x02\x8a\x0alz\xe8\x6a\xa8\x50\x19\x00",
    );
    assert!(e.contains("legacy torch.save format"), "{e}");
    let ts = zip(&[
        ("m/data.pkl", &good),
        ("m/constants.pkl", b"\x80\x02)."),
        ("m/data/0", &data),
    ]);
    let e = read_err(&dir, "script.pt", &ts);
    assert!(e.contains("TorchScript"), "{e}");
    let e = read_err(
        &dir,
        "big.pt",
        &zip(&[
            ("archive/data.pkl", &good),
            ("archive/byteorder", b"big"),
            ("archive/data/0", &data),
        ]),
    );
    assert!(e.contains("byte order"), "{e}");
    let e = read_err(&dir, "noise.bin", b"not a checkpoint at all");
    assert!(
        e.contains("neither a safetensors file nor a torch.save"),
        "{e}"
    );
}

fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn hostile_safetensors_files_are_errors_naming_the_file() {
    let dir = tempdir("hostile-st");
    let data = floats(4);
    // A header length of 2^63: nothing is allocated for it.
    let mut huge = (1u64 << 63).to_le_bytes().to_vec();
    huge.extend(b"{}");
    let e = read_err(&dir, "huge.safetensors", &huge);
    assert!(e.contains("not a valid safetensors file"), "{e}");
    for (name, header) in [
        (
            "range.safetensors",
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,64]}}"#,
        ),
        (
            "overlap.safetensors",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        ),
        (
            "dtype.safetensors",
            r#"{"w":{"dtype":"F9","shape":[4],"data_offsets":[0,16]}}"#,
        ),
        (
            "shape.safetensors",
            r#"{"w":{"dtype":"F32","shape":[4000000000000],"data_offsets":[0,16]}}"#,
        ),
        (
            "json.safetensors",
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]"#,
        ),
    ] {
        let e = read_err(&dir, name, &safetensors_bytes(header, &data));
        assert!(e.contains("not a valid safetensors file"), "{name}: {e}");
    }
}

#[test]
fn own_layout_forms_load_too_mask_buffers_and_unpacked_mha() {
    let dir = tempdir("own");
    // nanoGPT without flash registers the causal mask as the buffer `bias`: the crate's
    // module (flash path, no buffer) still loads such a checkpoint.
    let opts = ConvertOptions {
        mask_buffer: Some(true),
        block_size: Some(BS),
        ..Default::default()
    };
    let hf = read_checkpoint(fixture("hf_gpt2.bin")).unwrap();
    let nano = convert(&hf.tensors, Layout::HfGpt2, Layout::NanoGpt, &opts, "x").unwrap();
    assert_eq!(nano["h.0.attn.bias"].size(), [1, 1, BS, BS]);
    let file = dir.join("manual.safetensors");
    tch_attention::io::write_safetensors(
        &file,
        nano.iter().map(|(k, v)| (k.as_str(), v)),
        &BTreeMap::new(),
    )
    .unwrap();
    let vs = VarStore::new(Device::Cpu);
    let csa = CausalSelfAttention::from_checkpoint(
        vs.root(),
        CausalSelfAttentionConfig::new(C, NH, BS),
        &file,
        "h.0.attn.",
        Layout::NanoGpt,
    )
    .unwrap();
    let refs = reference();
    let got = tch::no_grad(|| csa.f_forward_t(&refs["x"], false)).unwrap();
    assert_close(
        &got,
        &refs["hf_gpt2.bin.output"],
        "non-flash nanoGPT into CSA",
    );

    // nn.MultiheadAttention with kdim != embed_dim exists only in its own layout.
    let vs = VarStore::new(Device::Cpu);
    let config = MultiheadAttentionConfig::new(C, NH)
        .with_kdim(4)
        .with_vdim(3);
    let mha = MultiheadAttention::new(vs.root(), config).unwrap();
    let file = dir.join("kdim.safetensors");
    save_checkpoint(&mha, &file, Layout::TorchMha, false).unwrap();
    let e = save_checkpoint(
        &mha,
        dir.join("kdim-bert.safetensors"),
        Layout::HfBert,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("differs from embed_dim"), "{e}");
    let vs2 = VarStore::new(Device::Cpu);
    let again =
        MultiheadAttention::from_checkpoint(vs2.root(), config, &file, "", Layout::TorchMha)
            .unwrap();
    for ((k, a), (_, b)) in mha.named_tensors().iter().zip(again.named_tensors()) {
        assert!(bits_equal(a, &b), "{k}");
    }
}
