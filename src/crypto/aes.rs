//! AES: GCM, the three key-wrap mechanisms, and the key check value.
//!
//! `CKM_AES_KEY_WRAP_PAD` and `CKM_AES_KEY_WRAP_KWP` are different mechanisms: PAD is PKCS#11
//! 2.40's PKCS#7 padding followed by RFC 3394; KWP is RFC 5649. SoftHSM2 2.6.1 puts RFC 5649
//! under the PAD code; keygate follows the definitions.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadCore, AeadInPlace, Payload};
use aes_gcm::{AesGcm, Nonce};
use aes_kw::Kek;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// GCM tag length keygate produces and accepts (bytes).
pub const TAG_LEN: usize = 16;
/// GCM IV length keygate accepts (bytes).
pub const IV_LEN: usize = 12;

/// GCM and CMAC are built on the encrypt-only AES types: `aes::Aes256` also expands the
/// decryption key schedule, which neither uses (a tenth of a 64-byte AES-GCM operation, whose
/// key is set up anew for each one).
type Gcm<A> = AesGcm<A, U12>;

fn gcm_seal<A>(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>>
where
    Gcm<A>: KeyInit + Aead + AeadCore<NonceSize = U12>,
{
    let c = Gcm::<A>::new_from_slice(key).map_err(|_| Error::KeySizeRange)?;
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| Error::MechanismParamInvalid)?;
    c.encrypt(&Nonce::from(iv), Payload { msg: pt, aad })
        .map_err(|_| Error::Crypto)
}

fn gcm_open<A>(key: &[u8], iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>>
where
    Gcm<A>: KeyInit + AeadInPlace + AeadCore<NonceSize = U12, TagSize = aes_gcm::aead::consts::U16>,
{
    let c = Gcm::<A>::new_from_slice(key).map_err(|_| Error::KeySizeRange)?;
    gcm_open_with(&c, iv, aad, ct)
}

fn gcm_open_with<C>(c: &C, iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>>
where
    C: AeadInPlace + AeadCore<NonceSize = U12, TagSize = aes_gcm::aead::consts::U16>,
{
    let mut buf = Zeroizing::new(ct.to_vec());
    if buf.len() < TAG_LEN {
        return Err(Error::EncryptedDataLenRange);
    }
    let tag_at = buf.len() - TAG_LEN;
    let tag: [u8; TAG_LEN] = buf[tag_at..].try_into().map_err(|_| Error::EncryptedDataLenRange)?;
    let tag = aes_gcm::Tag::from(tag);
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| Error::MechanismParamInvalid)?;
    buf.truncate(tag_at);
    c.decrypt_in_place_detached(&Nonce::from(iv), aad, &mut buf, &tag)
        .map_err(|_| Error::EncryptedDataInvalid)?;
    Ok(buf)
}

/// An AES-256-GCM key expanded once, to open many ciphertexts with (the DEK while a user is
/// logged in: expanding the key and its GHASH key was most of unsealing a record's secret).
/// Zeroised when dropped.
pub struct GcmKey(Gcm<aes::Aes256Enc>);

impl GcmKey {
    pub fn new(key: &[u8; 32]) -> GcmKey {
        GcmKey(Gcm::<aes::Aes256Enc>::new(key.into()))
    }
    /// [`gcm_decrypt`] under this key.
    pub fn open(&self, iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        gcm_open_with(&self.0, iv, aad, ct)
    }
}

/// A key that lives for one login and keeps other keys encrypted in memory between their
/// operations: AES-256 in counter mode, each value under a nonce of its own. Opening a
/// record's seal (AES-GCM over the record's binding) on every operation cost more than the
/// operation it served; this is two to four block encryptions. It guards only memory: the
/// value was opened and checked against its record before it was masked.
pub struct MemoryKey(aes::Aes256Enc);

impl MemoryKey {
    /// A new key from the OS generator.
    pub fn random() -> Result<MemoryKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut *k).map_err(|_| Error::Crypto)?;
        Ok(MemoryKey(aes::Aes256Enc::new((&*k).into())))
    }

    /// XORs `data` with the key stream for `nonce` (blocks `nonce ‖ 0`, `nonce ‖ 1`, …): masks
    /// and unmasks alike. A nonce must mask one value only.
    pub fn apply(&self, nonce: u64, data: &mut [u8]) {
        // Four blocks at a time: AES-NI pipelines independent blocks.
        let mut stream = [aes::Block::default(); 4];
        for (group, chunk) in data.chunks_mut(4 * BLOCK).enumerate() {
            let n = chunk.len().div_ceil(BLOCK);
            for (i, b) in stream[..n].iter_mut().enumerate() {
                b[..8].copy_from_slice(&nonce.to_le_bytes());
                b[8..].copy_from_slice(&((4 * group + i) as u64).to_le_bytes());
            }
            self.0.encrypt_blocks(&mut stream[..n]);
            chunk
                .iter_mut()
                .zip(stream.iter().flat_map(|b| b.iter()))
                .for_each(|(d, k)| *d ^= k);
        }
        for b in stream.iter_mut() {
            zeroize::Zeroize::zeroize(&mut b[..]);
        }
    }
}

