//! Reading a [`TorchValue`] that `torch.load` would give (a `ckpt.pt`'s dict, say): one
//! accessor per Python type, `None` where the value is of another type, so callers
//! walk a checkpoint by name instead of matching its variants by hand.

use tch::Tensor;

use super::TorchValue;

impl TorchValue {
    /// A `dict` or `OrderedDict`'s items, in order.
    pub fn as_dict(&self) -> Option<&[(TorchValue, TorchValue)]> {
        match self {
            TorchValue::Dict(d) | TorchValue::OrderedDict(d) => Some(d),
            _ => None,
        }
    }

    /// `self[key]` of a `dict` with a `str` key `key`.
    pub fn get(&self, key: &str) -> Option<&TorchValue> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A `list` or `tuple`'s items.
    pub fn as_list(&self) -> Option<&[TorchValue]> {
        match self {
            TorchValue::List(l) | TorchValue::Tuple(l) => Some(l),
            _ => None,
        }
    }

    /// An `int` (a `bool` counts, as in Python).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            TorchValue::Int(i) => Some(*i),
            TorchValue::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A `float` (an `int` counts, as where Python takes a float).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            TorchValue::Float(f) => Some(*f),
            TorchValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// A `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TorchValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A tensor.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            TorchValue::Tensor(t) => Some(t),
            _ => None,
        }
    }
}
