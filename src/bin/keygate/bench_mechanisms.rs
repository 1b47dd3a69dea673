//! `keygate bench` workloads for the mechanisms issue 19 added: ECDSA on P-384, AES-CBC over
//! 4 KiB, HMAC-SHA-256 over 64 bytes, and RSA-2048/3072 signing and verification. Each checks
//! the token's answer before it is timed, as the other workloads do: against the RustCrypto
//! crates, or for RSA (which has no RustCrypto crate in the product, see src/crypto/rsa.rs)
//! against OpenSSL's verification; tests/rsa.rs checks keygate's RSA with the `rsa` crate.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::Session;

use crate::bench::{aes_key, ck, plain, BenchResult, Prepared};

const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// `CKM_ECDSA` on P-384 over a 48-byte digest.
pub(crate) fn p384_sign<'a>(s: &Session) -> BenchResult<Prepared<'a>> {
    use p384::ecdsa::signature::hazmat::PrehashVerifier;
    let (public, private) = ck(
        s.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P384_OID.to_vec()), Attribute::Verify(true)],
            &[Attribute::Sign(true), Attribute::Sensitive(true)],
        ),
        "C_GenerateKeyPair (P-384)",
    )?;
    let point = match ck(s.get_attributes(public, &[AttributeType::EcPoint]), "CKA_EC_POINT")?.as_slice() {
        [Attribute::EcPoint(v)] if v.len() == 99 => v[2..].to_vec(),
        _ => return Err("CKA_EC_POINT is not a P-384 point in a DER OCTET STRING".into()),
    };
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|e| e.to_string())?;
    let digest = [0x5au8; 48];
    let sig = ck(s.sign(&Mechanism::Ecdsa, private, &digest), "C_Sign (ECDSA P-384)")?;
    let parsed = p384::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
    vk.verify_prehash(&digest, &parsed)
        .map_err(|_| "the P-384 signature does not verify".to_string())?;
    Ok(plain(Box::new(move |t, _| {
        ck(t.sign(&Mechanism::Ecdsa, private, &digest), "C_Sign").map(drop)
    })))
}

/// `CKM_AES_CBC` (no padding) over 4 KiB with a 256-bit key.
pub(crate) fn aes_cbc_4k<'a>(s: &Session) -> BenchResult<Prepared<'a>> {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let value = [0x42u8; 32];
    let iv = [0x24u8; 16];
    let key = aes_key(s, &value, &[Attribute::Encrypt(true), Attribute::Decrypt(true)])?;
    let data = vec![0x17u8; 4096];
    let ct = ck(s.encrypt(&Mechanism::AesCbc(iv), key, &data), "C_Encrypt (AES-CBC)")?;
    // The first two blocks, chained by hand with the aes crate.
    let cipher = aes::Aes256::new_from_slice(&value).map_err(|e| e.to_string())?;
    let mut prev = iv;
    for (i, chunk) in data.chunks(16).take(2).enumerate() {
        let mut block = aes::Block::default();
        block
            .iter_mut()
            .zip(chunk.iter().zip(prev.iter()))
            .for_each(|(b, (d, p))| *b = d ^ p);
        cipher.encrypt_block(&mut block);
        if block[..] != ct[16 * i..16 * (i + 1)] || ct.len() != data.len() {
            return Err("the token's AES-CBC is not AES-CBC".into());
        }
        prev.copy_from_slice(&block);
    }
    Ok(Prepared {
        step: Box::new(move |t, _| ck(t.encrypt(&Mechanism::AesCbc(iv), key, &data), "C_Encrypt").map(drop)),
        bytes_per_op: 4096,
        single_thread: false,
    })
}

/// `CKM_SHA256_HMAC` over 64 bytes with a 32-byte generic secret.
pub(crate) fn hmac_sha256_64<'a>(s: &Session) -> BenchResult<Prepared<'a>> {
    use hmac::Mac;
    let value = [0x0bu8; 32];
    let key = ck(
        s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Value(value.to_vec()),
            Attribute::Sign(true),
            Attribute::Token(false),
        ]),
        "C_CreateObject (HMAC key)",
    )?;
    let data = [0x61u8; 64];
    let tag = ck(s.sign(&Mechanism::Sha256Hmac, key, &data), "C_Sign (HMAC)")?;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&value).map_err(|e| e.to_string())?;
    m.update(&data);
    if tag != m.finalize().into_bytes().to_vec() {
        return Err("the token's HMAC is not HMAC-SHA-256".into());
    }
    Ok(Prepared {
        step: Box::new(move |t, _| ck(t.sign(&Mechanism::Sha256Hmac, key, &data), "C_Sign").map(drop)),
        bytes_per_op: 64,
        single_thread: false,
    })
}

/// `CKM_SHA256_RSA_PKCS` over 64 bytes with a new key of `bits` bits: signing (`verify` false)
/// or verifying one signature again and again.
pub(crate) fn rsa<'a>(s: &Session, bits: u64, verify: bool) -> BenchResult<Prepared<'a>> {
    let (public, private) = ck(
        s.generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::ModulusBits(bits.into()), Attribute::Verify(true)],
            &[Attribute::Sign(true), Attribute::Sensitive(true)],
        ),
        "C_GenerateKeyPair (RSA)",
    )?;
    let part = |t| match ck(s.get_attributes(public, &[t]), "the RSA public key")?.as_slice() {
        [Attribute::Modulus(v)] | [Attribute::PublicExponent(v)] => Ok(v.clone()),
        _ => Err("the RSA public key has no modulus or exponent".to_string()),
    };
    let (n, e) = (part(AttributeType::Modulus)?, part(AttributeType::PublicExponent)?);
    let msg = [0x5au8; 64];
    let sig = ck(
        s.sign(&Mechanism::Sha256RsaPkcs, private, &msg),
        "C_Sign (SHA256_RSA_PKCS)",
    )?;
    check_rsa(&n, &e, &msg, &sig)?;
    Ok(plain(if verify {
        Box::new(move |t, _| ck(t.verify(&Mechanism::Sha256RsaPkcs, public, &msg, &sig), "C_Verify"))
    } else {
        Box::new(move |t, _| ck(t.sign(&Mechanism::Sha256RsaPkcs, private, &msg), "C_Sign").map(drop))
    }))
}

#[cfg(feature = "openssl")]
fn check_rsa(n: &[u8], e: &[u8], msg: &[u8], sig: &[u8]) -> BenchResult<()> {
    use openssl::bn::BigNum;
    let rsa = openssl::rsa::Rsa::from_public_components(
        BigNum::from_slice(n).map_err(|e| e.to_string())?,
        BigNum::from_slice(e).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let key = openssl::pkey::PKey::from_rsa(rsa).map_err(|e| e.to_string())?;
    let mut v =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key).map_err(|e| e.to_string())?;
    match v.verify_oneshot(sig, msg) {
        Ok(true) => Ok(()),
        _ => Err("the RSA signature does not verify".into()),
    }
}

#[cfg(not(feature = "openssl"))]
fn check_rsa(_n: &[u8], _e: &[u8], _msg: &[u8], _sig: &[u8]) -> BenchResult<()> {
    Err("this build has no OpenSSL to check an RSA signature with".into())
}
