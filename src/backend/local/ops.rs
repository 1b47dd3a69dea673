//! The operation objects of the self-managed token. Each holds the key material it needs, in
//! zeroising buffers, only for the operation's lifetime.

use std::sync::Arc;

use zeroize::Zeroizing;

/// A key's secret as the token holds it while a user is logged in, shared by its operations.
pub type Secret = Arc<Zeroizing<Vec<u8>>>;

use crate::backend::{CipherOp, DigestOp, SignOp, VerifyOp};
use crate::crypto::aes;
use crate::crypto::digest::{Hasher, HmacSha256};
use crate::crypto::provider;
use crate::error::{Error, Result};
use crate::model::mechanisms::DigestAlg;

/// What the data of a signature goes through before the key sees it.
enum Input {
    /// Accumulated as given (`CKM_ECDSA` signs a caller's digest; EdDSA signs the message).
    Buffer(Zeroizing<Vec<u8>>),
    /// Hashed as it arrives (`CKM_ECDSA_SHA256`).
    Hash(Box<Hasher>),
}

impl Input {
    fn new(prehash: Option<DigestAlg>) -> Input {
        match prehash {
            Some(alg) => Input::Hash(Box::new(Hasher::new(alg))),
            None => Input::Buffer(Zeroizing::new(Vec::new())),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Input::Buffer(b) => b.extend_from_slice(data),
            Input::Hash(h) => h.update(data),
        }
    }
    fn finish(self) -> Zeroizing<Vec<u8>> {
        match self {
            Input::Buffer(b) => b,
            Input::Hash(h) => Zeroizing::new(h.finish()),
        }
    }
}

/// ECDSA on P-256 with a private scalar.
pub struct EcdsaSign {
    scalar: Secret,
    input: Input,
}

impl EcdsaSign {
    pub fn new(scalar: Secret, prehash: Option<DigestAlg>) -> Self {
        Self {
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
        provider().p256_sign_prehash(&self.scalar, &digest)
    }
}

/// ECDSA verification on P-256 with an uncompressed public point.
pub struct EcdsaVerify {
    point: Vec<u8>,
    input: Input,
}

impl EcdsaVerify {
    pub fn new(point: Vec<u8>, prehash: Option<DigestAlg>) -> Self {
        Self {
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
        provider().p256_verify_prehash(&self.point, &digest, signature)
    }
}

/// Ed25519 signing. EdDSA needs the whole message, so multi-part input is buffered.
pub struct EddsaSign {
    seed: Secret,
    public: ed25519_dalek::VerifyingKey,
    msg: Zeroizing<Vec<u8>>,
}

impl EddsaSign {
    /// `public` must be derived from `seed` (see [`super::eddsa::sign`]).
    pub fn new(seed: Secret, public: ed25519_dalek::VerifyingKey) -> Self {
        Self {
            seed,
            public,
            msg: Zeroizing::new(Vec::new()),
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

pub struct EddsaVerify {
    public: Vec<u8>,
    msg: Vec<u8>,
}

impl EddsaVerify {
    pub fn new(public: Vec<u8>) -> Self {
        Self {
            public,
            msg: Vec::new(),
        }
    }
}

impl VerifyOp for EddsaVerify {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.msg.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        provider().ed25519_verify(&self.public, &self.msg, signature)
    }
}

/// HMAC-SHA256 sign and verify.
pub struct Hmac(HmacSha256);

impl Hmac {
    pub fn new(key: &[u8]) -> Result<Self> {
        Ok(Self(HmacSha256::new(key)?))
    }
}

impl SignOp for Hmac {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.0.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        Ok(self.0.finish().to_vec())
    }
}

impl VerifyOp for Hmac {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.0.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        self.0.verify(signature)
    }
}

/// AES-GCM. GCM releases plaintext only after the tag checks, and the crate is one-shot, so
/// multi-part input is buffered and `update` returns nothing; `finish` returns everything.
pub struct Gcm {
    key: Secret,
    iv: Vec<u8>,
    aad: Vec<u8>,
    /// The tag length in bytes: 16, or one of [`aes::SHORT_TAGS`].
    tag_len: usize,
    buf: Zeroizing<Vec<u8>>,
    encrypt: bool,
}

impl Gcm {
    pub fn new(key: Secret, iv: Vec<u8>, aad: Vec<u8>, tag_bits: u64, encrypt: bool) -> Result<Self> {
        let tag_len = (tag_bits / 8) as usize;
        let tag_ok = tag_bits.is_multiple_of(8) && (tag_len == aes::TAG_LEN || aes::SHORT_TAGS.contains(&tag_len));
        if iv.len() != aes::IV_LEN || !tag_ok {
            return Err(Error::MechanismParamInvalid);
        }
        Ok(Self {
            key,
            iv,
            aad,
            tag_len,
            buf: Zeroizing::new(Vec::new()),
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
