//! torch.save files and format sniffing under hostile or unlucky bytes (issue 16): deep
//! nesting, huge dicts, duplicate zip entries, and safetensors files whose first byte
//! looks like a pickle. Each file is generated here, small, by the helpers below.

use std::time::{Duration, Instant};

use tch::Tensor;
use tch_attention::io::{read_checkpoint, read_checkpoint_bytes, Format};

mod common;

use common::{attn, tempdir};

/// A protocol-2 pickle written opcode by opcode.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![0x80, 2])
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }

    fn int(&mut self, x: i32) -> &mut Self {
        self.0.push(b'J'); // BININT
        self.0.extend(x.to_le_bytes());
        self
    }

    fn ints(&mut self, xs: &[i32]) -> &mut Self {
        self.0.push(b'('); // MARK
        for &x in xs {
            self.int(x);
        }
        self.0.push(b't'); // TUPLE
        self
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend(bytes);
        self
    }

    /// `_rebuild_tensor_v2(storage "0" of `numel` floats, offset, size, contiguous
    /// stride, False, OrderedDict())`.
    fn tensor(&mut self, numel: u8, offset: i32, size: &[i32]) -> &mut Self {
        let mut stride = vec![1; size.len()];
        for i in (0..size.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * size[i + 1];
        }
        self.raw(b"ctorch._utils\n_rebuild_tensor_v2\n((")
            .str("storage")
            .raw(b"ctorch\nFloatStorage\n")
            .str("0")
            .str("cpu")
            .raw(&[b'K', numel, b't', b'Q']) // BININT1 numel, TUPLE, BINPERSID
            .int(offset)
            .ints(size)
            .ints(&stride)
            .raw(b"\x89ccollections\nOrderedDict\n)RtR")
    }

    /// Lists nested `depth` deep: `depth` empty lists, each APPENDed into the one below.
    fn deep_list(&mut self, depth: usize) -> &mut Self {
        self.0.extend(std::iter::repeat_n(b']', depth));
        self.0.extend(std::iter::repeat_n(b'a', depth - 1));
        self
    }

    fn dict(&mut self, items: impl FnOnce(&mut Self)) -> &mut Self {
        self.raw(b"}(");
        items(self);
        self.raw(b"u")
    }

    fn finish(&mut self) -> Vec<u8> {
        self.0.push(b'.');
        std::mem::take(&mut self.0)
    }
}

/// A torch.save archive: `archive/data.pkl` and the float storage `archive/data/0`, plus
/// any `extra` entries (appended after, so duplicates are possible).
fn archive(pkl: &[u8], numel: usize, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let storage: Vec<u8> = (0..numel).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut records = vec![("archive/data.pkl", pkl), ("archive/data/0", &storage[..])];
    records.extend_from_slice(extra);
    common::torch_save::zip(&records)
}

/// A torch-mha block with E = 2 (`in_proj_weight [6, 2]`, `out_proj.weight [2, 2]`, one
/// storage of 16 floats) under `model`, beside an `optimizer` entry filled by `other`.
fn mha_ckpt_with(other: impl FnOnce(&mut Pickle)) -> Vec<u8> {
    let pkl = Pickle::new()
        .dict(|p| {
            p.str("model").dict(|p| {
                p.str("in_proj_weight").tensor(16, 0, &[6, 2]);
                p.str("out_proj.weight").tensor(16, 12, &[2, 2]);
            });
            p.str("optimizer");
            other(p);
        })
        .finish();
    archive(&pkl, 16, &[])
}

const DEEP: usize = 1_000_000;

#[test]
fn a_million_nested_lists_are_read_and_dropped_without_recursion() {
    // The deep part is an entry the reader skips: it must still be parsed and dropped.
    let bytes = mha_ckpt_with(|p| {
        p.deep_list(DEEP);
    });
    assert!(bytes.len() > 2 * DEEP, "{} bytes", bytes.len());
    let ckpt = read_checkpoint_bytes("deep.pt", &bytes).unwrap();
    assert_eq!(ckpt.tensors["in_proj_weight"].size(), [6, 2]);
    // A deep list where the state_dict should be: an error, after the same parse.
    let pkl = Pickle::new().deep_list(DEEP).finish();
    let e = read_checkpoint_bytes("deep_top.pt", &archive(&pkl, 16, &[])).unwrap_err();
    assert!(e.to_string().contains("a list, not a state_dict"), "{e}");
}

