//! A 64-bit counter that every process of a machine sees: the first bytes of a small file,
//! mapped shared (`mmap(MAP_SHARED)`), read and bumped with atomic instructions. A store keeps
//! one beside its database and bumps it after each commit, so that a process can tell whether
//! any other process has changed the store with one load from memory instead of a SQLite read
//! transaction (`PRAGMA data_version` takes file locks: a few system calls and a lock shared by
//! every thread, on every operation with a token key).
//!
//! A file that another process truncates while it is mapped makes the next access fault
//! (`SIGBUS`). To cut it short, an attacker needs write access to the store's directory, and
//! SQLite maps the store's own `-shm` file in exactly this way, so the counter adds no new way
//! to crash the process; a counter file shorter than a page when opened is lengthened first.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counter's mapping.
pub struct SharedCounter {
    page: NonNull<AtomicU64>,
    size: usize,
}

// SAFETY: the mapping is only ever accessed through `AtomicU64`, which is Sync; it lives until
// `drop`, which takes the value by unique reference.
unsafe impl Send for SharedCounter {}
// SAFETY: as above.
unsafe impl Sync for SharedCounter {}

impl std::fmt::Debug for SharedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCounter").field("value", &self.get()).finish()
    }
}

impl SharedCounter {
    /// Opens (or creates, mode 0600) the counter file at `path` and maps it. Refused unless it
    /// is a regular file of this user's, reached without following a symbolic link: the
    /// counter is written into the file's first bytes, and whoever can write the store's
    /// directory must not be able to point that write at another file of this user's.
    pub fn open(path: &Path) -> std::io::Result<SharedCounter> {
        use std::os::unix::fs::MetadataExt;
        let file = super::open_beside_store(path)?;
        let meta = file.metadata()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.file_type().is_file() || meta.uid() != me {
            return Err(std::io::Error::other("not a regular file of this user's"));
        }
        // SAFETY: sysconf has no preconditions.
        let size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|s| *s >= 8)
            .ok_or_else(|| std::io::Error::other("no page size"))?;
        // Lengthening never shortens, so processes that open the file together agree; the new
        // bytes read as zero.
        if meta.len() < size as u64 {
            file.set_len(size as u64)?;
        }
        Self::map(&file, size)
    }

    fn map(file: &File, size: usize) -> std::io::Result<SharedCounter> {
        // SAFETY: a shared mapping of the first `size` bytes of an open file at least that
        // long; the result is checked. The mapping outlives the descriptor, which may close.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let page = NonNull::new(p as *mut AtomicU64).ok_or_else(|| std::io::Error::other("null mapping"))?;
        Ok(SharedCounter { page, size })
    }

    fn atomic(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned (so aligned for u64), at least 8 bytes long and
        // mapped until drop; every access to it in any process is atomic.
        unsafe { self.page.as_ref() }
    }

    /// The counter's value now.
    pub fn get(&self) -> u64 {
        self.atomic().load(Ordering::Acquire)
    }

    /// Adds one.
    pub fn bump(&self) {
        self.atomic().fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`; nothing refers to it after this.
        unsafe { libc::munmap(self.page.as_ptr() as *mut libc::c_void, self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_see_each_others_bumps() {
        let dir = std::env::temp_dir().join(format!("keygate-counter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.changes");
        let _ = std::fs::remove_file(&path);
        let a = SharedCounter::open(&path).unwrap();
        let b = SharedCounter::open(&path).unwrap();
        assert_eq!(a.get(), 0);
        a.bump();
        b.bump();
        assert_eq!((a.get(), b.get()), (2, 2));
        drop(a);
        let c = SharedCounter::open(&path).unwrap();
        assert_eq!(c.get(), 2, "the value is in the file, not the mapping");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symbolic_link_or_a_directory_is_refused_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("keygate-counter-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.join("c.changes");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(SharedCounter::open(&link).is_err());
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"precious",
            "the link's target is untouched"
        );
        let sub = dir.join("d.changes");
        std::fs::create_dir(&sub).unwrap();
        assert!(SharedCounter::open(&sub).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