/// AES-GCM encryption with a 96-bit IV and a 128-bit tag appended to the ciphertext.
pub fn gcm_encrypt(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>> {
    if iv.len() != IV_LEN {
        return Err(Error::MechanismParamInvalid);
    }
    match key.len() {
        16 => gcm_seal::<aes::Aes128Enc>(key, iv, aad, pt),
        24 => gcm_seal::<aes::Aes192Enc>(key, iv, aad, pt),
        32 => gcm_seal::<aes::Aes256Enc>(key, iv, aad, pt),
        _ => Err(Error::KeySizeRange),
    }
}

fn gcm_seal_into<A>(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8], out: &mut [u8]) -> Result<()>
where
    Gcm<A>: KeyInit + AeadInPlace + AeadCore<NonceSize = U12, TagSize = aes_gcm::aead::consts::U16>,
{
    let c = Gcm::<A>::new_from_slice(key).map_err(|_| Error::KeySizeRange)?;
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| Error::MechanismParamInvalid)?;
    if out.len() != pt.len() + TAG_LEN {
        return Err(Error::BufferTooSmall);
    }
    let (body, tag) = out.split_at_mut(pt.len());
    body.copy_from_slice(pt);
    let t = c
        .encrypt_in_place_detached(&Nonce::from(iv), aad, body)
        .map_err(|_| Error::Crypto)?;
    tag.copy_from_slice(&t);
    Ok(())
}

/// [`gcm_encrypt`] into `out`, exactly `pt.len()` + 16 bytes long: ciphertext, then tag.
pub fn gcm_encrypt_into(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8], out: &mut [u8]) -> Result<()> {
    if iv.len() != IV_LEN {
        return Err(Error::MechanismParamInvalid);
    }
    match key.len() {
        16 => gcm_seal_into::<aes::Aes128Enc>(key, iv, aad, pt, out),
        24 => gcm_seal_into::<aes::Aes192Enc>(key, iv, aad, pt, out),
        32 => gcm_seal_into::<aes::Aes256Enc>(key, iv, aad, pt, out),
        _ => Err(Error::KeySizeRange),
    }
}

/// AES-GCM decryption; an authentication failure is `CKR_ENCRYPTED_DATA_INVALID`.
pub fn gcm_decrypt(key: &[u8], iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if iv.len() != IV_LEN {
        return Err(Error::MechanismParamInvalid);
    }
    match key.len() {
        16 => gcm_open::<aes::Aes128Enc>(key, iv, aad, ct),
        24 => gcm_open::<aes::Aes192Enc>(key, iv, aad, ct),
        32 => gcm_open::<aes::Aes256Enc>(key, iv, aad, ct),
        _ => Err(Error::KeySizeRange),
    }
}

