//! Atomic file output: every file the crate writes goes through here, so a reader sees
//! the old file or the whole new one, never a part, and no run leaves debris behind.
//!
//! A write creates a temporary file in the destination's folder (so the publishing
//! rename never crosses a file system), exclusively (`O_CREAT | O_EXCL`: an existing
//! name, a planted symbolic link or FIFO included, is never opened or followed), under an
//! unguessable name that carries the writer's pid, `.{file_name}.{pid}.{random}.tmp`. It
//! is written, synced, then published in one atomic step: [`Overwrite::Replace`] renames
//! it over the destination; [`Overwrite::Refuse`] links it there only if the name is
//! free (`renameat2(RENAME_NOREPLACE)`, or `link`), so two writers racing for one new
//! file cannot both win and the existence check cannot go stale.
//!
//! Temporaries never outlive their write: every error path removes them; a process that
//! is stopped by a signal can remove the ones in progress with
//! [`remove_in_progress_temporaries`] (the `attn` binary does, on SIGINT and SIGTERM);
//! and those of writers that died anyway (SIGKILL, power loss) are swept by the next
//! write to the same file, by pid.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};

/// What a write does when its destination exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (atomically: readers see the old file or the new one).
    Replace,
    /// Leave it and fail with [`Error::Exists`].
    Refuse,
}

impl From<bool> for Overwrite {
    /// `true` is [`Overwrite::Replace`], as in a `replace`/`force` flag.
    fn from(replace: bool) -> Self {
        if replace {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        }
    }
}

/// Writes `bytes` to `path` atomically; see the [module docs](self).
pub fn write_file(path: &Path, bytes: &[u8], overwrite: Overwrite) -> Result<()> {
    write_file_with(path, overwrite, |f| f.write_all(bytes))
}

/// Streams a file to `path` atomically: `write` fills the temporary file, which is then
/// synced and published as [`write_file`] does. For outputs too large to build in memory
/// first.
///
/// An error of `write` that is an [`Error`] wrapped by [`std::io::Error::other`] comes
/// back as that error; any other I/O error comes back as [`Error::Io`] naming `path`.
pub fn write_file_with(
    path: &Path,
    overwrite: Overwrite,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let io = |source: std::io::Error| {
        source
            .downcast::<Error>()
            .unwrap_or_else(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })
    };
    let (dir, file_name) = split(path)?;
    sweep_stale(&dir, &file_name);
    let mut tmp = InProgress::create(&dir, &file_name).map_err(io)?;
    write(tmp.file.as_file_mut()).map_err(io)?;
    tmp.file.as_file().sync_all().map_err(io)?;
    pause_before_publish();
    tmp.publish(path, overwrite).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Exists {
            path: path.to_path_buf(),
        },
        _ => io(e),
    })?;
    // The new name is durable once its folder is synced too. Best effort: the file is
    // complete either way, and some systems cannot open a folder for syncing.
    #[cfg(unix)]
    let _ = File::open(&dir).and_then(|d| d.sync_all());
    Ok(())
}

/// Removes every temporary file this process is writing now, and makes later writes
/// fail before they create one. For a signal handler about to end the process (whose
/// writers will never finish): call it only then. Safe to call from any thread.
pub fn remove_in_progress_temporaries() {
    let mut registry = IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner());
    registry.closed = true;
    for path in registry.paths.drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

/// Temporaries being written now, for [`remove_in_progress_temporaries`].
static IN_PROGRESS: Mutex<Registry> = Mutex::new(Registry {
    paths: Vec::new(),
    closed: false,
});

struct Registry {
    paths: Vec<PathBuf>,
    /// Set by [`remove_in_progress_temporaries`]: the process is ending.
    closed: bool,
}

/// A temporary file beside its destination, registered in [`IN_PROGRESS`] for as long
/// as it lives; dropping it unpublished removes it.
struct InProgress {
    // Declared first, dropped first: the file is gone before it leaves the registry.
    file: tempfile::NamedTempFile,
    _registered: Registered,
}

/// A path in [`IN_PROGRESS`], taken out on drop.
struct Registered(PathBuf);

impl InProgress {
    fn create(dir: &Path, file_name: &str) -> std::io::Result<Self> {
        let prefix = format!(".{file_name}.{}.", std::process::id());
        // The registry is held across the creation so a signal handler cannot run
        // between the file appearing and its registration.
        let mut registry = IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner());
        if registry.closed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the process is ending; nothing more is written",
            ));
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp").rand_bytes(12);
        // What `File::create` gives, rw for everyone less the umask, rather than
        // tempfile's owner-only default, which would change every output's mode.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let file = builder.tempfile_in(dir)?;
        registry.paths.push(file.path().to_path_buf());
        let registered = Registered(file.path().to_path_buf());
        Ok(Self {
            file,
            _registered: registered,
        })
    }

    /// Moves the file to `path`; on error it is removed.
    fn publish(self, path: &Path, overwrite: Overwrite) -> std::io::Result<()> {
        let InProgress { file, _registered } = self;
        let published = match overwrite {
            Overwrite::Replace => file.persist(path),
            Overwrite::Refuse => file.persist_noclobber(path),
        };
        // A failed persist hands the file back; dropping it removes it.
        published.map(drop).map_err(|e| e.error)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        unregister(&self.0);
    }
}

fn unregister(tmp: &Path) {
    let mut registry = IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner());
    registry.paths.retain(|p| p != tmp);
}

/// `path`'s folder (`.` for a bare name) and file name.
fn split(path: &Path) -> Result<(PathBuf, String)> {
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(path.display().to_string(), "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, file_name))
}

/// Removes `.{file_name}.{pid}.*.tmp` files in `dir` left by processes that are gone.
/// Best effort: a folder that cannot be read or a file that cannot be removed is left
/// for the write itself to report, if it matters.
fn sweep_stale(dir: &Path, file_name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{file_name}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        // rest = "{pid}.{random}"; the random part has no dots.
        let Some((pid, random)) = rest.split_once('.') else {
            continue;
        };
        let is_ours = !random.is_empty() && !random.contains('.');
        if let (true, Ok(pid)) = (is_ours, pid.parse::<u32>()) {
            if !process_alive(pid) {
                // Unlinks a symbolic link or FIFO itself; nothing is opened or followed.
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether a process `pid` exists (any owner). Where that cannot be told, yes: a
/// temporary is only ever swept when its writer is surely gone.
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        if pid <= 0 {
            return true;
        }
        // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Milliseconds every write waits between syncing its temporary and publishing it; 0
/// (the default) for none. See [`pause_before_publish_for_tests`].
static PAUSE_MS: AtomicU64 = AtomicU64::new(0);

/// Makes every later write in this process wait `pause` with its temporary written but
/// not yet published: the window in which a racing writer or a signal must be handled.
/// Only tests need this (the `attn` binary sets it from `ATTN_TEST_PAUSE_BEFORE_PUBLISH_MS`
/// so tests can race two processes or interrupt one deterministically).
#[doc(hidden)]
pub fn pause_before_publish_for_tests(pause: Duration) {
    PAUSE_MS.store(pause.as_millis() as u64, Ordering::Relaxed);
}

fn pause_before_publish() {
    let ms = PAUSE_MS.load(Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
