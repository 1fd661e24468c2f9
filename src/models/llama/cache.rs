//! A static key/value cache for a whole decoder: one preallocated buffer per layer,
//! written in place at each step, so that decoding a token copies only that token's
//! keys and values (no concatenation, no reallocation). Owned by the caller and passed
//! to each forward, as transformers' `StaticCache`.
//!
//! The sliding layers of `layer_types` (Gemma 3) keep a rolling buffer of W positions
//! instead (position `p` in slot `p % W`), so that a long generation's memory grows
//! only with the full layers; their window never reaches further back.

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
    /// The most positions in all (the full layers' buffers).
    capacity: i64,
    /// Per layer, W for a rolling layer, `None` for a full one.
    rolling: Vec<Option<i64>>,
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
        let rolling: Vec<Option<i64>> = (0..config.num_hidden_layers as usize)
            .map(|i| {
                config
                    .is_sliding_layer(i)
                    .then(|| config.window_of_layer(i))
                    .flatten()
                    .filter(|&w| w >= 1 && w < capacity)
            })
            .collect();
        let buffers = || -> Result<Vec<Tensor>> {
            rolling
                .iter()
                .map(|w| {
                    let shape = [
                        batch,
                        config.num_key_value_heads,
                        w.unwrap_or(capacity),
                        config.head_dim,
                    ];
                    Ok(Tensor::f_zeros(shape, (kind, device))?)
                })
                .collect()
        };
        Ok(Self {
            keys: buffers()?,
            values: buffers()?,
            len: 0,
            capacity,
            rolling,
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
        self.capacity
    }

    /// The positions layer `layer`'s buffer holds: the capacity, or a rolling layer's
    /// window.
    pub fn layer_capacity(&self, layer: usize) -> Option<i64> {
        self.keys.get(layer).map(|k| k.size()[2])
    }

    /// How many sequences it holds (N).
    pub fn batch(&self) -> i64 {
        self.keys.first().map_or(0, |k| k.size()[0])
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
    /// the buffers); a rolling layer's, for the positions its window can reach (see
    /// [`LlamaCache::update_rolling`]). [`LlamaCache::advance`] moves `len` once every
    /// layer has written.
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
        if let Some(w) = self.rolling[layer] {
            return self.update_rolling(layer, w, k, v);
        }
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

    /// A rolling layer's update: `k`, `v` `(N, Hkv, L, D)` of positions `len .. len + L`
    /// go to slots `p % W`. One new position (decoding) sees the whole buffer, in slot
    /// order: at most W positions, all within its window, and attention does not depend
    /// on the keys' order. A block of L > 1 gets the last `min(len, W - 1)` cached
    /// positions in order followed by its own, so that the window's mask lines up.
    fn update_rolling(
        &self,
        layer: usize,
        w: i64,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (kb, vb) = (&self.keys[layer], &self.values[layer]);
        let (len, l) = (self.len, k.size()[2]);
        let device = k.device();
        if l == 1 {
            let slot = len % w;
            tch::no_grad(|| -> Result<()> {
                kb.f_narrow(2, slot, 1)?.f_copy_(k)?;
                vb.f_narrow(2, slot, 1)?.f_copy_(v)?;
                Ok(())
            })?;
            let n = (len + 1).min(w);
            return Ok((kb.f_narrow(2, 0, n)?, vb.f_narrow(2, 0, n)?));
        }
        let kept = len.min(w - 1);
        let past: Vec<i64> = (len - kept..len).map(|p| p % w).collect();
        let past = Tensor::f_from_slice(&past)?.f_to_device(device)?;
        let keys = Tensor::f_cat(&[&kb.f_index_select(2, &past)?, k], 2)?;
        let values = Tensor::f_cat(&[&vb.f_index_select(2, &past)?, v], 2)?;
        // Only the last W new positions can be reached later.
        let new = l.min(w);
        let slots: Vec<i64> = (len + l - new..len + l).map(|p| p % w).collect();
        let slots = Tensor::f_from_slice(&slots)?.f_to_device(device)?;
        tch::no_grad(|| -> Result<()> {
            let mut kb = kb.shallow_clone();
            let mut vb = vb.shallow_clone();
            let _ = kb.f_index_copy_(2, &slots, &k.f_narrow(2, l - new, new)?)?;
            let _ = vb.f_index_copy_(2, &slots, &v.f_narrow(2, l - new, new)?)?;
            Ok(())
        })?;
        Ok((keys, values))
    }

    /// Copies the first `len` positions into `into`, an empty cache of the same
    /// model and batch with room for them, which then holds exactly those (a request
    /// whose prompt begins with tokens cached for an earlier one starts from them).
    /// `Ok(false)`, and `into` untouched, where a rolling layer no longer holds a
    /// position `into` needs: one that `len` positions would still see, overwritten
    /// since by a later one.
    pub fn f_copy_prefix_into(&self, len: i64, into: &mut LlamaCache) -> Result<bool> {
        let same = self.keys.len() == into.keys.len()
            && self
                .keys
                .iter()
                .zip(&into.keys)
                .all(|(a, b)| a.size()[..2] == b.size()[..2] && a.size()[3] == b.size()[3]);
        if !same || !into.is_empty() {
            return Err(Error::invalid(
                "into",
                "an empty cache of the same model and batch as the one copied",
            ));
        }
        if len < 0 || len > self.len {
            let got = format!("0..={} positions are cached, got {len}", self.len);
            return Err(Error::invalid("len", got));
        }
        into.check_room(len)?;
        // Per layer, the positions `into` needs and the slots they are (to be) in.
        let mut plan = Vec::with_capacity(self.keys.len());
        for layer in 0..self.keys.len() {
            // A rolling layer needs only what the next position's window reaches.
            let first = into.rolling[layer].map_or(0, |w| (len - (w - 1)).max(0));
            let held = self.rolling[layer].map_or(0, |w| self.len - w);
            if first < held {
                return Ok(false);
            }
            let slot = |rolling: Option<i64>, p: i64| rolling.map_or(p, |w| p % w);
            let from: Vec<i64> = (first..len).map(|p| slot(self.rolling[layer], p)).collect();
            let to: Vec<i64> = (first..len).map(|p| slot(into.rolling[layer], p)).collect();
            plan.push((from, to));
        }
        tch::no_grad(|| -> Result<()> {
            for (layer, (from, to)) in plan.iter().enumerate() {
                let device = self.keys[layer].device();
                let from = Tensor::f_from_slice(from)?.f_to_device(device)?;
                let to = Tensor::f_from_slice(to)?.f_to_device(device)?;
                for (src, dst) in [
                    (&self.keys[layer], &into.keys[layer]),
                    (&self.values[layer], &into.values[layer]),
                ] {
                    let mut dst = dst.shallow_clone();
                    let _ = dst.f_index_copy_(2, &to, &src.f_index_select(2, &from)?)?;
                }
            }
            Ok(())
        })?;
        into.len = len;
        Ok(true)
    }

    /// Errors unless `l` more positions fit.
    pub fn check_room(&self, l: i64) -> Result<()> {
        if self.len + l > self.capacity {
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

    /// Layer `layer`'s buffers for a decoding step written in place (the caller writes
    /// position `len`'s key and value rows at [`TokenKv::slot`]): `None` unless the
    /// cache holds one sequence in contiguous CPU float32 buffers with room for it.
    pub(super) fn token_kv(&mut self, layer: usize) -> Option<TokenKv<'_>> {
        let (kb, vb) = (self.keys.get(layer)?, self.values.get(layer)?);
        let size = kb.size(); // (1, Hkv, slots, D)
        let plain =
            |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous();
        if size[0] != 1 || !plain(kb) || !plain(vb) || self.len >= self.capacity {
            return None;
        }
        let slots = size[2] as usize;
        let numel = size.iter().product::<i64>() as usize;
        let rolling = self.rolling[layer].is_some();
        // SAFETY: both buffers are contiguous CPU float32 tensors of `numel` elements
        // that this cache owns and never shares (update's views are dropped by the end
        // of each forward); `&mut self` keeps any other access out while these live.
        let (keys, values) = unsafe {
            (
                std::slice::from_raw_parts_mut(kb.data_ptr() as *mut f32, numel),
                std::slice::from_raw_parts_mut(vb.data_ptr() as *mut f32, numel),
            )
        };
        let len = self.len as usize;
        Some(TokenKv {
            keys,
            values,
            slots,
            slot: if rolling { len % slots } else { len },
            filled: if rolling {
                (len + 1).min(slots)
            } else {
                len + 1
            },
            rolling,
        })
    }

    /// Marks `l` more positions as filled, after every layer has written them.
    pub(crate) fn advance(&mut self, l: i64) {
        self.len += l;
    }
}

/// One layer's key and value buffers for a decoding step ([`LlamaCache::token_kv`]).
pub(super) struct TokenKv<'a> {
    /// `(Hkv, slots, D)`, row-major.
    pub keys: &'a mut [f32],
    /// `(Hkv, slots, D)`.
    pub values: &'a mut [f32],
    /// Rows a head has: the capacity, or a rolling layer's window W.
    pub slots: usize,
    /// The row the new position goes to (`len`, or `len % W` on a rolling layer).
    pub slot: usize,
    /// The rows filled once it is written: the first `filled` of each head, in slot
    /// order (a rolling layer's are all within its window; the order does not change
    /// attention).
    pub filled: usize,
    /// Whether it is a rolling layer's buffer (whose rows are all in the window).
    pub rolling: bool,
}
