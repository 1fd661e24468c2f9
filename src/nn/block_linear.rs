//! A linear layer `(*, K) -> (*, N)` whose weight `[N, K]` stays in a GGUF
//! file's own blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K) and runs on the crate's
//! integer kernels ([`super::kernels`]): activations quantised per block to 8 bits as
//! llama.cpp quantises them, one float multiply-add per block. The blocks are the
//! file's own bytes, shared ([`BlockLinear::in_place`]: a mapped GGUF's pages, no copy),
//! never a dequantised float copy; the math path beside it
//! ([`BlockLinear::dequantized`], then `F.linear`) is what the tests compare with.
//! A float32 bias (Qwen2's query, key and value projections) is added after the
//! product, as `F.linear` adds it.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::kernels::{self, BlockType, QuantMatrix};
use crate::error::{Error, Result};

/// Weights dequantised at a time on [`BatchPath::Tiles`]: 1 MiB of float32, a tile
/// that stays in a core's L2 cache while the matmul reads it.
pub const TILE_FLOATS: usize = 256 * 1024;

/// Rows `M` from which [`BlockLinear::f_forward`] takes [`BatchPath::Tiles`]: 16 for
/// the legacy types (Q8_0, Q4_0, Q4_1, Q5_0), and 128 for the k-quants (whose scalar
/// dequantisation is slower).
///
/// The legacy threshold comes from the whole model on a quiet machine: eight streams of
/// SmolLM2 Q4_1 decoded together (`attn bench --suite serve`, row `gguf_streams8`, one
/// thread) took 122.3 ms a step on the tiles (every weight, the head's 28 M among them,
/// dequantised each step) against 61.0 on the kernels, about 7.6 ms a row; the tiles'
/// step hardly depends on `M`, so they pay from about 16 rows. The per-product table
/// below, measured on a loaded machine, had put the crossing at 8.
///
/// The choice, measured by `tests/block_linear.rs`'s `prefill_timing_kernels_against_tiles`
/// (one thread, the 2-core AVX-512 VNNI EPYC of this work, quiet, after the tiles'
/// buffers and Q6_K's vectorised dequantisation; ms a product, kernels / tiles):
///
/// | shape `[N, K]` | type | M = 1 | 8 | 16 | 32 | 64 | 128 |
/// |---|---|---|---|---|---|---|---|
/// | SmolLM2 gate/up `[1536, 576]` | Q4_1 | 0.03 / 0.28 | 0.22 / 0.44 | 0.43 / 0.57 | 0.86 / 0.84 | 1.78 / 1.37 | 3.42 / 2.44 |
/// | SmolLM2 down `[576, 1536]` | Q4_1 | 0.03 / 0.27 | 0.20 / 0.43 | 0.40 / 0.57 | 0.79 / 0.84 | 1.58 / 1.38 | 3.37 / 2.47 |
/// | Gemma 3 gate/up `[2048, 640]` | Q5_0 | 0.05 / 0.50 | 0.41 / 0.73 | 0.82 / 0.93 | 1.64 / 1.34 | 3.29 / 2.14 | 6.62 / 3.77 |
/// | Gemma 3 down `[640, 2048]` | Q6_K | 0.04 / 0.41 | 0.28 / 0.78 | 0.56 / 0.99 | 1.12 / 1.40 | 2.24 / 2.23 | 4.54 / 3.90 |
///
/// A product alone crosses at about 32 rows for the legacy types and 64 for Q6_K; the
/// thresholds stay at 16 and 128 (the legacy one from the whole model above, not
/// measured again).
///
/// The kernels' small-batch path reads each weight row once but still does `M` integer
/// dot products a row, where libtorch's float32 GEMM blocks for its registers: from a
/// few dozen rows the dequantised tiles win. The tiles' arithmetic is the math path's
/// (float activations), not llama.cpp's, so a prompt's logits differ from token-by-token
/// decoding by the activations' 8-bit rounding. With `--quant gguf`'s threads
/// ([`kernels::dedicate_threads`]) the tiles share out over the kernels' pool, one
/// single-threaded libtorch matmul each.
pub fn tiles_from_rows(block: BlockType) -> usize {
    if block.is_k_quant() {
        128
    } else {
        16
    }
}

/// Tiles a product on [`BatchPath::Tiles`] is cut into come in groups of this many, so
/// that one, two or four threads get equal shares.
const TILE_GROUP: usize = 4;

