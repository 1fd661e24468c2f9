//! GGUF's block types as stored (ggml's `block_q4_0` ... `block_q6_K`, gguf-py's
//! `gguf/quants.py`), and [`QuantMatrix`], a weight borrowed as the file's bytes and
//! checked once against its shape.

use crate::error::{Error, Result};

/// One of ggml's block-quantised types, with its byte layout.
///
/// Every scale (`d`, `dmin`, `m`) is an IEEE half in little-endian order; `q` are the
/// codes, `a` the quantised activations the kernels multiply them with.
///
/// | type | elements | bytes | layout | weight |
/// |------|---------:|------:|--------|--------|
/// | Q8_0 | 32 | 34 | `d`, `qs[32]` i8 | `d·q` |
/// | Q4_0 | 32 | 18 | `d`, `qs[16]`: element `j` is `qs[j] & 15`, `j + 16` is `qs[j] >> 4` | `d·(q − 8)` |
/// | Q4_1 | 32 | 20 | `d`, `m`, `qs[16]` as Q4_0 | `d·q + m` |
/// | Q5_0 | 32 | 22 | `d`, `qh` u32, `qs[16]` as Q4_0; bit `j` of `qh` is element `j`'s fifth bit | `d·(q − 16)` |
/// | Q4_K | 256 | 144 | `d`, `dmin`, `scales[12]` (eight 6-bit scales and mins), `qs[128]`: bytes `32c..32c+32` hold sub-block `2c` in their low nibbles and `2c + 1` in their high ones | `d·sc_j·q − dmin·m_j` |
/// | Q5_K | 256 | 176 | `d`, `dmin`, `scales[12]`, `qh[32]` (bit `j` of `qh[l]`: element `l` of sub-block `j`), `qs[128]` as Q4_K | as Q4_K, 5-bit `q` |
/// | Q6_K | 256 | 210 | `ql[128]`, `qh[64]`, `scales[16]` i8 (one per 16 elements), `d` | `d·sc_g·(q − 32)` |
///
/// Q6_K's element `e = 128h + 32s + l` (half `h`, quarter `s`, lane `l`) takes its low four
/// bits from `ql[64h + 32(s % 2) + l] >> 4(s / 2)` and its high two from
/// `qh[32h + l] >> 2s`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockType {
    /// 8-bit, 32 a block, one scale.
    Q8_0,
    /// 4-bit, 32 a block, one scale, codes centred on 8.
    Q4_0,
    /// 4-bit, 32 a block, a scale and a minimum.
    Q4_1,
    /// 5-bit, 32 a block, one scale, codes centred on 16.
    Q5_0,
    /// 4-bit k-quant: 256 a super-block of eight sub-blocks with 6-bit scales and mins.
    Q4_K,
    /// 5-bit k-quant, laid out as Q4_K plus one high bit a code.
    Q5_K,
    /// 6-bit k-quant: sixteen sub-blocks of 16 with 8-bit scales.
    Q6_K,
}

impl BlockType {
    /// Every type the kernels take, in the order of the table above.
    pub const ALL: [BlockType; 7] = [
        BlockType::Q8_0,
        BlockType::Q4_0,
        BlockType::Q4_1,
        BlockType::Q5_0,
        BlockType::Q4_K,
        BlockType::Q5_K,
        BlockType::Q6_K,
    ];

    /// A row length of `cols` elements must be whole blocks: an error naming `cols`
    /// otherwise (the weights' check and the activations' alike).
    pub fn check_cols(self, cols: usize) -> Result<()> {
        if cols == 0 || !cols.is_multiple_of(self.block_len()) {
            return Err(Error::invalid(
                "cols",
                format!(
                    "expected a positive multiple of {self}'s block of {} elements, got {cols}",
                    self.block_len()
                ),
            ));
        }
        Ok(())
    }

    /// Elements a block (ggml's `QK4_0`, `QK_K`, ...).
    pub fn block_len(self) -> usize {
        match self {
            BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 => 32,
            BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K => 256,
        }
    }

    /// Bytes a block (`GGML_QUANT_SIZES[type][1]` in gguf-py).
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::Q8_0 => 34,
            BlockType::Q4_0 => 18,
            BlockType::Q4_1 => 20,
            BlockType::Q5_0 => 22,
            BlockType::Q4_K => 144,
            BlockType::Q5_K => 176,
            BlockType::Q6_K => 210,
        }
    }

    /// The type's number in a GGUF file's tensor table (`GGMLQuantizationType`).
    pub fn ggml_type(self) -> u32 {
        match self {
            BlockType::Q4_0 => 2,
            BlockType::Q4_1 => 3,
            BlockType::Q5_0 => 6,
            BlockType::Q8_0 => 8,
            BlockType::Q4_K => 12,
            BlockType::Q5_K => 13,
            BlockType::Q6_K => 14,
        }
    }

    /// The block type of a GGUF tensor-table number; `None` for the types these kernels
    /// do not take (float, Q5_1, Q2_K, Q3_K, the i-quants, ...).
    pub fn from_ggml_type(ggml_type: u32) -> Option<BlockType> {
        BlockType::ALL
            .into_iter()
            .find(|b| b.ggml_type() == ggml_type)
    }

    /// gguf-py's name of the type (`"Q4_K"`).
    pub fn name(self) -> &'static str {
        match self {
            BlockType::Q8_0 => "Q8_0",
            BlockType::Q4_0 => "Q4_0",
            BlockType::Q4_1 => "Q4_1",
            BlockType::Q5_0 => "Q5_0",
            BlockType::Q4_K => "Q4_K",
            BlockType::Q5_K => "Q5_K",
            BlockType::Q6_K => "Q6_K",
        }
    }

    /// Whether the activations go in llama.cpp's Q8_K blocks of 256 (the k-quants)
    /// rather than its Q8_0 blocks of 32 (the legacy types).
    pub fn is_k_quant(self) -> bool {
        self.block_len() == 256
    }
}

impl std::fmt::Display for BlockType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A weight `[rows, cols]` (PyTorch's `[out_features, in_features]`; GGUF lists the same
/// tensor as `[cols, rows]`) borrowed as the file's blocks, row after row, with no copy.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    block: BlockType,
    rows: usize,
    cols: usize,
    data: &'a [u8],
}

impl<'a> QuantMatrix<'a> {
    /// The matrix of `rows` rows of `cols` elements of type `block` stored in `data`.
    /// Checked here, once: `cols` a positive multiple of the block length, `rows`
    /// positive, and `data` exactly `rows · cols / block_len · block_bytes` bytes long.
    pub fn new(block: BlockType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        if rows == 0 {
            return Err(Error::invalid("rows", "expected at least 1, got 0"));
        }
        block.check_cols(cols)?;
        let row_bytes = cols / block.block_len() * block.block_bytes();
        let expected = row_bytes.checked_mul(rows).ok_or_else(|| {
            Error::invalid("rows", format!("{rows} rows of {row_bytes} bytes overflow"))
        })?;
        if data.len() != expected {
            return Err(Error::invalid(
                "data",
                format!(
                    "expected {expected} bytes ({rows} rows of {cols} {block} elements, \
                     {row_bytes} bytes a row), got {}",
                    data.len()
                ),
            ));
        }
        Ok(QuantMatrix {
            block,
            rows,
            cols,
            data,
        })
    }

    /// The block type.
    pub fn block(&self) -> BlockType {
        self.block
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements a row (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes a row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.block.block_len() * self.block.block_bytes()
    }

    /// The stored bytes, all rows.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Row `r`'s blocks. Panics when `r >= rows`, as slice indexing does.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }
}
