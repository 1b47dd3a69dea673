//! The operating system's C interface, behind safe functions: this process's id across fork,
//! locked, undumpable pages for the keys a logged-in token holds, and a counter shared by the
//! processes of a store. With `ffi/` (the C ABI
//! keygate exports) and `backend/hsm/raw.rs` (the C ABI of an HSM library), the only place
//! keygate uses `unsafe`; every block has a `SAFETY:` line. It imports nothing of keygate's.
#![allow(unsafe_code)]

pub mod clock;
pub mod process;
pub mod secret_page;
pub mod shared_counter;

/// A 256-bit key in a zeroising buffer (a KEK, a DEK, an HMAC key).
pub type Key32 = zeroize::Zeroizing<[u8; 32]>;

/// Opens, or creates mode 0600, a file keygate keeps beside a store (a lock, the change
/// counter), read and write, without following a symbolic link: whoever can write the store's
/// directory must not be able to make keygate create or write another file of the user's.
pub fn open_beside_store(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}
