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
