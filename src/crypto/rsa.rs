//! RSA of the self-managed token, through OpenSSL (cargo feature `openssl`).
//!
//! The pure-Rust `rsa` crate has an open timing advisory (RUSTSEC-2023-0071, "Marvin"): its
//! private-key operations leak through timing. OpenSSL's are blinded and constant-time, so RSA is
//! offered only in builds with OpenSSL, whatever `KEYGATE_CRYPTO_PROVIDER` says (the provider
//! choice is about speed; this is about having a safe implementation at all).
//!
//! A private key is held as a PKCS#1 `RSAPrivateKey` (DER, with every CRT part): that is the
//! secret the store seals. It is parsed into OpenSSL for each operation and freed after (OpenSSL
//! clears the private numbers when it frees them). Encoding and decoding use the `pkcs1` and
//! `pkcs8` crates into zeroising buffers, never OpenSSL's own DER writers, whose buffers are
//! freed without being cleared.

use der::{Decode, Encode};
use openssl::bn::{BigNum, BigNumRef};
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding as OsslPadding, Rsa};
use openssl::sign::RsaPssSaltlen;
use pkcs1::UintRef;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::mechanisms::DigestAlg;

/// The moduli keygate generates and accepts, in bits (the policy floor may raise the minimum).
pub const MIN_BITS: u64 = 2048;
pub const MAX_BITS: u64 = 8192;
/// The public exponent of a generated key when the template gives none.
pub const DEFAULT_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// The parts of a private key, big-endian unsigned, as PKCS#11 names them.
pub struct Components<'a> {
    pub modulus: &'a [u8],
    pub public_exponent: &'a [u8],
    pub private_exponent: &'a [u8],
    pub prime_1: &'a [u8],
    pub prime_2: &'a [u8],
    pub exponent_1: &'a [u8],
    pub exponent_2: &'a [u8],
    pub coefficient: &'a [u8],
}

impl<'a> Components<'a> {
    /// From the public part and the six secret parts in PKCS#1 order (private exponent, the
    /// two primes, the two CRT exponents, the coefficient).
    pub fn new(modulus: &'a [u8], public_exponent: &'a [u8], parts: &'a [Zeroizing<Vec<u8>>]) -> Result<Self> {
        let [d, p, q, dp, dq, qi] = parts else {
            return Err(Error::TemplateIncomplete("an RSA private key has six secret parts"));
        };
        Ok(Components {
            modulus,
            public_exponent,
            private_exponent: d,
            prime_1: p,
            prime_2: q,
            exponent_1: dp,
            exponent_2: dq,
            coefficient: qi,
        })
    }
}

/// One secret part of a private key (`CKA_PRIVATE_EXPONENT` … `CKA_COEFFICIENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    PrivateExponent,
    Prime1,
    Prime2,
    Exponent1,
    Exponent2,
    Coefficient,
}

/// A new key pair.
pub struct Generated {
    /// PKCS#1 `RSAPrivateKey`, DER.
    pub private: Zeroizing<Vec<u8>>,
    pub modulus: Vec<u8>,
    pub public_exponent: Vec<u8>,
}

fn md(alg: DigestAlg) -> &'static MdRef {
    alg.pick(Md::sha1(), Md::sha224(), Md::sha256(), Md::sha384(), Md::sha512())
}

/// The size of a modulus in bits (leading zero bytes ignored).
pub fn bits(modulus: &[u8]) -> u64 {
    let m = strip(modulus);
    m.len() as u64 * 8 - m.first().map_or(0, |b| u64::from(b.leading_zeros()))
}

fn strip(b: &[u8]) -> &[u8] {
    &b[b.iter().position(|x| *x != 0).unwrap_or(b.len())..]
}

fn check_bits(modulus: &[u8]) -> Result<()> {
    match bits(modulus) {
        b if (MIN_BITS..=MAX_BITS).contains(&b) => Ok(()),
        _ => Err(Error::KeySizeRange),
    }
}

/// A public exponent keygate generates with: odd and 2^16 < e < 2^256 (NIST SP 800-56B).
fn check_generation_exponent(e: &[u8]) -> Result<()> {
    let e = strip(e);
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if !odd || e.len() > 32 || e.len() < 3 || (e.len() == 3 && e[0] == 0) {
        return Err(Error::TemplateInconsistent(
            "CKA_PUBLIC_EXPONENT must be odd and between 2^16 and 2^256 (65537 is the default)",
        ));
    }
    Ok(())
}

