//! Key material of the self-managed token: checking what is imported or unwrapped against its
//! key type (and filling what derives from it), and the forms a private key takes when it is
//! wrapped (PKCS#8, RFC 8410 for the curves without a RustCrypto PKCS#8 type).

use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

#[cfg(feature = "openssl")]
use super::rsa;
use crate::crypto::{aes, ec, eddsa, x25519};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, key_type, AttrMap};

pub(super) fn curve_of(attrs: &AttrMap) -> Result<ec::Curve> {
    ec::curve_from_params(
        attrs
            .get(attr::EC_PARAMS)
            .ok_or(Error::TemplateIncomplete("CKA_EC_PARAMS missing"))?,
    )
}

pub(super) fn value_len(attrs: &AttrMap) -> Result<Option<usize>> {
    Ok(attrs.ulong(attr::VALUE_LEN)?.map(|v| v as usize))
}

/// Checks imported or unwrapped key material against its key type and fills the attributes
/// derived from it (`CKA_VALUE_LEN`, `CKA_CHECK_VALUE`, the DER form of `CKA_EC_POINT`).
pub(super) fn complete_material(attrs: &mut AttrMap) -> Result<()> {
    let class = attrs.class()?;
    let kt = attrs.key_type();
    match (class, kt) {
        (class::SECRET_KEY, Some(kt)) => {
            let len = attrs
                .get(attr::VALUE)
                .ok_or(Error::TemplateIncomplete("CKA_VALUE missing"))?
                .len();
            if value_len(attrs)?.is_some_and(|l| l != len) {
                return Err(Error::TemplateInconsistent("CKA_VALUE_LEN does not match CKA_VALUE"));
            }
            let value = attrs.get(attr::VALUE).unwrap_or_default();
            let kcv = match kt {
                key_type::AES if matches!(len, 16 | 24 | 32) => aes::check_value(value)?,
                key_type::GENERIC_SECRET | key_type::SHA256_HMAC if (1..=512).contains(&len) => {
                    <sha1::Sha1 as sha2::Digest>::digest(value)[..3].to_vec()
                }
                key_type::AES | key_type::GENERIC_SECRET | key_type::SHA256_HMAC => {
                    return Err(Error::AttributeValueInvalid(attr::VALUE))
                }
                _ => return Err(Error::TemplateInconsistent("unsupported secret key type")),
            };
            // A check value the caller supplies must be the key's (PKCS#11 3.0 §4.10).
            if attrs
                .get(attr::CHECK_VALUE)
                .is_some_and(|c| !c.is_empty() && c != kcv.as_slice())
            {
                return Err(Error::AttributeValueInvalid(attr::CHECK_VALUE));
            }
            attrs.set(attr::CHECK_VALUE, kcv);
            attrs.set_ulong(attr::VALUE_LEN, len as u64);
        }
        (class::PRIVATE_KEY, Some(key_type::EC | key_type::EC_EDWARDS | key_type::EC_MONTGOMERY)) => {
            let v = attrs
                .get(attr::VALUE)
                .ok_or(Error::TemplateIncomplete("CKA_VALUE missing"))?;
            let ok = match (curve_of(attrs)?, kt) {
                (c, Some(key_type::EC)) if c.is_nist() => ec::public_of(c, v).is_ok(),
                (ec::Curve::Ed25519, Some(key_type::EC_EDWARDS)) => eddsa::public_of(v).is_ok(),
                (ec::Curve::X25519, Some(key_type::EC_MONTGOMERY)) => x25519::public_of(v).is_ok(),
                #[cfg(feature = "openssl")]
                (ec::Curve::Ed448, Some(key_type::EC_EDWARDS)) => crate::crypto::ed448::public_of(v).is_ok(),
                _ => return Err(Error::TemplateInconsistent("curve does not fit the key type")),
            };
            if !ok {
                return Err(Error::AttributeValueInvalid(attr::VALUE));
            }
        }
        #[cfg(feature = "openssl")]
        (class::PRIVATE_KEY, Some(key_type::RSA)) => rsa::complete_private(attrs)?,
        #[cfg(feature = "openssl")]
        (class::PUBLIC_KEY, Some(key_type::RSA)) => rsa::complete_public(attrs)?,
        (class::PUBLIC_KEY, Some(key_type::EC | key_type::EC_EDWARDS | key_type::EC_MONTGOMERY)) => {
            let curve = curve_of(attrs)?;
            if Some(curve.key_type()) != kt {
                return Err(Error::TemplateInconsistent("curve does not fit the key type"));
            }
            let point = attrs
                .get(attr::EC_POINT)
                .ok_or(Error::TemplateIncomplete("CKA_EC_POINT missing"))?;
            let raw = ec::raw_point(curve, point)?;
            attrs.set(attr::EC_POINT, ec::der_octet_string(&raw)?);
        }
        (class::SECRET_KEY | class::PRIVATE_KEY | class::PUBLIC_KEY, _) => {
            return Err(Error::TemplateInconsistent("unsupported key type"))
        }
        // A certificate's check value is derived from it: the first three bytes of the SHA-1 of
        // CKA_VALUE (PKCS#11 3.0 §4.6.3); one the caller gives must be that.
        (class::CERTIFICATE, _) => {
            let kcv = <sha1::Sha1 as sha2::Digest>::digest(attrs.get(attr::VALUE).unwrap_or_default())[..3].to_vec();
            if attrs
                .get(attr::CHECK_VALUE)
                .is_some_and(|c| !c.is_empty() && c != kcv.as_slice())
            {
                return Err(Error::AttributeValueInvalid(attr::CHECK_VALUE));
            }
            attrs.set(attr::CHECK_VALUE, kcv);
        }
        _ => {}
    }
    Ok(())
}

