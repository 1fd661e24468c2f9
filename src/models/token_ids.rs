//! What the GPT-style language models share about token ids: the checks before an
//! embedding lookup, the embedding tables' init, and the cross-entropy loss.

use tch::nn::{Init, Path};
use tch::{Device, Kind, Reduction, Tensor};

use crate::check;
use crate::error::{Error, Result};

/// `idx` must be int64 `(B, T)` with `1 <= past + T <= block_size`, on `device`, and
/// every id in `[0, vocab_size)`. Returns `(B, T)`.
pub(crate) fn check_idx(
    arg: &str,
    idx: &Tensor,
    past: i64,
    (block_size, vocab_size): (i64, i64),
    device: Device,
) -> Result<(i64, i64)> {
    let size = idx.size();
    let expected = || format!("(B, T) with 1 <= {past} + T <= block_size = {block_size}");
    let &[b, t] = size.as_slice() else {
        return Err(Error::shape(arg, expected(), &size));
    };
    if b < 1 || t < 1 || past + t > block_size {
        return Err(Error::shape(arg, expected(), &size));
    }
    if idx.kind() != Kind::Int64 {
        return Err(Error::Dtype {
            arg: arg.into(),
            expected: "Int64 (token ids)".into(),
            got: idx.kind(),
        });
    }
    check::same_kind_device(arg, idx, Kind::Int64, device)?;
    let (lo, hi) = (
        idx.f_min()?.f_int64_value(&[])?,
        idx.f_max()?.f_int64_value(&[])?,
    );
    if lo < 0 || hi >= vocab_size {
        return Err(Error::invalid(
            arg,
            format!("token ids must be in [0, vocab_size = {vocab_size}), got [{lo}, {hi}]"),
        ));
    }
    Ok((b, t))
}

/// `nn.Embedding(num, dim)`'s weight under `path`, with its default init `normal_(0, 1)`.
pub(crate) fn embedding(path: &Path, num: i64, dim: i64) -> Result<Tensor> {
    let w = path.f_var("weight", &[num, dim], Init::Const(0.0))?;
    let _ = tch::no_grad(|| w.shallow_clone().f_normal_(0.0, 1.0))?;
    Ok(w)
}

/// `F.cross_entropy(logits.view(B*T, V), targets.view(B*T), ignore_index=ignore_index)`:
/// the mean loss of `logits (B, T, V)` over the targets `(B, T)` that are not
/// `ignore_index` (the lecture's `gpt.py` keeps PyTorch's -100, nanoGPT passes -1).
/// `targets` must be int64 ids in `[0, V)` or `ignore_index`.
pub(crate) fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: i64,
) -> Result<Tensor> {
    let size = logits.size();
    let &[b, t, v] = size.as_slice() else {
        return Err(Error::shape("logits", "(B, T, vocab_size)", &size));
    };
    if targets.size() != [b, t] || targets.kind() != Kind::Int64 {
        return Err(Error::shape(
            "targets",
            format!("(B, T) = ({b}, {t}) int64"),
            &targets.size(),
        ));
    }
    check::same_kind_device("targets", targets, Kind::Int64, logits.device())?;
    let outside = targets.f_lt(0)?.f_logical_or(&targets.f_ge(v)?)?;
    let bad = outside.f_logical_and(&targets.f_ne(ignore_index)?)?;
    if bad.f_any()?.f_int64_value(&[])? != 0 {
        let (lo, hi) = (
            targets.f_min()?.f_int64_value(&[])?,
            targets.f_max()?.f_int64_value(&[])?,
        );
        return Err(Error::invalid(
            "targets",
            format!("must be {ignore_index} (ignored) or in [0, {v}), got [{lo}, {hi}]"),
        ));
    }
    Ok(logits.f_view([b * t, v])?.f_cross_entropy_loss::<Tensor>(
        &targets.f_view([b * t])?,
        None,
        Reduction::Mean,
        ignore_index,
        0.0,
    )?)
}
