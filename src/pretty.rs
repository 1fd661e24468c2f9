//! Tensors printed exactly as PyTorch 2.13 prints them.
//!
//! [`tensor_repr`] gives, character for character, what `str(t)` (and so `print(t)` and a
//! Jupyter cell ending in `t`) shows in PyTorch 2.13 with the default print options
//! (`precision=4`, `threshold=1000`, `edgeitems=3`, `linewidth=80`, `sci_mode=None`), so
//! that a notebook's output can be diffed against this crate's. The rules are those of
//! `torch/_tensor_str.py`, followed step by step; the comments name the Python function
//! each piece mirrors.
//!
//! Covered: every dense (strided) tensor of a floating, integer, bool or complex dtype,
//! on any device, of any rank, empty or not, summarised or not, with the `dtype=`,
//! `device=`, `size=` and `requires_grad=True` suffixes PyTorch adds. Not covered, and
//! returned as an error: quantized dtypes, sparse and mkldnn layouts, undefined tensors,
//! and dtypes tch does not know. tch cannot name a tensor's autograd node, so a non-leaf
//! tensor's `grad_fn=<...>` must be passed by the caller through [`tensor_repr_with`].

use tch::{Device, Kind, TchError, Tensor};

/// `torch._tensor_str.PRINT_OPTS` defaults: digits after the point.
const PRECISION: usize = 4;
/// More elements than this and the middle of every long dimension is elided.
const THRESHOLD: usize = 1000;
/// Items kept at each end of an elided dimension.
const EDGEITEMS: usize = 3;
/// Line width that rows wrap at and that suffixes try to fit in.
const LINEWIDTH: usize = 80;
/// The repr of a plain `torch.Tensor` (and of `nn.Parameter`) opens with this; its length
/// is the indent of every continuation line.
const PREFIX: &str = "tensor(";

/// `str(t)` of PyTorch 2.13, e.g. `tensor([ 0.1808, -0.0700])`.
///
/// A leaf tensor that requires grad gets `requires_grad=True`, as in PyTorch. The tensor is
/// only read: it is detached, and its printed elements are copied to the CPU.
pub fn tensor_repr(t: &Tensor) -> Result<String, TchError> {
    tensor_repr_with(t, &[])
}

/// [`tensor_repr`] with `suffixes` appended after PyTorch's own (`device=`, `size=`,
/// `dtype=`), each after `", "` or, when it would pass the 80th column, on a new line
/// indented under the first element, as `_add_suffixes` does.
///
/// This is how a caller reproduces what tch cannot know, chiefly the autograd node of a
/// non-leaf tensor: `tensor_repr_with(&y, &["grad_fn=<SelectBackward0>"])`. When one of
/// `suffixes` starts with `grad_fn=` or `requires_grad=`, no `requires_grad=True` is added.
pub fn tensor_repr_with(t: &Tensor, suffixes: &[&str]) -> Result<String, TchError> {
    // Every query below would panic inside tch on an undefined tensor.
    if !t.defined() {
        return Err(TchError::Torch(
            "cannot print an undefined tensor".to_string(),
        ));
    }
    let kind = t.f_kind()?;
    if matches!(kind, Kind::QInt8 | Kind::QUInt8 | Kind::QInt32) {
        return Err(TchError::Kind(format!(
            "printing quantized tensors ({}) is not supported",
            dtype_name(kind)
        )));
    }
    if t.is_sparse() || t.is_mkldnn() {
        return Err(TchError::Torch(
            "printing sparse or mkldnn tensors is not supported".to_string(),
        ));
    }

    // `_str_intern`: the device first, then size and dtype, then autograd.
    let mut all: Vec<String> = Vec::new();
    if let Some(device) = device_name(t.device()) {
        all.push(format!("device='{device}'"));
    }
    let dims = t.size();
    let body = if dims.contains(&0) {
        // An empty tensor has no element to show its shape or dtype: both are spelled out
        // (the shape unless it is `(0,)`, the dtype even when it is int64 or bool).
        if dims.len() != 1 {
            all.push(format!("size={}", shape_tuple(&dims)));
        }
        if kind != Kind::Float {
            all.push(format!("dtype={}", dtype_name(kind)));
        }
        "[]".to_string()
    } else {
        // float32 is the default dtype; complex64 is its complex counterpart; int64 and bool
        // are what Python ints and bools become, so PyTorch omits them too.
        if !matches!(
            kind,
            Kind::Float | Kind::ComplexFloat | Kind::Int64 | Kind::Bool
        ) {
            all.push(format!("dtype={}", dtype_name(kind)));
        }
        tensor_str(t, kind, &dims, PREFIX.len())?
    };
    let caller_names_grad = suffixes
        .iter()
        .any(|s| s.starts_with("grad_fn=") || s.starts_with("requires_grad="));
    if !caller_names_grad && t.requires_grad() && t.f_is_leaf()? {
        all.push("requires_grad=True".to_string());
    }
    all.extend(suffixes.iter().map(|s| s.to_string()));
    Ok(add_suffixes(&format!("{PREFIX}{body}"), &all, PREFIX.len()))
}

