//! SHA-2 (and SHA-1, as a digest only) digests and HMACs, incremental.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};
use crate::model::mechanisms::DigestAlg;

/// A running SHA-2 digest.
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(alg: DigestAlg) -> Hasher {
        match alg {
            DigestAlg::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            DigestAlg::Sha224 => Hasher::Sha224(Sha224::new()),
            DigestAlg::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlg::Sha384 => Hasher::Sha384(Sha384::new()),
            DigestAlg::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// The ANSI X9.63 key derivation function (SEC 1 §3.6.1), PKCS#11's `CKD_SHA*_KDF`:
/// `Hash(Z ‖ counter ‖ SharedInfo)` for a 32-bit big-endian counter from 1, concatenated and
/// cut to `len` bytes.
pub fn x963_kdf(alg: DigestAlg, z: &[u8], shared: &[u8], len: usize) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(len + 64));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = Hasher::new(alg);
        h.update(z);
        h.update(&counter.to_be_bytes());
        h.update(shared);
        out.extend_from_slice(&zeroize::Zeroizing::new(h.finish()));
        counter += 1;
    }
    out.truncate(len);
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A running HMAC-SHA256.
pub struct HmacSha256(Hmac<Sha256>);

impl HmacSha256 {
    pub fn new(key: &[u8]) -> Result<Self> {
        Ok(Self(
            <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| Error::KeySizeRange)?,
        ))
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into_bytes().into()
    }
    /// Constant-time comparison against `tag`.
    pub fn verify(self, tag: &[u8]) -> Result<()> {
        if tag.len() != 32 {
            return Err(Error::SignatureLenRange);
        }
        self.0.verify_slice(tag).map_err(|_| Error::SignatureInvalid)
    }
}

/// A running HMAC over any of the SHA-2 digests (`CKM_SHA*_HMAC` and their `_GENERAL` forms).
pub enum HmacAny {
    Sha224(Hmac<Sha224>),
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl HmacAny {
    pub fn new(alg: DigestAlg, key: &[u8]) -> Result<Self> {
        let bad = |_| Error::KeySizeRange;
        Ok(match alg {
            // The policy floor refuses SHA-1 MACs; keygate does not implement one.
            DigestAlg::Sha1 => return Err(Error::MechanismInvalid(crate::model::mechanisms::mech::SHA_1_HMAC)),
            DigestAlg::Sha224 => HmacAny::Sha224(<Hmac<Sha224> as Mac>::new_from_slice(key).map_err(bad)?),
            DigestAlg::Sha256 => HmacAny::Sha256(<Hmac<Sha256> as Mac>::new_from_slice(key).map_err(bad)?),
            DigestAlg::Sha384 => HmacAny::Sha384(<Hmac<Sha384> as Mac>::new_from_slice(key).map_err(bad)?),
            DigestAlg::Sha512 => HmacAny::Sha512(<Hmac<Sha512> as Mac>::new_from_slice(key).map_err(bad)?),
        })
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            HmacAny::Sha224(m) => m.update(data),
            HmacAny::Sha256(m) => m.update(data),
            HmacAny::Sha384(m) => m.update(data),
            HmacAny::Sha512(m) => m.update(data),
        }
    }
    pub fn finish(self) -> Vec<u8> {
        match self {
            HmacAny::Sha224(m) => m.finalize().into_bytes().to_vec(),
            HmacAny::Sha256(m) => m.finalize().into_bytes().to_vec(),
            HmacAny::Sha384(m) => m.finalize().into_bytes().to_vec(),
            HmacAny::Sha512(m) => m.finalize().into_bytes().to_vec(),
        }
    }
    /// Constant-time comparison of `tag` against the MAC's leftmost `tag.len()` bytes (a
    /// `_GENERAL` MAC is the truncated one).
    pub fn verify_truncated(self, tag: &[u8]) -> Result<()> {
        let r = match self {
            HmacAny::Sha224(m) => m.verify_truncated_left(tag),
            HmacAny::Sha256(m) => m.verify_truncated_left(tag),
            HmacAny::Sha384(m) => m.verify_truncated_left(tag),
            HmacAny::Sha512(m) => m.verify_truncated_left(tag),
        };
        r.map_err(|_| Error::SignatureInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        let mut h = HmacSha256::new(b"Jefe").unwrap();
        h.update(b"what do ya want for nothing?");
        let tag = h.finish();
        assert_eq!(tag[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }

    #[test]
    fn sha256_abc() {
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
