//! The operation objects of the self-managed token. Each holds the key material it needs, in
//! zeroising buffers, only for the operation's lifetime.

use std::sync::Arc;

use zeroize::Zeroizing;

/// A key's secret for an operation: its own zeroising copy (unsealed or unmasked for this
/// operation), or the copy `key_cache` keeps until logout, shared with the key's other
/// operations.
#[derive(Clone)]
pub enum Secret {
    Own(Zeroizing<Vec<u8>>),
    Shared(Arc<Zeroizing<Vec<u8>>>),
}

impl Secret {
    /// The copy `key_cache` keeps: the shared form.
    pub fn shared(self) -> Secret {
        match self {
            Secret::Own(s) => Secret::Shared(Arc::new(s)),
            shared => shared,
        }
    }
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Secret::Own(s) => s,
            Secret::Shared(s) => s,
        }
    }
}

use crate::backend::{CipherOp, DigestOp, SignOp, VerifyOp};
use crate::crypto::aes;
use crate::crypto::digest::{Hasher, HmacAny};
use crate::crypto::ec::Curve;
use crate::crypto::{provider, HeldBytes};
use crate::error::{Error, Result};
use crate::model::mechanisms::DigestAlg;

/// What the data of a signature goes through before the key sees it.
pub(super) enum Input {
    /// Accumulated as given (`CKM_ECDSA` signs a caller's digest; EdDSA signs the message).
    Buffer(HeldBytes),
    /// Hashed as it arrives (`CKM_ECDSA_SHA256`).
    Hash(Box<Hasher>),
}

impl Input {
    pub(super) fn new(prehash: Option<DigestAlg>) -> Input {
        match prehash {
            Some(alg) => Input::Hash(Box::new(Hasher::new(alg))),
            None => Input::Buffer(HeldBytes::default()),
        }
    }
    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            Input::Buffer(b) => b.extend_from_slice(data),
            Input::Hash(h) => h.update(data),
        }
    }
    pub(super) fn finish(self) -> Zeroizing<Vec<u8>> {
        match self {
            Input::Buffer(b) => b.into_zeroizing(),
            Input::Hash(h) => Zeroizing::new(h.finish()),
        }
    }
}

/// ECDSA on a NIST curve with a private scalar, through the crypto provider (OpenSSL's, or the
/// RustCrypto crates).
pub struct EcdsaSign {
    curve: Curve,
    scalar: Secret,
    input: Input,
}

impl EcdsaSign {
    pub fn new(curve: Curve, scalar: Secret, prehash: Option<DigestAlg>) -> Self {
        Self {
            curve,
            scalar,
            input: Input::new(prehash),
        }
    }
}

impl SignOp for EcdsaSign {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        let digest = self.input.finish();
        match self.curve {
            Curve::P256 => provider().p256_sign_prehash(&self.scalar, &digest),
            other => provider().ec_sign_prehash(other, &self.scalar, &digest),
        }
    }
}

/// ECDSA verification on a NIST curve with an uncompressed public point.
pub struct EcdsaVerify {
    curve: Curve,
    point: Vec<u8>,
    input: Input,
}

impl EcdsaVerify {
    pub fn new(curve: Curve, point: Vec<u8>, prehash: Option<DigestAlg>) -> Self {
        Self {
            curve,
            point,
            input: Input::new(prehash),
        }
    }
}

impl VerifyOp for EcdsaVerify {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        let digest = self.input.finish();
        match self.curve {
            Curve::P256 => provider().p256_verify_prehash(&self.point, &digest, signature),
            other => provider().ec_verify_prehash(other, &self.point, &digest, signature),
        }
    }
}

/// Ed25519 signing. EdDSA needs the whole message, so multi-part input is buffered.
pub struct EddsaSign {
    seed: Secret,
    public: ed25519_dalek::VerifyingKey,
    msg: HeldBytes,
}

impl EddsaSign {
    /// `public` must be derived from `seed` (see [`super::eddsa::sign`]).
    pub fn new(seed: Secret, public: ed25519_dalek::VerifyingKey) -> Self {
        Self {
            seed,
            public,
            msg: HeldBytes::default(),
        }
    }
}

impl SignOp for EddsaSign {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.msg.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        provider().ed25519_sign(&self.seed, &self.public, &self.msg)
    }
}

/// Ed448 signing (OpenSSL builds), the message buffered as for Ed25519.
#[cfg(feature = "openssl")]
pub struct Ed448Sign {
    key: Secret,
    msg: HeldBytes,
}

#[cfg(feature = "openssl")]
impl Ed448Sign {
    pub fn new(key: Secret) -> Self {
        Self {
            key,
            msg: HeldBytes::default(),
        }
    }
}

#[cfg(feature = "openssl")]
impl SignOp for Ed448Sign {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.msg.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        crate::crypto::ed448::sign(&self.key, &self.msg)
    }
}

/// EdDSA verification, Ed25519 or (OpenSSL builds) Ed448.
pub struct EddsaVerify {
    public: Vec<u8>,
    msg: Vec<u8>,
    #[cfg_attr(not(feature = "openssl"), allow(dead_code))]
    ed448: bool,
}

impl EddsaVerify {
    pub fn new(public: Vec<u8>) -> Self {
        Self {
            public,
            msg: Vec::new(),
            ed448: false,
        }
    }
    #[cfg(feature = "openssl")]
    pub fn ed448(public: Vec<u8>) -> Self {
        Self {
            ed448: true,
            ..Self::new(public)
        }
    }
}

