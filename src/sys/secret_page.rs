//! Where an unlocked token keeps its long-lived keys (the DEK while someone is logged in, the
//! integrity key while the token is open): a page of its own, mapped for this purpose, which
//! the OS is asked to keep out of core dumps (`MADV_DONTDUMP`), out of swap (`mlock`) and out of
//! a forked child (`MADV_WIPEONFORK`: the child sees zeros). Each request is best effort — an
//! OS or a `RLIMIT_MEMLOCK` that refuses one is logged once at debug level, and the key is
//! still zeroised when dropped. A key taken out for an operation is an ordinary zeroising copy
//! that lives for that operation only (SECURITY.md says what this does and does not cover).
//!
//! It lives in `ffi/` because it is the other direction of foreign calls, keygate calling the
//! OS's C interface (mmap, madvise, mlock): `ffi/` is where every `unsafe` is, and this module
//! gives the backends a safe type.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroize;

use super::Key32;

const LEN: usize = 32;

/// Pages of their own, mapped for secrets: excluded from dumps, from a forked child and (when
/// the OS allows) from swap; zeroed and unmapped when dropped.
struct Mapping {
    page: NonNull<u8>,
    size: usize,
    locked: bool,
}

/// A 32-byte key in a page of its own.
pub struct SecretPage(Mapping);

/// A value of type `T` (an expanded key, say) in pages of its own; dropped, then its pages
/// zeroed, when the box is.
pub struct SecretBox<T> {
    mapping: Mapping,
    value: NonNull<T>,
}

// SAFETY: the pages are owned by this value alone; they are written only in `new` and `drop`,
// and read through `&self`, so sharing and sending them is as safe as for a `[u8; 32]`.
unsafe impl Send for SecretPage {}
// SAFETY: as above.
unsafe impl Sync for SecretPage {}
// SAFETY: the box owns its `T` as a `Box<T>` would, and hands out only `&T`.
unsafe impl<T: Send> Send for SecretBox<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for SecretBox<T> {}

/// Logs a refused request once per process.
fn refused(what: &str, flag: &AtomicBool) {
    if !flag.swap(true, Ordering::Relaxed) {
        log::debug!(
            "{what} refused for the page holding unlocked keys: {}",
            std::io::Error::last_os_error()
        );
    }
}

static NO_DONTDUMP: AtomicBool = AtomicBool::new(false);
static NO_WIPEONFORK: AtomicBool = AtomicBool::new(false);
static NO_MLOCK: AtomicBool = AtomicBool::new(false);

impl Mapping {
    /// Whole pages for at least `len` bytes, or `None` if none can be mapped.
    fn new(len: usize) -> Option<Mapping> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|s| *s >= LEN)?;
        let size = len.max(1).div_ceil(page).checked_mul(page)?;
        // SAFETY: an anonymous private mapping of `size` bytes; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            log::debug!(
                "cannot map a page for unlocked keys: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: `p` is the mapping made above, `size` bytes long.
        if unsafe { libc::madvise(p, size, libc::MADV_DONTDUMP) } != 0 {
            refused("MADV_DONTDUMP", &NO_DONTDUMP);
        }
        // SAFETY: as above.
        if unsafe { libc::madvise(p, size, libc::MADV_WIPEONFORK) } != 0 {
            refused("MADV_WIPEONFORK", &NO_WIPEONFORK);
        }
        // SAFETY: as above.
        let locked = unsafe { libc::mlock(p, size) } == 0;
        if !locked {
            refused("mlock", &NO_MLOCK);
        }
        let page = NonNull::new(p as *mut u8)?;
        Some(Mapping { page, size, locked })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the pages are ours, mapped and writable until the munmap below.
        unsafe { std::slice::from_raw_parts_mut(self.page.as_ptr(), self.size) }.zeroize();
        if self.locked {
            // SAFETY: the range locked in `new`.
            unsafe { libc::munlock(self.page.as_ptr() as *const libc::c_void, self.size) };
        }
        // SAFETY: the mapping made in `new`; nothing refers to it after this.
        unsafe { libc::munmap(self.page.as_ptr() as *mut libc::c_void, self.size) };
    }
}

impl SecretPage {
    /// A page holding `key`, or `None` if no page can be mapped (the caller keeps the key in
    /// ordinary zeroising memory).
    pub fn new(key: &[u8; LEN]) -> Option<SecretPage> {
        let m = Mapping::new(LEN)?;
        // SAFETY: the page is writable and at least LEN bytes long.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), m.page.as_ptr(), LEN) };
        Some(SecretPage(m))
    }