/// Weight rows a tile of `[rows, cols]`: the fewest tiles, a multiple of [`TILE_GROUP`],
/// of at most [`TILE_FLOATS`] weights each, then rows rounded up to a multiple of 8 (so
/// a tile may hold up to seven rows more). The same whatever the number of threads, so
/// that each tile's product, and so the output, is too.
fn tile_rows(rows: usize, cols: usize) -> usize {
    let tiles = (rows * cols)
        .div_ceil(TILE_FLOATS)
        .next_multiple_of(TILE_GROUP);
    rows.div_ceil(tiles)
        .next_multiple_of(8)
        .clamp(1, rows.max(1))
}

thread_local! {
    /// Each thread's tile of dequantised weights, kept between products (about
    /// [`TILE_FLOATS`] floats: 1 MiB).
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// How [`BlockLinear::f_forward`] multiplies `M` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchPath {
    /// The integer kernels: activations quantised per block to 8 bits (llama.cpp's
    /// arithmetic), each weight row read once for all `M` rows.
    Kernels,
    /// Tiles of the weight dequantised to float32 and multiplied by libtorch's matmul
    /// (float activations: the math path's arithmetic, tile by tile).
    Tiles,
}

impl BatchPath {
    /// [`BatchPath::Tiles`] from [`tiles_from_rows`] rows of `block`, the kernels
    /// below.
    pub fn for_rows(block: BlockType, m: usize) -> BatchPath {
        if m >= tiles_from_rows(block) {
            BatchPath::Tiles
        } else {
            BatchPath::Kernels
        }
    }
}

/// Bytes a [`BlockLinear`] can share: a mapped file, a buffer.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// `F.linear(x, w)` with `w` in ggml blocks (cloning shares the blocks).
#[derive(Clone)]
pub struct BlockLinear {
    block: BlockType,
    /// `N`: output features (the weight's rows).
    rows: usize,
    /// `K`: input features (a multiple of the block length).
    cols: usize,
    /// `bytes[range]`: `N` rows of `K / block_len` blocks, row-major, as the file
    /// stores them.
    bytes: SharedBytes,
    range: Range<usize>,
    /// `[N]`, added to every output row; `None`: no bias.
    bias: Option<Arc<[f32]>>,
}

impl std::fmt::Debug for BlockLinear {
    // Without the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockLinear")
            .field("block", &self.block)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bias", &self.bias.is_some())
            .finish_non_exhaustive()
    }
}

impl BlockLinear {
    /// The weight `[rows, cols]` of type `block` in `data` (validated once, here).
    pub fn new(block: BlockType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        let range = 0..data.len();
        Self::in_place(block, rows, cols, Arc::new(data), range)
    }

    /// The weight `[rows, cols]` of type `block` in `bytes[range]`, shared rather than
    /// copied (a mapped file's tensor, say); validated once, here.
    pub fn in_place(
        block: BlockType,
        rows: usize,
        cols: usize,
        bytes: SharedBytes,
        range: Range<usize>,
    ) -> Result<Self> {
        let all = (*bytes).as_ref();
        let data = all.get(range.clone()).ok_or_else(|| {
            Error::invalid(
                "range",
                format!("expected bytes inside 0..{}, got {range:?}", all.len()),
            )
        })?;
        QuantMatrix::new(block, rows, cols, data)?;
        Ok(Self {
            block,
            rows,
            cols,
            bytes,
            range,
            bias: None,
        })
    }

    /// The same weight with `bias` `[N]` (float32 values of any float dtype) added to
    /// every output row.
    pub fn with_bias(self, bias: &Tensor) -> Result<Self> {
        if bias.size() != [self.rows as i64] {
            let expected = format!("[N] with N = {}", self.rows);
            return Err(Error::shape("bias", expected, &bias.size()));
        }
        let values = Vec::<f32>::try_from(&bias.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)?;
        Ok(Self {
            bias: Some(values.into()),
            ..self
        })
    }

    /// The stored blocks.
    fn data(&self) -> &[u8] {
        &(*self.bytes).as_ref()[self.range.clone()]
    }

