//! Reading the files a user names: regular files only, so that a device or a pipe
//! (`/dev/zero`, a FIFO) is an error instead of a read that never ends.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The file at `path` opened for reading, and its length, if it is a regular file
/// (symbolic links followed). Nothing is read: readers check a file's header against
/// its length before reading more.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64)> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer. It changes nothing
    // for a regular file, and the metadata is of what was opened, not of the name again.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
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
    Ok((file, meta.len()))
}

/// The whole file at `path`, if it is a regular file (symbolic links followed). For
/// small files (text, configs): checkpoints are read header first.
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    read_all(file, len, path)
}

/// The most [`read_text`] reads: configs and vocabularies are kilobytes to a few
/// megabytes, so a bigger file is the wrong file, refused before it is read.
const MAX_TEXT_BYTES: u64 = 256 << 20;

/// [`read_regular`] as UTF-8 text, for configs and vocabularies: a file over 256 MiB is
/// refused from its length alone.
pub fn read_text(path: &Path) -> Result<String> {
    let name = || path.display().to_string();
    let (file, len) = open_regular(path)?;
    if len > MAX_TEXT_BYTES {
        return Err(Error::malformed(
            name(),
            format!("{len} bytes, more than the {MAX_TEXT_BYTES} a text file may have here"),
        ));
    }
    String::from_utf8(read_all(file, len, path)?)
        .map_err(|_| Error::malformed(name(), "not UTF-8 text"))
}

fn read_all(mut file: File, len: u64, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(bytes)
}