/// A big-endian number out of OpenSSL into a zeroising buffer (written in place, no copy
/// left behind in OpenSSL's memory).
fn secret_bytes(n: &BigNumRef) -> Zeroizing<Vec<u8>> {
    // `to_vec` allocates the exact length in Rust and has OpenSSL write straight into it.
    Zeroizing::new(n.to_vec())
}

/// A new key pair of `bits` bits with public exponent `e`.
pub fn generate(bits: u64, e: &[u8]) -> Result<Generated> {
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(Error::KeySizeRange);
    }
    check_generation_exponent(e)?;
    let e = BigNum::from_slice(e).map_err(|_| Error::Crypto)?;
    let rsa = Rsa::generate_with_e(bits as u32, &e).map_err(|_| Error::Crypto)?;
    let parts = [
        rsa.d(),
        rsa.p().ok_or(Error::Crypto)?,
        rsa.q().ok_or(Error::Crypto)?,
        rsa.dmp1().ok_or(Error::Crypto)?,
        rsa.dmq1().ok_or(Error::Crypto)?,
        rsa.iqmp().ok_or(Error::Crypto)?,
    ]
    .map(secret_bytes);
    let modulus = rsa.n().to_vec();
    let public_exponent = rsa.e().to_vec();
    let private = encode(&Components::new(&modulus, &public_exponent, &parts)?)?;
    Ok(Generated {
        private,
        modulus,
        public_exponent,
    })
}

fn uint(b: &[u8]) -> Result<UintRef<'_>> {
    UintRef::new(strip(b)).map_err(|_| Error::Crypto)
}

fn encode(c: &Components) -> Result<Zeroizing<Vec<u8>>> {
    let key = pkcs1::RsaPrivateKey {
        modulus: uint(c.modulus)?,
        public_exponent: uint(c.public_exponent)?,
        private_exponent: uint(c.private_exponent)?,
        prime1: uint(c.prime_1)?,
        prime2: uint(c.prime_2)?,
        exponent1: uint(c.exponent_1)?,
        exponent2: uint(c.exponent_2)?,
        coefficient: uint(c.coefficient)?,
        other_prime_infos: None,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(
        key.encoded_len().map_err(|_| Error::Crypto)?.try_into().unwrap_or(0),
    ));
    key.encode_to_vec(&mut out).map_err(|_| Error::Crypto)?;
    Ok(out)
}

/// Checks an imported private key (every part must belong to the others: OpenSSL's
/// `RSA_check_key`) and returns its PKCS#1 encoding. Errors name the attribute to blame.
pub fn import(c: &Components) -> Result<Zeroizing<Vec<u8>>> {
    use crate::model::attributes::attr;
    check_bits(c.modulus)?;
    let n = |b: &[u8], ty| BigNum::from_slice(b).map_err(|_| Error::AttributeValueInvalid(ty));
    let rsa = Rsa::from_private_components(
        n(c.modulus, attr::MODULUS)?,
        n(c.public_exponent, attr::PUBLIC_EXPONENT)?,
        n(c.private_exponent, attr::PRIVATE_EXPONENT)?,
        n(c.prime_1, attr::PRIME_1)?,
        n(c.prime_2, attr::PRIME_2)?,
        n(c.exponent_1, attr::EXPONENT_1)?,
        n(c.exponent_2, attr::EXPONENT_2)?,
        n(c.coefficient, attr::COEFFICIENT)?,
    )
    .map_err(|_| Error::Crypto)?;
    if !rsa.check_key().unwrap_or(false) {
        return Err(Error::TemplateInconsistent(
            "the RSA key's parts do not belong together",
        ));
    }
    encode(c)
}

/// Checks a public key's modulus and exponent.
pub fn check_public(modulus: &[u8], e: &[u8]) -> Result<()> {
    use crate::model::attributes::attr;
    check_bits(modulus)?;
    let e = strip(e);
    if e.is_empty() || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
        return Err(Error::AttributeValueInvalid(attr::PUBLIC_EXPONENT));
    }
    if strip(modulus).last().is_some_and(|b| b & 1 == 0) {
        return Err(Error::AttributeValueInvalid(attr::MODULUS));
    }
    Ok(())
}

