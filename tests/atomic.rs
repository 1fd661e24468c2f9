//! Atomic writes (`tch_attention::io::atomic`): racing writers, planted names, errors and
//! stale temporaries never leave a partial file, a clobbered file or a temporary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use tch_attention::error::Error;
use tch_attention::io::atomic::pause_before_publish_for_tests;
use tch_attention::io::{write_file, write_file_with, Overwrite};

/// A fresh empty folder under the system's temporary folder.
fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tch-attention-atomic-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A pid no process has: a child's, once it has been waited for.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn two_threads_racing_for_one_new_file_one_wins_and_the_file_is_whole() {
    // Both writers hold a finished temporary when they publish, so an existence check
    // made before writing would let both through.
    pause_before_publish_for_tests(Duration::from_millis(300));
    let dir = tempdir("race");
    let path = dir.join("out.bin");
    let payloads = [vec![1u8; 1 << 20], vec![2u8; 1 << 20]];
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = payloads
            .iter()
            .map(|bytes| {
                let (barrier, path) = (barrier.clone(), path.clone());
                s.spawn(move || {
                    barrier.wait();
                    write_file(&path, bytes, Overwrite::Refuse)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(lost, Error::Exists { path: p } if *p == path),
        "{lost:?}"
    );
    let written = std::fs::read(&path).unwrap();
    assert!(payloads.contains(&written), "a whole payload, not a mix");
    assert_eq!(names(&dir), ["out.bin"], "no temporary left");
}

#[test]
fn refuse_keeps_an_existing_file_and_replace_replaces_it() {
    let dir = tempdir("refuse");
    let path = dir.join("out.bin");
    write_file(&path, b"old", Overwrite::Refuse).unwrap();
    let e = write_file(&path, b"new", Overwrite::Refuse).unwrap_err();
    assert!(matches!(e, Error::Exists { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("{}: exists", path.display()));
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    write_file(&path, b"new", Overwrite::Replace).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert_eq!(names(&dir), ["out.bin"]);
}

#[test]
fn a_failed_write_leaves_no_temporary_and_the_old_file() {
    let dir = tempdir("error");
    let path = dir.join("out.bin");
    std::fs::write(&path, b"old").unwrap();
    // The writer's own error comes back as itself...
    let e = write_file_with(&path, Overwrite::Replace, |f| {
        use std::io::Write;
        f.write_all(b"half")?;
        Err(std::io::Error::other(Error::Invalid {
            arg: "tensor".into(),
            reason: "broken".into(),
        }))
    })
    .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    // ... and a plain I/O error names the destination.
    let e = write_file_with(&path, Overwrite::Replace, |_| {
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(
        matches!(&e, Error::Io { path: p, .. } if p == &path.display().to_string()),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(names(&dir), ["out.bin"]);
    // A folder in the way: the publishing fails, and its temporary goes too.
    std::fs::create_dir(dir.join("sub")).unwrap();
    assert!(write_file(&dir.join("sub"), b"x", Overwrite::Replace).is_err());
    assert_eq!(names(&dir), ["out.bin", "sub"]);
    assert!(write_file(&dir.join("missing/out.bin"), b"x", Overwrite::Replace).is_err());
}

#[cfg(unix)]
#[test]
fn planted_links_and_fifos_are_never_followed() {
    let dir = tempdir("planted");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let path = dir.join("out.bin");
    let pid = std::process::id();
    // The old fixed temporary name, a symbolic link to the victim; a FIFO, which an
    // open for writing would wait on for ever.
    std::os::unix::fs::symlink(&victim, dir.join(format!(".out.bin.tmp-{pid}"))).unwrap();
    let fifo = dir.join(format!(".fifo.bin.tmp-{pid}"));
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    write_file(&path, b"new", Overwrite::Replace).unwrap();
    write_file(&dir.join("fifo.bin"), b"new", Overwrite::Refuse).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // The destination itself a link: replaced, not written through.
    let linked = dir.join("linked.bin");
    std::os::unix::fs::symlink(&victim, &linked).unwrap();
    assert!(matches!(
        write_file(&linked, b"new", Overwrite::Refuse),
        Err(Error::Exists { .. })
    ));
    write_file(&linked, b"new", Overwrite::Replace).unwrap();
    assert!(!std::fs::symlink_metadata(&linked).unwrap().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[cfg(unix)]
#[test]
fn stale_temporaries_of_dead_writers_are_swept_and_live_ones_kept() {
    let dir = tempdir("stale");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let dead = dead_pid();
    let stale = dir.join(format!(".out.bin.{dead}.AbC123.tmp"));
    std::fs::write(&stale, b"half").unwrap();
    // A planted link under a stale name: the link goes, its target stays.
    let stale_link = dir.join(format!(".out.bin.{dead}.xyz.tmp"));
    std::os::unix::fs::symlink(&victim, &stale_link).unwrap();
    // A live writer's (ours), another file's, and a name that is not a temporary's.
    let live = dir.join(format!(".out.bin.{}.Live42.tmp", std::process::id()));
    let other = dir.join(format!(".other.bin.{dead}.AbC123.tmp"));
    let odd = dir.join(format!(".out.bin.{dead}.tmp"));
    for p in [&live, &other, &odd] {
        std::fs::write(p, b"keep").unwrap();
    }
    write_file(&dir.join("out.bin"), b"new", Overwrite::Refuse).unwrap();
    assert!(!stale.exists() && std::fs::symlink_metadata(&stale_link).is_err());
    assert!(live.exists() && other.exists() && odd.exists());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[cfg(unix)]
#[test]
fn outputs_get_the_usual_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("mode");
    let path = dir.join("out.bin");
    write_file(&path, b"x", Overwrite::Refuse).unwrap();
    std::fs::write(dir.join("plain"), b"x").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), mode(&dir.join("plain")));
}
