//! Between keygate's decoded values and cryptoki's: attributes (type + bytes, as `AttrMap`
//! holds them) and mechanisms. Only mechanisms keygate can decode are forwarded.

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism as CkMech, MechanismType};
use cryptoki::object::{Attribute, AttributeType};
use cryptoki::session::UserType as CkUser;
use cryptoki::types::Ulong;

use crate::backend::UserType;
use crate::crypto::ec;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, flag, key_type, rule_for, AttrMap};
use crate::model::mechanisms::{mech, mflag, Mechanism, MechanismInfo, PssParams};

/// The HSM's `CK_MECHANISM_INFO` as keygate's.
pub fn mechanism_info(i: &cryptoki::mechanism::MechanismInfo) -> MechanismInfo {
    let mut flags = 0;
    for (on, f) in [
        (i.encrypt(), mflag::ENCRYPT),
        (i.decrypt(), mflag::DECRYPT),
        (i.digest(), mflag::DIGEST),
        (i.sign(), mflag::SIGN),
        (i.verify(), mflag::VERIFY),
        (i.generate(), mflag::GENERATE),
        (i.generate_key_pair(), mflag::GENERATE_KEY_PAIR),
        (i.wrap(), mflag::WRAP),
        (i.unwrap(), mflag::UNWRAP),
        (i.derive(), mflag::DERIVE),
        (i.ec_f_p(), pkcs11_sys::CKF_EC_F_P),
        (i.ec_f_2m(), pkcs11_sys::CKF_EC_F_2M),
        (i.ec_from_parameters(), pkcs11_sys::CKF_EC_ECPARAMETERS),
        (i.ec_from_oid(), pkcs11_sys::CKF_EC_OID),
        (i.ec_uncompressed(), pkcs11_sys::CKF_EC_UNCOMPRESS),
        (i.ec_compressed(), pkcs11_sys::CKF_EC_COMPRESS),
    ] {
        if on {
            flags |= f;
        }
    }
    MechanismInfo {
        min_key_size: i.min_key_size() as u64,
        max_key_size: i.max_key_size() as u64,
        flags,
    }
}

/// A keygate template as cryptoki attributes.
pub fn attributes_out(t: &AttrMap) -> Result<Vec<Attribute>> {
    t.iter()
        .map(|(ty, v)| {
            let raw = cryptoki_sys::CK_ATTRIBUTE {
                type_: ty,
                pValue: v.as_ptr() as *mut std::ffi::c_void,
                ulValueLen: v.len() as cryptoki_sys::CK_ULONG,
            };
            Attribute::try_from(raw).map_err(|_| Error::AttributeTypeInvalid(ty))
        })
        .collect()
}