#[test]
fn inspect_and_convert_survive_a_million_nested_lists() {
    let dir = tempdir("hostile-deep");
    let input = dir.join("deep.pt");
    std::fs::write(
        &input,
        mha_ckpt_with(|p| {
            p.deep_list(DEEP);
        }),
    )
    .unwrap();
    let input = input.display().to_string();
    let out = attn(&["inspect", &input]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("torch-mha"));
    let output = dir.join("out.safetensors").display().to_string();
    let out = attn(&[
        "convert",
        "--from",
        "torch-mha",
        "--to",
        "nanogpt",
        &input,
        &output,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_dict_of_200k_keys_is_built_in_linear_time() {
    const KEYS: i32 = 200_000;
    let bytes = mha_ckpt_with(|p| {
        p.dict(|p| {
            for i in 0..KEYS {
                p.str(&format!("state.{i}.exp_avg")).int(i);
            }
        });
    });
    let start = Instant::now();
    let ckpt = read_checkpoint_bytes("keys.pt", &bytes).unwrap();
    let took = start.elapsed();
    assert_eq!(ckpt.tensors.len(), 2);
    // Linear: about 0.2 s in a debug build; the linear search took 50 s and more.
    assert!(took < Duration::from_secs(5), "{KEYS} keys took {took:?}");
}

#[test]
fn an_archive_with_two_entries_of_one_name_is_refused() {
    let good = Pickle::new()
        .dict(|p| {
            p.str("w").tensor(4, 0, &[4]);
        })
        .finish();
    let other = Pickle::new()
        .dict(|p| {
            p.str("v").tensor(4, 0, &[2]);
        })
        .finish();
    assert!(read_checkpoint_bytes("one.pt", &archive(&good, 4, &[])).is_ok());
    let twice = archive(&good, 4, &[("archive/data.pkl", &other)]);
    let e = read_checkpoint_bytes("twice.pt", &twice).unwrap_err();
    let e = e.to_string();
    assert!(
        e.starts_with("twice.pt: ") && e.contains("two entries named archive/data.pkl"),
        "{e}"
    );
}

/// A safetensors file of one float tensor `w` `[4]` whose JSON header is padded with
/// spaces (as the format allows) to `header_len` bytes.
fn safetensors_with_header(header_len: usize) -> Vec<u8> {
    let json = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let header = format!("{json:<header_len$}");
    assert_eq!(header.len(), header_len);
    let mut out = (header_len as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend([1f32, 2., 3., 4.].iter().flat_map(|x| x.to_le_bytes()));
    out
}

#[test]
fn safetensors_whose_first_byte_is_0x80_are_safetensors() {
    // 384 = 0x180: the first byte is 0x80, a pickle's PROTO opcode.
    for header_len in [384, 640, 128 + 256 * 7, 56, 200] {
        let bytes = safetensors_with_header(header_len);
        let ckpt = read_checkpoint_bytes("x.safetensors", &bytes)
            .unwrap_or_else(|e| panic!("header of {header_len} bytes: {e}"));
        assert_eq!(ckpt.format, Format::Safetensors);
        let want = Tensor::from_slice(&[1f32, 2., 3., 4.]);
        assert!(ckpt.tensors["w"].equal(&want));
    }
    // Through the file entry point too.
    let dir = tempdir("hostile-st80");
    let path = dir.join("h384.safetensors");
    std::fs::write(&path, safetensors_with_header(384)).unwrap();
    assert_eq!(read_checkpoint(&path).unwrap().format, Format::Safetensors);
}

#[test]
fn the_legacy_format_is_told_by_its_magic_number() {
    // torch.save(..., _use_new_zipfile_serialization=False) opens with
    // pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2).
    let mut legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    legacy.extend(b"\x80\x02}q\x00.");
    let e = read_checkpoint_bytes("old.pt", &legacy).unwrap_err();
    assert!(e.to_string().contains("legacy torch.save format"), "{e}");
    // Another pickle is not the legacy format.
    let e = read_checkpoint_bytes("bare.pkl", b"\x80\x02}q\x00.").unwrap_err();
    assert!(e.to_string().contains("neither a safetensors file"), "{e}");
}