/// The GCM tag lengths keygate takes besides [`TAG_LEN`] (bytes): NIST SP 800-38D's 96 to 120
/// bits. Shorter tags (64 and 32 bits) are for special uses only and are refused.
pub const SHORT_TAGS: std::ops::RangeInclusive<usize> = 12..=15;

/// AES-GCM with a tag of `tag_len` bytes ([`SHORT_TAGS`]): the full tag's first bytes, as
/// GCM defines a shorter tag.
pub fn gcm_encrypt_short_tag(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8], tag_len: usize) -> Result<Vec<u8>> {
    let mut out = gcm_encrypt(key, iv, aad, pt)?;
    if !SHORT_TAGS.contains(&tag_len) {
        return Err(Error::MechanismParamInvalid);
    }
    out.truncate(out.len() - (TAG_LEN - tag_len));
    Ok(out)
}

/// AES-GCM decryption with a tag of `tag_len` bytes ([`SHORT_TAGS`]), checked by the aes-gcm
/// crate's own short-tag instances before any plaintext is released.
pub fn gcm_decrypt_short_tag(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    ct: &[u8],
    tag_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    use aes_gcm::aead::consts::{U12 as T12, U13, U14, U15};
    macro_rules! open {
        ($a:ty) => {
            match tag_len {
                12 => open_short::<$a, T12>(key, iv, aad, ct),
                13 => open_short::<$a, U13>(key, iv, aad, ct),
                14 => open_short::<$a, U14>(key, iv, aad, ct),
                15 => open_short::<$a, U15>(key, iv, aad, ct),
                _ => Err(Error::MechanismParamInvalid),
            }
        };
    }
    if iv.len() != IV_LEN {
        return Err(Error::MechanismParamInvalid);
    }
    match key.len() {
        16 => open!(aes::Aes128Enc),
        24 => open!(aes::Aes192Enc),
        32 => open!(aes::Aes256Enc),
        _ => Err(Error::KeySizeRange),
    }
}

fn open_short<A, T>(key: &[u8], iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>>
where
    T: aes_gcm::TagSize,
    AesGcm<A, U12, T>: KeyInit + AeadInPlace + AeadCore<NonceSize = U12, TagSize = T>,
{
    let c = AesGcm::<A, U12, T>::new_from_slice(key).map_err(|_| Error::KeySizeRange)?;
    let n = T::USIZE;
    let Some(tag_at) = ct.len().checked_sub(n) else {
        return Err(Error::EncryptedDataLenRange);
    };
    let mut buf = Zeroizing::new(ct[..tag_at].to_vec());
    let tag: &aes_gcm::Tag<T> = ct[tag_at..].into();
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| Error::MechanismParamInvalid)?;
    c.decrypt_in_place_detached(&Nonce::from(iv), aad, &mut buf, tag)
        .map_err(|_| Error::EncryptedDataInvalid)?;
    Ok(buf)
}

/// Which key-wrap construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapKind {
    /// RFC 3394: input a multiple of 8 bytes, at least 16.
    Kw,
    /// PKCS#11 2.40 `CKM_AES_KEY_WRAP_PAD`: PKCS#7 padding to a multiple of 8, then RFC 3394.
    Pad,
    /// RFC 5649.
    Kwp,
}

macro_rules! with_kek {
    ($key:expr, |$k:ident| $body:expr) => {
        match $key.len() {
            16 => {
                let $k = Kek::<aes::Aes128>::try_from($key).map_err(|_| Error::KeySizeRange)?;
                $body
            }
            24 => {
                let $k = Kek::<aes::Aes192>::try_from($key).map_err(|_| Error::KeySizeRange)?;
                $body
            }
            32 => {
                let $k = Kek::<aes::Aes256>::try_from($key).map_err(|_| Error::KeySizeRange)?;
                $body
            }
            _ => Err(Error::KeySizeRange),
        }
    };
}

