//! A static key/value cache for a whole decoder: one preallocated buffer per layer,
//! written in place at each step, so that decoding a token copies only that token's
//! keys and values (no concatenation, no reallocation). Owned by the caller and passed
//! to each forward, as transformers' `StaticCache`.

use tch::{Device, Kind, Tensor};

use super::config::LlamaConfig;
use crate::error::{Error, Result};

/// Keys and values of every layer for up to `capacity` positions.
#[derive(Debug)]
pub struct LlamaCache {
    /// Per layer, the keys `(N, Hkv, capacity, D)`, after RoPE.
    keys: Vec<Tensor>,
    /// Per layer, the values `(N, Hkv, capacity, D)`.
    values: Vec<Tensor>,
    /// How many positions are filled.
    len: i64,
}

impl LlamaCache {
    /// An empty cache for `batch` sequences of up to `capacity` tokens in total
    /// (prompt and generated), of `kind` on `device`.
    pub fn new(
        config: &LlamaConfig,
        batch: i64,
        capacity: i64,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        if batch <= 0 || capacity <= 0 {
            return Err(Error::invalid(
                "capacity",
                format!("batch and capacity must be positive, got {batch} and {capacity}"),
            ));
        }
        let shape = [batch, config.num_key_value_heads, capacity, config.head_dim];
        let buffers = || -> Result<Vec<Tensor>> {
            (0..config.num_hidden_layers)
                .map(|_| Ok(Tensor::f_zeros(shape, (kind, device))?))
                .collect()
        };
        Ok(Self {
            keys: buffers()?,
            values: buffers()?,
            len: 0,
        })
    }

    /// How many positions are cached.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions it can hold.
    pub fn capacity(&self) -> i64 {
        self.keys.first().map_or(0, |k| k.size()[2])
    }

    /// Forgets every position (the buffers stay allocated).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// The number of layers it serves.
    pub fn num_layers(&self) -> usize {
        self.keys.len()
    }

    /// Writes `k`, `v` `(N, Hkv, L, D)` of layer `layer` at positions `len .. len + L`
    /// and returns that layer's keys and values for positions `0 .. len + L` (views of
    /// the buffers). [`LlamaCache::advance`] moves `len` once every layer has written.
    pub(crate) fn update(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (kb, vb) = (&self.keys[layer], &self.values[layer]);
        let l = k.size()[2];
        if k.size()[..2] != kb.size()[..2] || k.size()[3] != kb.size()[3] {
            return Err(Error::shape(
                "keys",
                format!("(N, Hkv, L, D) matching the cache's {:?}", kb.size()),
                &k.size(),
            ));
        }
        self.check_room(l)?;
        tch::no_grad(|| -> Result<()> {
            kb.f_narrow(2, self.len, l)?.f_copy_(k)?;
            vb.f_narrow(2, self.len, l)?.f_copy_(v)?;
            Ok(())
        })?;
        Ok((
            kb.f_narrow(2, 0, self.len + l)?,
            vb.f_narrow(2, 0, self.len + l)?,
        ))
    }

    /// Errors unless `l` more positions fit.
    pub fn check_room(&self, l: i64) -> Result<()> {
        if self.len + l > self.capacity() {
            return Err(Error::invalid(
                "cache",
                format!(
                    "{l} more tokens do not fit: {} of {} positions are used",
                    self.len,
                    self.capacity()
                ),
            ));
        }
        Ok(())
    }

    /// Marks `l` more positions as filled, after every layer has written them.
    pub(crate) fn advance(&mut self, l: i64) {
        self.len += l;
    }
}
