//! A bias-free linear layer `(*, K) -> (*, N)` whose weight `[N, K]` stays in a GGUF
//! file's own blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K) and runs on the crate's
//! integer kernels ([`super::kernels`]): activations quantised per block to 8 bits as
//! llama.cpp quantises them, one float multiply-add per block. One copy of the file's
//! bytes at load, no dequantised float copy; the math path beside it
//! ([`BlockLinear::dequantized`], then `F.linear`) is what the tests compare with.

use tch::{Device, Kind, Tensor};

use super::kernels::{self, BlockType, QuantMatrix};
use crate::error::{Error, Result};

/// `F.linear(x, w)` with `w` in ggml blocks.
#[derive(Debug)]
pub struct BlockLinear {
    block: BlockType,
    /// `N`: output features (the weight's rows).
    rows: usize,
    /// `K`: input features (a multiple of the block length).
    cols: usize,
    /// `N` rows of `K / block_len` blocks, row-major, as the file stores them.
    data: Vec<u8>,
}

impl BlockLinear {
    /// The weight `[rows, cols]` of type `block` in `data` (validated once, here).
    pub fn new(block: BlockType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        QuantMatrix::new(block, rows, cols, &data)?;
        Ok(Self {
            block,
            rows,
            cols,
            data,
        })
    }

    /// The same weight with its rows reordered: row `i` of the result is row
    /// `order[i]` of this one (llama.cpp's query/key permutation undone, say). Whole
    /// rows of blocks move, so no value changes.
    pub fn with_rows(self, order: &[usize]) -> Result<Self> {
        let row_bytes = self.data.len() / self.rows;
        if order.len() != self.rows || order.iter().any(|&r| r >= self.rows) {
            return Err(Error::invalid(
                "order",
                format!("expected a permutation of 0..{}", self.rows),
            ));
        }
        let data = order
            .iter()
            .flat_map(|&r| &self.data[r * row_bytes..(r + 1) * row_bytes])
            .copied()
            .collect();
        Self::new(self.block, self.rows, self.cols, data)
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
        self.data.len()
    }

    /// `(*, K) -> (*, N)` on the CPU, in `x`'s dtype (computed in float32), output rows
    /// split over libtorch's intra-op thread count.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
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
            .f_view([m * self.cols as i64])?;
        let input = Vec::<f32>::try_from(&flat)?;
        let mut out = vec![0f32; m as usize * self.rows];
        let w = QuantMatrix::new(self.block, self.rows, self.cols, &self.data)?;
        let threads = tch::get_num_threads().max(1) as usize;
        kernels::matmul(&w, &input, &mut out, threads)?;
        let mut shape = size;
        *shape.last_mut().expect("checked above") = self.rows as i64;
        Ok(Tensor::f_from_slice(&out)?
            .f_view(shape.as_slice())?
            .f_to_kind(kind)?)
    }

    /// The weight `[N, K]` in float32, as gguf-py dequantises it: the math path.
    pub fn dequantized(&self) -> Result<Tensor> {
        let mut w = vec![0f32; self.rows * self.cols];
        kernels::dequantize(self.block, &self.data, &mut w)?;
        Ok(Tensor::f_from_slice(&w)?.f_view([self.rows as i64, self.cols as i64])?)
    }
}
