//! `keygate import`: an existing key or certificate from a file into a token, as
//! `softhsm2-util --import` does, through the token layer's object creation (the token's
//! attribute rules and policy apply; the act is audited as "keygate import").
//!
//! Read, as PEM or DER: PKCS#8 private keys (EC, Ed25519, RSA), SEC 1 EC and PKCS#1 RSA private
//! keys, SubjectPublicKeyInfo public keys, X.509 certificates; with `--aes`, a raw AES key (16,
//! 24 or 32 bytes, or those bytes in hex). A private key is imported with its public key, both
//! under one `CKA_ID`: the one given, else SHA-1 of the public key's value (the EC point, the
//! Ed25519 key, the RSA modulus), the convention NSS and OpenSC use, so that a certificate
//! imported later finds its key without an `--id`.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use keygate_pkcs11::config::Config;
use keygate_pkcs11::model::attributes::{attr, class, key_type, AttrMap};
use keygate_pkcs11::token::provider::Provider;
use pkcs11_sys as ck;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// `keygate import`.
pub fn run(cfg: &Config, a: crate::cli::ImportArgs) -> Result<(), String> {
    let bytes = Zeroizing::new(std::fs::read(&a.file).map_err(|e| format!("cannot read {}: {e}", a.file.display()))?);
    let parsed = parse(&bytes, a.aes).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let id = match &a.id {
        Some(h) => hex::decode(h.replace(':', "")).map_err(|_| format!("--id {h:?} is not hex"))?,
        None => parsed.default_id.clone().unwrap_or_default(),
    };
    let templates: Vec<AttrMap> = parsed
        .templates
        .into_iter()
        .map(|mut t| {
            let secret = matches!(t.class(), Ok(class::PRIVATE_KEY | class::SECRET_KEY));
            t.set_bool(attr::TOKEN, true);
            t.set_bool(attr::PRIVATE, secret);
            t.set(attr::LABEL, a.label.as_bytes().to_vec());
            t.set(attr::ID, id.clone());
            t
        })
        .collect();
    let pin = crate::admin::Pins::new().get(&a.pin_env, "user PIN")?;
    let p = Provider::for_program(cfg);
    let token = &a.token;
    let h = p
        .admin_session(token, &pin)
        .map_err(|e| format!("login to {token:?} failed: {e}"))?;
    let made = p.import_objects(h, templates);
    p.end_admin_session(h);
    made.map_err(|e| format!("token {token:?} refused the {}: {e}", parsed.what))?;
    println!(
        "imported the {} into {token:?}: label {:?}, CKA_ID {}",
        parsed.what,
        a.label,
        hex::encode(&id)
    );
    Ok(())
}

/// What a file holds, as the objects to create: (what it is, the templates, less label and id).
pub struct Parsed {
    pub what: String,
    pub templates: Vec<AttrMap>,
    /// SHA-1 of the public key's value, the default `CKA_ID`; none for an AES key.
    pub default_id: Option<Vec<u8>>,
}

/// The objects a file holds. `aes` reads it as a raw AES key.
pub fn parse(bytes: &[u8], aes: bool) -> Result<Parsed, String> {
    if aes {
        return aes_key(bytes);
    }
    if let Some((label, der)) = pem(bytes)? {
        return match label.as_str() {
            "PRIVATE KEY" => pkcs8(&der),
            "EC PRIVATE KEY" => sec1(&der, None),
            "RSA PRIVATE KEY" => pkcs1(&der),
            "PUBLIC KEY" => spki(&der),
            "CERTIFICATE" => certificate(&der),
            "ENCRYPTED PRIVATE KEY" => Err(
                "the private key is encrypted with a password; decrypt it first (openssl pkcs8 -in FILE), \
                 keeping the output where only you can read it"
                    .into(),
            ),
            other => Err(format!(
                "a PEM block labelled {other:?} is not a key or certificate keygate imports"
            )),
        };
    }
    certificate(bytes)
        .or_else(|_| pkcs8(bytes))
        .or_else(|_| spki(bytes))
        .or_else(|_| sec1(bytes, None))
        .or_else(|_| pkcs1(bytes))
        .map_err(|_| {
            "the file is not a PEM or DER key or certificate keygate reads (PKCS#8, SEC 1, PKCS#1, \
             SubjectPublicKeyInfo, X.509); for a raw AES key give --aes"
                .to_string()
        })
}

/// A PEM block's label and its DER.
type Pem = (String, Zeroizing<Vec<u8>>);

