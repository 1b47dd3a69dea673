//! Key material of the self-managed token: checking imported keys, generating, wrapping,
//! unwrapping, deriving, and starting operations. Implements [`Backend`] for [`LocalBackend`].

use zeroize::Zeroizing;

use super::material::{complete_material, curve_of, unwrapped_into, value_len, wrappable};
#[cfg(feature = "openssl")]
use super::rsa;
use super::LocalBackend;
use super::{blocks, ops};
use crate::backend::{Backend, CipherOp, DigestOp, Lifetime, ObjectId, SignOp, TokenStatus, UserType, VerifyOp};
use crate::crypto::{self, aes, digest, ec, eddsa, x25519};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, key_type, AttrMap};
use crate::model::mechanisms::{Mechanism, MechanismInfo, Pin, MECHANISMS};

fn wrap_kind(mech: &Mechanism) -> Result<aes::WrapKind> {
    match mech {
        Mechanism::AesKeyWrap { iv: None } => Ok(aes::WrapKind::Kw),
        Mechanism::AesKeyWrap { iv: Some(iv) } if iv == &[0xa6; 8] => Ok(aes::WrapKind::Kw),
        Mechanism::AesKeyWrap { .. } => Err(Error::MechanismParamInvalid),
        Mechanism::AesKeyWrapPad => Ok(aes::WrapKind::Pad),
        Mechanism::AesKeyWrapKwp => Ok(aes::WrapKind::Kwp),
        other => Err(Error::MechanismInvalid(other.ty())),
    }
}

fn expect_type(attrs: &AttrMap, want: &[u64], err: Error) -> Result<()> {
    match attrs.key_type() {
        Some(kt) if want.contains(&kt) => Ok(()),
        _ => Err(err),
    }
}

/// Whether a mechanism signs and verifies (with a key of the wrong type it is
/// `CKR_KEY_TYPE_INCONSISTENT`, not `CKR_MECHANISM_INVALID`).
fn signs(m: &Mechanism) -> bool {
    matches!(
        m,
        Mechanism::Ecdsa
            | Mechanism::EcdsaWith(_)
            | Mechanism::Eddsa
            | Mechanism::Hmac(_)
            | Mechanism::HmacGeneral(..)
            | Mechanism::AesCmac
            | Mechanism::AesCmacGeneral(_)
            | Mechanism::RsaPkcs
            | Mechanism::RsaPkcsWith(_)
            | Mechanism::RsaPss(_)
            | Mechanism::RsaPssWith(..)
    )
}

const HMAC_TYPES: &[u64] = &[
    key_type::GENERIC_SECRET,
    key_type::SHA256_HMAC,
    key_type::SHA384_HMAC,
    key_type::SHA512_HMAC,
];

impl LocalBackend {
    fn generated(&self, lifetime: Lifetime, attrs: AttrMap) -> Result<ObjectId> {
        let r = self.new_record(attrs, lifetime)?;
        Ok(self.put_new(vec![(lifetime, r)])?[0])
    }

    fn ec_public_point(attrs: &AttrMap) -> Result<(ec::Curve, Vec<u8>)> {
        let curve = curve_of(attrs)?;
        let point = attrs.get(attr::EC_POINT).ok_or(Error::KeyTypeInconsistent)?;
        Ok((curve, ec::raw_point(curve, point)?))
    }
}

impl Backend for LocalBackend {
    fn status(&self) -> Result<TokenStatus> {
        self.status_impl()
    }
    fn mechanisms(&self) -> &[(u64, MechanismInfo)] {
        MECHANISMS
    }
    fn init_token(&self, so_pin: &Pin, label: &str) -> Result<()> {
        self.init_token_impl(so_pin, label)
    }
    fn login(&self, _session: u64, user: UserType, pin: &Pin) -> Result<()> {
        self.login_impl(user, pin)
    }
    fn logout(&self, _session: u64) {
        self.logout_impl()
    }
    fn init_pin(&self, _session: u64, pin: &Pin) -> Result<()> {
        self.init_pin_impl(pin)
    }
    fn set_pin(&self, _session: u64, user: UserType, old: &Pin, new: &Pin) -> Result<()> {
        self.set_pin_impl(user, old, new)
    }

