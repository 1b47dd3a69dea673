//! The key hierarchy of a self-managed token (DESIGN.md §3). Pure functions: no I/O, no HSM
//! calls; the HSM's contributions (`hw_*`) are passed in.
//!
//! ```text
//! hw_kek, hw_int = HMAC-SHA256_R("keygate/v1" ‖ uuid ‖ purpose)      computed inside the HSM
//! pk            = Argon2id(PIN, salt)                                 bounded parameters
//! KEK_role      = HKDF-SHA256(ikm = hw_kek ‖ pk, info = "keygate/v1/kek/<role>")
//! DEK           = 256 random bits; stored as AES-KWP(KEK_user, DEK) and AES-KWP(KEK_so, DEK)
//! secret        = AES-256-GCM(DEK, random nonce, AAD(uuid, uid, immutable attributes))
//! K_int         = HKDF-SHA256(ikm = hw_int, info = "keygate/v1/int"); HMAC over every record
//! ```

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::codec::{Writer, FORMAT_VERSION};
use crate::backend::ObjectId;
use crate::config::KdfConfig;
use crate::crypto::{aes, digest, random};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, flag, rule_for, AttrMap};

pub use crate::sys::Key32;

/// What an HSM-side value is for.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Kek,
    Integrity,
}

/// The message the HSM's root key MACs for `purpose`.
pub fn hw_input(uuid: &[u8; 16], purpose: Purpose) -> Vec<u8> {
    let mut v = b"keygate/v1".to_vec();
    v.extend_from_slice(uuid);
    v.extend_from_slice(match purpose {
        Purpose::Kek => b"kek",
        Purpose::Integrity => b"int",
    });
    v
}

/// Whose PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    So,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::User => "user",
            Role::So => "SO",
        })
    }
}

/// Argon2id parameters as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl From<KdfConfig> for KdfParams {
    fn from(c: KdfConfig) -> Self {
        KdfParams {
            memory_kib: c.memory_kib,
            iterations: c.iterations,
            parallelism: c.parallelism,
        }
    }
}

impl KdfParams {
    /// Bounds, so that a damaged store cannot make a login take an hour or a gigabyte.
    pub fn check(&self) -> Result<()> {
        let ok = (1..=8).contains(&self.parallelism)
            && (8 * self.parallelism..=1024 * 1024).contains(&self.memory_kib)
            && (1..=16).contains(&self.iterations);
        if ok {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "Argon2id parameters out of bounds (memory 8*p..=1048576 KiB, iterations 1..=16, parallelism 1..=8): {}/{}/{}",
                self.memory_kib, self.iterations, self.parallelism
            )))
        }
    }
}

/// pk = Argon2id(PIN, salt).
pub fn pin_key(pin: &[u8], salt: &[u8; 16], p: KdfParams) -> Result<Key32> {
    p.check().map_err(|e| Error::Integrity(e.to_string()))?;
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).map_err(|_| Error::Crypto)?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pin, salt, out.as_mut())
        .map_err(|_| Error::Crypto)?;
    Ok(out)
}

/// KEK_role = HKDF(hw_kek ‖ pk).
pub fn kek(hw_kek: &[u8; 32], pk: &[u8; 32], role: Role) -> Key32 {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(hw_kek);
    ikm[32..].copy_from_slice(pk);
    let info: &[u8] = match role {
        Role::User => b"keygate/v1/kek/user",
        Role::So => b"keygate/v1/kek/so",
    };
    expand(&ikm[..], info)
}

/// K_int = HKDF(hw_int).
pub fn integrity_key(hw_int: &[u8; 32]) -> Key32 {
    expand(hw_int, b"keygate/v1/int")
}

fn expand(ikm: &[u8], info: &[u8]) -> Key32 {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info, out.as_mut());
    out
}

/// A fresh data-encryption key.
pub fn new_dek() -> Result<Key32> {
    let mut k = Zeroizing::new([0u8; 32]);
    random(k.as_mut())?;
    Ok(k)
}