/// `str(t.shape)` of PyTorch, e.g. `torch.Size([4, 8, 32])` (`torch.Size([])` for a scalar).
pub fn size_repr(dims: &[i64]) -> String {
    let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
    format!("torch.Size([{}])", dims.join(", "))
}

/// `str(tuple(shape))`, used by the `size=` suffix: `(0, 3)`, `(0,)`, `()`.
fn shape_tuple(dims: &[i64]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// `str(t.device)` for the devices PyTorch names in the repr (all but the CPU, the default).
fn device_name(device: Device) -> Option<String> {
    match device {
        Device::Cpu => None,
        Device::Cuda(index) => Some(format!("cuda:{index}")),
        // PyTorch names an MPS tensor's device `mps:0`. (tch also reports devices it has
        // no name for, such as `meta`, as MPS; reading their data then fails with an error.)
        Device::Mps => Some("mps:0".to_string()),
        Device::Vulkan => Some("vulkan:0".to_string()),
    }
}

/// `str(dtype)`.
fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Uint8 => "torch.uint8",
        Kind::Int8 => "torch.int8",
        Kind::Int16 => "torch.int16",
        Kind::Int => "torch.int32",
        Kind::Int64 => "torch.int64",
        Kind::Half => "torch.float16",
        Kind::Float => "torch.float32",
        Kind::Double => "torch.float64",
        Kind::ComplexHalf => "torch.complex32",
        Kind::ComplexFloat => "torch.complex64",
        Kind::ComplexDouble => "torch.complex128",
        Kind::Bool => "torch.bool",
        Kind::QInt8 => "torch.qint8",
        Kind::QUInt8 => "torch.quint8",
        Kind::QInt32 => "torch.qint32",
        Kind::BFloat16 => "torch.bfloat16",
        Kind::Float8e5m2 => "torch.float8_e5m2",
        Kind::Float8e4m3fn => "torch.float8_e4m3fn",
        Kind::Float8e5m2fnuz => "torch.float8_e5m2fnuz",
        Kind::Float8e4m3fnuz => "torch.float8_e4m3fnuz",
    }
}

