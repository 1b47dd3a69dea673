//! Key pinning (DESIGN.md §5): the configuration ties a label or `CKA_ID` to one key's
//! fingerprint, so an identifier cannot be redirected to another key — the substitution attack
//! in which someone with access to the HSM adds a key of their own under a name the application
//! looks up.
//!
//! Fingerprints:
//! - a public key: SHA-256 of its DER `SubjectPublicKeyInfo`, the value
//!   `openssl pkey -pubin -outform DER | sha256sum` prints for it;
//! - a private key: its public key's. keygate proves the private key belongs to it by signing a
//!   random challenge with it and verifying with a public key object of the same identifier that
//!   carries the pinned fingerprint (once per key per process). An RSA private key that cannot
//!   sign is matched by its modulus and exponent instead: with the pinned modulus it is the
//!   pinned key or computes nothing useful;
//! - a secret key: its key check value, `CKA_CHECK_VALUE` (the first 3 bytes of AES-ECB of a
//!   zero block for AES; of SHA-1 of the value for generic secrets), which the HSM computes and
//!   which keygate computes the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::backend::{Backend, ObjectId};
use crate::config::PinConfig;
use crate::crypto::ec;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, key_type, AttrMap};
use crate::model::mechanisms::{DigestAlg, Mechanism};

/// What a pin says a key must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fingerprint {
    /// SHA-256 of the public key's DER SubjectPublicKeyInfo.
    Sha256([u8; 32]),
    /// A secret key's check value.
    Kcv(Vec<u8>),
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fingerprint::Sha256(h) => write!(f, "sha256:{}", hex::encode(h)),
            Fingerprint::Kcv(k) => write!(f, "kcv:{}", hex::encode(k)),
        }
    }
}

impl Fingerprint {
    /// The key in the configuration that holds this kind of fingerprint.
    pub fn config_key(&self) -> &'static str {
        match self {
            Fingerprint::Sha256(_) => "sha256",
            Fingerprint::Kcv(_) => "kcv",
        }
    }
    /// The value as the configuration writes it.
    pub fn hex(&self) -> String {
        match self {
            Fingerprint::Sha256(h) => hex::encode(h),
            Fingerprint::Kcv(k) => hex::encode(k),
        }
    }
}

/// What a key can be fingerprinted by from its attributes alone: a public key, an RSA private
/// key (it carries its public part) and a secret key with a check value. An EC or Edwards
/// private key has none: it takes its public key's.
pub fn of_attrs(attrs: &AttrMap) -> Option<Fingerprint> {
    match attrs.class().ok()? {
        class::SECRET_KEY => attrs
            .get(attr::CHECK_VALUE)
            .filter(|v| !v.is_empty())
            .map(|v| Fingerprint::Kcv(v.to_vec())),
        class::PUBLIC_KEY | class::PRIVATE_KEY => spki(attrs).map(|d| Fingerprint::Sha256(Sha256::digest(d).into())),
        _ => None,
    }
}

