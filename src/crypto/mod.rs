//! In-process cryptography of the self-managed token, over the RustCrypto crates; one file per
//! mechanism family. Every function takes decoded key bytes and returns zeroising buffers for
//! secrets. Failures are opaque ([`Error::Crypto`]) unless the specification names a code.

pub mod aes;
pub mod digest;
pub mod ec;
#[cfg(feature = "openssl")]
pub mod ed448;
pub mod eddsa;
#[cfg(feature = "openssl")]
pub mod openssl;
#[cfg(feature = "openssl")]
pub mod rsa;
pub mod x25519;

pub mod provider;

use rand_core::{OsRng, RngCore};
use std::sync::LazyLock;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Bytes an operation gathers or holds (input for its end, a partial block), zeroised when
/// dropped, like `Zeroizing<Vec<u8>>`, except while it has never allocated: zeroize 1.9
/// clears an empty vector's spare capacity with a zero-length `memset` at its dangling
/// address, which glibc's AVX-512 `memset` (Debian 12) performs as a masked store whose fault
/// suppression costs ~60 ns on the bench machine, a tenth of a 64-byte AES-GCM operation. Most
/// operations are single-part and never fill theirs.
#[derive(Default)]
pub struct HeldBytes(Vec<u8>);

impl HeldBytes {
    /// The bytes, still zeroised when dropped.
    pub fn into_zeroizing(mut self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(std::mem::take(&mut self.0))
    }
}

impl From<Vec<u8>> for HeldBytes {
    fn from(v: Vec<u8>) -> HeldBytes {
        HeldBytes(v)
    }
}

impl std::ops::Deref for HeldBytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for HeldBytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        if self.0.capacity() > 0 {
            zeroize::Zeroize::zeroize(&mut self.0);
        }
    }
}

/// Fills `out` from the operating system's generator.
pub fn random(out: &mut [u8]) -> Result<()> {
    OsRng.try_fill_bytes(out).map_err(|_| Error::RandomNoRng)
}

/// Mixes `seed` into the operating system's generator, the one keygate draws from
/// (`C_SeedRandom`): Linux adds what is written to `/dev/urandom` to its entropy pool without
/// crediting it, so a seed can add unpredictability and never take any away (random(4)).
pub fn mix_into_os_generator(seed: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .and_then(|mut f| f.write_all(seed))
        .map_err(|e| {
            log::warn!(
                "C_SeedRandom: the seed could not be given to the operating system's generator (/dev/urandom: {e})"
            );
            Error::RandomSeedNotSupported
        })
}

/// `n` random bytes in a zeroising buffer.
pub fn random_secret(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut v = Zeroizing::new(vec![0u8; n]);
    random(&mut v)?;
    Ok(v)
}

/// The provider of this process.
pub fn provider() -> &'static dyn provider::CryptoProvider {
    *CHOSEN
}

static CHOSEN: LazyLock<&'static dyn provider::CryptoProvider> = LazyLock::new(|| {
    let chosen = match std::env::var("KEYGATE_CRYPTO_PROVIDER").ok().as_deref() {
        None => default_provider(),
        Some("rustcrypto") => &provider::RustCrypto,
        #[cfg(feature = "openssl")]
        Some("openssl") => &openssl::OpenSsl,
        Some(other) => {
            let chosen = default_provider();
            log::error!(
                "KEYGATE_CRYPTO_PROVIDER={other:?} names no provider built into this module; using {}",
                chosen.name()
            );
            chosen
        }
    };
    log::debug!("crypto provider: {}", chosen.name());
    chosen
});

fn default_provider() -> &'static dyn provider::CryptoProvider {
    #[cfg(feature = "openssl")]
    return &openssl::OpenSsl;
    #[cfg(not(feature = "openssl"))]
    return &provider::RustCrypto;
}
