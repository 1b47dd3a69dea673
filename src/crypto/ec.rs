//! Curves, their encodings, and P-256 (ECDSA, ECDH).
//!
//! Lenient in what clients send, strict in what keygate produces: `CKA_EC_PARAMS` is accepted
//! as the curve's DER OID or as a DER PrintableString curve name; points are accepted raw or
//! DER-wrapped; keygate produces the DER OCTET STRING form of `CKA_EC_POINT`.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The curves keygate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    Ed25519,
}

/// DER of the P-256 OID 1.2.840.10045.3.1.7.
pub const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID 1.3.101.112.
pub const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// Decodes `CKA_EC_PARAMS`.
pub fn curve_from_params(params: &[u8]) -> Result<Curve> {
    if params == P256_OID {
        return Ok(Curve::P256);
    }
    if params == ED25519_OID {
        return Ok(Curve::Ed25519);
    }
    // A curve name as a PrintableString (PKCS#11 3.0 §2.3.10 allows it for Edwards curves).
    use der::Decode;
    match der::asn1::PrintableStringRef::from_der(params)
        .as_ref()
        .map(|n| n.as_str())
    {
        Ok("prime256v1" | "secp256r1" | "P-256") => Ok(Curve::P256),
        Ok("edwards25519" | "Ed25519" | "ed25519") => Ok(Curve::Ed25519),
        _ => Err(Error::CurveNotSupported),
    }
}

/// Wraps a raw point in a DER OCTET STRING (`CKA_EC_POINT`'s form).
pub fn der_octet_string(raw: &[u8]) -> Result<Vec<u8>> {
    use der::Encode;
    der::asn1::OctetStringRef::new(raw)
        .and_then(|o| o.to_der())
        .map_err(|_| Error::AttributeValueInvalid(crate::model::attributes::attr::EC_POINT))
}

/// Removes a DER OCTET STRING wrapper if `bytes` is exactly one, else returns `bytes`.
pub fn strip_octet_string(bytes: &[u8]) -> &[u8] {
    use der::Decode;
    der::asn1::OctetStringRef::from_der(bytes).map_or(bytes, |o| o.as_bytes())
}

/// The raw public point of `curve` from a `CKA_EC_POINT` or an ECDH peer value, either form.
/// For P-256 an uncompressed SEC1 point `04‖X‖Y` (65 bytes); for Ed25519, 32 bytes.
pub fn raw_point(curve: Curve, bytes: &[u8]) -> Result<Vec<u8>> {
    let want = match curve {
        Curve::P256 => 65,
        Curve::Ed25519 => 32,
    };
    // A raw P-256 point starts with 0x04 too; its length tells it apart from a DER wrapper.
    let raw = if bytes.len() == want {
        bytes
    } else {
        strip_octet_string(bytes)
    };
    if raw.len() != want {
        return Err(Error::AttributeValueInvalid(crate::model::attributes::attr::EC_POINT));
    }
    if curve == Curve::P256 {
        VerifyingKey::from_sec1_bytes(raw)
            .map_err(|_| Error::AttributeValueInvalid(crate::model::attributes::attr::EC_POINT))?;
    }
    Ok(raw.to_vec())
}

/// A new P-256 key pair: (private scalar, uncompressed public point).
pub fn p256_generate() -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    let sk = SigningKey::random(&mut OsRng);
    let scalar = Zeroizing::new(sk.to_bytes().to_vec());
    let point = sk.verifying_key().to_encoded_point(false).as_bytes().to_vec();
    (scalar, point)
}

/// The scalar as 32 big-endian bytes: integers shorter than the field are left-padded (some
/// importers strip leading zeros).
fn full_scalar(scalar: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    if scalar.len() > 32 || scalar.is_empty() {
        return Err(Error::KeySizeRange);
    }
    let mut full = Zeroizing::new([0u8; 32]);
    full[32 - scalar.len()..].copy_from_slice(scalar);
    Ok(full)
}

fn signing_key(scalar: &[u8]) -> Result<SigningKey> {
    SigningKey::from_bytes(full_scalar(scalar)?.as_slice().into()).map_err(|_| Error::KeySizeRange)
}

/// Checks a P-256 private scalar and returns its public point.
pub fn p256_public_of(scalar: &[u8]) -> Result<Vec<u8>> {
    Ok(signing_key(scalar)?
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec())
}

/// A `CKM_ECDSA` input as the ecdsa crate takes it. ECDSA reads the digest as an integer (SEC 1
/// §4.1.3; PKCS#11 sets no length): one shorter than the field is the same number with zero
/// bytes in front, which the crate, asking for at least half the field, then accepts. Longer
/// ones are the crate's to truncate. An empty input is refused.
fn field_digest(digest: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    const FIELD: usize = 32;
    match digest.len() {
        0 => Err(Error::DataLenRange),
        n if n < FIELD => {
            let mut e = vec![0u8; FIELD];
            e[FIELD - n..].copy_from_slice(digest);
            Ok(e.into())
        }
        _ => Ok(digest.into()),
    }
}

