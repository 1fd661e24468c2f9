//! The GGUF reader against gguf-py: tests/fixtures/llama/small.gguf was written by
//! gguf-py's GGUFWriter with a metadata value of every type and a tensor of each
//! dequantised type, and small_dequant.safetensors holds gguf-py's dequantisation of
//! each (scripts/llama_reference.py --only gguf). Hostile and truncated files, made
//! here, are typed errors.

mod common;

use std::path::PathBuf;

use tch_attention::io::{read_safetensors, GgmlType, Gguf, GgufValue};
use tch_attention::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama")
        .join(name)
}

fn small() -> Vec<u8> {
    std::fs::read(fixture("small.gguf")).unwrap()
}

#[test]
fn metadata_of_every_type_reads_as_gguf_py_wrote_it() {
    let g = Gguf::read(&fixture("small.gguf")).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 32);
    let m = &g.metadata;
    assert_eq!(m["t.u8"], GgufValue::U8(200));
    assert_eq!(m["t.i8"], GgufValue::I8(-100));
    assert_eq!(m["t.u16"], GgufValue::U16(60000));
    assert_eq!(m["t.i16"], GgufValue::I16(-30000));
    assert_eq!(m["t.u32"], GgufValue::U32(4_000_000_000));
    assert_eq!(m["t.i32"], GgufValue::I32(-2_000_000_000));
    assert_eq!(m["t.f32"], GgufValue::F32(0.1));
    assert_eq!(m["t.bool"], GgufValue::Bool(true));
    assert_eq!(g.get_str("t.str").unwrap(), "héllo ✓");
    assert_eq!(g.get_strings("t.strs").unwrap(), ["a", "bc", "ü"]);
    assert_eq!(g.get_i64s("t.ints").unwrap(), [1, -2, 3]);
    assert_eq!(m["t.u64"], GgufValue::U64((1 << 63) + 5));
    assert_eq!(m["t.i64"], GgufValue::I64(-(1 << 62)));
    assert_eq!(m["t.f64"], GgufValue::F64(1e-300));
    assert_eq!(g.get_str("general.architecture").unwrap(), "test");
    // Typed accessors say what was wrong.
    let err = g.get_u64("t.str").unwrap_err().to_string();
    assert!(err.contains("t.str") && err.contains("unsigned"), "{err}");
    let err = g.get_f64("no.such.key").unwrap_err().to_string();
    assert!(err.contains("no.such.key"), "{err}");
}

#[test]
fn every_tensor_type_dequantises_exactly_as_gguf_py() {
    let g = Gguf::read(&fixture("small.gguf")).unwrap();
    let expected = read_safetensors(&fixture("small_dequant.safetensors")).unwrap();
    let types: Vec<(String, GgmlType)> = g
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.ggml_type))
        .collect();
    assert_eq!(
        types,
        [
            ("f32", GgmlType::F32),
            ("f16", GgmlType::F16),
            ("bf16", GgmlType::BF16),
            ("q8_0", GgmlType::Q8_0),
            ("q4_0", GgmlType::Q4_0),
            ("q4_1", GgmlType::Q4_1),
        ]
        .map(|(n, t)| (n.to_string(), t))
    );
    for (name, want) in &expected.tensors {
        let got = g.tensor(name).unwrap();
        assert_eq!(got.size(), want.size(), "{name}");
        // Bit for bit: the same float32 products and sums as numpy's.
        assert!(
            got.equal(want),
            "{name} differs from gguf-py's dequantisation"
        );
    }
}