/// The type number and raw bytes of an attribute read from the HSM; `None` for kinds keygate
/// does not keep.
pub fn attribute_in(a: &Attribute) -> Option<(u64, Vec<u8>)> {
    let ty: u64 = a.attribute_type().into();
    let ulong = |u: u64| u.to_ne_bytes().to_vec();
    let bytes = match a {
        Attribute::Token(b)
        | Attribute::Private(b)
        | Attribute::Modifiable(b)
        | Attribute::Copyable(b)
        | Attribute::Destroyable(b)
        | Attribute::Trusted(b)
        | Attribute::Derive(b)
        | Attribute::Local(b)
        | Attribute::Encrypt(b)
        | Attribute::Verify(b)
        | Attribute::VerifyRecover(b)
        | Attribute::Wrap(b)
        | Attribute::Decrypt(b)
        | Attribute::Sign(b)
        | Attribute::SignRecover(b)
        | Attribute::Unwrap(b)
        | Attribute::Sensitive(b)
        | Attribute::Extractable(b)
        | Attribute::AlwaysSensitive(b)
        | Attribute::NeverExtractable(b)
        | Attribute::WrapWithTrusted(b)
        | Attribute::AlwaysAuthenticate(b) => vec![u8::from(*b)],
        Attribute::Label(v)
        | Attribute::UniqueId(v)
        | Attribute::Application(v)
        | Attribute::ObjectId(v)
        | Attribute::CheckValue(v)
        | Attribute::Issuer(v)
        | Attribute::SerialNumber(v)
        | Attribute::Url(v)
        | Attribute::HashOfSubjectPublicKey(v)
        | Attribute::HashOfIssuerPublicKey(v)
        | Attribute::Id(v)
        | Attribute::Subject(v)
        | Attribute::PublicKeyInfo(v)
        | Attribute::EcParams(v)
        | Attribute::EcPoint(v)
        | Attribute::Value(v)
        | Attribute::Modulus(v)
        | Attribute::PublicExponent(v)
        | Attribute::PrivateExponent(v)
        | Attribute::Prime1(v)
        | Attribute::Prime2(v)
        | Attribute::Exponent1(v)
        | Attribute::Exponent2(v)
        | Attribute::Coefficient(v) => v.clone(),
        Attribute::Class(c) => ulong((*c).into()),
        Attribute::KeyType(k) => ulong((*k).into()),
        Attribute::CertificateType(c) => ulong((*c).into()),
        Attribute::KeyGenMechanism(m) => ulong((*m).into()),
        Attribute::ValueLen(u) | Attribute::ModulusBits(u) => ulong((*u).into()),
        Attribute::AllowedMechanisms(list) => list.iter().flat_map(|m| ulong((*m).into())).collect(),
        Attribute::StartDate(d) | Attribute::EndDate(d) => {
            if d.is_empty() {
                Vec::new()
            } else {
                format!("{d}").replace('-', "").into_bytes()
            }
        }
        _ => return None,
    };
    Some((ty, bytes))
}

/// The attribute type for a number keygate knows.
pub fn attribute_type(ty: u64) -> Option<AttributeType> {
    AttributeType::try_from(ty).ok()
}

/// Parameters [`mechanism_out`] builds for the HSM, kept while the mechanism is in use.
#[derive(Default)]
pub struct Scratch {
    /// A mutable copy of a GCM IV (cryptoki wants it mutable: the specification lets a token
    /// write a generated IV back, which keygate never asks for).
    iv: Vec<u8>,
    /// The `CK_AES_CTR_PARAMS` of an AES-CTR mechanism (cryptoki has no variant for it).
    ctr: Option<cryptoki_sys::CK_AES_CTR_PARAMS>,
}

