//! Curves, their encodings, and the NIST curves P-256, P-384 and P-521 (ECDSA, ECDH). P-256
//! has a hand-tuned signing path (and an OpenSSL one behind the provider seam); P-384 and P-521
//! use the RustCrypto crates' own types.
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
    P384,
    P521,
    Ed25519,
    /// Ed448 (RFC 8032), through OpenSSL: builds without it know the curve and refuse its keys.
    Ed448,
    /// Curve25519 for X25519 key agreement (`CKK_EC_MONTGOMERY`).
    X25519,
}

impl Curve {
    /// Whether it is one of the NIST prime curves (a `CKK_EC` key), not Ed25519 or X25519.
    pub fn is_nist(self) -> bool {
        !matches!(self, Curve::Ed25519 | Curve::Ed448 | Curve::X25519)
    }
    /// The key type (`CKK_*`) of a key on this curve.
    pub fn key_type(self) -> u64 {
        use crate::model::attributes::key_type;
        match self {
            Curve::Ed25519 | Curve::Ed448 => key_type::EC_EDWARDS,
            Curve::X25519 => key_type::EC_MONTGOMERY,
            _ => key_type::EC,
        }
    }
    /// The DER OID keygate writes as `CKA_EC_PARAMS`.
    pub fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => P256_OID,
            Curve::P384 => P384_OID,
            Curve::P521 => P521_OID,
            Curve::Ed25519 => ED25519_OID,
            Curve::Ed448 => ED448_OID,
            Curve::X25519 => X25519_OID,
        }
    }
    /// The length of a raw public key: `04‖X‖Y` for the NIST curves, 32 bytes for Ed25519 and
    /// X25519 (RFC 8032, RFC 7748: little-endian).
    pub fn point_len(self) -> usize {
        match self {
            Curve::P256 => 65,
            Curve::P384 => 97,
            Curve::P521 => 133,
            Curve::Ed25519 | Curve::X25519 => 32,
            Curve::Ed448 => 57,
        }
    }
}

/// DER of the P-256 OID 1.2.840.10045.3.1.7.
pub const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 OID 1.3.132.0.34.
pub const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the P-521 OID 1.3.132.0.35.
pub const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// DER of the Ed25519 OID 1.3.101.112.
pub const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the Ed448 OID 1.3.101.113.
pub const ED448_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
/// DER of the X25519 OID 1.3.101.110.
pub const X25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];

