//! Finding the case files among the paths a user gives `attn verify`: files as they
//! are, folders searched recursively. Nothing but a header is opened here, and only
//! that of a regular file: a FIFO named `*.safetensors` must not block the search, and a
//! symbolic link back up the tree must not make it endless.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::read_safetensors_metadata;

/// The case files under `paths`: files given by name as they are; in folders, searched
/// recursively, every `*.safetensors` whose `format` is a case format or whose header
/// cannot be read (see `looks_like_case`), sorted within each folder. Returns the cases
/// and the other safetensors files skipped.
///
/// Each file and folder counts once, however many links lead to it: symbolic links to
/// folders are followed, but never into a folder already searched (on Unix, folders
/// and files are told apart by device and inode; elsewhere links to folders are not
/// followed). A `*.safetensors` that is not a regular file (a FIFO, a device) is listed
/// as a case, so that reading it reports what it is.
pub fn collect_case_files(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut walk = Walk::default();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| Error::Io {
            path: p.display().to_string(),
            source,
        })?;
        if meta.is_dir() {
            walk.dir(p, &meta)?;
        } else if walk.first_visit(&meta) {
            walk.files.push(p.clone());
        }
    }
    Ok((walk.files, walk.skipped))
}

/// The search's state: what was found, and what was already seen.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    skipped: Vec<PathBuf>,
    seen: HashSet<(u64, u64)>,
}

impl Walk {
    /// Whether this is the first time the file or folder is met (always true where it
    /// has no identity to compare).
    fn first_visit(&mut self, meta: &Metadata) -> bool {
        identity(meta).is_none_or(|id| self.seen.insert(id))
    }

    fn dir(&mut self, dir: &Path, meta: &Metadata) -> Result<()> {
        if !self.first_visit(meta) {
            return Ok(());
        }
        let io = |source| Error::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<std::result::Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let p = entry.path();
            let link = entry.file_type().map_err(io)?.is_symlink();
            // A broken link is no file and no folder: nothing to search.
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                if !link || identity(&meta).is_some() {
                    self.dir(&p, &meta)?;
                }
            } else if p.extension().is_some_and(|e| e == "safetensors") && self.first_visit(&meta) {
                if looks_like_case(&p, &meta) {
                    self.files.push(p);
                } else {
                    self.skipped.push(p);
                }
            }
        }
        Ok(())
    }
}

/// A file's or folder's device and inode.
#[cfg(unix)]
fn identity(meta: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

/// No portable identity: links to folders are not followed, and files are not deduplicated.
#[cfg(not(unix))]
fn identity(_meta: &Metadata) -> Option<(u64, u64)> {
    None
}

/// Whether a file found in a folder should be treated as a case: its header declares a
/// `format` of the case family (so a wrong version is reported), or it is not a regular
/// file or its header cannot be read (so the damage is reported). Other safetensors
/// files, such as a plain state_dict next to the cases, are not cases; Hugging Face
/// writes format "pt" (or "np", "tf") into its files.
fn looks_like_case(path: &Path, meta: &Metadata) -> bool {
    if !meta.is_file() {
        return true;
    }
    match read_safetensors_metadata(path) {
        Err(_) => true,
        Ok(metadata) => metadata
            .get("format")
            .is_some_and(|f| f.starts_with("tch-attention-case")),
    }
}
