//! Exclusive ownership of a data directory. LMDB itself allows several processes on one
//! environment, but the broker caches offsets in memory, so a second broker on the same
//! directory would hand out duplicate offsets. An advisory `flock` on `runnel.lock` makes the
//! second one fail at start-up instead; the kernel drops the lock when the process dies, so
//! a `kill -9` never leaves a stale lock behind.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// What the error of a second holder says; `runnel user` recognizes it to suggest stopping
/// the broker.
pub(crate) const IN_USE: &str = "is in use by another runnel process";

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, String> {
        let path = dir.join("runnel.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a valid, open file descriptor has no other preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(format!(
                "data directory {} {IN_USE} (pid {})",
                dir.display(),
                holder.trim()
            ));
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first");
        let err = DirLock::acquire(dir.path()).expect_err("second");
        assert!(err.contains("in use"), "{err}");
        drop(first);
        DirLock::acquire(dir.path()).expect("free again");
    }
}
