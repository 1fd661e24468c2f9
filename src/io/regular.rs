//! Reading the files a user names: regular files only, so that a device or a pipe
//! (`/dev/zero`, a FIFO) is an error instead of a read that never ends.

use std::path::Path;

use crate::error::{Error, Result};

/// The whole file at `path`, if it is a regular file (symbolic links followed).
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file"
        };
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}; expected a file"),
        )));
    }
    std::fs::read(path).map_err(io)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_regular(path)?)
        .map_err(|_| Error::malformed(path.display().to_string(), "not UTF-8 text"))
}