/// Parses `bytes`, which must fail with a Malformed error containing `needle`.
fn malformed(bytes: Vec<u8>, needle: &str) {
    match Gguf::from_bytes("hostile.gguf", bytes) {
        Err(Error::Malformed {
            source_name,
            reason,
        }) => {
            assert_eq!(source_name, "hostile.gguf");
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        }
        other => panic!("expected Malformed with {needle:?}, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = small();
    let g = Gguf::from_bytes("whole.gguf", bytes.clone()).unwrap();
    // The last tensor's end: gguf-py pads the file beyond it, and cutting only that
    // padding loses nothing.
    let needed = g
        .tensors
        .iter()
        .map(|t| g.data_offset() + t.offset + t.n_bytes)
        .max()
        .unwrap() as usize;
    assert!(needed < bytes.len(), "the fixture ends with padding");
    for len in 0..needed {
        let r = Gguf::from_bytes("cut.gguf", bytes[..len].to_vec());
        assert!(
            matches!(r, Err(Error::Malformed { .. })),
            "a file cut to {len} bytes: {r:?}"
        );
    }
    for len in needed..=bytes.len() {
        assert!(Gguf::from_bytes("padded.gguf", bytes[..len].to_vec()).is_ok());
    }
}

/// A minimal GGUF built by hand: header, the given metadata and tensor-info bytes.
struct Builder {
    version: u32,
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            version: 3,
            kv: vec![],
            n_kv: 0,
            infos: vec![],
            n_tensors: 0,
            data: vec![],
        }
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
        Self::string(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(value);
        self.n_kv += 1;
        self
    }

    fn tensor(mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> Self {
        Self::string(&mut self.infos, name);
        self.infos.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    fn data(mut self, data: Vec<u8>) -> Self {
        self.data = data;
        self
    }

    fn build(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}

#[test]
fn a_hand_built_file_reads() {
    let values: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let g = Gguf::from_bytes(
        "ok.gguf",
        Builder::new()
            .kv("a", 4, &7u32.to_le_bytes())
            .tensor("w", &[3, 2], 0, 0)
            .data(values)
            .build(),
    )
    .unwrap();
    assert_eq!(g.tensor_info("w").unwrap().shape, [2, 3]);
    let w = g.tensor("w").unwrap();
    assert_eq!(
        Vec::<f32>::try_from(w.flatten(0, -1)).unwrap(),
        [1., 2., 3., 4., 5., 6.]
    );
    assert!(matches!(g.tensor("nope"), Err(Error::Malformed { .. })));
}

#[test]
fn hostile_headers_are_typed_errors() {
    malformed(b"GGML\x03\0\0\0".to_vec(), "not a GGUF file");
    let mut v1 = Builder::new();
    v1.version = 1;
    malformed(v1.build(), "version 1");
    // Counts far beyond what the file holds: no huge allocation, an error.
    let mut b = Builder::new().build();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    malformed(b, "tensors");
    let mut b = Builder::new().build();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    malformed(b, "metadata pairs");
    // A string whose length runs past the end.
    let mut key = Vec::new();
    key.extend(u64::MAX.to_le_bytes());
    malformed(Builder::new().kv("s", 8, &key).build(), "truncated");
    // An array of 2^60 u32s.
    let mut arr = 4u32.to_le_bytes().to_vec();
    arr.extend((1u64 << 60).to_le_bytes());
    malformed(Builder::new().kv("a", 9, &arr).build(), "does not fit");
    // Arrays nested without end.
    let mut nested = Vec::new();
    for _ in 0..64 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    malformed(Builder::new().kv("n", 9, &nested).build(), "nested");
    malformed(
        Builder::new().kv("t", 99, &[0; 8]).build(),
        "unknown metadata value type 99",
    );
    malformed(Builder::new().kv("b", 7, &[2]).build(), "bool");
    malformed(
        Builder::new()
            .kv("s", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe])
            .build(),
        "UTF-8",
    );
    let dup = Builder::new().kv("k", 0, &[1]).kv("k", 0, &[2]).build();
    malformed(dup, "twice");
    malformed(
        Builder::new()
            .kv("general.alignment", 4, &24u32.to_le_bytes())
            .build(),
        "power of two",
    );
    malformed(
        Builder::new()
            .kv("general.alignment", 4, &0u32.to_le_bytes())
            .build(),
        "power of two",
    );
}

#[test]
fn hostile_tensor_infos_are_typed_errors() {
    let f32s = |n: usize| vec![0u8; 4 * n];
    malformed(
        Builder::new()
            .tensor("w", &[2, 2], 0, 0)
            .data(f32s(3))
            .build(),
        "past the end",
    );
    malformed(
        Builder::new()
            .tensor("w", &[2], 0, 8)
            .data(f32s(16))
            .build(),
        "not a multiple of the alignment",
    );
    malformed(
        Builder::new()
            .tensor("w", &[1, 1, 1, 1, 1], 0, 0)
            .data(f32s(1))
            .build(),
        "5 dimensions",
    );
    malformed(
        Builder::new().tensor("w", &[u64::MAX, 2], 0, 0).build(),
        "overflow",
    );
    malformed(
        Builder::new().tensor("w", &[1], 5, 0).data(f32s(1)).build(),
        "unknown ggml type 5",
    );
    // Q4_1 rows must be whole blocks of 32.
    malformed(
        Builder::new()
            .tensor("w", &[48, 2], 3, 0)
            .data(vec![0; 200])
            .build(),
        "whole",
    );
    malformed(
        Builder::new()
            .tensor("w", &[1], 0, 0)
            .tensor("w", &[1], 0, 32)
            .data(f32s(16))
            .build(),
        "twice",
    );
    malformed(
        Builder::new()
            .tensor("w", &[1], 0, u64::MAX - 31)
            .data(f32s(1))
            .build(),
        "past the end",
    );
    // A type the reader knows the size of but cannot dequantise: readable, and an
    // error naming the tensor and the type at use.
    let g = Gguf::from_bytes(
        "iq2.gguf",
        Builder::new()
            .tensor("w", &[256], 16, 0)
            .data(vec![0; 66])
            .build(),
    )
    .unwrap();
    assert_eq!(g.tensors[0].ggml_type, GgmlType::IQ2_XXS);
    let err = g.tensor("w").unwrap_err().to_string();
    assert!(
        err.contains("tensor w") && err.contains("IQ2_XXS") && !err.contains('\n'),
        "{err}"
    );
}

/// A k-quant tensor whose super-blocks the file does not hold is refused when the file
/// is read, before anything the size of the tensor is allocated, in one line naming it.
#[test]
fn k_quant_tensors_past_the_end_are_refused_before_allocating() {
    // Q4_K (id 12): 144 bytes per 256 values; 4 rows of 512 need 8 blocks, 1152 bytes.
    let cut = Builder::new()
        .tensor("blk.0.ffn_down.weight", &[512, 4], 12, 0)
        .data(vec![0; 1151])
        .build();
    let err = Gguf::from_bytes("cut.gguf", cut.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("blk.0.ffn_down.weight: 8 Q4_K blocks (1152 bytes)")
            && err.contains("past the end")
            && !err.contains('\n'),
        "{err}"
    );
    // `attn inspect` says the same in one line, exit 2.
    let dir = common::tempdir("cut-k-quant");
    let path = dir.join("cut.gguf");
    std::fs::write(&path, cut).unwrap();
    let out = common::attn(&["inspect", path.to_str().unwrap()]);
    common::assert_usage_error(&out, "blk.0.ffn_down.weight: 8 Q4_K blocks (1152 bytes)");
    std::fs::remove_dir_all(&dir).unwrap();
    // 2^40 Q6_K values (4 TiB as float32) declared over 210 bytes: the
    // same error at once, nothing allocated.
    malformed(
        Builder::new()
            .tensor("w", &[256, 1 << 32], 14, 0)
            .data(vec![0; 210])
            .build(),
        "past the end",
    );
    // Rows must be whole super-blocks of 256 (IQ4_XS, id 23).
    malformed(
        Builder::new()
            .tensor("w", &[128, 2], 23, 0)
            .data(vec![0; 136])
            .build(),
        "whole IQ4_XS blocks of 256",
    );
    // With exactly the bytes it needs, it reads and dequantises.
    let whole = Builder::new()
        .tensor("w", &[512, 4], 12, 0)
        .data(vec![0; 1152])
        .build();
    let g = Gguf::from_bytes("whole.gguf", whole).unwrap();
    assert_eq!(g.tensor("w").unwrap().size(), [4, 512]);
}

/// A type id gguf-py does not know is an error naming the tensor and the id; `attn
/// inspect` prints it as one line and exits with 2.
#[test]
fn unknown_ggml_types_are_named() {
    let bytes = Builder::new()
        .tensor("blk.3.attn_q.weight", &[32], 31, 0)
        .data(vec![0; 64])
        .build();
    malformed(
        bytes.clone(),
        "tensor blk.3.attn_q.weight: unknown ggml type 31",
    );
    let dir = common::tempdir("unknown-ggml-type");
    let path = dir.join("unknown.gguf");
    std::fs::write(&path, bytes).unwrap();
    let out = common::attn(&["inspect", path.to_str().unwrap()]);
    common::assert_usage_error(&out, "unknown ggml type 31");
    std::fs::remove_dir_all(&dir).unwrap();
}