/// Wraps `data` under `key`.
pub fn wrap(kind: WrapKind, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    match kind {
        WrapKind::Kw => {
            if data.len() < 16 || !data.len().is_multiple_of(8) {
                return Err(Error::KeySizeRange);
            }
            with_kek!(key, |k| k.wrap_vec(data).map_err(|_| Error::Crypto))
        }
        WrapKind::Pad => {
            let pad = 8 - data.len() % 8;
            let mut padded = Zeroizing::new(data.to_vec());
            padded.extend(std::iter::repeat_n(pad as u8, pad));
            with_kek!(key, |k| k.wrap_vec(&padded).map_err(|_| Error::Crypto))
        }
        WrapKind::Kwp => {
            if data.is_empty() {
                return Err(Error::KeySizeRange);
            }
            with_kek!(key, |k| k.wrap_with_padding_vec(data).map_err(|_| Error::Crypto))
        }
    }
}

/// Unwraps `data` under `key`; a failed integrity check is `CKR_WRAPPED_KEY_INVALID`.
pub fn unwrap(kind: WrapKind, key: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |_| Error::WrappedKeyInvalid;
    match kind {
        WrapKind::Kw => {
            if data.len() < 24 || !data.len().is_multiple_of(8) {
                return Err(Error::WrappedKeyLenRange);
            }
            with_kek!(key, |k| k.unwrap_vec(data).map(Zeroizing::new).map_err(bad))
        }
        WrapKind::Pad => {
            if data.len() < 24 || !data.len().is_multiple_of(8) {
                return Err(Error::WrappedKeyLenRange);
            }
            let mut out: Zeroizing<Vec<u8>> = with_kek!(key, |k| k.unwrap_vec(data).map(Zeroizing::new).map_err(bad))?;
            let pad = *out.last().ok_or(Error::WrappedKeyInvalid)? as usize;
            if pad == 0 || pad > 8 || pad > out.len() || out[out.len() - pad..].iter().any(|&b| b as usize != pad) {
                return Err(Error::WrappedKeyInvalid);
            }
            let keep = out.len() - pad;
            out.truncate(keep);
            Ok(out)
        }
        WrapKind::Kwp => {
            if data.len() < 16 || !data.len().is_multiple_of(8) {
                return Err(Error::WrappedKeyLenRange);
            }
            with_kek!(key, |k| k
                .unwrap_with_padding_vec(data)
                .map(Zeroizing::new)
                .map_err(bad))
        }
    }
}

/// The AES block size.
pub const BLOCK: usize = 16;

/// An expanded AES key of any of the three sizes, for the block modes (ECB, CBC). The key
/// schedule is zeroised on drop (the `aes` crate's `zeroize` feature).
pub enum BlockKey {
    Aes128(aes::Aes128),
    Aes192(aes::Aes192),
    Aes256(aes::Aes256),
}

impl BlockKey {
    pub fn new(key: &[u8]) -> Result<BlockKey> {
        let bad = |_| Error::KeySizeRange;
        Ok(match key.len() {
            16 => BlockKey::Aes128(aes::Aes128::new_from_slice(key).map_err(bad)?),
            24 => BlockKey::Aes192(aes::Aes192::new_from_slice(key).map_err(bad)?),
            32 => BlockKey::Aes256(aes::Aes256::new_from_slice(key).map_err(bad)?),
            _ => return Err(Error::KeySizeRange),
        })
    }

    pub fn encrypt(&self, block: &mut [u8; BLOCK]) {
        let b: &mut aes::Block = block.into();
        match self {
            BlockKey::Aes128(k) => k.encrypt_block(b),
            BlockKey::Aes192(k) => k.encrypt_block(b),
            BlockKey::Aes256(k) => k.encrypt_block(b),
        }
    }