    fn create(&self, _session: u64, lifetime: Lifetime, mut attrs: AttrMap) -> Result<ObjectId> {
        // Not an attribute of RSA keys (the sealed PKCS#1 secret goes by that name inside).
        if attrs.key_type() == Some(key_type::RSA) && attrs.contains(attr::VALUE) {
            return Err(Error::AttributeTypeInvalid(attr::VALUE));
        }
        complete_material(&mut attrs)?;
        self.generated(lifetime, attrs)
    }
    fn find(&self, _session: u64, template: &AttrMap, private_visible: bool) -> Result<Vec<ObjectId>> {
        self.find_impl(template, private_visible)
    }
    fn attributes(&self, _session: u64, id: &ObjectId) -> Result<AttrMap> {
        Ok((*self.opened(id)?.attrs).clone())
    }
    fn key_attributes(&self, _session: u64, id: &ObjectId) -> Result<std::sync::Arc<AttrMap>> {
        Ok(self.opened(id)?.attrs.clone())
    }
    fn lifetime(&self, _session: u64, id: &ObjectId) -> Result<Lifetime> {
        Ok(self.opened(id)?.lifetime)
    }
    fn secret_value(&self, _session: u64, id: &ObjectId, ty: u64) -> Result<Zeroizing<Vec<u8>>> {
        // A key's secret is its CKA_VALUE, except an RSA private key's: PKCS#1, read by part.
        let o = self.opened(id)?;
        #[cfg(feature = "openssl")]
        if o.attrs.key_type() == Some(key_type::RSA) {
            return rsa::part(&self.secret(&o)?, ty);
        }
        if ty != attr::VALUE {
            return Err(Error::AttributeTypeInvalid(ty));
        }
        Ok(Zeroizing::new(self.secret(&o)?.to_vec()))
    }
    fn update(&self, _session: u64, id: &ObjectId, attrs: AttrMap) -> Result<()> {
        self.update_impl(id, attrs)
    }
    fn copy(&self, _session: u64, id: &ObjectId, lifetime: Lifetime, attrs: AttrMap) -> Result<ObjectId> {
        self.copy_impl(id, lifetime, attrs)
    }
    fn destroy(&self, _session: u64, id: &ObjectId) -> Result<()> {
        self.destroy_impl(id)
    }
    fn session_opened(&self, _session: u64, _rw: bool) -> Result<()> {
        Ok(())
    }
    fn session_closed(&self, session: u64) {
        self.session_closed_impl(session)
    }

    fn generate_key(&self, _session: u64, mech: &Mechanism, lifetime: Lifetime, mut t: AttrMap) -> Result<ObjectId> {
        let len = value_len(&t)?.ok_or(Error::TemplateIncomplete("CKA_VALUE_LEN missing"))?;
        match mech {
            Mechanism::AesKeyGen if matches!(len, 16 | 24 | 32) => {}
            Mechanism::GenericSecretKeyGen if (1..=512).contains(&len) => {}
            Mechanism::AesKeyGen | Mechanism::GenericSecretKeyGen => return Err(Error::KeySizeRange),
            other => return Err(Error::MechanismInvalid(other.ty())),
        }
        t.set(attr::VALUE, crypto::random_secret(len)?.to_vec());
        complete_material(&mut t)?;
        self.generated(lifetime, t)
    }