/// Decodes `CKA_EC_PARAMS`.
pub fn curve_from_params(params: &[u8]) -> Result<Curve> {
    for c in [
        Curve::P256,
        Curve::P384,
        Curve::P521,
        Curve::Ed25519,
        Curve::Ed448,
        Curve::X25519,
    ] {
        if params == c.oid() {
            return Ok(c);
        }
    }
    // A curve name as a PrintableString (PKCS#11 3.0 §2.3.10 allows it for Edwards curves).
    use der::Decode;
    match der::asn1::PrintableStringRef::from_der(params)
        .as_ref()
        .map(|n| n.as_str())
    {
        Ok("prime256v1" | "secp256r1" | "P-256") => Ok(Curve::P256),
        Ok("secp384r1" | "P-384") => Ok(Curve::P384),
        Ok("secp521r1" | "P-521") => Ok(Curve::P521),
        Ok("edwards25519" | "Ed25519" | "ed25519") => Ok(Curve::Ed25519),
        Ok("edwards448" | "Ed448" | "ed448") => Ok(Curve::Ed448),
        Ok("curve25519" | "X25519" | "x25519") => Ok(Curve::X25519),
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
    let want = curve.point_len();
    // A raw NIST point starts with 0x04 too; its length tells it apart from a DER wrapper.
    let raw = if bytes.len() == want {
        bytes
    } else {
        strip_octet_string(bytes)
    };
    let valid = raw.len() == want
        && match curve {
            Curve::P256 => VerifyingKey::from_sec1_bytes(raw).is_ok(),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(raw).is_ok(),
            Curve::P521 => p521::PublicKey::from_sec1_bytes(raw).is_ok(),
            Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => true,
        };
    if !valid {
        return Err(Error::AttributeValueInvalid(crate::model::attributes::attr::EC_POINT));
    }
    Ok(raw.to_vec())
}

/// A digest as an ECDSA input for a field of `field` bytes: SEC 1 §4.1.3 reads it as an
/// integer, so a shorter one is the same number with zero bytes in front (the crates ask for at
/// least half the field); longer ones are the crates' to truncate. Empty is refused.
fn padded_digest(digest: &[u8], field: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
    match digest.len() {
        0 => Err(Error::DataLenRange),
        n if n < field => {
            let mut e = vec![0u8; field];
            e[field - n..].copy_from_slice(digest);
            Ok(e.into())
        }
        _ => Ok(digest.into()),
    }
}

/// SEC 1 §4.1.3 for a curve whose order has `order_bits` bits: a digest longer than that is
/// cut to its leftmost `order_bits` bits. The crates cut to whole bytes, which differs for
/// P-521 (521 bits in 66 bytes) on digests of 66 bytes or more; OpenSSL cuts to bits.
fn leftmost_bits(digest: &[u8], order_bits: usize) -> std::borrow::Cow<'_, [u8]> {
    let extra = (digest.len() * 8).saturating_sub(order_bits);
    if extra == 0 {
        return digest.into();
    }
    let (bytes, bits) = (extra / 8, extra % 8);
    let kept = &digest[..digest.len() - bytes];
    if bits == 0 {
        return kept.into();
    }
    let mut out = vec![0u8; kept.len()];
    for (i, b) in kept.iter().enumerate() {
        out[i] = b >> bits;
        if i > 0 {
            out[i] |= kept[i - 1] << (8 - bits);
        }
    }
    out.into()
}

/// A private scalar as `field` big-endian bytes: shorter integers are left-padded (some
/// importers strip leading zeros).
fn full_bytes(scalar: &[u8], field: usize) -> Result<Zeroizing<Vec<u8>>> {
    if scalar.len() > field || scalar.is_empty() {
        return Err(Error::KeySizeRange);
    }
    let mut full = Zeroizing::new(vec![0u8; field]);
    full[field - scalar.len()..].copy_from_slice(scalar);
    Ok(full)
}