/// ECDSA over a caller-supplied digest (`CKM_ECDSA`): `r‖s`, 64 bytes.
pub fn p256_sign_prehash(scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
    let digest = &*field_digest(digest)?;
    // What SigningKey::sign_prehash does (RFC 6979 k, the digest reduced by bits2field), on the
    // scalar alone: a SigningKey would first compute the public key, a second scalar
    // multiplication as costly as the signature (keygate bench: half the time of CKM_ECDSA).
    use ecdsa::hazmat::{bits2field, SignPrimitive};
    use zeroize::Zeroize;
    let full = full_scalar(scalar)?;
    let mut d = Option::<p256::NonZeroScalar>::from(p256::NonZeroScalar::from_repr((*full).into()))
        .ok_or(Error::KeySizeRange)?;
    let z = bits2field::<p256::NistP256>(digest).map_err(|_| Error::DataLenRange)?;
    let signed = d.as_ref().try_sign_prehashed_rfc6979::<sha2::Sha256>(&z, &[]);
    d.zeroize();
    let (sig, _): (Signature, _) = signed.map_err(|_| Error::DataLenRange)?;
    Ok(sig.to_bytes().to_vec())
}

/// Verifies `r‖s` over a digest; any failure is `CKR_SIGNATURE_INVALID` or `_LEN_RANGE`.
pub fn p256_verify_prehash(point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
    if sig.len() != 64 {
        return Err(Error::SignatureLenRange);
    }
    let vk = VerifyingKey::from_sec1_bytes(point).map_err(|_| Error::KeyTypeInconsistent)?;
    let sig = Signature::from_slice(sig).map_err(|_| Error::SignatureInvalid)?;
    let digest = field_digest(digest).map_err(|_| Error::SignatureInvalid)?;
    vk.verify_prehash(&digest, &sig).map_err(|_| Error::SignatureInvalid)
}

/// ECDH on P-256: the x-coordinate of the shared point (`CKD_NULL`).
pub fn p256_ecdh(scalar: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let sk = signing_key(scalar)?;
    let secret = p256::SecretKey::from(sk.as_nonzero_scalar());
    let pk = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| Error::MechanismParamInvalid)?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), pk.as_affine());
    Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_forms() {
        assert_eq!(curve_from_params(P256_OID), Ok(Curve::P256));
        assert_eq!(curve_from_params(ED25519_OID), Ok(Curve::Ed25519));
        let mut name = vec![0x13, 12];
        name.extend_from_slice(b"edwards25519");
        assert_eq!(curve_from_params(&name), Ok(Curve::Ed25519));
        assert_eq!(curve_from_params(&[0x06, 0x01, 0x00]), Err(Error::CurveNotSupported));
    }

    #[test]
    fn point_forms() {
        let (_, point) = p256_generate();
        assert_eq!(raw_point(Curve::P256, &point).unwrap(), point);
        assert_eq!(
            raw_point(Curve::P256, &der_octet_string(&point).unwrap()).unwrap(),
            point
        );
        assert!(raw_point(Curve::P256, &point[..64]).is_err());
    }

    #[test]
    fn sign_verify_and_ecdh() {
        let (a, pa) = p256_generate();
        let (b, pb) = p256_generate();
        let sig = p256_sign_prehash(&a, &[5u8; 32]).unwrap();
        p256_verify_prehash(&pa, &[5u8; 32], &sig).unwrap();
        assert_eq!(p256_verify_prehash(&pa, &[6u8; 32], &sig), Err(Error::SignatureInvalid));
        assert_eq!(*p256_ecdh(&a, &pb).unwrap(), *p256_ecdh(&b, &pa).unwrap());
    }

    #[test]
    fn signing_with_the_scalar_alone_equals_signing_key() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let (a, _) = p256_generate();
        let mut short = vec![0u8; 32];
        short[1..].copy_from_slice(&[0x42; 31]);
        for scalar in [a.to_vec(), short.clone(), short[1..].to_vec()] {
            let sk = signing_key(&scalar).unwrap();
            for digest in [vec![7u8; 32], vec![9u8; 48], vec![1u8; 20]] {
                let want: Signature = sk.sign_prehash(&digest).unwrap();
                assert_eq!(p256_sign_prehash(&scalar, &digest).unwrap(), want.to_bytes().to_vec());
            }
        }
        assert_eq!(p256_sign_prehash(&[0u8; 32], &[7u8; 32]), Err(Error::KeySizeRange));
        assert_eq!(p256_sign_prehash(&a, &[]), Err(Error::DataLenRange));
    }

    #[test]
    fn a_short_digest_is_the_same_number_as_its_zero_padded_form() {
        let (a, pa) = p256_generate();
        let mut padded = [0u8; 32];
        padded[25..].copy_from_slice(b"HI BOB!");
        let sig = p256_sign_prehash(&a, b"HI BOB!").unwrap();
        p256_verify_prehash(&pa, &padded, &sig).unwrap();
        p256_verify_prehash(&pa, b"HI BOB!", &sig).unwrap();
        assert_eq!(p256_verify_prehash(&pa, b"HI BOB?", &sig), Err(Error::SignatureInvalid));
    }
}
