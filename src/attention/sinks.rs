//! Attention sinks (gpt-oss, `self.sinks`): one learned logit per head joins every row's
//! softmax as an extra column, which is then dropped, so a row's weights over the keys
//! sum to less than one and a query can attend to "nothing". As transformers'
//! `modeling_gpt_oss.py` `eager_attention_forward`:
//! `combined = cat([scores, sinks.reshape(1, H, 1, 1).expand(N, H, L, 1)], -1)`, minus its
//! row maximum, softmax, last column dropped.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// `sinks` is floating, of shape `(H,)` with `H` the heads of the scores (their
/// dimension -3), in the query's dtype and on its device.
pub(crate) fn check(sinks: &Tensor, scores: &[i64], kind: Kind, device: Device) -> Result<()> {
    let heads = heads_of(scores, "sinks")?;
    if sinks.size() != [heads] {
        return Err(Error::shape(
            "sinks",
            format!("(H,) with H = {heads}, the heads of the scores {scores:?}"),
            &sinks.size(),
        ));
    }
    crate::check::same_kind_device("sinks", sinks, kind, device)
}

/// The heads of scores `(.., H, L, S)`: their dimension -3, which must exist.
pub(crate) fn heads_of(scores: &[i64], arg: &str) -> Result<i64> {
    match scores.len() {
        0..=2 => Err(Error::invalid(
            arg,
            format!(
                "needs a heads dimension: a query of at least 3 dimensions (.., H, L, E), \
                 got scores {scores:?}"
            ),
        )),
        n => Ok(scores[n - 3]),
    }
}

/// The softmax over the keys with the sink column, which is then dropped: scores
/// `(.., H, L, S)` -> weights `(.., H, L, S)`.
pub(crate) fn softmax_with_sinks(scores: &Tensor, sinks: &Tensor) -> Result<Tensor> {
    let size = scores.size();
    let n = size.len();
    let mut column = vec![1; n];
    column[n - 3] = size[n - 3];
    let mut expanded = size.clone();
    expanded[n - 1] = 1;
    let sink = sinks.f_reshape(&column)?.f_expand(&expanded, false)?; // (.., H, L, 1)
    let combined = Tensor::f_cat(&[scores, &sink], -1)?; // (.., H, L, S + 1)
                                                         // The row maximum is finite: the sink column always is.
    let (max, _) = combined.f_max_dim(-1, true)?;
    let probs = combined.f_sub(&max)?.f_softmax(-1, None::<Kind>)?;
    Ok(probs.f_narrow(-1, 0, size[n - 1])?)
}