/// `_tensor_str` for a non-empty tensor: the bracketed elements, without prefix or suffixes.
fn tensor_str(t: &Tensor, kind: Kind, dims: &[i64], indent: usize) -> Result<String, TchError> {
    let numel: i64 = dims.iter().product();
    let summarize = usize::try_from(numel).map_or(true, |n| n > THRESHOLD);

    let mut x = t.f_detach()?;
    // PyTorch prints float8 through float16 (the values are exactly representable), and
    // complex32 is widened so that the slicing below has kernels to run on.
    match kind {
        Kind::Float8e5m2 | Kind::Float8e4m3fn | Kind::Float8e5m2fnuz | Kind::Float8e4m3fnuz => {
            x = x.f_to_kind(Kind::Half)?;
        }
        Kind::ComplexHalf => x = x.f_to_kind(Kind::ComplexFloat)?,
        _ => {}
    }

    // `get_summarized_data`: keep only the elements that are printed, on the tensor's own
    // device, before copying anything. Both the formatter's widths and modes and the layout
    // see exactly these elements, as in PyTorch; `elided[d]` remembers that dimension `d`
    // lost its middle (it now has 2 * EDGEITEMS entries) and needs its "...".
    let edge = EDGEITEMS as i64;
    let mut elided = vec![false; dims.len()];
    if summarize {
        for (d, &n) in dims.iter().enumerate() {
            if n > 2 * edge {
                let d64 = d as i64;
                let head = x.f_narrow(d64, 0, edge)?;
                let tail = x.f_narrow(d64, n - edge, edge)?;
                x = Tensor::f_cat(&[head, tail], d64)?;
                elided[d] = true;
            }
        }
    }
    // Conjugate and negative bits are lazy flags that a raw copy of the data would ignore.
    let x = x
        .f_to_device(Device::Cpu)?
        .f_resolve_conj()?
        .f_resolve_neg()?;
    let shape: Vec<usize> = x.size().iter().map(|&n| n as usize).collect();

    let (cells, element_length) = format_cells(&x, kind)?;
    if cells.len() != shape.iter().product::<usize>() {
        return Err(TchError::Shape(format!(
            "read {} elements for a printed shape {shape:?}",
            cells.len()
        )));
    }
    Ok(nest(&cells, &shape, &elided, indent, element_length))
}

/// Every printed element as text, padded as `_Formatter.format` pads it (row-major), and the
/// width `_vector_str` budgets per element, separator included.
fn format_cells(x: &Tensor, kind: Kind) -> Result<(Vec<String>, usize), TchError> {
    match kind {
        Kind::Half
        | Kind::Float
        | Kind::Double
        | Kind::BFloat16
        | Kind::Float8e5m2
        | Kind::Float8e4m3fn
        | Kind::Float8e5m2fnuz
        | Kind::Float8e4m3fnuz => {
            // `tolist()` turns every dtype into Python floats (f64) before formatting.
            let values = read_f64(x)?;
            let f = FloatFormatter::new(&values);
            let cells = values.iter().map(|&v| f.format(v)).collect();
            Ok((cells, f.width + 2))
        }
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 => {
            let values = read_i64(x)?;
            let texts: Vec<String> = values.iter().map(i64::to_string).collect();
            Ok(pad_to_widest(texts))
        }
        Kind::Bool => {
            let values = read_i64(x)?;
            let texts = values
                .iter()
                .map(|&v| if v != 0 { "True" } else { "False" }.to_string())
                .collect();
            Ok(pad_to_widest(texts))
        }
        Kind::ComplexHalf | Kind::ComplexFloat | Kind::ComplexDouble => {
            // Real and imaginary parts have a formatter each (`formatter1`, `formatter2`).
            let pairs = read_f64(&x.f_to_kind(Kind::ComplexDouble)?.f_view_as_real()?)?;
            let re: Vec<f64> = pairs.iter().step_by(2).copied().collect();
            let im: Vec<f64> = pairs.iter().skip(1).step_by(2).copied().collect();
            let (fr, fi) = (FloatFormatter::new(&re), FloatFormatter::new(&im));
            let cells = re
                .iter()
                .zip(&im)
                .map(|(&r, &i)| {
                    // `_val_formatter`: the imaginary part's padding goes, a sign stays.
                    let real = fr.format(r);
                    let imag = format!("{}j", fi.format(i));
                    let imag = imag.trim_start();
                    if imag.starts_with('+') || imag.starts_with('-') {
                        format!("{real}{imag}")
                    } else {
                        format!("{real}+{imag}")
                    }
                })
                .collect();
            Ok((cells, fr.width + 2 + fi.width + 1))
        }
        Kind::QInt8 | Kind::QUInt8 | Kind::QInt32 => Err(TchError::Kind(format!(
            "printing quantized tensors ({}) is not supported",
            dtype_name(kind)
        ))),
    }
}

