//! Hugging Face `BertAttention`: `BertSelfAttention`'s `self.{query,key,value}.{weight,
//! bias}` and `BertSelfOutput`'s `output.dense.{weight,bias}`, all `nn.Linear`.

use tch::Tensor;

use super::block::{bias_or_zeros, Block};
use super::{Attn, Layout};
use crate::error::Result;

/// Reads `self.{query,key,value}` and `output.dense`, each with an optional bias.
pub(super) fn extract(b: &mut Block) -> Result<Attn> {
    let q = b.need("self.query.weight")?;
    let (d, c) = match q.size()[..] {
        [d, c] => (d, c),
        _ => return Err(b.err("self.query.weight", "expected 2 dims")),
    };
    let k = b.need("self.key.weight")?;
    b.shape("self.key.weight", &k, &[d, c])?;
    let v = b.need("self.value.weight")?;
    b.shape("self.value.weight", &v, &[d, c])?;
    let biases = (
        b.bias("self.query.bias", d)?,
        b.bias("self.key.bias", d)?,
        b.bias("self.value.bias", d)?,
    );
    let o = b.need("output.dense.weight")?;
    b.shape("output.dense.weight", &o, &[c, d])?;
    let o_b = b.bias("output.dense.bias", c)?;
    Ok(Attn::new(Layout::HfBert, [q, k, v], biases, o, o_b))
}

/// Writes BERT's keys, every bias included (zeros where the source has none).
pub(super) fn emit(a: &Attn) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (name, w, bias) in [
        ("query", &a.q, &a.q_b),
        ("key", &a.k, &a.k_b),
        ("value", &a.v, &a.v_b),
    ] {
        out.push((format!("self.{name}.weight"), w.shallow_clone()));
        out.push((format!("self.{name}.bias"), bias_or_zeros(bias, a.d(), w)?));
    }
    out.push(("output.dense.weight".into(), a.o.shallow_clone()));
    out.push((
        "output.dense.bias".into(),
        bias_or_zeros(&a.o_b, a.c(), &a.o)?,
    ));
    Ok(out)
}