/// The label and DER of a PEM file, or none when it is not PEM.
fn pem(bytes: &[u8]) -> Result<Option<Pem>, String> {
    let text = String::from_utf8_lossy(bytes);
    let Some(start) = text.find("-----BEGIN ") else {
        return Ok(None);
    };
    let (label, der) = der::pem::decode_vec(text[start..].trim_end().as_bytes())
        .map_err(|e| format!("the PEM file cannot be read: {e}"))?;
    Ok(Some((label.to_string(), Zeroizing::new(der))))
}

fn aes_key(bytes: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    let raw = match hex::decode(text) {
        Ok(v) if !text.is_empty() => Zeroizing::new(v),
        _ => Zeroizing::new(bytes.to_vec()),
    };
    if ![16, 24, 32].contains(&raw.len()) {
        return Err(format!(
            "an AES key is 16, 24 or 32 bytes (or as many in hex); the file holds {}",
            raw.len()
        ));
    }
    let mut t = AttrMap::new();
    t.set_ulong(attr::CLASS, class::SECRET_KEY);
    t.set_ulong(attr::KEY_TYPE, key_type::AES);
    t.set(attr::VALUE, raw.to_vec());
    t.set_bool(attr::ENCRYPT, true);
    t.set_bool(attr::DECRYPT, true);
    Ok(Parsed {
        what: format!("AES-{} key", raw.len() * 8),
        templates: vec![t],
        default_id: None,
    })
}

fn pkcs8(der: &[u8]) -> Result<Parsed, String> {
    let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
    let oid = info.algorithm.oid;
    if oid == EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| "the EC key names no curve".to_string())?;
        sec1(info.private_key, Some(curve))
    } else if oid == ED25519 {
        let seed = Zeroizing::new(
            OctetString::from_der(info.private_key)
                .map_err(|e| format!("the Ed25519 key cannot be read: {e}"))?
                .into_bytes(),
        );
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| "an Ed25519 private key is 32 bytes".to_string())?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Ok(pair(
            "Ed25519 key pair",
            key_type::EC_EDWARDS,
            &ED25519.to_der().map_err(|e| e.to_string())?,
            seed.to_vec(),
            &public,
        ))
    } else if oid == RSA_ENCRYPTION {
        pkcs1(info.private_key)
    } else {
        Err(format!("keygate does not import private keys of algorithm {oid}"))
    }
}

/// A SEC 1 EC private key; `curve` from the PKCS#8 wrapper when the key itself names none.
fn sec1(der: &[u8], curve: Option<ObjectIdentifier>) -> Result<Parsed, String> {
    let key = sec1::EcPrivateKey::from_der(der).map_err(|e| format!("not an EC private key: {e}"))?;
    let curve = key
        .parameters
        .and_then(|p| p.named_curve())
        .or(curve)
        .ok_or("the EC key names no curve")?;
    let point = match key.public_key {
        Some(p) => p.to_vec(),
        None if curve == P256 => {
            let s = p256::SecretKey::from_slice(key.private_key).map_err(|_| "the P-256 key is not valid")?;
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&s.public_key(), false)
                .as_bytes()
                .to_vec()
        }
        None => return Err(format!("the key file holds no public key for curve {curve}")),
    };
    Ok(pair(
        &format!("EC key pair ({})", curve_name(curve)),
        key_type::EC,
        &curve.to_der().map_err(|e| e.to_string())?,
        key.private_key.to_vec(),
        &point,
    ))
}

fn pkcs1(der: &[u8]) -> Result<Parsed, String> {
    let k = pkcs1::RsaPrivateKey::from_der(der).map_err(|e| format!("not an RSA private key: {e}"))?;
    let mut private = AttrMap::new();
    private.set_ulong(attr::CLASS, class::PRIVATE_KEY);
    private.set_ulong(attr::KEY_TYPE, key_type::RSA);
    for (t, v) in [
        (ck::CKA_MODULUS, k.modulus),
        (ck::CKA_PUBLIC_EXPONENT, k.public_exponent),
        (ck::CKA_PRIVATE_EXPONENT, k.private_exponent),
        (ck::CKA_PRIME_1, k.prime1),
        (ck::CKA_PRIME_2, k.prime2),
        (ck::CKA_EXPONENT_1, k.exponent1),
        (ck::CKA_EXPONENT_2, k.exponent2),
        (ck::CKA_COEFFICIENT, k.coefficient),
    ] {
        private.set(t, v.as_bytes().to_vec());
    }
    private.set_bool(attr::SIGN, true);
    let public = rsa_public(k.modulus.as_bytes(), k.public_exponent.as_bytes());
    Ok(Parsed {
        what: format!("RSA-{} key pair", k.modulus.as_bytes().len() * 8),
        templates: vec![private, public],
        default_id: Some(Sha1::digest(k.modulus.as_bytes()).to_vec()),
    })
}