    pub fn decrypt(&self, block: &mut [u8; BLOCK]) {
        use aes::cipher::BlockDecrypt;
        let b: &mut aes::Block = block.into();
        match self {
            BlockKey::Aes128(k) => k.decrypt_block(b),
            BlockKey::Aes192(k) => k.decrypt_block(b),
            BlockKey::Aes256(k) => k.decrypt_block(b),
        }
    }

    /// Encrypts every whole block of `buf` in place, several at a time (AES-NI pipelines
    /// independent blocks: ECB). A tail shorter than a block is left as it is.
    pub fn encrypt_all(&self, buf: &mut [u8]) {
        let (blocks, _) = aes::cipher::inout::InOutBuf::from(buf).into_chunks();
        match self {
            BlockKey::Aes128(k) => k.encrypt_blocks_inout(blocks),
            BlockKey::Aes192(k) => k.encrypt_blocks_inout(blocks),
            BlockKey::Aes256(k) => k.encrypt_blocks_inout(blocks),
        }
    }

    /// Decrypts every whole block of `buf` in place, several at a time (ECB, and CBC before
    /// its chaining is undone).
    pub fn decrypt_all(&self, buf: &mut [u8]) {
        use aes::cipher::BlockDecrypt;
        let (blocks, _) = aes::cipher::inout::InOutBuf::from(buf).into_chunks();
        match self {
            BlockKey::Aes128(k) => k.decrypt_blocks_inout(blocks),
            BlockKey::Aes192(k) => k.decrypt_blocks_inout(blocks),
            BlockKey::Aes256(k) => k.decrypt_blocks_inout(blocks),
        }
    }
}

/// A running AES-CMAC (NIST SP 800-38B) with a key of any of the three sizes.
pub enum Cmac {
    Aes128(cmac::Cmac<aes::Aes128Enc>),
    Aes192(cmac::Cmac<aes::Aes192Enc>),
    Aes256(cmac::Cmac<aes::Aes256Enc>),
}

impl Cmac {
    pub fn new(key: &[u8]) -> Result<Cmac> {
        use cmac::Mac;
        let bad = |_| Error::KeySizeRange;
        Ok(match key.len() {
            16 => Cmac::Aes128(<cmac::Cmac<aes::Aes128Enc> as Mac>::new_from_slice(key).map_err(bad)?),
            24 => Cmac::Aes192(<cmac::Cmac<aes::Aes192Enc> as Mac>::new_from_slice(key).map_err(bad)?),
            32 => Cmac::Aes256(<cmac::Cmac<aes::Aes256Enc> as Mac>::new_from_slice(key).map_err(bad)?),
            _ => return Err(Error::KeySizeRange),
        })
    }
    pub fn update(&mut self, data: &[u8]) {
        use cmac::Mac;
        match self {
            Cmac::Aes128(m) => m.update(data),
            Cmac::Aes192(m) => m.update(data),
            Cmac::Aes256(m) => m.update(data),
        }
    }
    pub fn finish(self) -> [u8; BLOCK] {
        use cmac::Mac;
        match self {
            Cmac::Aes128(m) => m.finalize().into_bytes().into(),
            Cmac::Aes192(m) => m.finalize().into_bytes().into(),
            Cmac::Aes256(m) => m.finalize().into_bytes().into(),
        }
    }
    /// Constant-time comparison of `tag` against the MAC's leftmost `tag.len()` bytes.
    pub fn verify_truncated(self, tag: &[u8]) -> Result<()> {
        use cmac::Mac;
        let r = match self {
            Cmac::Aes128(m) => m.verify_truncated_left(tag),
            Cmac::Aes192(m) => m.verify_truncated_left(tag),
            Cmac::Aes256(m) => m.verify_truncated_left(tag),
        };
        r.map_err(|_| Error::SignatureInvalid)
    }
}