/// The DER `SubjectPublicKeyInfo` of a public key (or of an RSA private key's public part).
pub fn spki(attrs: &AttrMap) -> Option<Vec<u8>> {
    use der::asn1::{Any, BitString, ObjectIdentifier, UintRef};
    use der::{Decode, Encode};
    use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    const X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
    const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
    let algorithm = |oid, parameters| AlgorithmIdentifierOwned { oid, parameters };
    let (algorithm, key) = match attrs.key_type()? {
        key_type::RSA => {
            let rsa = pkcs1::RsaPublicKey {
                modulus: UintRef::new(attrs.get(attr::MODULUS)?).ok()?,
                public_exponent: UintRef::new(attrs.get(attr::PUBLIC_EXPONENT)?).ok()?,
            };
            (algorithm(RSA_ENCRYPTION, Some(Any::null())), rsa.to_der().ok()?)
        }
        key_type::EC if attrs.class().ok()? == class::PUBLIC_KEY => {
            let params = attrs.get(attr::EC_PARAMS)?;
            let point = attrs.get(attr::EC_POINT)?;
            // The curve as its OID (a curve given by name is written as one); another curve an HSM
            // knows is taken as its `CKA_EC_PARAMS` if that is an OID.
            let (curve, raw) = match ec::curve_from_params(params) {
                Ok(c) if c.is_nist() => (c.oid(), ec::raw_point(c, point).ok()?),
                Ok(_) => return None,
                Err(_) => (params, ec::strip_octet_string(point).to_vec()),
            };
            let curve = ObjectIdentifier::from_der(curve).ok()?;
            (algorithm(EC_PUBLIC_KEY, Some(Any::from(curve))), raw)
        }
        key_type::EC_EDWARDS if attrs.class().ok()? == class::PUBLIC_KEY => {
            let curve = attrs
                .get(attr::EC_PARAMS)
                .map_or(Ok(ec::Curve::Ed25519), ec::curve_from_params)
                .ok()?;
            let oid = match curve {
                ec::Curve::Ed25519 => ED25519,
                ec::Curve::Ed448 => ED448,
                _ => return None,
            };
            (
                algorithm(oid, None),
                ec::raw_point(curve, attrs.get(attr::EC_POINT)?).ok()?,
            )
        }
        key_type::EC_MONTGOMERY if attrs.class().ok()? == class::PUBLIC_KEY => {
            let raw = ec::raw_point(ec::Curve::X25519, attrs.get(attr::EC_POINT)?).ok()?;
            (algorithm(X25519, None), raw)
        }
        _ => return None,
    };
    SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: BitString::from_bytes(&key).ok()?,
    }
    .to_der()
    .ok()
}

/// Which objects a pin is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Label(Vec<u8>),
    Id(Vec<u8>),
}

impl Ident {
    fn matches(&self, attrs: &AttrMap) -> bool {
        match self {
            Ident::Label(l) => attrs.get(attr::LABEL) == Some(l.as_slice()),
            Ident::Id(i) => attrs.get(attr::ID) == Some(i.as_slice()),
        }
    }
    fn attribute(&self) -> (u64, &[u8]) {
        match self {
            Ident::Label(l) => (attr::LABEL, l),
            Ident::Id(i) => (attr::ID, i),
        }
    }
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ident::Label(l) => write!(f, "label {:?}", String::from_utf8_lossy(l)),
            Ident::Id(i) => write!(f, "CKA_ID {}", hex::encode(i)),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    ident: Ident,
    want: Fingerprint,
}

/// Hex as the configuration writes it: either case, colons allowed.
fn unhex(s: &str) -> std::result::Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| *c != ':').collect();
    hex::decode(clean).map_err(|_| format!("{s:?} is not hex"))
}

fn entry(p: &PinConfig) -> std::result::Result<Entry, String> {
    let ident = match (&p.label, &p.id) {
        (Some(l), None) => Ident::Label(l.as_bytes().to_vec()),
        (None, Some(i)) => Ident::Id(unhex(i)?),
        _ => return Err("a pin names exactly one of `label` or `id`".into()),
    };
    let want = match (&p.sha256, &p.kcv) {
        (Some(h), None) => Fingerprint::Sha256(
            unhex(h.strip_prefix("sha256:").unwrap_or(h))?
                .try_into()
                .map_err(|_| format!("pin for {ident}: `sha256` must be 32 bytes"))?,
        ),
        (None, Some(k)) => {
            let k = unhex(k.strip_prefix("kcv:").unwrap_or(k))?;
            if k.is_empty() || k.len() > 32 {
                return Err(format!("pin for {ident}: `kcv` must be 1 to 32 bytes"));
            }
            Fingerprint::Kcv(k)
        }
        _ => return Err(format!("pin for {ident}: give exactly one of `sha256` or `kcv`")),
    };
    Ok(Entry { ident, want })
}

/// Internal session numbers for the proof of possession, counting down from the top, far from
/// the application's (from 1) and the CLI's (0).
static PROOF_SESSION: AtomicU64 = AtomicU64::new(u64::MAX);

/// One token's pins.
#[derive(Debug, Default)]
pub struct Pins {
    token: String,
    entries: Vec<Entry>,
    /// Private keys whose possession of the pinned key was proven, with that fingerprint.
    proven: Mutex<HashMap<ObjectId, [u8; 32]>>,
}

impl Pins {
    /// Refuses a malformed `pins` list, naming the token and the pin.
    pub fn check_config(token: &str, pins: &[PinConfig]) -> std::result::Result<(), String> {
        for p in pins {
            entry(p).map_err(|e| format!("token {token:?}: {e}"))?;
        }
        Ok(())
    }

