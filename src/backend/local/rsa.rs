//! RSA keys of the self-managed token (builds with OpenSSL only; see `crypto/rsa.rs`): the
//! private key's sealed secret is its PKCS#1 encoding; the modulus and public exponent stay in
//! the clear attributes of both halves, bound into the record's MAC and the seal's AAD.

use zeroize::Zeroizing;

use super::ops::{Input, Secret};
use crate::backend::{CipherOp, SignOp, VerifyOp};
use crate::crypto::rsa::{self, Oaep, Part, SigPadding};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, AttrMap};
use crate::model::mechanisms::{DigestAlg, Mechanism, OaepParams, PssParams};

use pkcs11_sys as ck;

/// The secret parts, by attribute.
const PARTS: [(u64, Part); 6] = [
    (attr::PRIVATE_EXPONENT, Part::PrivateExponent),
    (attr::PRIME_1, Part::Prime1),
    (attr::PRIME_2, Part::Prime2),
    (attr::EXPONENT_1, Part::Exponent1),
    (attr::EXPONENT_2, Part::Exponent2),
    (attr::COEFFICIENT, Part::Coefficient),
];

fn required(attrs: &AttrMap, ty: u64, what: &'static str) -> Result<Vec<u8>> {
    attrs.get(ty).map(<[u8]>::to_vec).ok_or(Error::TemplateIncomplete(what))
}