/// A decoded mechanism as cryptoki's, borrowing its parameters from `m` and `scratch`.
pub fn mechanism_out<'a>(m: &'a Mechanism, scratch: &'a mut Scratch) -> Result<CkMech<'a>> {
    Ok(match m {
        Mechanism::AesKeyGen => CkMech::AesKeyGen,
        Mechanism::GenericSecretKeyGen => CkMech::GenericSecretKeyGen,
        Mechanism::EcKeyPairGen => CkMech::EccKeyPairGen,
        Mechanism::EdwardsKeyPairGen => CkMech::EccEdwardsKeyPairGen,
        Mechanism::MontgomeryKeyPairGen => CkMech::EccMontgomeryKeyPairGen,
        Mechanism::RsaKeyPairGen => CkMech::RsaPkcsKeyPairGen,
        Mechanism::Ecdsa => CkMech::Ecdsa,
        Mechanism::EcdsaWith(d) => d.pick(
            CkMech::EcdsaSha1,
            CkMech::EcdsaSha224,
            CkMech::EcdsaSha256,
            CkMech::EcdsaSha384,
            CkMech::EcdsaSha512,
        ),
        Mechanism::RsaPkcs => CkMech::RsaPkcs,
        Mechanism::RsaPkcsWith(d) => d.pick(
            CkMech::Sha1RsaPkcs,
            CkMech::Sha224RsaPkcs,
            CkMech::Sha256RsaPkcs,
            CkMech::Sha384RsaPkcs,
            CkMech::Sha512RsaPkcs,
        ),
        Mechanism::RsaPss(p) => CkMech::RsaPkcsPss(pss(p)?),
        Mechanism::RsaPssWith(d, p) => {
            let p = pss(p)?;
            // cryptoki has no SHA-224 PSS variant; keygate decodes only SHA-256/384/512 PSS
            // (and the floor refuses SHA-1).
            d.pick(
                None,
                None,
                Some(CkMech::Sha256RsaPkcsPss(p)),
                Some(CkMech::Sha384RsaPkcsPss(p)),
                Some(CkMech::Sha512RsaPkcsPss(p)),
            )
            .ok_or(Error::MechanismInvalid(m.ty()))?
        }
        Mechanism::RsaOaep(p) => {
            let source = if p.label.is_empty() {
                PkcsOaepSource::empty()
            } else {
                PkcsOaepSource::data_specified(&p.label)
            };
            CkMech::RsaPkcsOaep(PkcsOaepParams::new(mechanism_type(p.hash)?, mgf(p.mgf)?, source))
        }
        Mechanism::Eddsa => CkMech::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        Mechanism::Ecdh1Derive {
            kdf,
            shared_data,
            public_data,
        } => {
            let kdf = match *kdf {
                pkcs11_sys::CKD_NULL if shared_data.is_empty() => EcKdf::null(),
                pkcs11_sys::CKD_SHA1_KDF => EcKdf::sha1(shared_data),
                pkcs11_sys::CKD_SHA224_KDF => EcKdf::sha224(shared_data),
                pkcs11_sys::CKD_SHA256_KDF => EcKdf::sha256(shared_data),
                pkcs11_sys::CKD_SHA384_KDF => EcKdf::sha384(shared_data),
                pkcs11_sys::CKD_SHA512_KDF => EcKdf::sha512(shared_data),
                _ => return Err(Error::MechanismParamInvalid),
            };
            CkMech::Ecdh1Derive(Ecdh1DeriveParams::new(kdf, public_data))
        }
        Mechanism::AesGcm { iv, aad, tag_bits } => {
            scratch.iv.clear();
            scratch.iv.extend_from_slice(iv);
            let p = GcmParams::new(scratch.iv.as_mut_slice(), aad, Ulong::from(*tag_bits))
                .map_err(|_| Error::MechanismParamInvalid)?;
            CkMech::AesGcm(p)
        }
        Mechanism::AesKeyWrap { iv: None } => CkMech::AesKeyWrap,
        Mechanism::AesKeyWrap { iv: Some(_) } => return Err(Error::MechanismParamInvalid),
        Mechanism::AesKeyWrapPad => CkMech::AesKeyWrapPad,
        Mechanism::AesKeyWrapKwp => {
            let ty = MechanismType::try_from(mech::AES_KEY_WRAP_KWP)
                .or_else(|_| MechanismType::new_vendor_defined(mech::AES_KEY_WRAP_KWP))
                .map_err(|_| Error::MechanismInvalid(mech::AES_KEY_WRAP_KWP))?;
            CkMech::VendorDefined(VendorDefinedMechanism::new::<()>(ty, None))
        }
        Mechanism::AesCbc { iv } => CkMech::AesCbc(*iv),
        Mechanism::AesCbcPad { iv } => CkMech::AesCbcPad(*iv),
        Mechanism::Digest(d) => d.pick(
            CkMech::Sha1,
            CkMech::Sha224,
            CkMech::Sha256,
            CkMech::Sha384,
            CkMech::Sha512,
        ),
        Mechanism::Hmac(d) => d.pick(
            CkMech::Sha1Hmac,
            CkMech::Sha224Hmac,
            CkMech::Sha256Hmac,
            CkMech::Sha384Hmac,
            CkMech::Sha512Hmac,
        ),
        // Not offered in hsm mode (`Offered::from_hsm`): cryptoki has no type for it.
        Mechanism::HmacGeneral(..) => return Err(Error::MechanismInvalid(m.ty())),
        Mechanism::AesEcb => CkMech::AesEcb,
        // cryptoki has types but no variants for these: the raw mechanism.
        Mechanism::AesCtr { counter_bits, cb } => {
            let p = scratch.ctr.insert(cryptoki_sys::CK_AES_CTR_PARAMS {
                ulCounterBits: *counter_bits as cryptoki_sys::CK_ULONG,
                cb: *cb,
            });
            CkMech::VendorDefined(VendorDefinedMechanism::new(MechanismType::AES_CTR, Some(&*p)))
        }
        Mechanism::AesCmac => CkMech::VendorDefined(VendorDefinedMechanism::new::<()>(MechanismType::AES_CMAC, None)),
        // Not offered in hsm mode (`Offered::from_hsm`): cryptoki has no type for it.
        Mechanism::AesCmacGeneral(_) => return Err(Error::MechanismInvalid(m.ty())),
        Mechanism::Other(ty) => return Err(Error::MechanismInvalid(*ty)),
    })
}