    /// The pins of a configuration already checked ([`Pins::check_config`]).
    pub fn new(token: &str, pins: &[PinConfig]) -> Pins {
        Pins {
            token: token.to_string(),
            entries: pins.iter().filter_map(|p| entry(p).ok()).collect(),
            proven: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses a key that carries a pinned identifier but is not the pinned key
    /// (`CKR_KEY_FUNCTION_NOT_PERMITTED`, and an error line naming both fingerprints).
    pub fn check(&self, backend: &dyn Backend, id: &ObjectId, attrs: &AttrMap) -> Result<()> {
        for e in self.entries.iter().filter(|e| e.ident.matches(attrs)) {
            let found = of_attrs(attrs);
            let ok = match (attrs.class()?, &e.want) {
                (class::SECRET_KEY | class::PUBLIC_KEY, want) => found.as_ref() == Some(want),
                (class::PRIVATE_KEY, Fingerprint::Sha256(want)) => {
                    (found.is_none() || found == Some(e.want.clone())) && self.proven(backend, id, attrs, e, want)
                }
                _ => false,
            };
            if !ok {
                log::error!(
                    "token {:?}: the key with {} is not the pinned key (pinned {}, found {}): refused; a key may have been substituted",
                    self.token,
                    e.ident,
                    e.want,
                    match (found, attrs.class()?) {
                        (Some(f), _) => f.to_string(),
                        (None, class::PRIVATE_KEY) => "a private key that did not prove it holds the pinned key".into(),
                        (None, _) => "no fingerprint of that kind".into(),
                    }
                );
                return Err(Error::KeyFunctionNotPermitted);
            }
        }
        Ok(())
    }

    /// The fingerprint a pin holds for a key with this identifier, if one is pinned and the key
    /// was proven (for the audit trail of EC and Edwards private keys).
    pub fn proven_fingerprint(&self, id: &ObjectId) -> Option<Fingerprint> {
        self.proven.lock().get(id).map(|h| Fingerprint::Sha256(*h))
    }

    /// Whether the private key `id` holds the key pinned as `want`.
    fn proven(&self, backend: &dyn Backend, id: &ObjectId, attrs: &AttrMap, e: &Entry, want: &[u8; 32]) -> bool {
        if self.proven.lock().get(id) == Some(want) {
            return true;
        }
        let kt = attrs.key_type();
        if !attrs.flag(attr::SIGN) {
            // Matched by its public part above; an EC key carries none.
            if kt == Some(key_type::RSA) {
                self.proven.lock().insert(*id, *want);
                return true;
            }
            log::error!(
                "token {:?}: the private key with {} cannot sign, so keygate cannot prove it is the pinned key; pin a key that can sign, or its public key",
                self.token,
                e.ident
            );
            return false;
        }
        let session = PROOF_SESSION.fetch_sub(1, Ordering::Relaxed);
        if let Err(err) = backend.session_opened(session, false) {
            log::error!("token {:?}: cannot prove the pinned key: {err}", self.token);
            return false;
        }
        let r = self.challenge(backend, session, id, kt, e, want);
        backend.session_closed(session);
        match r {
            Ok(true) => {
                self.proven.lock().insert(*id, *want);
                true
            }
            Ok(false) => false,
            Err(err) => {
                log::error!("token {:?}: proving the key with {}: {err}", self.token, e.ident);
                false
            }
        }
    }

    /// Signs a random challenge with the private key and verifies it with a public key of the
    /// same identifier whose fingerprint is the pinned one.
    fn challenge(
        &self,
        backend: &dyn Backend,
        session: u64,
        id: &ObjectId,
        kt: Option<u64>,
        e: &Entry,
        want: &[u8; 32],
    ) -> Result<bool> {
        let mut template = AttrMap::new();
        template.set_ulong(attr::CLASS, class::PUBLIC_KEY);
        let (ty, value) = e.ident.attribute();
        template.set(ty, value.to_vec());
        let public = backend.find(session, &template, true)?.into_iter().find(|p| {
            backend
                .attributes(session, p)
                .ok()
                .and_then(|a| of_attrs(&a))
                .is_some_and(|f| f == Fingerprint::Sha256(*want))
        });
        let Some(public) = public else {
            log::error!(
                "token {:?}: no public key with {} and the pinned fingerprint on the token to prove the private key against",
                self.token,
                e.ident
            );
            return Ok(false);
        };
        let mech = match kt {
            Some(key_type::EC) => Mechanism::Ecdsa,
            Some(key_type::EC_EDWARDS) => Mechanism::Eddsa,
            Some(key_type::RSA) => Mechanism::RsaPkcsWith(DigestAlg::Sha256),
            _ => return Ok(false),
        };
        let mut challenge = [0u8; 32];
        backend.random(session, &mut challenge)?;
        let signature = backend.sign(session, &mech, id)?.once(&challenge)?;
        Ok(backend
            .verify(session, &mech, &public)?
            .once(&challenge, &signature)
            .is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_spki_is_what_the_p256_crate_writes() {
        use p256::pkcs8::EncodePublicKey;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        let mut a = AttrMap::new();
        a.set_ulong(attr::CLASS, class::PUBLIC_KEY);
        a.set_ulong(attr::KEY_TYPE, key_type::EC);
        a.set(attr::EC_PARAMS, ec::P256_OID.to_vec());
        a.set(attr::EC_POINT, ec::der_octet_string(&point).unwrap());
        let want = sk.verifying_key().to_public_key_der().unwrap();
        assert_eq!(spki(&a).unwrap(), want.as_bytes());
    }

    #[test]
    fn ed25519_and_rsa_spki_have_the_standard_layout() {
        let mut a = AttrMap::new();
        a.set_ulong(attr::CLASS, class::PUBLIC_KEY);
        a.set_ulong(attr::KEY_TYPE, key_type::EC_EDWARDS);
        a.set(attr::EC_PARAMS, ec::ED25519_OID.to_vec());
        a.set(attr::EC_POINT, vec![9u8; 32]);
        // RFC 8410: 30 2a 30 05 06 03 2b 65 70 03 21 00 ‖ key.
        let mut want = hex::decode("302a300506032b6570032100").unwrap();
        want.extend_from_slice(&[9u8; 32]);
        assert_eq!(spki(&a).unwrap(), want);

        let mut r = AttrMap::new();
        r.set_ulong(attr::CLASS, class::PRIVATE_KEY);
        r.set_ulong(attr::KEY_TYPE, key_type::RSA);
        r.set(attr::MODULUS, vec![0xc1; 256]);
        r.set(attr::PUBLIC_EXPONENT, vec![1, 0, 1]);
        let der = spki(&r).unwrap();
        // SEQ(len 0x122) { SEQ { rsaEncryption, NULL }, BIT STRING(0x10f) { 00 SEQ(0x10a) { INTEGER(0x101) 00 c1…, INTEGER 010001 } } }
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x22]);
        // SEQ { OID 1.2.840.113549.1.1.1, NULL }
        assert_eq!(&der[4..19], &hex::decode("300d06092a864886f70d0101010500").unwrap()[..]);
        assert_eq!(&der[19..24], &[0x03, 0x82, 0x01, 0x0f, 0x00]);
        assert_eq!(&der[24..33], &[0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01, 0x00]);
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 1, 0, 1]);
    }

    #[test]
    fn malformed_pins_are_refused_with_the_reason() {
        let pin = |label: Option<&str>, id: Option<&str>, sha: Option<&str>, kcv: Option<&str>| PinConfig {
            label: label.map(Into::into),
            id: id.map(Into::into),
            sha256: sha.map(Into::into),
            kcv: kcv.map(Into::into),
        };
        let good = "ab".repeat(32);
        assert!(Pins::check_config("t", &[pin(Some("k"), None, Some(&good), None)]).is_ok());
        assert!(Pins::check_config("t", &[pin(None, Some("01:02"), None, Some("A1B2C3"))]).is_ok());
        for (bad, why) in [
            (
                pin(Some("k"), Some("01"), Some(&good), None),
                "exactly one of `label` or `id`",
            ),
            (pin(Some("k"), None, Some("abcd"), None), "32 bytes"),
            (
                pin(Some("k"), None, Some(&good), Some("aa")),
                "exactly one of `sha256` or `kcv`",
            ),
            (pin(Some("k"), None, None, Some("zz")), "not hex"),
        ] {
            let e = Pins::check_config("t", &[bad]).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