/// Serialises a key's secret for wrapping: raw bytes for secret keys, PKCS#8 for private keys.
pub(super) fn wrappable(attrs: &AttrMap, secret: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    match (attrs.class()?, attrs.key_type()) {
        (class::SECRET_KEY, _) => Ok(Zeroizing::new(secret.to_vec())),
        (class::PRIVATE_KEY, Some(key_type::EC)) => ec::to_pkcs8(curve_of(attrs)?, secret),
        (class::PRIVATE_KEY, Some(key_type::EC_EDWARDS)) if curve_of(attrs)? == ec::Curve::Ed448 => {
            rfc8410_pkcs8(ED448_ALGORITHM, secret, 57)
        }
        (class::PRIVATE_KEY, Some(key_type::EC_EDWARDS)) => {
            // RFC 8410 PKCS#8 v1: the seed alone.
            let seed: &[u8; 32] = secret.try_into().map_err(|_| Error::KeyNotWrappable)?;
            let der = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: *seed,
                public_key: None,
            }
            .to_pkcs8_der()
            .map_err(|_| Error::KeyNotWrappable)?;
            Ok(Zeroizing::new(der.as_bytes().to_vec()))
        }
        (class::PRIVATE_KEY, Some(key_type::EC_MONTGOMERY)) => rfc8410_pkcs8(X25519_ALGORITHM, secret, 32),
        #[cfg(feature = "openssl")]
        (class::PRIVATE_KEY, Some(key_type::RSA)) => crate::crypto::rsa::to_pkcs8(secret),
        _ => Err(Error::KeyNotWrappable),
    }
}

/// Parses unwrapped bytes into `template`'s `CKA_VALUE` (and `CKA_EC_PARAMS` for private keys).
pub(super) fn unwrapped_into(template: &mut AttrMap, bytes: Zeroizing<Vec<u8>>) -> Result<()> {
    match (template.class()?, template.key_type()) {
        (class::SECRET_KEY, _) => template.set(attr::VALUE, bytes.to_vec()),
        (class::PRIVATE_KEY, Some(key_type::EC)) => {
            let (curve, scalar) = ec::from_pkcs8(&bytes).ok_or(Error::WrappedKeyInvalid)?;
            template.set(attr::VALUE, scalar.to_vec());
            template.set(attr::EC_PARAMS, curve.oid().to_vec());
        }
        (class::PRIVATE_KEY, Some(key_type::EC_EDWARDS))
            if from_rfc8410_pkcs8(ED448_ALGORITHM, &bytes, 57).is_some() =>
        {
            let key = from_rfc8410_pkcs8(ED448_ALGORITHM, &bytes, 57).ok_or(Error::WrappedKeyInvalid)?;
            if template.get(attr::EC_PARAMS).is_none() {
                template.set(attr::EC_PARAMS, ec::ED448_OID.to_vec());
            }
            template.set(attr::VALUE, key.to_vec());
        }
        (class::PRIVATE_KEY, Some(key_type::EC_EDWARDS)) => {
            // PKCS#8 v1, or v2 with the public key (RFC 8410 §7), which is checked.
            let pair = ed25519_dalek::SigningKey::from_pkcs8_der(&bytes).map_err(|_| Error::WrappedKeyInvalid)?;
            let seed = Zeroizing::new(pair.to_bytes());
            if template.get(attr::EC_PARAMS).is_none() {
                template.set(attr::EC_PARAMS, ec::ED25519_OID.to_vec());
            }
            template.set(attr::VALUE, seed.to_vec());
        }
        (class::PRIVATE_KEY, Some(key_type::EC_MONTGOMERY)) => {
            let key = from_rfc8410_pkcs8(X25519_ALGORITHM, &bytes, 32).ok_or(Error::WrappedKeyInvalid)?;
            if template.get(attr::EC_PARAMS).is_none() {
                template.set(attr::EC_PARAMS, ec::X25519_OID.to_vec());
            }
            template.set(attr::VALUE, key.to_vec());
        }
        #[cfg(feature = "openssl")]
        (class::PRIVATE_KEY, Some(key_type::RSA)) => {
            let pkcs1 = crate::crypto::rsa::from_pkcs8(&bytes).ok_or(Error::WrappedKeyInvalid)?;
            template.set(attr::VALUE, pkcs1.to_vec());
        }
        _ => return Err(Error::TemplateInconsistent("cannot unwrap into this class or key type")),
    }
    Ok(())
}