/// ECDSA, ECDH and PKCS#8 on one more NIST curve through its RustCrypto crate.
macro_rules! nist_curve {
    ($module:ident, $krate:ident, $field:expr, $order_bits:expr) => {
        pub mod $module {
            use super::{full_bytes, leftmost_bits, padded_digest};
            use crate::error::{Error, Result};
            use zeroize::Zeroizing;
            use $krate::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
            use $krate::ecdsa::{Signature, SigningKey, VerifyingKey};
            use $krate::pkcs8::{DecodePrivateKey, EncodePrivateKey};

            /// The field's length in bytes.
            pub const FIELD: usize = $field;

            fn key(scalar: &[u8]) -> Result<SigningKey> {
                SigningKey::from_slice(&full_bytes(scalar, FIELD)?).map_err(|_| Error::KeySizeRange)
            }

            /// A new private scalar from the OS generator (the crate's rejection sampling).
            pub fn random_scalar() -> Zeroizing<Vec<u8>> {
                // A secret key, not a signing key: that would compute its public point too.
                Zeroizing::new(
                    $krate::SecretKey::random(&mut rand_core::OsRng)
                        .to_bytes()
                        .to_vec(),
                )
            }

            /// A new key pair: (private scalar, uncompressed public point).
            pub fn generate() -> (Zeroizing<Vec<u8>>, Vec<u8>) {
                let sk = SigningKey::random(&mut rand_core::OsRng);
                let point = VerifyingKey::from(&sk)
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                (Zeroizing::new(sk.to_bytes().to_vec()), point)
            }

            /// Checks a private scalar and returns its public point.
            pub fn public_of(scalar: &[u8]) -> Result<Vec<u8>> {
                Ok(VerifyingKey::from(&key(scalar)?)
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec())
            }

            /// Deterministic ECDSA (RFC 6979) over a digest: `r‖s`.
            pub fn sign_prehash(scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
                let digest = leftmost_bits(digest, $order_bits);
                let digest = padded_digest(&digest, FIELD)?;
                let sig: Signature = key(scalar)?
                    .sign_prehash(&digest)
                    .map_err(|_| Error::DataLenRange)?;
                Ok(sig.to_bytes().to_vec())
            }

            pub fn verify_prehash(point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
                if sig.len() != 2 * FIELD {
                    return Err(Error::SignatureLenRange);
                }
                let vk = VerifyingKey::from_sec1_bytes(point).map_err(|_| Error::KeyTypeInconsistent)?;
                let sig = Signature::from_slice(sig).map_err(|_| Error::SignatureInvalid)?;
                let digest = leftmost_bits(digest, $order_bits);
                let digest = padded_digest(&digest, FIELD).map_err(|_| Error::SignatureInvalid)?;
                vk.verify_prehash(&digest, &sig)
                    .map_err(|_| Error::SignatureInvalid)
            }

            /// ECDH: the x-coordinate of the shared point (`CKD_NULL`).
            pub fn ecdh(scalar: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
                let secret =
                    $krate::SecretKey::from_slice(&full_bytes(scalar, FIELD)?).map_err(|_| Error::KeySizeRange)?;
                let pk = $krate::PublicKey::from_sec1_bytes(peer).map_err(|_| Error::MechanismParamInvalid)?;
                let shared = $krate::ecdh::diffie_hellman(secret.to_nonzero_scalar(), pk.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }

            /// The private key as PKCS#8 (for wrapping).
            pub fn to_pkcs8(scalar: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
                let sk =
                    $krate::SecretKey::from_slice(&full_bytes(scalar, FIELD)?).map_err(|_| Error::KeyNotWrappable)?;
                let der = sk.to_pkcs8_der().map_err(|_| Error::KeyNotWrappable)?;
                Ok(Zeroizing::new(der.as_bytes().to_vec()))
            }

            /// The private scalar of a PKCS#8 key of this curve, if it is one.
            pub fn from_pkcs8(der: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
                let sk = $krate::SecretKey::from_pkcs8_der(der).ok()?;
                Some(Zeroizing::new(sk.to_bytes().to_vec()))
            }
        }
    };
}

nist_curve!(p384c, p384, 48, 384);
nist_curve!(p521c, p521, 66, 521);

/// A new key pair on a NIST curve: (private scalar, uncompressed public point).
pub fn generate(curve: Curve) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    match curve {
        Curve::P256 => Ok(p256_generate()),
        Curve::P384 => Ok(p384c::generate()),
        Curve::P521 => Ok(p521c::generate()),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::CurveNotSupported),
    }
}

/// A new private scalar on a NIST curve, from the OS generator through the curve's crate (a
/// provider that multiplies faster computes the public point: [`crate::crypto::provider`]).
pub fn random_scalar(curve: Curve) -> Result<Zeroizing<Vec<u8>>> {
    match curve {
        Curve::P256 => Ok(Zeroizing::new(p256::SecretKey::random(&mut OsRng).to_bytes().to_vec())),
        Curve::P384 => Ok(p384c::random_scalar()),
        Curve::P521 => Ok(p521c::random_scalar()),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::CurveNotSupported),
    }
}

/// Checks a NIST-curve private scalar and returns its public point.
pub fn public_of(curve: Curve, scalar: &[u8]) -> Result<Vec<u8>> {
    match curve {
        Curve::P256 => p256_public_of(scalar),
        Curve::P384 => p384c::public_of(scalar),
        Curve::P521 => p521c::public_of(scalar),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::CurveNotSupported),
    }
}

/// ECDSA over a digest on a NIST curve, with the RustCrypto crates (P-256's provider path is
/// `crypto::provider`): `r‖s`.
pub fn sign_prehash(curve: Curve, scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
    match curve {
        Curve::P256 => p256_sign_prehash(scalar, digest),
        Curve::P384 => p384c::sign_prehash(scalar, digest),
        Curve::P521 => p521c::sign_prehash(scalar, digest),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::KeyTypeInconsistent),
    }
}

