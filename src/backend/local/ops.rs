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

/// The block modes of AES: ECB and CBC, with or without PKCS#7 padding (`CKM_AES_CBC_PAD`).
/// Multi-part: every `update` returns the whole blocks it can; a padded decryption holds back
/// the last full block, which may be the padding, until `finish`.
pub struct AesBlocks {
    key: aes::BlockKey,
    /// The chaining value (CBC), or none (ECB).
    chain: Option<[u8; aes::BLOCK]>,
    pad: bool,
    encrypt: bool,
    /// Input not yet processed: less than a block, or (padded decryption) up to one block.
    held: HeldBytes,
    /// The key itself, for a CBC encryption the crypto provider may do in one call.
    secret: Option<Secret>,
}

impl AesBlocks {
    pub fn new(key: Secret, iv: Option<[u8; aes::BLOCK]>, pad: bool, encrypt: bool) -> Result<Self> {
        Ok(Self {
            key: aes::BlockKey::new(&key)?,
            chain: iv,
            pad,
            encrypt,
            held: HeldBytes::default(),
            secret: (encrypt && iv.is_some()).then_some(key),
        })
    }

    /// How many of `total` available bytes an update processes now.
    fn ready(&self, total: usize) -> usize {
        let whole = total - total % aes::BLOCK;
        if self.pad && !self.encrypt && whole == total {
            whole.saturating_sub(aes::BLOCK)
        } else {
            whole
        }
    }

    fn block(&mut self, block: &mut [u8; aes::BLOCK]) {
        match (&mut self.chain, self.encrypt) {
            (None, true) => self.key.encrypt(block),
            (None, false) => self.key.decrypt(block),
            (Some(prev), true) => {
                block.iter_mut().zip(prev.iter()).for_each(|(b, p)| *b ^= p);
                self.key.encrypt(block);
                *prev = *block;
            }
            (Some(prev), false) => {
                let c = *block;
                self.key.decrypt(block);
                block.iter_mut().zip(prev.iter()).for_each(|(b, p)| *b ^= p);
                *prev = c;
            }
        }
    }

    /// Encrypts whole blocks in place: ECB a pipeline of blocks at a time, CBC block after
    /// block as its chaining requires.
    fn encrypt_in_place(&mut self, buf: &mut [u8]) {
        match &mut self.chain {
            None => self.key.encrypt_all(buf),
            Some(prev) => {
                // One block of plaintext-derived state on the stack, wiped after the loop.
                let mut x = [0u8; aes::BLOCK];
                for b in buf.chunks_exact_mut(aes::BLOCK) {
                    x.copy_from_slice(b);
                    for i in 0..aes::BLOCK {
                        x[i] ^= prev[i];
                    }
                    self.key.encrypt(&mut x);
                    b.copy_from_slice(&x);
                    *prev = x;
                }
                zeroize::Zeroize::zeroize(&mut x);
            }
        }
    }

    /// Processes whole blocks of `data` into `out`, in place in `out` (a zeroising buffer):
    /// ECB and CBC decryption a pipeline of blocks at a time, CBC encryption block after block
    /// as its chaining requires.
    fn blocks(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(data);
        let buf = &mut out[start..];
        if self.encrypt {
            return self.encrypt_in_place(buf);
        }
        match &mut self.chain {
            None => self.key.decrypt_all(buf),
            Some(prev) => {
                self.key.decrypt_all(buf);
                // Each plaintext block is its decryption XOR the ciphertext block before it
                // (the chaining value for the first).
                for (i, b) in buf.chunks_exact_mut(aes::BLOCK).enumerate() {
                    let before = if i == 0 {
                        &prev[..]
                    } else {
                        &data[(i - 1) * aes::BLOCK..i * aes::BLOCK]
                    };
                    b.iter_mut().zip(before).for_each(|(x, p)| *x ^= p);
                }
                if let Some(last) = data.len().checked_sub(aes::BLOCK) {
                    prev.copy_from_slice(&data[last..]);
                }
            }
        }
    }
}