/// The PKCS#7 padding of a last block, checked without branching on the plaintext: the number
/// of bytes to keep, or `None` when the padding is malformed.
pub fn unpad(block: &[u8; BLOCK]) -> Option<usize> {
    use subtle::{ConstantTimeEq, ConstantTimeLess};
    let n = block[BLOCK - 1];
    let mut ok = !n.ct_eq(&0) & n.ct_lt(&(BLOCK as u8 + 1));
    for (i, b) in block.iter().enumerate() {
        // Byte i is padding when i >= BLOCK - n; each padding byte must equal n.
        let in_pad = !(i as u8).ct_lt(&(BLOCK as u8).wrapping_sub(n));
        ok &= !in_pad | b.ct_eq(&n);
    }
    bool::from(ok).then(|| BLOCK - n as usize)
}

/// The key check value of an AES key: the first three bytes of AES-ECB(key, 0^128).
pub fn check_value(key: &[u8]) -> Result<Vec<u8>> {
    let mut block = [0u8; BLOCK];
    BlockKey::new(key)?.encrypt(&mut block);
    Ok(block[..3].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_short_gcm_tag_is_the_full_tags_prefix_and_is_checked() {
        let key = [7u8; 16];
        let full = gcm_encrypt(&key, &[1; 12], b"aad", b"plaintext").unwrap();
        for n in SHORT_TAGS {
            let ct = gcm_encrypt_short_tag(&key, &[1; 12], b"aad", b"plaintext", n).unwrap();
            assert_eq!(ct[..], full[..9 + n]);
            assert_eq!(
                &*gcm_decrypt_short_tag(&key, &[1; 12], b"aad", &ct, n).unwrap(),
                b"plaintext"
            );
            let mut bad = ct.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(
                gcm_decrypt_short_tag(&key, &[1; 12], b"aad", &bad, n).map(|_| ()),
                Err(Error::EncryptedDataInvalid)
            );
        }
        assert!(gcm_encrypt_short_tag(&key, &[1; 12], b"", b"x", 8).is_err());
    }

    #[test]
    fn rfc3394_vector_256() {
        // RFC 3394 §4.6: 256 bits of key data with a 256-bit KEK.
        let kek = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let data = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let want = hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
        assert_eq!(wrap(WrapKind::Kw, &kek, &data).unwrap(), want);
        assert_eq!(*unwrap(WrapKind::Kw, &kek, &want).unwrap(), data);
    }

    #[test]
    fn rfc5649_vector() {
        // RFC 5649 §6: 20 octets with a 192-bit KEK.
        let kek = hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        let data = hex("c37b7e6492584340bed12207808941155068f738");
        let want = hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
        assert_eq!(wrap(WrapKind::Kwp, &kek, &data).unwrap(), want);
        assert_eq!(*unwrap(WrapKind::Kwp, &kek, &want).unwrap(), data);
    }

    #[test]
    fn pad_is_pkcs7_then_kw() {
        let kek = [7u8; 16];
        let data = [1u8; 20];
        let wrapped = wrap(WrapKind::Pad, &kek, &data).unwrap();
        assert_eq!(wrapped.len(), 32);
        let inner = unwrap(WrapKind::Kw, &kek, &wrapped).unwrap();
        assert_eq!(&inner[20..], &[4, 4, 4, 4]);
        assert_eq!(*unwrap(WrapKind::Pad, &kek, &wrapped).unwrap(), data);
        // Not RFC 5649:
        assert!(unwrap(WrapKind::Kwp, &kek, &wrapped).is_err());
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        let key = [9u8; 32];
        let iv = [1u8; 12];
        let ct = gcm_encrypt(&key, &iv, b"aad", b"hello").unwrap();
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(*gcm_decrypt(&key, &iv, b"aad", &ct).unwrap(), b"hello");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(gcm_decrypt(&key, &iv, b"aad", &bad), Err(Error::EncryptedDataInvalid));
    }

    #[test]
    fn aes_check_value() {
        // AES-128 with the zero key encrypting the zero block gives 66e94bd4...
        assert_eq!(check_value(&[0u8; 16]).unwrap(), hex("66e94b"));
    }
}