/// AES-KWP(KEK, DEK).
pub fn wrap_dek(kek: &Key32, dek: &Key32) -> Result<Vec<u8>> {
    aes::wrap(aes::WrapKind::Kwp, kek.as_ref(), dek.as_ref())
}

/// Unwraps the DEK; failure means the PIN (or the HSM root) is not the one that wrapped it.
pub fn unwrap_dek(kek: &Key32, wrapped: &[u8]) -> Result<Key32> {
    let v = aes::unwrap(aes::WrapKind::Kwp, kek.as_ref(), wrapped).map_err(|_| Error::PinIncorrect)?;
    let arr: [u8; 32] = v.as_slice().try_into().map_err(|_| Error::PinIncorrect)?;
    Ok(Zeroizing::new(arr))
}

/// Identifies a DEK without revealing it: the first 16 bytes of HMAC-SHA256(DEK, domain).
pub fn dek_check(dek: &Key32) -> Result<[u8; 16]> {
    let tag = mac(dek, b"keygate/v1/dek-check", &[])?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag[..16]);
    Ok(out)
}

/// One object's share of the header's member digest: HMAC-SHA256(K_int, domain ‖ uuid ‖ uid ‖
/// record MAC), so that the digest vouches for each record's current version, not only its
/// identifier. The digest is the XOR of the shares, so adding, removing and rewriting an object
/// are each one or two XORs.
pub fn member_tag(k_int: &Key32, uuid: &[u8; 16], uid: &ObjectId, record_mac: &[u8]) -> Result<[u8; 32]> {
    mac(k_int, b"keygate/v2/member", &[uuid, uid, record_mac])
}

/// The share of a header written before anchors (epoch 0): the identifier alone.
pub fn member_tag_v1(k_int: &Key32, uuid: &[u8; 16], uid: &ObjectId) -> Result<[u8; 32]> {
    mac(k_int, b"keygate/v1/member", &[uuid, uid])
}

/// XORs `tag` into `digest`.
pub fn xor_into(digest: &mut [u8; 32], tag: &[u8; 32]) {
    for (d, t) in digest.iter_mut().zip(tag) {
        *d ^= t;
    }
}

/// The AAD binding a sealed secret to its record: format version, token, object, class, key
/// type and a hash of the object's immutable clear attributes.
pub fn aad(uuid: &[u8; 16], uid: &ObjectId, attrs: &AttrMap) -> Vec<u8> {
    let class = attrs.ulong(attr::CLASS).ok().flatten().unwrap_or(u64::MAX);
    let mut immutable = AttrMap::new();
    for (t, v) in attrs.iter() {
        let fixed = rule_for(t, class).is_some_and(|r| r.flags & flag::IMMUTABLE != 0 && r.flags & flag::SECRET == 0);
        if fixed {
            immutable.set(t, v.to_vec());
        }
    }
    let mut w = Writer::default();
    w.attrs(&immutable);
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(uuid);
    out.extend_from_slice(uid);
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&attrs.key_type().unwrap_or(u64::MAX).to_be_bytes());
    out.extend_from_slice(&digest::sha256(&w.0));
    out
}

/// Seals a secret: random 96-bit nonce ‖ AES-256-GCM ciphertext ‖ tag.
pub fn seal(dek: &Key32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; aes::IV_LEN];
    random(&mut nonce)?;
    let mut out = nonce.to_vec();
    out.extend(aes::gcm_encrypt(dek.as_ref(), &nonce, aad, plaintext)?);
    Ok(out)
}

/// Opens a sealed secret; any failure is an integrity failure of the record.
pub fn unseal(dek: &Key32, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if blob.len() < aes::IV_LEN + aes::TAG_LEN {
        return Err(Error::Integrity("sealed blob too short".into()));
    }
    let (nonce, ct) = blob.split_at(aes::IV_LEN);
    aes::gcm_decrypt(dek.as_ref(), nonce, aad, ct)
        .map_err(|_| Error::Integrity("sealed secret does not open under its record's binding".into()))
}