/// Checks a public key template's modulus and exponent and sets `CKA_MODULUS_BITS` from them.
pub(super) fn complete_public(attrs: &mut AttrMap) -> Result<()> {
    let n = required(attrs, attr::MODULUS, "CKA_MODULUS missing")?;
    let e = required(attrs, attr::PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT missing")?;
    rsa::check_public(&n, &e)?;
    let bits = rsa::bits(&n);
    if attrs.ulong(attr::MODULUS_BITS)?.is_some_and(|b| b != bits) {
        return Err(Error::TemplateInconsistent(
            "CKA_MODULUS_BITS does not match CKA_MODULUS",
        ));
    }
    attrs.set_ulong(attr::MODULUS_BITS, bits);
    Ok(())
}

/// Moves an imported private key's parts out of the clear attributes into its secret (PKCS#1,
/// under `CKA_VALUE`, which the record seals), after checking they belong together. A template
/// that already carries the PKCS#1 secret (an unwrapped key) is checked against its modulus.
pub(super) fn complete_private(attrs: &mut AttrMap) -> Result<()> {
    if let Some(pkcs1) = attrs.get(attr::VALUE) {
        let (n, e) = rsa::public_of(pkcs1)?;
        for (ty, v) in [(attr::MODULUS, n), (attr::PUBLIC_EXPONENT, e)] {
            if attrs.get(ty).is_some_and(|given| given != v) {
                return Err(Error::TemplateInconsistent(
                    "the template's RSA public part is not the key's",
                ));
            }
            attrs.set(ty, v);
        }
        return Ok(());
    }
    let n = required(attrs, attr::MODULUS, "CKA_MODULUS missing")?;
    let e = required(attrs, attr::PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT missing")?;
    let mut parts: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(PARTS.len());
    for (ty, _) in PARTS {
        let v = attrs.remove(ty).map(Zeroizing::new).ok_or(Error::TemplateIncomplete(
            "an RSA private key needs CKA_PRIVATE_EXPONENT and every CRT part (CKA_PRIME_1 … CKA_COEFFICIENT)",
        ))?;
        parts.push(v);
    }
    let pkcs1 = rsa::import(&rsa::Components::new(&n, &e, &parts)?)?;
    attrs.set(attr::VALUE, pkcs1.to_vec());
    Ok(())
}

/// One secret part of a private key, by attribute (an extractable key's
/// `C_GetAttributeValue`); `CKA_VALUE` is not an attribute of RSA keys.
pub(super) fn part(pkcs1: &[u8], ty: u64) -> Result<Zeroizing<Vec<u8>>> {
    let (_, which) = PARTS
        .iter()
        .find(|(t, _)| *t == ty)
        .ok_or(Error::AttributeTypeInvalid(ty))?;
    rsa::part(pkcs1, *which)
}

/// The digest a PKCS#11 hash mechanism (`CKM_SHA256`) or MGF (`CKG_MGF1_SHA256`) names.
fn hash_of(ckm: u64) -> Option<DigestAlg> {
    Some(match ckm {
        ck::CKM_SHA_1 => DigestAlg::Sha1,
        ck::CKM_SHA224 => DigestAlg::Sha224,
        ck::CKM_SHA256 => DigestAlg::Sha256,
        ck::CKM_SHA384 => DigestAlg::Sha384,
        ck::CKM_SHA512 => DigestAlg::Sha512,
        _ => return None,
    })
}

fn mgf_of(ckg: u64) -> Option<DigestAlg> {
    Some(match ckg {
        ck::CKG_MGF1_SHA1 => DigestAlg::Sha1,
        ck::CKG_MGF1_SHA224 => DigestAlg::Sha224,
        ck::CKG_MGF1_SHA256 => DigestAlg::Sha256,
        ck::CKG_MGF1_SHA384 => DigestAlg::Sha384,
        ck::CKG_MGF1_SHA512 => DigestAlg::Sha512,
        _ => return None,
    })
}

fn pss(p: &PssParams, with: Option<DigestAlg>) -> Result<SigPadding> {
    let hash = hash_of(p.hash).ok_or(Error::MechanismParamInvalid)?;
    let mgf = mgf_of(p.mgf).ok_or(Error::MechanismParamInvalid)?;
    // CKM_SHA256_RSA_PKCS_PSS hashes with SHA-256: its parameters must say so (PKCS#11 3.0 §2.1.13).
    if with.is_some_and(|d| d != hash) {
        return Err(Error::MechanismParamInvalid);
    }
    let salt = usize::try_from(p.salt_len).map_err(|_| Error::MechanismParamInvalid)?;
    Ok(SigPadding::Pss { hash, mgf, salt })
}

/// The padding and the hashing of a signature mechanism: `(padding, digest the token makes)`.
pub(super) fn signature(mech: &Mechanism) -> Result<(SigPadding, Option<DigestAlg>)> {
    Ok(match mech {
        Mechanism::RsaPkcs => (SigPadding::Pkcs1(None), None),
        Mechanism::RsaPkcsWith(d) => (SigPadding::Pkcs1(Some(*d)), Some(*d)),
        Mechanism::RsaPss(p) => (pss(p, None)?, None),
        Mechanism::RsaPssWith(d, p) => (pss(p, Some(*d))?, Some(*d)),
        other => return Err(Error::MechanismInvalid(other.ty())),
    })
}

/// Whether a mechanism is one of RSA's signatures.
pub(super) fn is_signature(mech: &Mechanism) -> bool {
    matches!(
        mech,
        Mechanism::RsaPkcs | Mechanism::RsaPkcsWith(_) | Mechanism::RsaPss(_) | Mechanism::RsaPssWith(..)
    )
}

pub(super) fn oaep(p: &OaepParams) -> Result<Oaep> {
    // CKZ_DATA_SPECIFIED (1) is the only source PKCS#11 defines; the label is copied already.
    Ok(Oaep {
        hash: hash_of(p.hash).ok_or(Error::MechanismParamInvalid)?,
        mgf: mgf_of(p.mgf).ok_or(Error::MechanismParamInvalid)?,
        label: p.label.clone(),
    })
}

/// An RSA signature; the data is hashed as it arrives when the mechanism hashes.
pub(super) struct Sign {
    key: Secret,
    pad: SigPadding,
    input: Input,
}

impl Sign {
    pub fn new(key: Secret, mech: &Mechanism) -> Result<Self> {
        let (pad, hash) = signature(mech)?;
        Ok(Self {
            key,
            pad,
            input: Input::new(hash),
        })
    }
}

impl SignOp for Sign {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        let input = self.input.finish();
        rsa::sign(&self.key, &self.pad, &input)
    }
}

pub(super) struct Verify {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
    pad: SigPadding,
    input: Input,
}

impl Verify {
    pub fn new(public: &AttrMap, mech: &Mechanism) -> Result<Self> {
        let (pad, hash) = signature(mech)?;
        Ok(Self {
            modulus: public.get(attr::MODULUS).ok_or(Error::KeyTypeInconsistent)?.to_vec(),
            exponent: public
                .get(attr::PUBLIC_EXPONENT)
                .ok_or(Error::KeyTypeInconsistent)?
                .to_vec(),
            pad,
            input: Input::new(hash),
        })
    }
}

impl VerifyOp for Verify {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        let input = self.input.finish();
        rsa::verify(&self.modulus, &self.exponent, &self.pad, &input, signature)
    }
}