fn parsed(pkcs1: &[u8]) -> Result<pkcs1::RsaPrivateKey<'_>> {
    pkcs1::RsaPrivateKey::from_der(pkcs1).map_err(|_| Error::Crypto)
}

/// `(modulus, public exponent)` of a PKCS#1 private key.
pub fn public_of(pkcs1: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let k = parsed(pkcs1)?;
    Ok((k.modulus.as_bytes().to_vec(), k.public_exponent.as_bytes().to_vec()))
}

/// One secret part of a PKCS#1 private key, for an extractable key's `C_GetAttributeValue`.
pub fn part(pkcs1: &[u8], which: Part) -> Result<Zeroizing<Vec<u8>>> {
    let k = parsed(pkcs1)?;
    let v = match which {
        Part::PrivateExponent => k.private_exponent,
        Part::Prime1 => k.prime1,
        Part::Prime2 => k.prime2,
        Part::Exponent1 => k.exponent1,
        Part::Exponent2 => k.exponent2,
        Part::Coefficient => k.coefficient,
    };
    Ok(Zeroizing::new(v.as_bytes().to_vec()))
}

/// PKCS#8 `PrivateKeyInfo` (rsaEncryption) around a PKCS#1 key, for wrapping.
pub fn to_pkcs8(pkcs1: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    parsed(pkcs1).map_err(|_| Error::KeyNotWrappable)?;
    let info = pkcs8::PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, pkcs1);
    let mut out = Zeroizing::new(Vec::new());
    info.encode_to_vec(&mut out).map_err(|_| Error::KeyNotWrappable)?;
    Ok(out)
}

/// The PKCS#1 key inside a PKCS#8 RSA key, checked like an import; `None` when `der` is not
/// one.
pub fn from_pkcs8(der: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let info = pkcs8::PrivateKeyInfo::from_der(der).ok()?;
    if info.algorithm.oid != pkcs1::ALGORITHM_OID {
        return None;
    }
    let k = parsed(info.private_key).ok()?;
    if k.other_prime_infos.is_some() {
        return None;
    }
    import(&Components {
        modulus: k.modulus.as_bytes(),
        public_exponent: k.public_exponent.as_bytes(),
        private_exponent: k.private_exponent.as_bytes(),
        prime_1: k.prime1.as_bytes(),
        prime_2: k.prime2.as_bytes(),
        exponent_1: k.exponent1.as_bytes(),
        exponent_2: k.exponent2.as_bytes(),
        coefficient: k.coefficient.as_bytes(),
    })
    .ok()
}

fn private_key(pkcs1: &[u8]) -> Result<PKey<Private>> {
    let k = parsed(pkcs1)?;
    let n = |u: UintRef| BigNum::from_slice(u.as_bytes()).map_err(|_| Error::Crypto);
    let rsa = Rsa::from_private_components(
        n(k.modulus)?,
        n(k.public_exponent)?,
        n(k.private_exponent)?,
        n(k.prime1)?,
        n(k.prime2)?,
        n(k.exponent1)?,
        n(k.exponent2)?,
        n(k.coefficient)?,
    )
    .map_err(|_| Error::Crypto)?;
    PKey::from_rsa(rsa).map_err(|_| Error::Crypto)
}

fn public_key(modulus: &[u8], e: &[u8]) -> Result<PKey<Public>> {
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(modulus).map_err(|_| Error::KeyTypeInconsistent)?,
        BigNum::from_slice(e).map_err(|_| Error::KeyTypeInconsistent)?,
    )
    .map_err(|_| Error::KeyTypeInconsistent)?;
    PKey::from_rsa(rsa).map_err(|_| Error::KeyTypeInconsistent)
}

/// How a signature pads what it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigPadding {
    /// PKCS#1 v1.5. With a digest: the input is that digest, and the DigestInfo is added here;
    /// without (`CKM_RSA_PKCS`): the input is signed as given (a DigestInfo the caller made).
    Pkcs1(Option<DigestAlg>),
    /// PSS over a digest of `hash`, MGF1 with `mgf`, `salt` bytes of salt.
    Pss {
        hash: DigestAlg,
        mgf: DigestAlg,
        salt: usize,
    },
}