/// The X25519 and Ed448 algorithms of RFC 8410 (`id-X25519`, `id-Ed448`).
const X25519_ALGORITHM: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.3.101.110");
const ED448_ALGORITHM: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.3.101.113");

/// RFC 8410 PKCS#8 v1 for a key of `len` bytes: the private key alone, in an OCTET STRING
/// inside the PrivateKeyInfo's.
fn rfc8410_pkcs8(oid: der::asn1::ObjectIdentifier, key: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    if key.len() != len {
        return Err(Error::KeyNotWrappable);
    }
    let inner = der::asn1::OctetStringRef::new(key).map_err(|_| Error::KeyNotWrappable)?;
    let inner = Zeroizing::new(der::Encode::to_der(&inner).map_err(|_| Error::KeyNotWrappable)?);
    let info = pkcs8::PrivateKeyInfo::new(pkcs8::AlgorithmIdentifierRef { oid, parameters: None }, &inner);
    let mut out = Zeroizing::new(Vec::new());
    der::Encode::encode_to_vec(&info, &mut out).map_err(|_| Error::KeyNotWrappable)?;
    Ok(out)
}

/// The private key of an RFC 8410 PKCS#8 of algorithm `oid` and `len` bytes, if it is one.
fn from_rfc8410_pkcs8(oid: der::asn1::ObjectIdentifier, der_bytes: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
    use der::Decode;
    let info = pkcs8::PrivateKeyInfo::from_der(der_bytes).ok()?;
    if info.algorithm.oid != oid {
        return None;
    }
    let key = der::asn1::OctetStringRef::from_der(info.private_key).ok()?;
    (key.as_bytes().len() == len).then(|| Zeroizing::new(key.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey;

    /// An Ed25519 private key unwraps from PKCS#8 v1 (RFC 8410's seed alone, what keygate
    /// writes) and v2 (with the public key, as other tokens write it); a v2 whose public key
    /// does not belong to the seed is refused.
    #[test]
    fn ed25519_unwraps_from_pkcs8_v1_and_v2() {
        let seed = [7u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let template = || {
            let mut t = AttrMap::new();
            t.set_ulong(attr::CLASS, class::PRIVATE_KEY);
            t.set_ulong(attr::KEY_TYPE, key_type::EC_EDWARDS);
            t
        };
        for public_key in [None, Some(public)] {
            let der = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: seed,
                public_key: public_key.map(ed25519_dalek::pkcs8::PublicKeyBytes),
            }
            .to_pkcs8_der()
            .unwrap();
            let mut t = template();
            unwrapped_into(&mut t, Zeroizing::new(der.as_bytes().to_vec())).unwrap();
            assert_eq!(t.get(attr::VALUE), Some(&seed[..]));
            assert_eq!(t.get(attr::EC_PARAMS), Some(ec::ED25519_OID));
        }
        let forged = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: seed,
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes([9u8; 32])),
        }
        .to_pkcs8_der()
        .unwrap();
        assert_eq!(
            unwrapped_into(&mut template(), Zeroizing::new(forged.as_bytes().to_vec())),
            Err(Error::WrappedKeyInvalid)
        );
        // What keygate wraps is v1, and unwraps to the same seed.
        let mut private = template();
        private.set(attr::EC_PARAMS, ec::ED25519_OID.to_vec());
        let wrapped = wrappable(&private, &seed).unwrap();
        // Byte for byte what keygate wrote before it used the pkcs8 crate.
        let mut v1 = hex::decode("302e020100300506032b657004220420").unwrap();
        v1.extend_from_slice(&seed);
        assert_eq!(&wrapped[..], &v1[..]);
        let mut t = template();
        unwrapped_into(&mut t, wrapped).unwrap();
        assert_eq!(t.get(attr::VALUE), Some(&seed[..]));
    }
}