    /// The same weight with its rows reordered: row `i` of the result is row
    /// `order[i]` of this one (llama.cpp's query/key permutation undone, say). Whole
    /// rows of blocks move, so no value changes.
    pub fn with_rows(self, order: &[usize]) -> Result<Self> {
        let data = self.data();
        let row_bytes = data.len() / self.rows;
        if order.len() != self.rows || order.iter().any(|&r| r >= self.rows) {
            return Err(Error::invalid(
                "order",
                format!("expected a permutation of 0..{}", self.rows),
            ));
        }
        let reordered = order
            .iter()
            .flat_map(|&r| &data[r * row_bytes..(r + 1) * row_bytes])
            .copied()
            .collect();
        let moved = Self::new(self.block, self.rows, self.cols, reordered)?;
        Ok(Self {
            bias: self
                .bias
                .as_ref()
                .map(|b| order.iter().map(|&r| b[r]).collect()),
            ..moved
        })
    }

    /// The block type.
    pub fn block(&self) -> BlockType {
        self.block
    }

    /// K.
    pub fn in_features(&self) -> i64 {
        self.cols as i64
    }

    /// N.
    pub fn out_features(&self) -> i64 {
        self.rows as i64
    }

    /// The bytes the weight occupies.
    pub fn nbytes(&self) -> usize {
        self.range.len()
    }