    /// A zeroising copy of the key, for one operation.
    pub fn key(&self) -> Key32 {
        let mut k = Key32::new([0u8; LEN]);
        // SAFETY: the page holds LEN initialised bytes for as long as `self` lives.
        unsafe { std::ptr::copy_nonoverlapping(self.0.page.as_ptr(), k.as_mut_ptr(), LEN) };
        k
    }
}

impl<T> SecretBox<T> {
    /// `value` moved into pages of its own, and the bytes it occupied here zeroed; `Err(value)`
    /// if no page can be mapped (the caller keeps it where it is).
    pub fn new(value: T) -> std::result::Result<SecretBox<T>, T> {
        let len = std::mem::size_of::<T>();
        if std::mem::align_of::<T>() > LEN {
            return Err(value);
        }
        let Some(mapping) = Mapping::new(len) else {
            return Err(value);
        };
        let mut value = std::mem::ManuallyDrop::new(value);
        let dst = mapping.page.as_ptr() as *mut T;
        // SAFETY: the pages are writable, page-aligned (so aligned for T, checked above) and at
        // least `size_of::<T>()` bytes; `value` is moved there bit for bit and never used or
        // dropped here again.
        unsafe { std::ptr::copy_nonoverlapping(&*value as *const T, dst, 1) };
        // SAFETY: the bytes `value` occupied, no longer a live T (ManuallyDrop, moved out).
        unsafe { std::slice::from_raw_parts_mut(&mut *value as *mut T as *mut u8, len) }.zeroize();
        let value = NonNull::new(dst).ok_or_else(|| unreachable!("a mapping is never null"))?;
        Ok(SecretBox { mapping, value })
    }
}

impl<T> std::ops::Deref for SecretBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value written in `new`, alive until `drop`.
        unsafe { self.value.as_ref() }
    }
}

impl<T> Drop for SecretBox<T> {
    fn drop(&mut self) {
        // SAFETY: the value written in `new`, dropped once, here; the mapping (dropped after
        // this, zeroing every page) outlives it.
        unsafe { std::ptr::drop_in_place(self.value.as_ptr()) };
        let _ = &self.mapping;
    }
}

/// A long-lived key: in a [`SecretPage`] where one can be had, else in zeroising memory.
pub enum HeldKey {
    Page(SecretPage),
    Heap(Key32),
}

impl HeldKey {
    pub fn new(key: &Key32) -> HeldKey {
        match SecretPage::new(key) {
            Some(p) => HeldKey::Page(p),
            None => HeldKey::Heap(key.clone()),
        }
    }
    pub fn key(&self) -> Key32 {
        match self {
            HeldKey::Page(p) => p.key(),
            HeldKey::Heap(k) => k.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_back_and_the_page_is_excluded_from_dumps() {
        let held = HeldKey::new(&Key32::new([0x5a; 32]));
        assert_eq!(*held.key(), [0x5a; 32]);
        let HeldKey::Page(page) = &held else {
            panic!("no page could be mapped")
        };
        // /proc/self/smaps flags the mapping "dd" (do not dump) and "wf" (wipe on fork).
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", page.0.page.as_ptr() as usize);
        let block = smaps.split(&start).nth(1).expect("the page is mapped");
        let flags = block.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
        assert!(flags.contains(" dd"), "{flags}");
        assert!(flags.contains(" wf"), "{flags}");
    }

    #[test]
    fn a_boxed_value_lives_in_its_own_page_and_is_dropped_once() {
        use std::sync::atomic::AtomicUsize;
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Expanded([u64; 40]);
        impl Drop for Expanded {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::Relaxed);
            }
        }
        let b = SecretBox::new(Expanded([7; 40])).unwrap_or_else(|_| panic!("no page could be mapped"));
        assert_eq!(b.0, [7; 40]);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", b.mapping.page.as_ptr() as usize);
        let block = smaps.split(&start).nth(1).expect("the page is mapped");
        let flags = block.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
        assert!(flags.contains(" dd") && flags.contains(" wf"), "{flags}");
        assert_eq!(DROPS.load(Ordering::Relaxed), 0, "moving in drops nothing");
        drop(b);
        assert_eq!(DROPS.load(Ordering::Relaxed), 1);
    }
}
