//! One writer at a time per interface: every command that changes what an
//! interface runs or holds (load, reload, apply, mode, unload, ban, unban,
//! serve's reloads) takes an exclusive lock on the interface's pin folder
//! first, and waits a bounded time for another writer to finish.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::owner::whose;

/// How long a writer waits for another one before giving up.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("no filter loaded on {iface} (no pins in {dir})")]
    NotLoaded { iface: String, dir: PathBuf },
    #[error("cannot lock {dir}: {why}")]
    Denied { dir: PathBuf, why: String },
    #[error("cannot lock {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another filterctl has been changing {iface} for {waited:?} (it holds the lock on {dir}): try again when it is done"
    )]
    Busy {
        iface: String,
        dir: PathBuf,
        waited: Duration,
    },
}

/// An exclusive lock on an interface's pin folder, released on drop.
#[derive(Debug)]
pub(crate) struct IfaceLock {
    _dir: File,
}

impl IfaceLock {
    /// Locks `dir` (the pin folder of `iface`), waiting at most `wait`.
    pub(crate) fn acquire(iface: &str, dir: &Path, wait: Duration) -> Result<IfaceLock, LockError> {
        let file = File::open(dir).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => LockError::NotLoaded {
                iface: iface.to_string(),
                dir: dir.to_path_buf(),
            },
            // Another user's folder: say whose, not just EACCES.
            _ => match whose(dir).filter(|_| source.raw_os_error() == Some(libc::EACCES)) {
                Some(why) => LockError::Denied {
                    dir: dir.to_path_buf(),
                    why,
                },
                None => LockError::Io {
                    dir: dir.to_path_buf(),
                    source,
                },
            },
        })?;
        let started = Instant::now();
        loop {
            // SAFETY: a valid open descriptor; flock has no other
            // preconditions.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // An unload that held the lock before us removed the folder.
                if !dir.exists() {
                    return Err(LockError::NotLoaded {
                        iface: iface.to_string(),
                        dir: dir.to_path_buf(),
                    });
                }
                return Ok(IfaceLock { _dir: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(LockError::Io {
                    dir: dir.to_path_buf(),
                    source: err,
                });
            }
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    iface: iface.to_string(),
                    dir: dir.to_path_buf(),
                    waited: wait,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time() {
        let dir = std::env::temp_dir().join(format!("flt-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = IfaceLock::acquire("eth0", &dir, Duration::ZERO).unwrap();
        let e = IfaceLock::acquire("eth0", &dir, Duration::from_millis(50)).unwrap_err();
        assert!(e.to_string().contains("another filterctl"), "{e}");
        drop(first);
        IfaceLock::acquire("eth0", &dir, Duration::ZERO).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = IfaceLock::acquire("eth9", &dir, Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("no filter loaded on eth9"), "{e}");
    }
}