/// Checks `r‖s` over a digest on a NIST curve.
pub fn verify_prehash(curve: Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
    match curve {
        Curve::P256 => p256_verify_prehash(point, digest, sig),
        Curve::P384 => p384c::verify_prehash(point, digest, sig),
        Curve::P521 => p521c::verify_prehash(point, digest, sig),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::KeyTypeInconsistent),
    }
}

/// ECDH on a NIST curve (`CKD_NULL`).
pub fn ecdh(curve: Curve, scalar: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    match curve {
        Curve::P256 => p256_ecdh(scalar, peer),
        Curve::P384 => p384c::ecdh(scalar, peer),
        Curve::P521 => p521c::ecdh(scalar, peer),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::CurveNotSupported),
    }
}

/// A NIST-curve private key as PKCS#8.
pub fn to_pkcs8(curve: Curve, scalar: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    use p256::pkcs8::EncodePrivateKey;
    match curve {
        Curve::P256 => {
            let sk = p256::SecretKey::from_slice(scalar).map_err(|_| Error::KeyNotWrappable)?;
            let der = sk.to_pkcs8_der().map_err(|_| Error::KeyNotWrappable)?;
            Ok(Zeroizing::new(der.as_bytes().to_vec()))
        }
        Curve::P384 => p384c::to_pkcs8(scalar),
        Curve::P521 => p521c::to_pkcs8(scalar),
        Curve::Ed25519 | Curve::Ed448 | Curve::X25519 => Err(Error::KeyNotWrappable),
    }
}

/// The curve and private scalar of a PKCS#8 NIST-curve key.
pub fn from_pkcs8(der: &[u8]) -> Option<(Curve, Zeroizing<Vec<u8>>)> {
    use p256::pkcs8::DecodePrivateKey;
    if let Ok(sk) = p256::SecretKey::from_pkcs8_der(der) {
        return Some((Curve::P256, Zeroizing::new(sk.to_bytes().to_vec())));
    }
    p384c::from_pkcs8(der)
        .map(|k| (Curve::P384, k))
        .or_else(|| p521c::from_pkcs8(der).map(|k| (Curve::P521, k)))
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

/// ECDSA over a caller-supplied digest (`CKM_ECDSA`): `r‖s`, 64 bytes.
pub fn p256_sign_prehash(scalar: &[u8], digest: &[u8]) -> Result<Vec<u8>> {
    let digest = &*padded_digest(digest, 32)?;
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
    let digest = padded_digest(digest, 32).map_err(|_| Error::SignatureInvalid)?;
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

    /// P-384 and P-521: a generated key's public point checks, signatures verify (and not
    /// over another digest), ECDH agrees both ways, and PKCS#8 gives back the curve and scalar.
    #[test]
    fn p384_and_p521_round_trips() {
        for curve in [Curve::P384, Curve::P521] {
            let (a, pa) = generate(curve).unwrap();
            let (b, pb) = generate(curve).unwrap();
            assert_eq!(pa.len(), curve.point_len());
            assert_eq!(raw_point(curve, &der_octet_string(&pa).unwrap()).unwrap(), pa);
            assert_eq!(public_of(curve, &a).unwrap(), pa);
            for digest in [&[3u8; 32][..], &[4u8; 48], &[5u8; 64], b"HI BOB!"] {
                let sig = sign_prehash(curve, &a, digest).unwrap();
                verify_prehash(curve, &pa, digest, &sig).unwrap();
                assert_eq!(verify_prehash(curve, &pb, digest, &sig), Err(Error::SignatureInvalid));
            }
            assert_eq!(*ecdh(curve, &a, &pb).unwrap(), *ecdh(curve, &b, &pa).unwrap());
            let der = to_pkcs8(curve, &a).unwrap();
            let (c, scalar) = from_pkcs8(&der).unwrap();
            assert_eq!((c, &scalar[..]), (curve, &a[..]));
            assert_eq!(curve_from_params(curve.oid()), Ok(curve));
        }
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
