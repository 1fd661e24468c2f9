//! The crate's one error type: every variant says which argument was wrong, what was
//! expected and what came, so a caller (or the `attn` binary) can print one clear line.

use tch::{Device, Kind, TchError};

/// Everything that can go wrong in the library.
///
/// Non-exhaustive: new kinds of failure (new file formats, new models) add variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor argument has the wrong shape (or rank).
    #[error("{arg}: expected shape {expected}, got {got:?}")]
    Shape {
        /// The argument, as the function names it (`query`, `x`, ...).
        arg: String,
        /// The shape it should have, in PyTorch's letters (`(B, T, C) with C = 32`).
        expected: String,
        /// The shape it has.
        got: Vec<i64>,
    },

    /// A tensor argument has the wrong dtype.
    #[error("{arg}: expected dtype {expected}, got {got:?}")]
    Dtype {
        /// The argument.
        arg: String,
        /// The dtype it should have, and why.
        expected: String,
        /// The dtype it has.
        got: Kind,
    },

    /// Tensor arguments live on different devices.
    #[error("{arg}: expected device {expected:?}, got {got:?}")]
    Device {
        /// The argument.
        arg: String,
        /// The device it should live on (that of the module's parameters, or the first
        /// argument's).
        expected: Device,
        /// The device it lives on.
        got: Device,
    },

    /// Two arguments that are valid alone do not go together.
    #[error("{arg}: {reason}")]
    Invalid {
        /// The argument (or option) that does not fit.
        arg: String,
        /// Why, with what was expected and what came.
        reason: String,
    },

    /// A constructor argument makes no sense.
    #[error("config {field}: {reason}")]
    Config {
        /// The config field, as PyTorch's constructor names it.
        field: String,
        /// Why, with what was expected and what came.
        reason: String,
    },

    /// A file, or a set of named tensors, is not what was expected: corrupt or foreign
    /// bytes, a missing or unexpected key, a tensor of the wrong shape or dtype.
    #[error("{source_name}: {reason}")]
    Malformed {
        /// The file (or other source) the content came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An output file exists and the caller asked not to replace it.
    #[error("{}: exists", path.display())]
    Exists {
        /// The file that is already there.
        path: std::path::PathBuf,
    },

    /// Something would need more memory than the machine has available now: checked
    /// before allocating, so a hostile file or an absurd size is this error rather than
    /// a process the kernel kills.
    #[error("{what} needs {} in memory, more than the {} available", crate::memory::human_bytes(*needed), crate::memory::human_bytes(*available))]
    TooLarge {
        /// What needs it (the file and the tensor, say).
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes available ([`crate::memory::available_memory`]).
        available: u64,
    },

    /// Something the call needs is not installed (a model package, say).
    #[error("{what} is not installed (looked in {})", looked_in.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotInstalled {
        /// What was looked for.
        what: String,
        /// Where it was looked for, in order.
        looked_in: Vec<std::path::PathBuf>,
    },

    /// libtorch itself refused the operation. Validation should catch bad input before
    /// this point; reaching it means a case the checks do not cover.
    #[error("libtorch: {}", without_backtrace(&.0.to_string()))]
    Torch(#[from] TchError),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// libtorch's message without the C++ stack trace it appends ("Exception raised from
/// ...", "frame #0: ..."): a user needs the first part, and the trace would turn a
/// one-line error into a page.
pub fn without_backtrace(message: &str) -> &str {
    let cut = ["Exception raised from", "frame #0"]
        .iter()
        .filter_map(|m| message.find(m))
        .min()
        .unwrap_or(message.len());
    message[..cut].trim_end()
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(arg: impl Into<String>, expected: impl Into<String>, got: &[i64]) -> Self {
        Error::Shape {
            arg: arg.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    pub(crate) fn invalid(arg: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            arg: arg.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(source_name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            source_name: source_name.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_backtrace;

    #[test]
    fn libtorch_backtraces_are_cut() {
        let raw = "Internal torch error: DefaultCPUAllocator: can't allocate memory: you tried \
                   to allocate 51200000000 bytes. Error code 12 (Cannot allocate memory)\n\
                   frame #0: c10::ThrowEnforceNotMet(char const*, int) + 0x4c (0x7f in libc10.so)\n\
                   frame #1: ...";
        assert_eq!(
            without_backtrace(raw),
            "Internal torch error: DefaultCPUAllocator: can't allocate memory: you tried to \
             allocate 51200000000 bytes. Error code 12 (Cannot allocate memory)"
        );
        let raw = "shape '[2, 3]' is invalid for input of size 4\nException raised from \
                   infer_size_impl at aten/src/ATen/InferSize.h:97 (most recent call first):\n\
                   frame #0: c10::Error::Error";
        assert_eq!(
            without_backtrace(raw),
            "shape '[2, 3]' is invalid for input of size 4"
        );
        assert_eq!(without_backtrace("plain"), "plain");
    }
}