/// `_Formatter` for integers and bools: right-aligned to the widest printed element.
fn pad_to_widest(texts: Vec<String>) -> (Vec<String>, usize) {
    let width = texts.iter().map(String::len).max().unwrap_or(0).max(1);
    let cells = texts.into_iter().map(|s| pad_left(s, width)).collect();
    (cells, width + 2)
}

fn read_f64(x: &Tensor) -> Result<Vec<f64>, TchError> {
    let x = x.f_to_kind(Kind::Double)?.f_contiguous()?;
    let n = x.numel();
    let mut out = vec![0f64; n];
    x.f_copy_data(&mut out, n)?;
    Ok(out)
}

fn read_i64(x: &Tensor) -> Result<Vec<i64>, TchError> {
    let x = x.f_to_kind(Kind::Int64)?.f_contiguous()?;
    let n = x.numel();
    let mut out = vec![0i64; n];
    x.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// `_Formatter` for floating values: one mode and one width for the whole tensor, chosen
/// from its nonzero finite printed values.
struct FloatFormatter {
    /// Every such value is integral: printed as `3.`, without decimals.
    int_mode: bool,
    /// Printed as `1.2346e-05`.
    sci_mode: bool,
    /// Every element is right-aligned to this many characters (longer ones, such as
    /// `nan` or `0.` in some modes, are left as they are).
    width: usize,
}

impl FloatFormatter {
    fn new(values: &[f64]) -> Self {
        let mut f = FloatFormatter {
            int_mode: true,
            sci_mode: false,
            width: 1,
        };
        let nonzero_finite: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v != 0.0)
            .collect();
        if nonzero_finite.is_empty() {
            // Only zeros, NaNs and infinities: PyTorch keeps the defaults above.
            return f;
        }
        let abs_max = nonzero_finite.iter().fold(0f64, |m, v| m.max(v.abs()));
        let abs_min = nonzero_finite
            .iter()
            .fold(f64::INFINITY, |m, v| m.min(v.abs()));
        f.int_mode = nonzero_finite.iter().all(|v| *v == v.ceil());
        f.sci_mode = abs_max / abs_min > 1000.0 || abs_max > 1.0e8 || abs_min < 1.0e-4;
        f.width = nonzero_finite
            .iter()
            .map(|&v| {
                if f.sci_mode {
                    sci(v).len()
                } else if f.int_mode {
                    // One more for the "." that marks a float.
                    fixed(v, 0).len() + 1
                } else {
                    fixed(v, PRECISION).len()
                }
            })
            .max()
            .unwrap_or(1)
            .max(1);
        f
    }

    fn format(&self, v: f64) -> String {
        let text = if self.sci_mode {
            sci(v)
        } else if self.int_mode {
            let mut s = fixed(v, 0);
            if v.is_finite() {
                s.push('.');
            }
            s
        } else {
            fixed(v, PRECISION)
        };
        pad_left(text, self.width)
    }
}

/// Python's `format(v, ".{digits}f")`. Rust's `{:.N}` rounds the exact binary value
/// correctly, ties to even, as Python does; only the non-finite spellings differ.
fn fixed(v: f64, digits: usize) -> String {
    match non_finite(v) {
        Some(s) => s.to_string(),
        None => format!("{v:.digits$}"),
    }
}

/// Python's `format(v, ".4e")`: the exponent has a sign and at least two digits
/// (`1.8077e-01`, `3.0000e+38`, `1.0000e-300`), where Rust writes `1.8077e-1`.
fn sci(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s.to_string();
    }
    let rust = format!("{v:.PRECISION$e}");
    match rust.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        // Rust always writes an exponent for a finite value; keep its text otherwise.
        None => rust,
    }
}