/// [`unseal`] under the DEK's expanded key (`aes::GcmKey`), kept while a user is logged in.
pub fn unseal_with(dek: &aes::GcmKey, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if blob.len() < aes::IV_LEN + aes::TAG_LEN {
        return Err(Error::Integrity("sealed blob too short".into()));
    }
    let (nonce, ct) = blob.split_at(aes::IV_LEN);
    dek.open(nonce, aad, ct)
        .map_err(|_| Error::Integrity("sealed secret does not open under its record's binding".into()))
}

/// HMAC-SHA256(K_int, domain ‖ parts), each part length-prefixed.
pub fn mac(k_int: &Key32, domain: &[u8], parts: &[&[u8]]) -> Result<[u8; 32]> {
    Ok(mac_state(k_int, domain, parts)?.finish())
}

/// Checks a record MAC in constant time.
pub fn verify_mac(k_int: &Key32, domain: &[u8], parts: &[&[u8]], tag: &[u8]) -> Result<()> {
    mac_state(k_int, domain, parts)?
        .verify(tag)
        .map_err(|_| Error::Integrity("record MAC does not verify".into()))
}

fn mac_state(k_int: &Key32, domain: &[u8], parts: &[&[u8]]) -> Result<digest::HmacSha256> {
    let mut h = digest::HmacSha256::new(k_int.as_ref())?;
    h.update(domain);
    for p in parts {
        h.update(&(p.len() as u64).to_be_bytes());
        h.update(p);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn wrong_pin_does_not_unwrap() {
        let hw = [3u8; 32];
        let salt = [1u8; 16];
        let dek = new_dek().unwrap();
        let k1 = kek(&hw, &pin_key(b"1234", &salt, FAST).unwrap(), Role::User);
        let wrapped = wrap_dek(&k1, &dek).unwrap();
        assert_eq!(*unwrap_dek(&k1, &wrapped).unwrap(), *dek);
        let k2 = kek(&hw, &pin_key(b"1235", &salt, FAST).unwrap(), Role::User);
        assert_eq!(unwrap_dek(&k2, &wrapped).map(|_| ()), Err(Error::PinIncorrect));
        // The same PIN with another HSM root gives another KEK.
        let k3 = kek(&[4u8; 32], &pin_key(b"1234", &salt, FAST).unwrap(), Role::User);
        assert!(unwrap_dek(&k3, &wrapped).is_err());
    }

    #[test]
    fn seal_binds_uid() {
        let dek = new_dek().unwrap();
        let mut attrs = AttrMap::new();
        attrs.set_ulong(attr::CLASS, crate::model::attributes::class::SECRET_KEY);
        let a1 = aad(&[0; 16], &[1; 16], &attrs);
        let a2 = aad(&[0; 16], &[2; 16], &attrs);
        let blob = seal(&dek, &a1, b"key").unwrap();
        assert_eq!(*unseal(&dek, &a1, &blob).unwrap(), b"key");
        assert!(matches!(unseal(&dek, &a2, &blob), Err(Error::Integrity(_))));
    }

    #[test]
    fn aad_ignores_modifiable_attributes() {
        let mut attrs = AttrMap::new();
        attrs.set_ulong(attr::CLASS, crate::model::attributes::class::SECRET_KEY);
        let before = aad(&[0; 16], &[1; 16], &attrs);
        attrs.set(attr::LABEL, b"renamed".to_vec());
        assert_eq!(aad(&[0; 16], &[1; 16], &attrs), before);
        attrs.set_bool(attr::LOCAL, true);
        assert_ne!(aad(&[0; 16], &[1; 16], &attrs), before);
    }

    #[test]
    fn kdf_bounds() {
        assert!(KdfParams {
            memory_kib: 4 << 20,
            iterations: 1,
            parallelism: 1
        }
        .check()
        .is_err());
        assert!(KdfParams {
            memory_kib: 19456,
            iterations: 100,
            parallelism: 1
        }
        .check()
        .is_err());
        assert!(FAST.check().is_ok());
    }
}