impl CipherOp for AesBlocks {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut input = std::mem::take(&mut self.held);
        input.extend_from_slice(data);
        let n = self.ready(input.len());
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        self.blocks(&input[..n], &mut out);
        self.held = HeldBytes::from(input[n..].to_vec());
        Ok(out)
    }

    fn finish(mut self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        let held = std::mem::take(&mut self.held);
        let mut out = Zeroizing::new(Vec::with_capacity(aes::BLOCK));
        match (self.pad, self.encrypt) {
            (false, _) if held.is_empty() => {}
            (false, true) => return Err(Error::DataLenRange),
            (false, false) => return Err(Error::EncryptedDataLenRange),
            (true, true) => {
                // PKCS#7: 1 to 16 bytes, each the count.
                let n = aes::BLOCK - held.len();
                let mut last = Zeroizing::new([n as u8; aes::BLOCK]);
                last[..held.len()].copy_from_slice(&held);
                self.block(&mut last);
                out.extend_from_slice(&last[..]);
            }
            (true, false) => {
                let mut last = Zeroizing::new([0u8; aes::BLOCK]);
                if held.len() != aes::BLOCK {
                    return Err(Error::EncryptedDataLenRange);
                }
                last.copy_from_slice(&held);
                self.block(&mut last);
                let keep = aes::unpad(&last).ok_or(Error::EncryptedDataInvalid)?;
                out.extend_from_slice(&last[..keep]);
            }
        }
        Ok(out)
    }

    fn update_len(&self, input_len: usize) -> usize {
        self.ready(self.held.len() + input_len)
    }

    /// A single-part encryption's length is known: the data (whole blocks), or with padding the
    /// data rounded up to the next whole block. Decryption keeps its zeroising path.
    fn once_len(&self, input_len: usize) -> Option<usize> {
        if !self.encrypt || !self.held.is_empty() {
            return None;
        }
        match self.pad {
            true => Some((input_len / aes::BLOCK + 1) * aes::BLOCK),
            false => input_len.is_multiple_of(aes::BLOCK).then_some(input_len),
        }
    }

    /// Encrypts straight into the caller's buffer: no output of keygate's to zero, fill and
    /// copy (AES-CBC 4 KiB spent a third of its time on them).
    fn once_into(mut self: Box<Self>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        let n = self.once_len(data.len()).ok_or(Error::DataLenRange)?;
        let out = out.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        let whole = data.len() - data.len() % aes::BLOCK;
        // The provider takes all but the last block when there is no padding block after it
        // (it writes into a buffer a block longer than its input).
        let head = if self.pad {
            whole
        } else {
            whole.saturating_sub(aes::BLOCK)
        };
        let mut done = 0;
        if let (Some(key), Some(iv), true) = (&self.secret, self.chain, head > 0) {
            if provider().cbc_encrypt_into(key, &iv, &data[..head], &mut out[..head + aes::BLOCK])? {
                done = head;
                if let Some(prev) = &mut self.chain {
                    prev.copy_from_slice(&out[head - aes::BLOCK..head]);
                }
            }
        }
        out[done..whole].copy_from_slice(&data[done..whole]);
        self.encrypt_in_place(&mut out[done..whole]);
        if self.pad {
            // PKCS#7: 1 to 16 bytes, each the count.
            let rest = &data[whole..];
            let mut last = Zeroizing::new([(aes::BLOCK - rest.len()) as u8; aes::BLOCK]);
            last[..rest.len()].copy_from_slice(rest);
            self.block(&mut last);
            out[whole..].copy_from_slice(&last[..]);
        }
        Ok(n)
    }
}

/// AES-CTR (NIST SP 800-38A): the low `bits` bits of the counter block count, big-endian. A
/// stream: every update returns as many bytes as it was given. Refuses to go on once the
/// counter would come back to where it started (the keystream would repeat).
pub struct AesCtr {
    key: aes::BlockKey,
    counter: u128,
    mask: u128,
    /// Blocks of keystream left before the counter wraps (`None`: a 128-bit counter).
    left: Option<u128>,
    /// The current block of keystream and how much of it is used.
    stream: Zeroizing<[u8; aes::BLOCK]>,
    used: usize,
}

impl AesCtr {
    pub fn new(key: &[u8], counter_bits: u64, cb: [u8; aes::BLOCK]) -> Result<Self> {
        let (mask, left) = match counter_bits {
            128 => (u128::MAX, None),
            b @ 1..=127 => ((1u128 << b) - 1, Some(1u128 << b)),
            _ => return Err(Error::MechanismParamInvalid),
        };
        Ok(Self {
            key: aes::BlockKey::new(key)?,
            counter: u128::from_be_bytes(cb),
            mask,
            left,
            stream: Zeroizing::new([0u8; aes::BLOCK]),
            used: aes::BLOCK,
        })
    }

    fn next_block(&mut self) -> Result<()> {
        if let Some(left) = &mut self.left {
            *left = left.checked_sub(1).ok_or(Error::DataLenRange)?;
        }
        *self.stream = self.counter.to_be_bytes();
        self.key.encrypt(&mut self.stream);
        self.used = 0;
        self.counter = (self.counter & !self.mask) | (self.counter.wrapping_add(1) & self.mask);
        Ok(())
    }
}

impl CipherOp for AesCtr {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
        for b in data {
            if self.used == aes::BLOCK {
                self.next_block()?;
            }
            out.push(b ^ self.stream[self.used]);
            self.used += 1;
        }
        Ok(out)
    }
    fn finish(self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(Vec::new()))
    }
    fn update_len(&self, input_len: usize) -> usize {
        input_len
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