    fn generate_key_pair(
        &self,
        _session: u64,
        mech: &Mechanism,
        lifetimes: (Lifetime, Lifetime),
        mut public: AttrMap,
        mut private: AttrMap,
    ) -> Result<(ObjectId, ObjectId)> {
        match mech {
            #[cfg(feature = "openssl")]
            Mechanism::RsaKeyPairGen => rsa::generate(&mut public, &mut private)?,
            _ => {
                let curve = curve_of(&public)?;
                let (secret, point) = match (mech, curve) {
                    (Mechanism::EcKeyPairGen, c) if c.is_nist() => crate::crypto::provider().ec_generate(c)?,
                    (Mechanism::EdwardsKeyPairGen, ec::Curve::Ed25519) => eddsa::generate(),
                    (Mechanism::MontgomeryKeyPairGen, ec::Curve::X25519) => x25519::generate(),
                    #[cfg(feature = "openssl")]
                    (Mechanism::EdwardsKeyPairGen, ec::Curve::Ed448) => crypto::ed448::generate()?,
                    (Mechanism::EcKeyPairGen | Mechanism::EdwardsKeyPairGen | Mechanism::MontgomeryKeyPairGen, _) => {
                        return Err(Error::CurveNotSupported)
                    }
                    (other, _) => return Err(Error::MechanismInvalid(other.ty())),
                };
                public.set(attr::EC_POINT, ec::der_octet_string(&point)?);
                if private.get(attr::EC_PARAMS).is_none() {
                    private.set(
                        attr::EC_PARAMS,
                        public.get(attr::EC_PARAMS).unwrap_or_default().to_vec(),
                    );
                }
                private.set(attr::VALUE, secret.to_vec());
            }
        }
        let pubr = self.new_record(public, lifetimes.0)?;
        let privr = self.new_record(private, lifetimes.1)?;
        let ids = self.put_new(vec![(lifetimes.0, pubr), (lifetimes.1, privr)])?;
        Ok((ids[0], ids[1]))
    }

    fn wrap_key(&self, _session: u64, mech: &Mechanism, wrapping: &ObjectId, key: &ObjectId) -> Result<Vec<u8>> {
        #[cfg(feature = "openssl")]
        if let Mechanism::RsaOaep(p) = mech {
            return self.oaep_wrap(p, wrapping, key);
        }
        let kind = wrap_kind(mech)?;
        let wr = self.opened(wrapping)?;
        expect_type(&wr.attrs, &[key_type::AES], Error::WrappingKeyTypeInconsistent)?;
        let kr = self.opened(key)?;
        let data = wrappable(&kr.attrs, &self.secret(&kr)?)?;
        aes::wrap(kind, &self.secret(&wr)?, &data).map_err(|e| match e {
            Error::KeySizeRange => Error::KeyNotWrappable,
            other => other,
        })
    }

    fn unwrap_key(
        &self,
        _session: u64,
        mech: &Mechanism,
        unwrapping: &ObjectId,
        wrapped: &[u8],
        lifetime: Lifetime,
        mut template: AttrMap,
    ) -> Result<ObjectId> {
        #[cfg(feature = "openssl")]
        if let Mechanism::RsaOaep(p) = mech {
            let bytes = self.oaep_unwrap(p, unwrapping, wrapped)?;
            if template.class()? != class::SECRET_KEY {
                return Err(Error::TemplateInconsistent("RSA-OAEP unwraps secret keys only"));
            }
            template.set(attr::VALUE, bytes.to_vec());
            complete_material(&mut template)?;
            return self.generated(lifetime, template);
        }
        let kind = wrap_kind(mech)?;
        let ur = self.opened(unwrapping)?;
        expect_type(&ur.attrs, &[key_type::AES], Error::UnwrappingKeyTypeInconsistent)?;
        let bytes = aes::unwrap(kind, &self.secret(&ur)?, wrapped)?;
        unwrapped_into(&mut template, bytes)?;
        complete_material(&mut template).map_err(|e| match e {
            Error::AttributeValueInvalid(_) => Error::WrappedKeyInvalid,
            other => other,
        })?;
        self.generated(lifetime, template)
    }

