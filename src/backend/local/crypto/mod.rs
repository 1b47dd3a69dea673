//! In-process cryptography of the self-managed token, over the RustCrypto crates; one file per
//! mechanism family. Every function takes decoded key bytes and returns zeroising buffers for
//! secrets. Failures are opaque ([`Error::Crypto`]) unless the specification names a code.

pub mod aes;
pub mod digest;
pub mod ec;
pub mod eddsa;
#[cfg(feature = "openssl")]
pub mod openssl;
pub mod ops;
pub mod provider;

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Fills `out` from the operating system's generator.
pub fn random(out: &mut [u8]) -> Result<()> {
    OsRng.try_fill_bytes(out).map_err(|_| Error::RandomNoRng)
}

/// `n` random bytes in a zeroising buffer.
pub fn random_secret(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    random(&mut v)?;
    Ok(v)
}