fn set_padding<T>(ctx: &mut PkeyCtx<T>, pad: &SigPadding, input_len: usize, k: usize) -> Result<()> {
    let e = |_| Error::Crypto;
    match *pad {
        SigPadding::Pkcs1(d) => {
            ctx.set_rsa_padding(OsslPadding::PKCS1).map_err(e)?;
            match d {
                Some(d) if input_len != d.output_len() => return Err(Error::DataLenRange),
                Some(d) => ctx.set_signature_md(md(d)).map_err(e)?,
                None if input_len + 11 > k => return Err(Error::DataLenRange),
                None => {}
            }
        }
        SigPadding::Pss { hash, mgf, salt } => {
            if input_len != hash.output_len() {
                return Err(Error::DataLenRange);
            }
            // emLen = ceil((modBits - 1) / 8) ≥ hLen + sLen + 2 (RFC 8017 §9.1.1).
            if salt + hash.output_len() + 2 > k {
                return Err(Error::MechanismParamInvalid);
            }
            ctx.set_rsa_padding(OsslPadding::PKCS1_PSS).map_err(e)?;
            ctx.set_signature_md(md(hash)).map_err(e)?;
            ctx.set_rsa_mgf1_md(md(mgf)).map_err(e)?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt as i32)).map_err(e)?;
        }
    }
    Ok(())
}

/// Signs `input` (a digest, or for `Pkcs1(None)` the caller's DigestInfo) with a PKCS#1 key.
pub fn sign(pkcs1: &[u8], pad: &SigPadding, input: &[u8]) -> Result<Vec<u8>> {
    let key = private_key(pkcs1)?;
    let k = key.size();
    let mut ctx = PkeyCtx::new(&key).map_err(|_| Error::Crypto)?;
    ctx.sign_init().map_err(|_| Error::Crypto)?;
    set_padding(&mut ctx, pad, input.len(), k)?;
    let mut sig = vec![0u8; k];
    let n = ctx.sign(input, Some(&mut sig)).map_err(|_| Error::Crypto)?;
    sig.truncate(n);
    Ok(sig)
}

/// Checks a signature over `input` with a public key.
pub fn verify(modulus: &[u8], e: &[u8], pad: &SigPadding, input: &[u8], sig: &[u8]) -> Result<()> {
    let key = public_key(modulus, e)?;
    let k = key.size();
    if sig.len() != k {
        return Err(Error::SignatureLenRange);
    }
    let mut ctx = PkeyCtx::new(&key).map_err(|_| Error::Crypto)?;
    ctx.verify_init().map_err(|_| Error::Crypto)?;
    match set_padding(&mut ctx, pad, input.len(), k) {
        // A digest of the wrong length, or data too long to have been signed: not this signature.
        Err(Error::DataLenRange) => return Err(Error::SignatureInvalid),
        other => other?,
    }
    match ctx.verify(input, sig) {
        Ok(true) => Ok(()),
        _ => Err(Error::SignatureInvalid),
    }
}

/// RSA-OAEP's parameters: the hash, MGF1's hash and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oaep {
    pub hash: DigestAlg,
    pub mgf: DigestAlg,
    pub label: Vec<u8>,
}

fn set_oaep<T>(ctx: &mut PkeyCtx<T>, p: &Oaep) -> Result<()> {
    let e = |_| Error::Crypto;
    ctx.set_rsa_padding(OsslPadding::PKCS1_OAEP).map_err(e)?;
    ctx.set_rsa_oaep_md(md(p.hash)).map_err(e)?;
    ctx.set_rsa_mgf1_md(md(p.mgf)).map_err(e)?;
    if !p.label.is_empty() {
        ctx.set_rsa_oaep_label(&p.label).map_err(e)?;
    }
    Ok(())
}

/// RSA-OAEP encryption with a public key (at most k − 2·hLen − 2 bytes).
pub fn oaep_encrypt(modulus: &[u8], e: &[u8], p: &Oaep, pt: &[u8]) -> Result<Vec<u8>> {
    let key = public_key(modulus, e)?;
    let k = key.size();
    if pt.len() + 2 * p.hash.output_len() + 2 > k {
        return Err(Error::DataLenRange);
    }
    let mut ctx = PkeyCtx::new(&key).map_err(|_| Error::Crypto)?;
    ctx.encrypt_init().map_err(|_| Error::Crypto)?;
    set_oaep(&mut ctx, p)?;
    let mut out = vec![0u8; k];
    let n = ctx.encrypt(pt, Some(&mut out)).map_err(|_| Error::Crypto)?;
    out.truncate(n);
    Ok(out)
}