/// RSA-OAEP, a single-part mechanism: multi-part input is gathered and used at the end.
pub(super) enum OaepOp {
    Encrypt {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
        params: Oaep,
        buf: crate::crypto::HeldBytes,
    },
    Decrypt {
        key: Secret,
        params: Oaep,
        buf: Vec<u8>,
    },
}

impl OaepOp {
    pub fn encrypt(public: &AttrMap, p: &OaepParams) -> Result<Self> {
        Ok(OaepOp::Encrypt {
            modulus: public.get(attr::MODULUS).ok_or(Error::KeyTypeInconsistent)?.to_vec(),
            exponent: public
                .get(attr::PUBLIC_EXPONENT)
                .ok_or(Error::KeyTypeInconsistent)?
                .to_vec(),
            params: oaep(p)?,
            buf: crate::crypto::HeldBytes::default(),
        })
    }
    pub fn decrypt(key: Secret, p: &OaepParams) -> Result<Self> {
        Ok(OaepOp::Decrypt {
            key,
            params: oaep(p)?,
            buf: Vec::new(),
        })
    }
    fn run(&self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            OaepOp::Encrypt {
                modulus,
                exponent,
                params,
                ..
            } => rsa::oaep_encrypt(modulus, exponent, params, data).map(Zeroizing::new),
            OaepOp::Decrypt { key, params, .. } => rsa::oaep_decrypt(key, params, data),
        }
    }
}

impl CipherOp for OaepOp {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            OaepOp::Encrypt { buf, .. } => buf.extend_from_slice(data),
            OaepOp::Decrypt { buf, .. } => buf.extend_from_slice(data),
        }
        Ok(Zeroizing::new(Vec::new()))
    }
    fn finish(self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        let data = match &*self {
            OaepOp::Encrypt { buf, .. } => buf.to_vec(),
            OaepOp::Decrypt { buf, .. } => buf.clone(),
        };
        let data = Zeroizing::new(data);
        self.run(&data)
    }
    fn update_len(&self, _input_len: usize) -> usize {
        0
    }
    fn once(self: Box<Self>, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.run(data)
    }
}

/// Generates a key pair into two completed templates: `CKA_MODULUS_BITS` and (optionally)
/// `CKA_PUBLIC_EXPONENT` come from the public one; both halves get the modulus and exponent;
/// the private half's secret is the PKCS#1 key.
pub(super) fn generate(public: &mut AttrMap, private: &mut AttrMap) -> Result<()> {
    let bits = public.ulong(attr::MODULUS_BITS)?.ok_or(Error::TemplateIncomplete(
        "CKA_MODULUS_BITS missing from the public key template",
    ))?;
    let e = public
        .get(attr::PUBLIC_EXPONENT)
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| rsa::DEFAULT_EXPONENT.to_vec());
    for t in [&*public, &*private] {
        if t.contains(attr::MODULUS) {
            return Err(Error::TemplateInconsistent("CKA_MODULUS is generated, not given"));
        }
    }
    if private.get(attr::PUBLIC_EXPONENT).is_some_and(|pe| pe != e.as_slice()) {
        return Err(Error::TemplateInconsistent(
            "the two templates give different public exponents",
        ));
    }
    let g = rsa::generate(bits, &e)?;
    for t in [&mut *public, &mut *private] {
        t.set(attr::MODULUS, g.modulus.clone());
        t.set(attr::PUBLIC_EXPONENT, g.public_exponent.clone());
    }
    private.set(attr::VALUE, g.private.to_vec());
    Ok(())
}