fn rsa_public(modulus: &[u8], exponent: &[u8]) -> AttrMap {
    let mut t = AttrMap::new();
    t.set_ulong(attr::CLASS, class::PUBLIC_KEY);
    t.set_ulong(attr::KEY_TYPE, key_type::RSA);
    t.set(ck::CKA_MODULUS, modulus.to_vec());
    t.set(ck::CKA_PUBLIC_EXPONENT, exponent.to_vec());
    t.set_bool(attr::VERIFY, true);
    t
}

/// A private key and its public key, for the EC and EdDSA key types.
fn pair(what: &str, kt: u64, params: &[u8], value: Vec<u8>, point: &[u8]) -> Parsed {
    let mut private = AttrMap::new();
    private.set_ulong(attr::CLASS, class::PRIVATE_KEY);
    private.set_ulong(attr::KEY_TYPE, kt);
    private.set(attr::EC_PARAMS, params.to_vec());
    private.set(attr::VALUE, value);
    private.set_bool(attr::SIGN, true);
    let mut public = ec_public(kt, params, point);
    public.set_bool(attr::VERIFY, true);
    Parsed {
        what: what.into(),
        templates: vec![private, public],
        default_id: Some(Sha1::digest(point).to_vec()),
    }
}

fn ec_public(kt: u64, params: &[u8], point: &[u8]) -> AttrMap {
    let mut t = AttrMap::new();
    t.set_ulong(attr::CLASS, class::PUBLIC_KEY);
    t.set_ulong(attr::KEY_TYPE, kt);
    t.set(attr::EC_PARAMS, params.to_vec());
    // CKA_EC_POINT is the point as a DER OCTET STRING (PKCS#11 3.0 §2.3.3).
    t.set(
        attr::EC_POINT,
        OctetString::new(point).and_then(|o| o.to_der()).unwrap_or_default(),
    );
    t
}

fn curve_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10045.3.1.7" => "P-256".into(),
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        other => other.into(),
    }
}

/// A public key, for the given SubjectPublicKeyInfo; (what it is, its template, its id).
fn public_of(info: &spki::SubjectPublicKeyInfoRef<'_>) -> Result<(String, AttrMap, Vec<u8>), String> {
    let oid = info.algorithm.oid;
    let bits = info.subject_public_key.raw_bytes();
    if oid == EC_PUBLIC_KEY {
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| "the EC key names no curve".to_string())?;
        let t = ec_public(key_type::EC, &curve.to_der().map_err(|e| e.to_string())?, bits);
        Ok((
            format!("EC public key ({})", curve_name(curve)),
            t,
            Sha1::digest(bits).to_vec(),
        ))
    } else if oid == ED25519 {
        let t = ec_public(
            key_type::EC_EDWARDS,
            &ED25519.to_der().map_err(|e| e.to_string())?,
            bits,
        );
        Ok(("Ed25519 public key".into(), t, Sha1::digest(bits).to_vec()))
    } else if oid == RSA_ENCRYPTION {
        let k = pkcs1::RsaPublicKey::from_der(bits).map_err(|e| format!("the RSA public key cannot be read: {e}"))?;
        let t = rsa_public(k.modulus.as_bytes(), k.public_exponent.as_bytes());
        let what = format!("RSA-{} public key", k.modulus.as_bytes().len() * 8);
        Ok((what, t, Sha1::digest(k.modulus.as_bytes()).to_vec()))
    } else {
        Err(format!("keygate does not import public keys of algorithm {oid}"))
    }
}

fn spki(der: &[u8]) -> Result<Parsed, String> {
    let info = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("not a public key: {e}"))?;
    let (what, mut t, id) = public_of(&info)?;
    t.set_bool(attr::VERIFY, true);
    Ok(Parsed {
        what,
        templates: vec![t],
        default_id: Some(id),
    })
}

fn certificate(der: &[u8]) -> Result<Parsed, String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let spki_der = tbs.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    let info = spki::SubjectPublicKeyInfoRef::from_der(&spki_der).map_err(|e| e.to_string())?;
    let id = public_of(&info).map(|(_, _, id)| id).ok();
    let mut t = AttrMap::new();
    t.set_ulong(attr::CLASS, class::CERTIFICATE);
    t.set_ulong(attr::CERTIFICATE_TYPE, ck::CKC_X_509);
    t.set(attr::VALUE, der.to_vec());
    t.set(attr::SUBJECT, tbs.subject.to_der().map_err(|e| e.to_string())?);
    t.set(attr::ISSUER, tbs.issuer.to_der().map_err(|e| e.to_string())?);
    t.set(
        attr::SERIAL_NUMBER,
        tbs.serial_number.to_der().map_err(|e| e.to_string())?,
    );
    Ok(Parsed {
        what: format!("X.509 certificate for {}", tbs.subject),
        templates: vec![t],
        default_id: id,
    })
}