    /// `(*, K) -> (*, N)` on the CPU, in `x`'s dtype (computed in float32), on the path
    /// [`BatchPath::for_rows`] chooses for its number of rows `M` (prefill:
    /// dequantised tiles; decoding: the integer kernels).
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.numel() / self.cols.max(1);
        self.f_forward_on(x, BatchPath::for_rows(self.block, m))
    }

    /// [`BlockLinear::f_forward`] on the given path.
    pub fn f_forward_on(&self, x: &Tensor, path: BatchPath) -> Result<Tensor> {
        let size = x.size();
        if size.last() != Some(&(self.cols as i64)) || x.device() != Device::Cpu {
            return Err(Error::shape(
                "x",
                format!("(*, K) with K = {} on the CPU", self.cols),
                &size,
            ));
        }
        let kind = x.kind();
        let m = (x.numel() / self.cols.max(1)) as i64;
        let flat = x
            .f_to_kind(Kind::Float)?
            .f_contiguous()?
            .f_view([m, self.cols as i64])?; // (M, K)
        let y = match path {
            BatchPath::Kernels => self.kernels(&flat)?,
            BatchPath::Tiles => self.tiles(&flat)?,
        }; // (M, N)
        let y = match &self.bias {
            Some(b) => y.f_add(&Tensor::f_from_slice(b)?)?,
            None => y,
        };
        let mut shape = size;
        *shape.last_mut().expect("checked above") = self.rows as i64;
        Ok(y.f_view(shape.as_slice())?.f_to_kind(kind)?)
    }

    /// `y = x · wᵀ (+ bias)` on plain float32 slices, on the integer kernels: `x`
    /// `(M, K)`, `y` `(M, N)`, row-major (a decoding step's buffers, no tensor made).
    pub fn forward_slices(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        let w = QuantMatrix::new(self.block, self.rows, self.cols, self.data())?;
        kernels::matmul(&w, x, y, kernels::threads())?;
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.rows) {
                for (v, &c) in row.iter_mut().zip(b.iter()) {
                    *v += c;
                }
            }
        }
        Ok(())
    }

    /// `(M, K) -> (M, N)` on the integer kernels, output rows split over the kernels'
    /// threads ([`kernels::threads`]).
    fn kernels(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.size()[0] as usize;
        let y = Tensor::f_empty([m as i64, self.rows as i64], (Kind::Float, Device::Cpu))?;
        // SAFETY: `x` is a contiguous CPU float32 `(M, K)` (f_forward_on made it so) and
        // `y` a fresh `(M, N)` one; both stay alive and untouched by anything else until
        // the product returns. Read and written in place: a decoding step's head (1 MiB of
        // Gemma's logits) is not copied twice, nor allocated twice.
        let (input, out) = unsafe {
            (
                std::slice::from_raw_parts(x.data_ptr() as *const f32, m * self.cols),
                std::slice::from_raw_parts_mut(y.data_ptr() as *mut f32, m * self.rows),
            )
        };
        let w = QuantMatrix::new(self.block, self.rows, self.cols, self.data())?;
        kernels::matmul(&w, input, out, kernels::threads())?;
        Ok(y)
    }

    /// `(M, K) -> (M, N)`: tiles of about [`TILE_FLOATS`] weights ([`tile_rows`])
    /// dequantised in turn into a buffer each thread keeps, each through libtorch's
    /// float32 matmul straight into its columns of the output; no whole float copy, no
    /// allocation a tile. The tiles share out over the kernels' threads when they have
    /// threads of their own ([`kernels::dedicate_threads`]: libtorch on one), else each
    /// matmul takes libtorch's. Either way each tile's product is the same.
    fn tiles(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.size()[0] as usize;
        let y = Tensor::f_empty([m as i64, self.rows as i64], (Kind::Float, Device::Cpu))?;
        let tile_rows = tile_rows(self.rows, self.cols);
        let starts: Vec<usize> = (0..self.rows).step_by(tile_rows).collect();
        let threads = match tch::get_num_threads() {
            1 => kernels::threads(),
            _ => 1,
        };
        // Addresses, not tensors, cross the threads (a `Tensor` is not `Sync`).
        let (input, out) = (x.data_ptr() as usize, y.data_ptr() as usize);
        kernels::map_on_pool(threads, starts.len(), |i| {
            TILE.with_borrow_mut(|tile| {
                let n = tile_rows.min(self.rows - starts[i]);
                self.tile_product((input, m), (out, starts[i], n), tile)
            })
        })
        .into_iter()
        .collect::<Result<()>>()?;
        Ok(y)
    }

    /// Output columns `r0..r0 + n` of `y` `(M, N)` at `out`: `x` `(M, K)` at `input`
    /// times weight rows `r0..r0 + n`, dequantised into `tile`.
    fn tile_product(
        &self,
        (input, m): (usize, usize),
        (out, r0, n): (usize, usize, usize),
        tile: &mut Vec<f32>,
    ) -> Result<()> {
        let row_bytes = self.range.len() / self.rows.max(1);
        let bytes = &self.data()[r0 * row_bytes..(r0 + n) * row_bytes];
        tile.resize(tile.len().max(n * self.cols), 0.0);
        kernels::dequantize(self.block, bytes, &mut tile[..n * self.cols])?;
        let (k, rows) = (self.cols as i64, self.rows as i64);
        let float = |ptr: usize, size: &[i64], strides: &[i64]| {
            // SAFETY (each use below): `input` is `tiles`' contiguous `(M, K)` float32
            // `x`, read only; `tile` holds `n * K` floats; `out + r0` starts `n` columns of
            // `y` `(M, N)`, which no other tile writes. All outlive the product.
            unsafe { Tensor::from_blob(ptr as *const u8, size, strides, Kind::Float, Device::Cpu) }
        };
        let x = float(input, &[m as i64, k], &[k, 1]);
        let w_t = float(tile.as_ptr() as usize, &[k, n as i64], &[1, k]); // (K, n): wᵀ
        let y = float(out + r0 * 4, &[m as i64, n as i64], &[rows, 1]); // (M, n) of (M, N)
        let _ = x.f_mm_out(&y, &w_t)?;
        Ok(())
    }

    /// Rows `ids` of the weight `(*) -> (*, K)`, dequantised to float32 as gguf-py
    /// dequantises them: an embedding lookup in the table's own blocks (ggml's
    /// `get_rows`), for a table kept in blocks for its tied head. `ids` int64, each in
    /// `0..N` (an error otherwise).
    pub fn f_rows(&self, ids: &Tensor) -> Result<Tensor> {
        let size = ids.size();
        if ids.kind() != Kind::Int64 {
            return Err(Error::shape("ids", "int64 ids", &size));
        }
        let flat = Vec::<i64>::try_from(&ids.f_reshape([-1])?.f_to_device(Device::Cpu)?)?;
        let w = QuantMatrix::new(self.block, self.rows, self.cols, self.data())?;
        let mut out = vec![0f32; flat.len() * self.cols];
        for (&id, row) in flat.iter().zip(out.chunks_exact_mut(self.cols)) {
            let r = usize::try_from(id)
                .ok()
                .filter(|&r| r < self.rows)
                .ok_or_else(|| {
                    Error::invalid("ids", format!("ids must lie in 0..{}, got {id}", self.rows))
                })?;
            kernels::dequantize(self.block, w.row(r), row)?;
        }
        let mut shape = size;
        shape.push(self.cols as i64);
        Ok(Tensor::f_from_slice(&out)?
            .f_view(shape.as_slice())?
            .f_to_device(ids.device())?)
    }

    /// The weight `[N, K]` in float32, as gguf-py dequantises it: the math path.
    pub fn dequantized(&self) -> Result<Tensor> {
        let mut w = vec![0f32; self.rows * self.cols];
        kernels::dequantize(self.block, self.data(), &mut w)?;
        Ok(Tensor::f_from_slice(&w)?.f_view([self.rows as i64, self.cols as i64])?)
    }
}
