//! One writer per output directory. A resumable command (sweep, campaign,
//! attack, experiment) holds [`OutDirLock`] on its `--out` while it runs, so
//! that a second process started on the same directory is refused at once,
//! naming the holder, instead of redoing the work and racing the first over
//! the final tables.
//!
//! The locks are flock(2) locks (std's `File::try_lock`) on files in the
//! directory, so a killed holder's lock is gone with its process and the
//! next run takes it over: the file it left behind is only a name. A whole
//! run locks `.hart-lock` exclusively. The shards of one job share their
//! `--out` by design: each locks `.hart-lock` shared and its own
//! `.hart-lock.shard-I-of-N` exclusively, so shards run side by side, but
//! never beside a whole run or a second copy of themselves.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{HartError, Result};

const LOCK: &str = ".hart-lock";

/// The lock file of shard `index` of `count`.
fn shard_name(index: u32, count: u32) -> String {
    format!("{LOCK}.shard-{index}-of-{count}")
}

/// A held flock on one lock file.
struct Held {
    file: File,
    path: PathBuf,
}

/// Who holds a lock that could not be taken: the pid its file names, if any.
struct Busy(Option<u32>);

/// Holds an output directory for this process until dropped (on success,
/// error and unwinding alike); the lock files go with it.
pub struct OutDirLock {
    dir: PathBuf,
    /// Whether this lock made the directory, which then goes too if nothing
    /// was written into it (a run refused on its arguments leaves no folder).
    created: bool,
    whole: Option<Held>,
    shard: Option<Held>,
}

impl OutDirLock {
    /// Locks `dir` (made if missing) for a whole run (`count` = 1) or for
    /// shard `index` of `count`. A live holder is a one-line error naming its pid.
    pub fn acquire(dir: &Path, index: u32, count: u32) -> Result<OutDirLock> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| HartError::io(dir, e))?;
        let mut lock = OutDirLock {
            dir: dir.to_path_buf(),
            created,
            whole: None,
            shard: None,
        };
        let sharded = count > 1;
        match take(dir, &dir.join(LOCK), !sharded)? {
            Ok(held) => lock.whole = Some(held),
            Err(Busy(pid)) if sharded => return Err(in_use(dir, pid, None)),
            Err(Busy(pid)) => {
                // Held shared by shards, or exclusively by a whole run.
                return Err(match live_shard(dir)? {
                    Some((pid, shard)) => in_use(dir, pid, Some(shard)),
                    None => in_use(dir, pid, None),
                });
            }
        }
        if sharded {
            let path = dir.join(shard_name(index, count));
            match take(dir, &path, true)? {
                Ok(held) => lock.shard = Some(held),
                Err(Busy(pid)) => return Err(in_use(dir, pid, Some(format!("{index}/{count}")))),
            }
        }
        Ok(lock)
    }
}

impl Drop for OutDirLock {
    fn drop(&mut self) {
        // Unlinked while still locked, so that a process which opened the
        // old file sees it is no longer the lock (see `take`) and retries.
        if let Some(h) = self.shard.take() {
            let _ = std::fs::remove_file(&h.path);
        }
        if let Some(h) = self.whole.take() {
            // A shard removes the shared lock only if no other shard holds it.
            if h.file.try_lock().is_ok() {
                let _ = std::fs::remove_file(&h.path);
            }
        }
        if self.created {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Tries to lock `path` (exclusive or shared) without waiting on a live
/// holder; an exclusive holder writes its pid into the file. Retries when
/// the file it locked was unlinked meanwhile by a holder that was finishing,
/// and for a moment when it is busy: a finishing shard holds the shared
/// lock exclusively for as long as it takes to unlink it.
fn take(dir: &Path, path: &Path, exclusive: bool) -> Result<std::result::Result<Held, Busy>> {
    let mut busy = 0;
    for _ in 0..100 {
        std::fs::create_dir_all(dir).map_err(|e| HartError::io(dir, e))?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(f) => f,
            // The directory went between creating it and opening the file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(HartError::io(path, e)),
        };
        let got = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match got {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if busy < 10 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            Err(TryLockError::WouldBlock) => return Ok(Err(Busy(read_pid(path)))),
            Err(TryLockError::Error(e)) => return Err(HartError::io(path, e)),
        }
        let same = |f: &File| -> bool {
            match (f.metadata(), std::fs::metadata(path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            }
        };
        if !same(&file) {
            continue;
        }
        if exclusive {
            let write = |mut f: &File| -> std::io::Result<()> {
                f.set_len(0)?;
                writeln!(f, "{}", std::process::id())
            };
            write(&file).map_err(|e| HartError::io(path, e))?;
        }
        return Ok(Ok(Held {
            file,
            path: path.to_path_buf(),
        }));
    }
    Err(HartError::io(
        path,
        std::io::Error::other("the lock file kept changing while it was taken"),
    ))
}

fn read_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// A shard lock of `dir` some process holds now: its pid and `I/N`.
fn live_shard(dir: &Path) -> Result<Option<(Option<u32>, String)>> {
    let prefix = format!("{LOCK}.shard-");
    let entries = std::fs::read_dir(dir).map_err(|e| HartError::io(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((i, n)) = name.strip_prefix(&prefix).and_then(|s| s.split_once("-of-")) else {
            continue;
        };
        let Ok(file) = File::open(entry.path()) else { continue };
        if let Err(TryLockError::WouldBlock) = file.try_lock_shared() {
            return Ok(Some((read_pid(&entry.path()), format!("{i}/{n}"))));
        }
    }
    Ok(None)
}

fn in_use(dir: &Path, pid: Option<u32>, shard: Option<String>) -> HartError {
    let who = match pid {
        Some(pid) => format!("pid {pid}"),
        None => "a process that has not written its pid yet".into(),
    };
    let what = shard.map_or(String::new(), |s| format!(" (shard {s})"));
    HartError::Invalid(format!(
        "{} is in use by another hart run, {who}{what}; wait for it to finish or choose another --out",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_whole_run_many_shards_and_a_clean_directory_after() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let a = OutDirLock::acquire(&dir, 0, 1).unwrap();
        let msg = OutDirLock::acquire(&dir, 0, 1).err().unwrap().to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(OutDirLock::acquire(&dir, 1, 2).is_err(), "a shard beside a whole run");
        drop(a);
        assert!(
            !dir.exists(),
            "the lock made the directory and nothing else was written"
        );

        let s0 = OutDirLock::acquire(&dir, 0, 2).unwrap();
        let s1 = OutDirLock::acquire(&dir, 1, 2).unwrap();
        let msg = OutDirLock::acquire(&dir, 1, 2).err().unwrap().to_string();
        assert!(msg.contains("(shard 1/2)"), "{msg}");
        let msg = OutDirLock::acquire(&dir, 0, 1).err().unwrap().to_string();
        assert!(msg.contains("shard"), "a whole run beside shards: {msg}");
        std::fs::write(dir.join("kept"), b"x").unwrap();
        drop(s0);
        drop(s1);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("kept")]);
        let _again = OutDirLock::acquire(&dir, 0, 1).unwrap();
    }
}
