//! The OpenSSL provider (cargo feature `openssl`): ECDSA on P-256, P-384 and P-521 and AES-GCM
//! from OpenSSL 3 (its P-256 and GHASH are assembly; keygate bench: ECDSA P-256 2.4×, P-384
//! 1.7× and AES-GCM 4 KiB 1.6× the RustCrypto crates), Ed25519 from `ed25519-dalek`, which signs faster than OpenSSL here
//! because OpenSSL derives the public key from the seed on every signature.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use std::sync::LazyLock;
use zeroize::Zeroizing;

use super::aes::{IV_LEN, TAG_LEN};
use super::ec::Curve;
use super::provider::CryptoProvider;
use crate::error::{Error, Result};

pub struct OpenSsl;

/// Below this many bytes AES-GCM goes to the `aes-gcm` crate: setting up an OpenSSL cipher
/// context costs more than the crate's whole operation on small inputs (keygate bench, 64 B:
/// OpenSSL 480k ops/s, aes-gcm 727k; 4 KiB: OpenSSL 301k, aes-gcm 226k). The two produce
/// the same bytes (tests below).
const SMALL: usize = 1024;

static P256: LazyLock<Option<EcGroup>> = LazyLock::new(|| EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok());
static P384: LazyLock<Option<EcGroup>> = LazyLock::new(|| EcGroup::from_curve_name(Nid::SECP384R1).ok());
static P521: LazyLock<Option<EcGroup>> = LazyLock::new(|| EcGroup::from_curve_name(Nid::SECP521R1).ok());

/// The group of a NIST curve and its field's length in bytes.
fn group(curve: Curve) -> Result<(&'static EcGroup, usize)> {
    let (g, field) = match curve {
        Curve::P256 => (&P256, 32),
        Curve::P384 => (&P384, 48),
        Curve::P521 => (&P521, 66),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => return Err(Error::KeyTypeInconsistent),
    };
    Ok((g.as_ref().ok_or(Error::Crypto)?, field))
}

/// ECDSA over a digest with OpenSSL: `r‖s`, each `field` bytes. Accepts what the RustCrypto
/// path accepts: a digest of any length but none, a scalar of at most `field` bytes.
fn sign_prehash(curve: Curve, scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
    let (group, field) = group(curve)?;
    if scalar.is_empty() || scalar.len() > field {
        return Err(Error::KeySizeRange);
    }
    if digest.is_empty() {
        return Err(Error::DataLenRange);
    }
    let mut d = BigNum::from_slice(scalar).map_err(|_| Error::Crypto)?;
    // OpenSSL's ECDSA signing reads only the private scalar, but an EC_KEY is built with a
    // public point: deriving the real one would be a second scalar multiplication on every
    // signature, so the generator stands in. It is never used, stored or shown.
    let generator = group.generator_opt().ok_or(Error::Crypto)?;
    let key = EcKey::from_private_components(group, &d, generator);
    d.clear();
    let key = key.map_err(|_| Error::Crypto)?;
    let sig = EcdsaSig::sign(digest, &key).map_err(|_| Error::Crypto)?;
    let mut out = sig.r().to_vec_padded(field as i32).map_err(|_| Error::Crypto)?;
    out.extend(sig.s().to_vec_padded(field as i32).map_err(|_| Error::Crypto)?);
    Ok(out)
}

fn verify_prehash(curve: Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
    let (group, field) = group(curve)?;
    if sig.len() != 2 * field {
        return Err(Error::SignatureLenRange);
    }
    let mut ctx = BigNumContext::new().map_err(|_| Error::Crypto)?;
    let point = EcPoint::from_bytes(group, point, &mut ctx).map_err(|_| Error::KeyTypeInconsistent)?;
    let key = EcKey::from_public_key(group, &point).map_err(|_| Error::KeyTypeInconsistent)?;
    let r = BigNum::from_slice(&sig[..field]).map_err(|_| Error::SignatureInvalid)?;
    let s = BigNum::from_slice(&sig[field..]).map_err(|_| Error::SignatureInvalid)?;
    let sig = EcdsaSig::from_private_components(r, s).map_err(|_| Error::SignatureInvalid)?;
    match sig.verify(digest, &key) {
        Ok(true) => Ok(()),
        _ => Err(Error::SignatureInvalid),
    }
}