/// Python's spelling of NaN (sign dropped) and the infinities.
fn non_finite(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("nan")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

fn pad_left(s: String, width: usize) -> String {
    let len = s.chars().count();
    if len >= width {
        s
    } else {
        format!("{}{s}", " ".repeat(width - len))
    }
}

/// `_tensor_str_with_formatter`: `cells` holds the printed elements of a tensor of `shape`
/// in row-major order; `indent` is the column of this level's opening bracket.
fn nest(
    cells: &[String],
    shape: &[usize],
    elided: &[bool],
    indent: usize,
    element_length: usize,
) -> String {
    match shape {
        [] => cells.first().cloned().unwrap_or_default(),
        [_] => vector(cells, elided.first() == Some(&true), indent, element_length),
        [rows, inner @ ..] => {
            let stride: usize = inner.iter().product();
            let mut slices: Vec<String> = Vec::with_capacity(rows + 1);
            for (i, chunk) in cells.chunks(stride.max(1)).enumerate() {
                if elided.first() == Some(&true) && i == EDGEITEMS {
                    slices.push("...".to_string());
                }
                slices.push(nest(
                    chunk,
                    inner,
                    elided.get(1..).unwrap_or(&[]),
                    indent + 1,
                    element_length,
                ));
            }
            // Sub-tensors are separated by one blank line less than their rank.
            let separator = format!(
                ",{}{}",
                "\n".repeat(shape.len() - 1),
                " ".repeat(indent + 1)
            );
            format!("[{}]", slices.join(&separator))
        }
    }
}

/// `_vector_str`: a row, wrapped so that each line holds as many elements as fit in the
/// line width from `indent` (at least one).
fn vector(cells: &[String], elided: bool, indent: usize, element_length: usize) -> String {
    let room = LINEWIDTH as i64 - indent as i64;
    let per_line = room.div_euclid(element_length.max(1) as i64).max(1) as usize;
    let mut data: Vec<&str> = cells.iter().map(String::as_str).collect();
    if elided && data.len() >= EDGEITEMS {
        data.insert(EDGEITEMS, " ...");
    }
    let lines: Vec<String> = data.chunks(per_line).map(|line| line.join(", ")).collect();
    format!(
        "[{}]",
        lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
    )
}

/// `_add_suffixes`: each suffix after `", "`, or on a new line indented by `indent` when the
/// line would grow past the line width.
fn add_suffixes(text: &str, suffixes: &[String], indent: usize) -> String {
    // PyTorch computes `len(s) - s.rfind("\n") + 1`, two more than the last line's length
    // (and with no newline, `rfind` is -1): kept as is, since it decides where lines break.
    let len = text.chars().count() as i64;
    let last_newline = text
        .rfind('\n')
        .map_or(-1, |byte| text[..byte].chars().count() as i64);
    let mut last_line_len = len - last_newline + 1;
    let mut out = text.to_string();
    for suffix in suffixes {
        let suffix_len = suffix.chars().count() as i64;
        if last_line_len + suffix_len + 2 > LINEWIDTH as i64 {
            out.push_str(",\n");
            out.push_str(&" ".repeat(indent));
            out.push_str(suffix);
            last_line_len = indent as i64 + suffix_len;
        } else {
            out.push_str(", ");
            out.push_str(suffix);
            last_line_len += suffix_len + 2;
        }
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_exponent_spelling() {
        assert_eq!(sci(0.18077), "1.8077e-01");
        assert_eq!(sci(-3.0e38), "-3.0000e+38");
        assert_eq!(sci(1.0e-300), "1.0000e-300");
        assert_eq!(sci(0.0), "0.0000e+00");
        assert_eq!(sci(f64::NAN), "nan");
        assert_eq!(sci(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn python_fixed_spelling() {
        // 0.03125 is a tie at the fourth decimal: Python rounds it to even.
        assert_eq!(fixed(0.03125, 4), "0.0312");
        assert_eq!(fixed(-0.0, 4), "-0.0000");
        assert_eq!(fixed(2.5, 0), "2");
        assert_eq!(fixed(-f64::NAN, 4), "nan");
    }

    #[test]
    fn sizes() {
        assert_eq!(size_repr(&[4, 8, 32]), "torch.Size([4, 8, 32])");
        assert_eq!(size_repr(&[]), "torch.Size([])");
        assert_eq!(shape_tuple(&[0, 3]), "(0, 3)");
        assert_eq!(shape_tuple(&[0]), "(0,)");
    }
}