impl VerifyOp for EddsaVerify {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.msg.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        #[cfg(feature = "openssl")]
        if self.ed448 {
            return crate::crypto::ed448::verify(&self.public, &self.msg, signature);
        }
        provider().ed25519_verify(&self.public, &self.msg, signature)
    }
}

/// HMAC with a SHA-2 digest, sign and verify; `len` is the MAC's length (the digest's, or a
/// `_GENERAL` mechanism's shorter one).
pub struct Hmac {
    mac: HmacAny,
    len: usize,
}

impl Hmac {
    pub fn new(alg: DigestAlg, key: &[u8], len: Option<u64>) -> Result<Self> {
        let full = alg.output_len();
        let len = match len {
            None => full,
            Some(l) if (1..=full as u64).contains(&l) => l as usize,
            Some(_) => return Err(Error::MechanismParamInvalid),
        };
        Ok(Self {
            mac: HmacAny::new(alg, key)?,
            len,
        })
    }
}

impl SignOp for Hmac {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.mac.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        let mut tag = self.mac.finish();
        tag.truncate(self.len);
        Ok(tag)
    }
}

impl VerifyOp for Hmac {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.mac.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        if signature.len() != self.len {
            return Err(Error::SignatureLenRange);
        }
        self.mac.verify_truncated(signature)
    }
}

/// AES-GCM. GCM releases plaintext only after the tag checks, and the crate is one-shot, so
/// multi-part input is buffered and `update` returns nothing; `finish` returns everything.
pub struct Gcm {
    key: Secret,
    iv: [u8; aes::IV_LEN],
    aad: Vec<u8>,
    /// The tag length in bytes: 16, or one of [`aes::SHORT_TAGS`].
    tag_len: usize,
    buf: HeldBytes,
    encrypt: bool,
}

impl Gcm {
    pub fn new(key: Secret, iv: &[u8], aad: &[u8], tag_bits: u64, encrypt: bool) -> Result<Self> {
        let tag_len = (tag_bits / 8) as usize;
        let tag_ok = tag_bits.is_multiple_of(8) && (tag_len == aes::TAG_LEN || aes::SHORT_TAGS.contains(&tag_len));
        let (Ok(iv), true) = (iv.try_into(), tag_ok) else {
            return Err(Error::MechanismParamInvalid);
        };
        Ok(Self {
            key,
            iv,
            aad: aad.to_vec(),
            tag_len,
            buf: HeldBytes::default(),
            encrypt,
        })
    }
}

impl Gcm {
    /// The whole operation on the whole input.
    fn run(&self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if self.tag_len != aes::TAG_LEN {
            // A shorter tag: rare, so the crate's own instances rather than the provider's.
            return match self.encrypt {
                true => {
                    aes::gcm_encrypt_short_tag(&self.key, &self.iv, &self.aad, input, self.tag_len).map(Zeroizing::new)
                }
                false => aes::gcm_decrypt_short_tag(&self.key, &self.iv, &self.aad, input, self.tag_len),
            };
        }
        if self.encrypt {
            provider()
                .gcm_encrypt(&self.key, &self.iv, &self.aad, input)
                .map(Zeroizing::new)
        } else {
            provider().gcm_decrypt(&self.key, &self.iv, &self.aad, input)
        }
    }
}

impl CipherOp for Gcm {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.buf.extend_from_slice(data);
        Ok(Zeroizing::new(Vec::new()))
    }
    fn finish(self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        self.run(&self.buf)
    }
    fn update_len(&self, _input_len: usize) -> usize {
        0
    }
    /// Single-part: straight from the caller's data, without the multi-part buffer.
    fn once(self: Box<Self>, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.run(data)
    }
    /// An encryption with the full tag: the data and the tag (a decryption's length depends
    /// on its tag check, and its output is secret: it takes the path that wipes).
    fn once_len(&self, input_len: usize) -> Option<usize> {
        (self.encrypt && self.tag_len == aes::TAG_LEN).then(|| input_len.saturating_add(aes::TAG_LEN))
    }
    /// Straight into the caller's buffer: no output of keygate's own, no copy.
    fn once_into(self: Box<Self>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        let n = data.len() + aes::TAG_LEN;
        let out = out.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        provider().gcm_encrypt_into(&self.key, &self.iv, &self.aad, data, out)?;
        Ok(n)
    }
}

/// A SHA-2 digest.
pub struct Digest(pub Hasher);

impl DigestOp for Digest {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.0.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        Ok(self.0.finish())
    }
    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// AES-CMAC, sign and verify, `len` bytes (16, or a `_GENERAL` mechanism's shorter length).
pub struct Cmac {
    mac: aes::Cmac,
    len: usize,
}

impl Cmac {
    pub fn new(key: &[u8], len: Option<u64>) -> Result<Self> {
        let len = match len {
            None => aes::BLOCK,
            Some(l @ 1..=16) => l as usize,
            Some(_) => return Err(Error::MechanismParamInvalid),
        };
        Ok(Self {
            mac: aes::Cmac::new(key)?,
            len,
        })
    }
}

impl SignOp for Cmac {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.mac.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        Ok(self.mac.finish()[..self.len].to_vec())
    }
}

impl VerifyOp for Cmac {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.mac.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        if signature.len() != self.len {
            return Err(Error::SignatureLenRange);
        }
        self.mac.verify_truncated(signature)
    }
}