    fn derive_key(
        &self,
        _session: u64,
        mech: &Mechanism,
        base: &ObjectId,
        lifetime: Lifetime,
        mut t: AttrMap,
    ) -> Result<ObjectId> {
        let Mechanism::Ecdh1Derive {
            kdf,
            shared_data,
            public_data,
        } = mech
        else {
            return Err(Error::MechanismInvalid(mech.ty()));
        };
        use crate::model::mechanisms::DigestAlg;
        let kdf = match *kdf {
            pkcs11_sys::CKD_NULL if shared_data.is_empty() => None,
            pkcs11_sys::CKD_SHA1_KDF => Some(DigestAlg::Sha1),
            pkcs11_sys::CKD_SHA224_KDF => Some(DigestAlg::Sha224),
            pkcs11_sys::CKD_SHA256_KDF => Some(DigestAlg::Sha256),
            pkcs11_sys::CKD_SHA384_KDF => Some(DigestAlg::Sha384),
            pkcs11_sys::CKD_SHA512_KDF => Some(DigestAlg::Sha512),
            _ => return Err(Error::MechanismParamInvalid),
        };
        let br = self.opened(base)?;
        let kt = br.attrs.key_type();
        if br.attrs.class()? != class::PRIVATE_KEY || !matches!(kt, Some(key_type::EC | key_type::EC_MONTGOMERY)) {
            return Err(Error::KeyTypeInconsistent);
        }
        let curve = curve_of(&br.attrs)?;
        if Some(curve.key_type()) != kt {
            return Err(Error::KeyTypeInconsistent);
        }
        let peer = ec::raw_point(curve, public_data).map_err(|_| Error::MechanismParamInvalid)?;
        let z = match curve {
            ec::Curve::X25519 => x25519::ecdh(&self.secret(&br)?, &peer)?,
            _ => ec::ecdh(curve, &self.secret(&br)?, &peer)?,
        };
        let len = match (value_len(&t)?, t.key_type(), kdf) {
            (Some(l), ..) => l,
            (None, Some(key_type::AES), _) => return Err(Error::TemplateIncomplete("CKA_VALUE_LEN missing")),
            (None, _, None) => z.len(),
            (None, _, Some(d)) => d.output_len(),
        };
        match kdf {
            // PKCS#11 (and SoftHSM2) keep the rightmost bytes when a shorter key is asked for.
            None if len > 0 && len <= z.len() => t.set(attr::VALUE, z[z.len() - len..].to_vec()),
            None => {
                return Err(Error::TemplateInconsistent(
                    "CKA_VALUE_LEN longer than the shared secret",
                ))
            }
            Some(d) if (1..=512).contains(&len) => {
                t.set(attr::VALUE, digest::x963_kdf(d, &z, shared_data, len).to_vec())
            }
            Some(_) => return Err(Error::TemplateInconsistent("CKA_VALUE_LEN out of range")),
        }
        complete_material(&mut t)?;
        self.generated(lifetime, t)
    }