/// AES's cipher objects for one mode, fetched from OpenSSL once, by key length (16, 24, 32
/// bytes). A context initialised with a built-in `EVP_aes_*()` makes OpenSSL 3 look the
/// implementation up again on every initialisation (a locked search of its algorithm store),
/// about a third of a 4 KiB AES-GCM operation here.
struct Fetched {
    ciphers: LazyLock<[Option<openssl::cipher::Cipher>; 3]>,
    builtin: fn(usize) -> &'static openssl::cipher::CipherRef,
}

impl Fetched {
    fn for_key(&self, key: &[u8]) -> Result<&openssl::cipher::CipherRef> {
        let i = match key.len() {
            16 => 0,
            24 => 1,
            32 => 2,
            _ => return Err(Error::KeySizeRange),
        };
        Ok(self.ciphers[i].as_deref().unwrap_or_else(|| (self.builtin)(i)))
    }
}

fn fetch_all(names: [&str; 3]) -> [Option<openssl::cipher::Cipher>; 3] {
    names.map(|name| openssl::cipher::Cipher::fetch(None, name, None).ok())
}

static GCM: Fetched = Fetched {
    ciphers: LazyLock::new(|| fetch_all(["AES-128-GCM", "AES-192-GCM", "AES-256-GCM"])),
    builtin: |i| {
        [
            openssl::cipher::Cipher::aes_128_gcm,
            openssl::cipher::Cipher::aes_192_gcm,
            openssl::cipher::Cipher::aes_256_gcm,
        ][i]()
    },
};

static CBC: Fetched = Fetched {
    ciphers: LazyLock::new(|| fetch_all(["AES-128-CBC", "AES-192-CBC", "AES-256-CBC"])),
    builtin: |i| {
        [
            openssl::cipher::Cipher::aes_128_cbc,
            openssl::cipher::Cipher::aes_192_cbc,
            openssl::cipher::Cipher::aes_256_cbc,
        ][i]()
    },
};