/// RSA-OAEP decryption. Every malformed ciphertext gets the same answer,
/// `CKR_ENCRYPTED_DATA_INVALID` (OpenSSL's decoding does not branch on where it failed).
pub fn oaep_decrypt(pkcs1: &[u8], p: &Oaep, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let key = private_key(pkcs1)?;
    let k = key.size();
    if ct.len() != k {
        return Err(Error::EncryptedDataLenRange);
    }
    let mut ctx = PkeyCtx::new(&key).map_err(|_| Error::Crypto)?;
    ctx.decrypt_init().map_err(|_| Error::Crypto)?;
    set_oaep(&mut ctx, p)?;
    let mut out = Zeroizing::new(vec![0u8; k]);
    let n = ctx
        .decrypt(ct, Some(&mut out))
        .map_err(|_| Error::EncryptedDataInvalid)?;
    out.truncate(n);
    Ok(out)
}

/// The length in bytes of a signature or ciphertext under `modulus`.
pub fn size(modulus: &[u8]) -> usize {
    bits(modulus).div_ceil(8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Generated {
        generate(2048, &DEFAULT_EXPONENT).unwrap()
    }

    #[test]
    fn generated_keys_sign_verify_and_round_trip_oaep_and_pkcs8() {
        let g = key();
        assert_eq!(bits(&g.modulus), 2048);
        assert_eq!(g.public_exponent, DEFAULT_EXPONENT);
        assert_eq!(
            public_of(&g.private).unwrap(),
            (g.modulus.clone(), g.public_exponent.clone())
        );
        let digest = [7u8; 32];
        for pad in [
            SigPadding::Pkcs1(Some(DigestAlg::Sha256)),
            SigPadding::Pss {
                hash: DigestAlg::Sha256,
                mgf: DigestAlg::Sha256,
                salt: 32,
            },
        ] {
            let sig = sign(&g.private, &pad, &digest).unwrap();
            assert_eq!(sig.len(), 256);
            verify(&g.modulus, &g.public_exponent, &pad, &digest, &sig).unwrap();
            assert_eq!(
                verify(&g.modulus, &g.public_exponent, &pad, &[8u8; 32], &sig),
                Err(Error::SignatureInvalid)
            );
        }
        let p = Oaep {
            hash: DigestAlg::Sha256,
            mgf: DigestAlg::Sha256,
            label: b"label".to_vec(),
        };
        let ct = oaep_encrypt(&g.modulus, &g.public_exponent, &p, b"secret").unwrap();
        assert_eq!(&oaep_decrypt(&g.private, &p, &ct).unwrap()[..], b"secret");
        let other = Oaep {
            label: vec![],
            ..p.clone()
        };
        assert_eq!(oaep_decrypt(&g.private, &other, &ct), Err(Error::EncryptedDataInvalid));
        let p8 = to_pkcs8(&g.private).unwrap();
        assert_eq!(&from_pkcs8(&p8).unwrap()[..], &g.private[..]);
        // The parts come back as the import takes them.
        let parts: Vec<_> = [
            Part::PrivateExponent,
            Part::Prime1,
            Part::Prime2,
            Part::Exponent1,
            Part::Exponent2,
            Part::Coefficient,
        ]
        .iter()
        .map(|p| part(&g.private, *p).unwrap())
        .collect();
        let mut c = Components {
            modulus: &g.modulus,
            public_exponent: &g.public_exponent,
            private_exponent: &parts[0],
            prime_1: &parts[1],
            prime_2: &parts[2],
            exponent_1: &parts[3],
            exponent_2: &parts[4],
            coefficient: &parts[5],
        };
        assert_eq!(&import(&c).unwrap()[..], &g.private[..]);
        // A part that does not belong is refused.
        c.prime_1 = &parts[2];
        assert!(import(&c).is_err());
    }

    #[test]
    fn sizes_and_exponents_outside_the_rules_are_refused() {
        assert_eq!(generate(1024, &DEFAULT_EXPONENT).err(), Some(Error::KeySizeRange));
        assert!(matches!(generate(2048, &[3]), Err(Error::TemplateInconsistent(_))));
        assert!(matches!(
            generate(2048, &[1, 0, 0]),
            Err(Error::TemplateInconsistent(_))
        ));
        assert_eq!(bits(&[0, 0, 0x80, 0]), 16);
    }
}