fn mechanism_type(ty: u64) -> Result<MechanismType> {
    MechanismType::try_from(ty).map_err(|_| Error::MechanismParamInvalid)
}

fn mgf(g: u64) -> Result<PkcsMgfType> {
    PkcsMgfType::try_from(g as cryptoki_sys::CK_RSA_PKCS_MGF_TYPE).map_err(|_| Error::MechanismParamInvalid)
}

fn pss(p: &PssParams) -> Result<PkcsPssParams> {
    Ok(PkcsPssParams {
        hash_alg: mechanism_type(p.hash)?,
        mgf: mgf(p.mgf)?,
        s_len: Ulong::from(p.salt_len),
    })
}

pub(super) fn user_of(u: UserType) -> CkUser {
    match u {
        UserType::So => CkUser::So,
        UserType::User => CkUser::User,
        UserType::ContextSpecific => CkUser::ContextSpecific,
    }
}

/// A template as sent to the HSM: without the attributes keygate computes for its own store
/// that an HSM sets itself, and without empty values whose default the specification fixes as
/// empty (label, identifier, subject, dates). The HSM makes those the same, and sending them
/// costs: SoftHSM2 encrypts every byte-string attribute of a private object, which made its
/// P-256 key generation 23 % slower under keygate than called directly (perf).
pub(super) fn for_hsm(t: &AttrMap) -> Result<Vec<Attribute>> {
    attributes_out(&template_for_hsm(t))
}

/// What of a completed template goes to the HSM (see [`for_hsm`]).
pub(super) fn template_for_hsm(t: &AttrMap) -> AttrMap {
    const EMPTY_BY_DEFAULT: [u64; 5] = [attr::LABEL, attr::ID, attr::SUBJECT, attr::START_DATE, attr::END_DATE];
    let cls = t.class().ok();
    let mut out = AttrMap::new();
    for (ty, v) in t.iter() {
        let token_set = cls
            .and_then(|c| rule_for(ty, c))
            .is_some_and(|r| r.flags & flag::TOKEN_ONLY != 0);
        let empty_by_default = v.is_empty() && EMPTY_BY_DEFAULT.contains(&ty);
        if !(token_set || empty_by_default) {
            out.set(ty, v.to_vec());
        }
    }
    out
}

/// A public EC or Edwards key's `CKA_EC_POINT` in the DER OCTET STRING form every HSM takes:
/// keygate accepts the raw point too (as its own tokens do), so it converts it on the way. A
/// curve keygate does not know is passed as given.
pub(super) fn der_point(attrs: &mut AttrMap) -> Result<()> {
    let kt = attrs.ulong(attr::KEY_TYPE)?;
    if attrs.class().ok() != Some(class::PUBLIC_KEY)
        || !matches!(
            kt,
            Some(key_type::EC) | Some(key_type::EC_EDWARDS) | Some(key_type::EC_MONTGOMERY)
        )
    {
        return Ok(());
    }
    let (Some(params), Some(point)) = (attrs.get(attr::EC_PARAMS), attrs.get(attr::EC_POINT)) else {
        return Ok(());
    };
    let Ok(curve) = ec::curve_from_params(params) else {
        return Ok(());
    };
    let raw = ec::raw_point(curve, point)?;
    attrs.set(attr::EC_POINT, ec::der_octet_string(&raw)?);
    Ok(())
}
