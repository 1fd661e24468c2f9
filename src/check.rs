//! Input checks shared by the modules: they run before libtorch sees a tensor, so a bad
//! input is a typed error naming the argument, never a libtorch abort.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// `x` must be `(B, T, C)` with `C == channels`, `1 <= T <= block_size` (when given), and
/// the dtype and device of the module's parameters. Returns `(B, T, C)`.
pub(crate) fn sequence(
    arg: &str,
    x: &Tensor,
    channels: i64,
    block_size: Option<i64>,
    like: &Tensor,
) -> Result<(i64, i64, i64)> {
    let size = x.size();
    let expected = || match block_size {
        Some(bs) => format!("(B, T, C) with C = {channels} and 1 <= T <= block_size = {bs}"),
        None => format!("(B, T, C) with C = {channels}"),
    };
    let &[b, t, c] = size.as_slice() else {
        return Err(Error::shape(arg, expected(), &size));
    };
    if c != channels || b < 1 || t < 1 || block_size.is_some_and(|bs| t > bs) {
        return Err(Error::shape(arg, expected(), &size));
    }
    same_kind_device(arg, x, like.kind(), like.device())?;
    Ok((b, t, c))
}

/// `t` must have dtype `kind` and live on `device`.
pub(crate) fn same_kind_device(arg: &str, t: &Tensor, kind: Kind, device: Device) -> Result<()> {
    if t.kind() != kind {
        return Err(Error::Dtype {
            arg: arg.into(),
            expected: format!("{kind:?} (the module's parameters)"),
            got: t.kind(),
        });
    }
    if t.device() != device {
        return Err(Error::Device {
            arg: arg.into(),
            expected: device,
            got: t.device(),
        });
    }
    Ok(())
}

/// A dropout probability as `nn.Dropout` accepts it.
pub(crate) fn dropout(field: &str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("dropout probability must be in [0, 1], got {p}"),
        ))
    }
}

/// A size that must be at least 1.
pub(crate) fn positive(field: &str, v: i64) -> Result<()> {
    if v >= 1 {
        Ok(())
    } else {
        Err(Error::config(field, format!("must be at least 1, got {v}")))
    }
}

/// `channels` (the config field `field`) must split evenly into `heads` heads (the
/// field `heads_field`), as every multi-head module requires.
pub(crate) fn divisible_by_heads(
    field: &str,
    channels: i64,
    heads_field: &str,
    heads: i64,
) -> Result<()> {
    if heads >= 1 && channels % heads == 0 {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be divisible by {heads_field} = {heads}, got {channels}"),
        ))
    }
}