impl CryptoProvider for OpenSsl {
    fn name(&self) -> &'static str {
        "openssl"
    }

    fn p256_sign_prehash(&self, scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
        sign_prehash(Curve::P256, scalar, digest)
    }

    fn p256_verify_prehash(&self, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
        verify_prehash(Curve::P256, point, digest, sig)
    }

    fn ec_sign_prehash(&self, curve: Curve, scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
        sign_prehash(curve, scalar, digest)
    }

    fn ec_verify_prehash(&self, curve: Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
        verify_prehash(curve, point, digest, sig)
    }

    fn gcm_encrypt(&self, key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>> {
        if pt.len() < SMALL {
            return super::aes::gcm_encrypt(key, iv, aad, pt);
        }
        let mut out = vec![0u8; pt.len() + TAG_LEN];
        self.gcm_encrypt_into(key, iv, aad, pt, &mut out)?;
        Ok(out)
    }

    fn gcm_encrypt_into(&self, key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8], out: &mut [u8]) -> Result<()> {
        if pt.len() < SMALL {
            return super::aes::gcm_encrypt_into(key, iv, aad, pt, out);
        }
        if iv.len() != IV_LEN {
            return Err(Error::MechanismParamInvalid);
        }
        if out.len() != pt.len() + TAG_LEN {
            return Err(Error::BufferTooSmall);
        }
        let cipher = GCM.for_key(key)?;
        let failed = |_| Error::Crypto;
        let mut ctx = openssl::cipher_ctx::CipherCtx::new().map_err(failed)?;
        ctx.encrypt_init(Some(cipher), Some(key), Some(iv)).map_err(failed)?;
        if !aad.is_empty() {
            ctx.cipher_update(aad, None).map_err(failed)?;
        }
        // Into the caller's buffer as it is: nothing of keygate's to allocate, zero or copy.
        let n = ctx.cipher_update(pt, Some(&mut out[..])).map_err(failed)?;
        let (body, tag) = out.split_at_mut(pt.len());
        let m = ctx.cipher_final(&mut body[n..]).map_err(failed)?;
        if n + m != pt.len() {
            return Err(Error::Crypto);
        }
        ctx.tag(tag).map_err(failed)
    }

    /// The scalar from the OS generator through the curve's crate, as with RustCrypto; the
    /// public point by OpenSSL's base-point multiplication (precomputed tables, assembly on
    /// P-256): the point was nine tenths of a P-256 key pair's generation (keygate bench).
    fn ec_generate(&self, curve: Curve) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
        let (group, _) = group(curve)?;
        let scalar = super::ec::random_scalar(curve)?;
        let failed = |_| Error::Crypto;
        let mut ctx = BigNumContext::new().map_err(failed)?;
        let mut d = BigNum::from_slice(&scalar).map_err(failed)?;
        let mut point = EcPoint::new(group).map_err(failed)?;
        let made = point.mul_generator2(group, &d, &mut ctx);
        d.clear();
        made.map_err(failed)?;
        let bytes = point
            .to_bytes(group, openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx)
            .map_err(failed)?;
        Ok((scalar, bytes))
    }

    /// From [`SMALL`] up: OpenSSL's CBC loop is assembly (keygate bench, AES-CBC 4 KiB).
    fn cbc_encrypt_into(&self, key: &[u8], iv: &[u8; 16], pt: &[u8], out: &mut [u8]) -> Result<bool> {
        if pt.len() < SMALL {
            return Ok(false);
        }
        if !pt.len().is_multiple_of(16) || out.len() < pt.len() + 16 {
            return Err(Error::DataLenRange);
        }
        let failed = |_| Error::Crypto;
        let mut ctx = openssl::cipher_ctx::CipherCtx::new().map_err(failed)?;
        ctx.encrypt_init(Some(CBC.for_key(key)?), Some(key), Some(iv))
            .map_err(failed)?;
        ctx.set_padding(false);
        let n = ctx.cipher_update(pt, Some(out)).map_err(failed)?;
        if n != pt.len() {
            return Err(Error::Crypto);
        }
        Ok(true)
    }

    fn gcm_decrypt(&self, key: &[u8], iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if ct.len() < SMALL + TAG_LEN {
            return super::aes::gcm_decrypt(key, iv, aad, ct);
        }
        if iv.len() != IV_LEN {
            return Err(Error::MechanismParamInvalid);
        }
        let Some(tag_at) = ct.len().checked_sub(TAG_LEN) else {
            return Err(Error::EncryptedDataLenRange);
        };
        let (body, tag) = ct.split_at(tag_at);
        let failed = |_| Error::Crypto;
        let mut ctx = openssl::cipher_ctx::CipherCtx::new().map_err(failed)?;
        ctx.decrypt_init(Some(GCM.for_key(key)?), Some(key), Some(iv))
            .map_err(failed)?;
        ctx.set_tag(tag).map_err(failed)?;
        if !aad.is_empty() {
            ctx.cipher_update(aad, None).map_err(failed)?;
        }
        let mut out = Zeroizing::new(vec![0u8; body.len()]);
        let n = ctx.cipher_update(body, Some(&mut out[..])).map_err(failed)?;
        // The tag is checked here: nothing of the output is returned when it fails.
        let m = ctx
            .cipher_final(&mut out[n..])
            .map_err(|_| Error::EncryptedDataInvalid)?;
        if n + m != body.len() {
            return Err(Error::Crypto);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::provider::RustCrypto;

    /// A generated key pair's point is the one RustCrypto computes from its scalar, and two
    /// pairs differ.
    #[test]
    fn generated_points_are_their_scalars_points() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let (scalar, point) = OpenSsl.ec_generate(curve).unwrap();
            assert_eq!(point, super::super::ec::public_of(curve, &scalar).unwrap(), "{curve:?}");
            let (other, _) = OpenSsl.ec_generate(curve).unwrap();
            assert_ne!(*scalar, *other);
        }
    }

    /// Each provider's output is accepted by the other one.
    #[test]
    fn openssl_and_rustcrypto_agree() {
        let (scalar, point) = super::super::ec::p256_generate();
        for digest in [
            b"HI BOB!".to_vec(),
            [7u8; 32].to_vec(),
            [9u8; 48].to_vec(),
            [1u8; 64].to_vec(),
        ] {
            let a = OpenSsl.p256_sign_prehash(&scalar, &digest).unwrap();
            RustCrypto.p256_verify_prehash(&point, &digest, &a).unwrap();
            let b = RustCrypto.p256_sign_prehash(&scalar, &digest).unwrap();
            OpenSsl.p256_verify_prehash(&point, &digest, &b).unwrap();
            let mut bad = a.clone();
            bad[5] ^= 1;
            assert_eq!(
                OpenSsl.p256_verify_prehash(&point, &digest, &bad),
                Err(Error::SignatureInvalid)
            );
        }
        // P-384 and P-521, short and long digests, a short scalar.
        for curve in [Curve::P384, Curve::P521] {
            let (scalar, point) = super::super::ec::generate(curve).unwrap();
            for digest in [
                b"HI BOB!".to_vec(),
                [7u8; 48].to_vec(),
                [1u8; 64].to_vec(),
                [2u8; 80].to_vec(),
            ] {
                let a = OpenSsl.ec_sign_prehash(curve, &scalar, &digest).unwrap();
                RustCrypto.ec_verify_prehash(curve, &point, &digest, &a).unwrap();
                let b = RustCrypto.ec_sign_prehash(curve, &scalar, &digest).unwrap();
                OpenSsl.ec_verify_prehash(curve, &point, &digest, &b).unwrap();
                let mut bad = a.clone();
                bad[5] ^= 1;
                assert_eq!(
                    OpenSsl.ec_verify_prehash(curve, &point, &digest, &bad),
                    Err(Error::SignatureInvalid)
                );
            }
        }
        let long = vec![0x42u8; 5000];
        for (key, pt) in [
            ([3u8; 16].to_vec(), &long),
            ([4u8; 24].to_vec(), &long),
            ([5u8; 32].to_vec(), &long),
        ] {
            let ct = OpenSsl.gcm_encrypt(&key, &[6; 12], b"aad", pt).unwrap();
            assert_eq!(ct, RustCrypto.gcm_encrypt(&key, &[6; 12], b"aad", pt).unwrap());
            // Into a buffer, with and without additional data.
            for aad in [&b"aad"[..], b""] {
                let want = RustCrypto.gcm_encrypt(&key, &[6; 12], aad, pt).unwrap();
                for p in [&OpenSsl as &dyn CryptoProvider, &RustCrypto] {
                    let mut out = vec![0u8; pt.len() + TAG_LEN];
                    p.gcm_encrypt_into(&key, &[6; 12], aad, pt, &mut out).unwrap();
                    assert_eq!(out, want, "{}", p.name());
                    let mut short = vec![0u8; pt.len() + TAG_LEN - 1];
                    assert!(p.gcm_encrypt_into(&key, &[6; 12], aad, pt, &mut short).is_err());
                }
            }
            assert_eq!(&*OpenSsl.gcm_decrypt(&key, &[6; 12], b"aad", &ct).unwrap(), &pt[..]);
            assert_eq!(&*RustCrypto.gcm_decrypt(&key, &[6; 12], b"aad", &ct).unwrap(), &pt[..]);
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(
                OpenSsl.gcm_decrypt(&key, &[6; 12], b"aad", &bad).map(|_| ()),
                Err(Error::EncryptedDataInvalid)
            );
        }
    }
}
