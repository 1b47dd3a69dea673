//! The crypto-provider seam of the self-managed token (rustls's `CryptoProvider` is the model):
//! the operations whose speed differs between implementations go through [`CryptoProvider`];
//! everything else (key generation, key wrap, digests, HMAC, ECDH, sealing records) stays with
//! the RustCrypto crates whatever the provider.
//!
//! Two providers: [`RustCrypto`] (always built) and, with the cargo feature `openssl` (on by
//! default), OpenSSL through the `openssl` crate. Each method has the RustCrypto version as its
//! default, so a provider overrides only what it does better; the README's Performance section
//! says which and why. `KEYGATE_CRYPTO_PROVIDER=rustcrypto|openssl` chooses one for the process
//! (read once); without it, OpenSSL where it is built, else RustCrypto.

use zeroize::Zeroizing;

use super::{aes, ec, eddsa};
use crate::error::Result;

pub trait CryptoProvider: Send + Sync {
    fn name(&self) -> &'static str;

    /// ECDSA on P-256 over a digest (`CKM_ECDSA` signs the caller's digest): `r‖s`, 64 bytes.
    fn p256_sign_prehash(&self, scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
        ec::p256_sign_prehash(scalar, digest)
    }
    /// Checks `r‖s` over a digest with an uncompressed point.
    fn p256_verify_prehash(&self, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
        ec::p256_verify_prehash(point, digest, sig)
    }
    /// ECDSA over a digest on P-384 or P-521: `r‖s`.
    fn ec_sign_prehash(&self, curve: ec::Curve, scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
        ec::sign_prehash(curve, scalar, digest)
    }
    /// Checks `r‖s` over a digest on P-384 or P-521.
    fn ec_verify_prehash(&self, curve: ec::Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
        ec::verify_prehash(curve, point, digest, sig)
    }
    /// `public` is the one [`eddsa::verifying_key`] derived from `seed`.
    fn ed25519_sign(&self, seed: &[u8], public: &ed25519_dalek::VerifyingKey, msg: &[u8]) -> Result<Vec<u8>> {
        eddsa::sign(seed, public, msg)
    }
    fn ed25519_verify(&self, public: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
        eddsa::verify(public, msg, sig)
    }
    /// AES-GCM, 96-bit IV, 128-bit tag appended.
    fn gcm_encrypt(&self, key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>> {
        aes::gcm_encrypt(key, iv, aad, pt)
    }
    fn gcm_decrypt(&self, key: &[u8], iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        aes::gcm_decrypt(key, iv, aad, ct)
    }
    /// AES-GCM into `out`, exactly `pt.len()` + 16 bytes: the ciphertext, then the tag.
    fn gcm_encrypt_into(&self, key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8], out: &mut [u8]) -> Result<()> {
        aes::gcm_encrypt_into(key, iv, aad, pt, out)
    }
    /// A new key pair on a NIST curve: (private scalar, uncompressed public point).
    fn ec_generate(&self, curve: ec::Curve) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
        ec::generate(curve)
    }
    /// AES-CBC encryption without padding of `pt` (whole blocks) under `key` from chaining value
    /// `iv`, into `out` (at least `pt.len()` + 16 bytes; `pt.len()` are written), when this
    /// provider does it faster than the caller's own block loop: `false` (nothing written)
    /// otherwise.
    fn cbc_encrypt_into(&self, _key: &[u8], _iv: &[u8; 16], _pt: &[u8], _out: &mut [u8]) -> Result<bool> {
        Ok(false)
    }
}

/// The RustCrypto crates (`p256`, `ed25519-dalek`, `aes-gcm`): pure Rust, no C toolchain.
pub struct RustCrypto;

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }
}