    fn sign(&self, _session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn SignOp>> {
        let r = self.opened(key)?;
        let kt = r.attrs.key_type();
        Ok(match (mech, kt) {
            (Mechanism::Ecdsa, Some(key_type::EC)) => {
                Box::new(ops::EcdsaSign::new(curve_of(&r.attrs)?, self.secret(&r)?, None))
            }
            (Mechanism::EcdsaWith(d), Some(key_type::EC)) => {
                Box::new(ops::EcdsaSign::new(curve_of(&r.attrs)?, self.secret(&r)?, Some(*d)))
            }
            #[cfg(feature = "openssl")]
            (Mechanism::Eddsa, Some(key_type::EC_EDWARDS)) if curve_of(&r.attrs)? == ec::Curve::Ed448 => {
                Box::new(ops::Ed448Sign::new(self.secret(&r)?))
            }
            (Mechanism::Eddsa, Some(key_type::EC_EDWARDS)) => {
                let seed = self.secret(&r)?;
                let public = match r.ed25519_public.get() {
                    Some(p) => *p,
                    None => {
                        let p = eddsa::verifying_key(&seed)?;
                        *r.ed25519_public.get_or_init(|| p)
                    }
                };
                Box::new(ops::EddsaSign::new(seed, public))
            }
            (Mechanism::Hmac(d), Some(kt)) if HMAC_TYPES.contains(&kt) => {
                Box::new(ops::Hmac::new(*d, &self.secret(&r)?, None)?)
            }
            (Mechanism::HmacGeneral(d, len), Some(kt)) if HMAC_TYPES.contains(&kt) => {
                Box::new(ops::Hmac::new(*d, &self.secret(&r)?, Some(*len))?)
            }
            (Mechanism::AesCmac, Some(key_type::AES)) => Box::new(ops::Cmac::new(&self.secret(&r)?, None)?),
            (Mechanism::AesCmacGeneral(len), Some(key_type::AES)) => {
                Box::new(ops::Cmac::new(&self.secret(&r)?, Some(*len))?)
            }
            #[cfg(feature = "openssl")]
            (m, Some(key_type::RSA)) if rsa::is_signature(m) => Box::new(rsa::Sign::new(self.secret(&r)?, m)?),
            (m, _) if signs(m) => return Err(Error::KeyTypeInconsistent),
            (other, _) => return Err(Error::MechanismInvalid(other.ty())),
        })
    }

    fn verify(&self, _session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn VerifyOp>> {
        let r = self.opened(key)?;
        let kt = r.attrs.key_type();
        Ok(match (mech, kt) {
            (Mechanism::Ecdsa | Mechanism::EcdsaWith(_), Some(key_type::EC)) => {
                let (curve, point) = Self::ec_public_point(&r.attrs)?;
                let pre = match mech {
                    Mechanism::EcdsaWith(d) => Some(*d),
                    _ => None,
                };
                Box::new(ops::EcdsaVerify::new(curve, point, pre))
            }
            #[cfg(feature = "openssl")]
            (Mechanism::Eddsa, Some(key_type::EC_EDWARDS)) if curve_of(&r.attrs)? == ec::Curve::Ed448 => {
                Box::new(ops::EddsaVerify::ed448(Self::ec_public_point(&r.attrs)?.1))
            }
            (Mechanism::Eddsa, Some(key_type::EC_EDWARDS)) => {
                Box::new(ops::EddsaVerify::new(Self::ec_public_point(&r.attrs)?.1))
            }
            (Mechanism::Hmac(d), Some(kt)) if HMAC_TYPES.contains(&kt) => {
                Box::new(ops::Hmac::new(*d, &self.secret(&r)?, None)?)
            }
            (Mechanism::HmacGeneral(d, len), Some(kt)) if HMAC_TYPES.contains(&kt) => {
                Box::new(ops::Hmac::new(*d, &self.secret(&r)?, Some(*len))?)
            }
            (Mechanism::AesCmac, Some(key_type::AES)) => Box::new(ops::Cmac::new(&self.secret(&r)?, None)?),
            (Mechanism::AesCmacGeneral(len), Some(key_type::AES)) => {
                Box::new(ops::Cmac::new(&self.secret(&r)?, Some(*len))?)
            }
            #[cfg(feature = "openssl")]
            (m, Some(key_type::RSA)) if rsa::is_signature(m) => Box::new(rsa::Verify::new(&r.attrs, m)?),
            (m, _) if signs(m) => return Err(Error::KeyTypeInconsistent),
            (other, _) => return Err(Error::MechanismInvalid(other.ty())),
        })
    }

    fn encrypt(&self, _session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn CipherOp>> {
        self.cipher(mech, key, true)
    }
    fn decrypt(&self, _session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn CipherOp>> {
        self.cipher(mech, key, false)
    }

    fn digest(&self, _session: u64, mech: &Mechanism) -> Result<Box<dyn DigestOp>> {
        match mech {
            Mechanism::Digest(alg) => Ok(Box::new(ops::Digest(crypto::digest::Hasher::new(*alg)))),
            other => Err(Error::MechanismInvalid(other.ty())),
        }
    }
    fn digest_key(&self, _session: u64, op: &mut dyn DigestOp, key: &ObjectId) -> Result<()> {
        let r = self.opened(key)?;
        if r.attrs.class()? != class::SECRET_KEY {
            return Err(Error::KeyIndigestible);
        }
        op.update(&self.secret(&r)?)
    }
    fn random(&self, _session: u64, out: &mut [u8]) -> Result<()> {
        crypto::random(out)
    }
    fn seed_random(&self, _session: u64, seed: &[u8]) -> Result<()> {
        crypto::mix_into_os_generator(seed)
    }
    fn object_count(&self) -> Result<u64> {
        self.object_count_impl()
    }
}

impl LocalBackend {
    /// The AES ciphers: GCM, CBC (with or without padding) and ECB.
    fn cipher(&self, mech: &Mechanism, key: &ObjectId, encrypt: bool) -> Result<Box<dyn CipherOp>> {
        let block = |iv, pad| -> Result<Box<dyn CipherOp>> {
            let r = self.opened(key)?;
            expect_type(&r.attrs, &[key_type::AES], Error::KeyTypeInconsistent)?;
            Ok(Box::new(blocks::AesBlocks::new(self.secret(&r)?, iv, pad, encrypt)?))
        };
        match mech {
            Mechanism::AesGcm { iv, aad, tag_bits } => {
                let r = self.opened(key)?;
                expect_type(&r.attrs, &[key_type::AES], Error::KeyTypeInconsistent)?;
                Ok(Box::new(ops::Gcm::new(self.secret(&r)?, iv, aad, *tag_bits, encrypt)?))
            }
            Mechanism::AesCbc { iv } => block(Some(*iv), false),
            Mechanism::AesCbcPad { iv } => block(Some(*iv), true),
            Mechanism::AesEcb => block(None, false),
            Mechanism::AesCtr { counter_bits, cb } => {
                let r = self.opened(key)?;
                expect_type(&r.attrs, &[key_type::AES], Error::KeyTypeInconsistent)?;
                Ok(Box::new(blocks::AesCtr::new(&self.secret(&r)?, *counter_bits, *cb)?))
            }
            #[cfg(feature = "openssl")]
            Mechanism::RsaOaep(p) => {
                let r = self.opened(key)?;
                let want = if encrypt { class::PUBLIC_KEY } else { class::PRIVATE_KEY };
                if r.attrs.key_type() != Some(key_type::RSA) || r.attrs.class()? != want {
                    return Err(Error::KeyTypeInconsistent);
                }
                Ok(Box::new(if encrypt {
                    rsa::OaepOp::encrypt(&r.attrs, p)?
                } else {
                    rsa::OaepOp::decrypt(self.secret(&r)?, p)?
                }))
            }
            other => Err(Error::MechanismInvalid(other.ty())),
        }
    }
}

#[cfg(feature = "openssl")]
impl LocalBackend {
    /// RSA-OAEP key transport: a secret key's value, encrypted to an RSA public key.
    fn oaep_wrap(
        &self,
        p: &crate::model::mechanisms::OaepParams,
        wrapping: &ObjectId,
        key: &ObjectId,
    ) -> Result<Vec<u8>> {
        let wr = self.opened(wrapping)?;
        if wr.attrs.key_type() != Some(key_type::RSA) || wr.attrs.class()? != class::PUBLIC_KEY {
            return Err(Error::WrappingKeyTypeInconsistent);
        }
        let kr = self.opened(key)?;
        if kr.attrs.class()? != class::SECRET_KEY {
            return Err(Error::KeyNotWrappable);
        }
        let params = rsa::oaep(p)?;
        let n = wr.attrs.get(attr::MODULUS).ok_or(Error::WrappingKeyTypeInconsistent)?;
        let e = wr
            .attrs
            .get(attr::PUBLIC_EXPONENT)
            .ok_or(Error::WrappingKeyTypeInconsistent)?;
        crate::crypto::rsa::oaep_encrypt(n, e, &params, &self.secret(&kr)?).map_err(|e| match e {
            Error::DataLenRange => Error::KeySizeRange,
            other => other,
        })
    }

    fn oaep_unwrap(
        &self,
        p: &crate::model::mechanisms::OaepParams,
        unwrapping: &ObjectId,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ur = self.opened(unwrapping)?;
        if ur.attrs.key_type() != Some(key_type::RSA) || ur.attrs.class()? != class::PRIVATE_KEY {
            return Err(Error::UnwrappingKeyTypeInconsistent);
        }
        let params = rsa::oaep(p)?;
        crate::crypto::rsa::oaep_decrypt(&self.secret(&ur)?, &params, wrapped).map_err(|e| match e {
            Error::EncryptedDataLenRange => Error::WrappedKeyLenRange,
            _ => Error::WrappedKeyInvalid,
        })
    }
}
