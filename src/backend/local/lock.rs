//! Locks that hold across processes: a mutex for the threads of this process and `flock(2)` on
//! a file beside the store for the others. The files hold nothing; they are created mode 0600.
//!
//! A token has two, beside its store (beside its mirror when the store's directory is gone):
//! `<store>.lock`, held by every commit across the SQLite transaction and both steps of its HSM
//! anchor (`anchor.rs`), and by whoever compares a header with the anchor, so that the two are
//! read as of one moment; and `<store>.login-lock`, held across a PIN check from counting the
//! attempt to clearing the count, so that PIN checks of one token run one at a time and exactly
//! `max_pin_failures` wrong PINs are ever evaluated. The login lock is always taken before the
//! write lock, never the other way round. One lock serves the store and its mirror, so that
//! every process of a token agrees on it. A symbolic link in a lock's place is refused, never
//! followed (what needs the lock then fails with that error).

use std::fs::File;
use std::path::PathBuf;

use parking_lot::{Mutex, MutexGuard};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct FileLock {
    /// Where the lock file may be: the first whose directory exists when it is first taken.
    paths: Vec<PathBuf>,
    /// The lock file, once opened, and where it is.
    file: Mutex<Option<(File, PathBuf)>>,
}

/// A held [`FileLock`]; released when dropped.
pub struct Held<'a>(MutexGuard<'a, Option<(File, PathBuf)>>);

impl FileLock {
    pub fn new(paths: Vec<PathBuf>) -> FileLock {
        FileLock {
            paths,
            file: Mutex::new(None),
        }
    }

    /// Waits for the lock.
    pub fn lock(&self) -> Result<Held<'_>> {
        let mut guard = self.file.lock();
        if guard.is_none() {
            let path = self
                .paths
                .iter()
                .find(|p| p.parent().is_none_or(|d| d.as_os_str().is_empty() || d.is_dir()))
                .or(self.paths.first())
                .ok_or_else(|| Error::Config("no store path".into()))?;
            let f = crate::sys::open_beside_store(path)
                .map_err(|e| Error::Store(format!("cannot open the lock file {}: {e}", path.display())))?;
            *guard = Some((f, path.clone()));
        }
        if let Some((f, path)) = guard.as_ref() {
            f.lock()
                .map_err(|e| Error::Store(format!("cannot lock {}: {e}", path.display())))?;
        }
        Ok(Held(guard))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some((f, _)) = self.0.as_ref() {
            let _ = f.unlock();
        }
    }
}
