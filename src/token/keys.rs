//! Key management on a session: generating keys and key pairs, wrapping and unwrapping, and
//! deriving, with the rules that decide what may leave the token under which key.

use super::object::{self, Origin};
use super::operations::{Keyed, Out};
use super::provider::Provider;
use super::session::KeptWrap;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, key_type, nested, AttrMap};
use crate::model::mechanisms::{mflag, Mechanism, Usage};

/// Whether `wrapping` may wrap `key` out of the token (beyond `CKA_EXTRACTABLE`, the wrap
/// template and pins). A sensitive key leaves the token only under a key nobody outside knows:
/// one the SO marked `CKA_TRUSTED`, or a secret key that was always sensitive (made in the
/// token, never imported in clear); and never under a key that can also decrypt, which would
/// decrypt the wrapping it made (the wrap-then-decrypt attack).
fn may_wrap(wrapping: &AttrMap, key: &AttrMap) -> Result<()> {
    let refuse = |why: &str, e: Error| {
        log::warn!("C_WrapKey refused: {why}");
        Err(e)
    };
    if key.ulong(attr::KEYGATE_REVOKED)?.is_some() {
        return refuse("the key to wrap is revoked", Error::KeyNotWrappable);
    }
    let trusted = wrapping.flag(attr::TRUSTED);
    if key.flag(attr::WRAP_WITH_TRUSTED) && !trusted {
        return refuse(
            "the key is CKA_WRAP_WITH_TRUSTED and the wrapping key is not CKA_TRUSTED",
            Error::KeyNotWrappable,
        );
    }
    if !key.flag(attr::SENSITIVE) {
        return Ok(());
    }
    let secret = wrapping.class()? == class::SECRET_KEY;
    if secret && wrapping.flag(attr::DECRYPT) {
        return refuse(
            "a sensitive key cannot be wrapped under a key that can also decrypt (CKA_DECRYPT)",
            Error::KeyFunctionNotPermitted,
        );
    }
    if !guards_sensitive_keys(wrapping)? {
        return refuse(
            "a sensitive key can be wrapped only under a CKA_TRUSTED key or a secret key that was always sensitive; this wrapping key was known outside the token",
            Error::KeyNotWrappable,
        );
    }
    // Not under a weaker key: whoever breaks the wrapping key would get the stronger one.
    if let (Some(k), Some(w)) = (key.ulong(attr::VALUE_LEN)?, wrapping.ulong(attr::VALUE_LEN)?) {
        if key.class()? == class::SECRET_KEY && secret && k > w {
            return refuse(
                "a sensitive key cannot be wrapped under a shorter (weaker) key",
                Error::KeyNotWrappable,
            );
        }
    }
    Ok(())
}

/// Whether `k` may wrap sensitive keys: a key the SO marked `CKA_TRUSTED`, or a secret key that
/// was always sensitive (made in the token, never known outside). Such a key also unwraps only
/// sensitive keys: otherwise a sensitive key wrapped under it could be unwrapped readable
/// (`allow_export`). Both attributes are fixed for the key's life (ALWAYS_SENSITIVE cannot be
/// set, TRUSTED only by the SO), so no later change lets it do the one and not the other.
fn guards_sensitive_keys(k: &AttrMap) -> Result<bool> {
    Ok(k.flag(attr::TRUSTED) || (k.class()? == class::SECRET_KEY && k.flag(attr::ALWAYS_SENSITIVE)))
}

/// Wrapping functions name their key's errors after its role: `(handle, type)`, for instance
/// `CKR_WRAPPING_KEY_HANDLE_INVALID` and `CKR_WRAPPING_KEY_TYPE_INCONSISTENT`.
fn key_errors_as(e: Error, role: (Error, Error)) -> Error {
    match e {
        Error::KeyHandleInvalid => role.0,
        Error::KeyTypeInconsistent => role.1,
        other => other,
    }
}

impl Provider {
    pub(super) fn generate_key_unaudited(&self, h: u64, mech: &Mechanism, template: AttrMap) -> Result<u64> {
        let s = self.session(h)?;
        let s = s.lock();
        let slot = self.slot_of(&s);
        let b = slot.backend.clone();
        slot.check(mech, mflag::GENERATE)?;
        let kt = object::keygen_type(mech, &template)?;
        let t = object::implied(template, class::SECRET_KEY, kt)?;
        let t = object::complete(t, Origin::Generate(mech.ty()), self.is_so(s.slot))?;
        // AES has three key sizes; refused here so both modes answer alike (an HSM may call
        // another length CKR_ATTRIBUTE_VALUE_INVALID).
        if kt == key_type::AES && !matches!(t.ulong(attr::VALUE_LEN)?, None | Some(16 | 24 | 32)) {
            return Err(Error::KeySizeRange);
        }
        slot.policy.check_protection(&t)?;
        slot.policy.check_key_size(&t)?;
        let lifetime = self.lifetime_for(h, &s, &t)?;
        let id = b.generate_key(h, mech, lifetime, t)?;
        Ok(self.handles.handle_for(s.slot, id))
    }

    pub(super) fn generate_key_pair_unaudited(
        &self,
        h: u64,
        mech: &Mechanism,
        public: AttrMap,
        private: AttrMap,
    ) -> Result<(u64, u64)> {
        let s = self.session(h)?;
        let s = s.lock();
        let slot = self.slot_of(&s);
        let b = slot.backend.clone();
        slot.check(mech, mflag::GENERATE_KEY_PAIR)?;
        let kt = match mech {
            Mechanism::EcKeyPairGen => key_type::EC,
            Mechanism::EdwardsKeyPairGen => key_type::EC_EDWARDS,
            Mechanism::MontgomeryKeyPairGen => key_type::EC_MONTGOMERY,
            Mechanism::RsaKeyPairGen => key_type::RSA,
            other => return Err(Error::MechanismInvalid(other.ty())),
        };
        let origin = Origin::Generate(mech.ty());
        let so = self.is_so(s.slot);
        let public = object::complete(object::implied(public, class::PUBLIC_KEY, kt)?, origin, so)?;
        let private = object::complete(object::implied(private, class::PRIVATE_KEY, kt)?, origin, so)?;
        if kt == key_type::RSA {
            if public.ulong(attr::MODULUS_BITS)?.is_none() {
                return Err(Error::TemplateIncomplete(
                    "CKA_MODULUS_BITS missing from the public key template",
                ));
            }
            slot.policy.check_key_size(&public)?;
        } else {
            if public.get(attr::EC_PARAMS).is_none() {
                return Err(Error::TemplateIncomplete(
                    "CKA_EC_PARAMS missing from the public key template",
                ));
            }
            if private
                .get(attr::EC_PARAMS)
                .is_some_and(|p| Some(p) != public.get(attr::EC_PARAMS))
            {
                return Err(Error::TemplateInconsistent("the two templates name different curves"));
            }
            slot.policy.check_key_size(&public)?;
        }
        slot.policy.check_protection(&private)?;
        let lifetimes = (self.lifetime_for(h, &s, &public)?, self.lifetime_for(h, &s, &private)?);
        let (pu, pr) = b.generate_key_pair(h, mech, lifetimes, public, private)?;
        Ok((self.handles.handle_for(s.slot, pu), self.handles.handle_for(s.slot, pr)))
    }

    pub(super) fn wrap_key_unaudited(
        &self,
        h: u64,
        mech: &Mechanism,
        wrapping: u64,
        key: u64,
        cap: Option<usize>,
    ) -> Result<Out> {
        let Keyed {
            session: s,
            id: wid,
            backend: b,
            ..
        } = self
            .keyed(h, mech, Usage::Wrap, wrapping)
            .map_err(|e| key_errors_as(e, (Error::WrappingKeyHandleInvalid, Error::WrappingKeyTypeInconsistent)))?;
        let mut s = s.lock();
        let (kid, kattrs) = self.key_object(&s, key, Error::KeyHandleInvalid)?;
        if !kattrs.flag(attr::EXTRACTABLE) {
            return Err(Error::KeyUnextractable);
        }
        let wattrs = b.key_attributes(h, &wid)?;
        may_wrap(&wattrs, &kattrs)?;
        if let Some(t) = wattrs.get(attr::WRAP_TEMPLATE) {
            let full = b.attributes(h, &kid)?;
            let required = nested::decode(t)?;
            let differs = required
                .iter()
                .find(|(ty, v)| full.get(*ty) != Some(*v))
                .map(|(ty, _)| ty);
            if let Some(ty) = differs {
                log::warn!(
                    "C_WrapKey refused: the key differs from the wrapping key's CKA_WRAP_TEMPLATE in {}",
                    crate::error::attribute_name(ty)
                );
                return Err(Error::KeyNotWrappable);
            }
        }
        self.slot_of(&s).pins.check(b, &kid, &kattrs)?;
        // The two-call convention: a wrap whose length was asked for is kept for the call that
        // brings the buffer, not done twice (an HSM round trip, or a randomised RSA-OAEP wrap
        // that would differ). The checks above run on both calls.
        let kept = s
            .wrapped
            .take()
            .filter(|k| k.mech == *mech && k.wrapping == wrapping && k.key == key);
        let out = match kept {
            Some(k) => k.out,
            None => b.wrap_key(h, mech, &wid, &kid)?,
        };
        let n = out.len();
        match cap {
            Some(c) if c >= n => Ok(Out::Public(out)),
            _ => {
                s.wrapped = Some(KeptWrap {
                    mech: mech.clone(),
                    wrapping,
                    key,
                    out,
                });
                Ok(if cap.is_none() { Out::Len(n) } else { Out::TooSmall(n) })
            }
        }
    }

    pub(super) fn unwrap_key_unaudited(
        &self,
        h: u64,
        mech: &Mechanism,
        unwrapping: u64,
        wrapped: &[u8],
        template: AttrMap,
    ) -> Result<u64> {
        let Keyed {
            session: s,
            id: uid,
            backend: b,
            ..
        } = self.keyed(h, mech, Usage::Unwrap, unwrapping).map_err(|e| {
            key_errors_as(
                e,
                (Error::UnwrappingKeyHandleInvalid, Error::UnwrappingKeyTypeInconsistent),
            )
        })?;
        let s = s.lock();
        template.class()?;
        let uattrs = b.key_attributes(h, &uid)?;
        if uattrs.class()? == class::SECRET_KEY && uattrs.flag(attr::ENCRYPT) {
            // Whoever may encrypt with the key can make a "wrapped" key of a value they chose,
            // and unwrap it into the token: the encrypt-then-unwrap attack.
            log::warn!("C_UnwrapKey refused: the unwrapping key can also encrypt (CKA_ENCRYPT)");
            return Err(Error::KeyFunctionNotPermitted);
        }
        let mut template = template;
        if let Some(forced) = uattrs.get(attr::UNWRAP_TEMPLATE) {
            for (ty, v) in nested::decode(forced)?.iter() {
                match template.get(ty) {
                    Some(given) if given != v => {
                        return Err(Error::TemplateInconsistent(
                            "the template contradicts the unwrapping key's CKA_UNWRAP_TEMPLATE",
                        ))
                    }
                    _ => template.set(ty, v.to_vec()),
                }
            }
        }
        if guards_sensitive_keys(&uattrs)? {
            if template.bool(attr::SENSITIVE)? == Some(false) {
                log::warn!(
                    "C_UnwrapKey refused: a key that may wrap sensitive keys unwraps only sensitive keys (CKA_SENSITIVE FALSE asked)"
                );
                return Err(Error::TemplateInconsistent(
                    "a key that may wrap sensitive keys unwraps only sensitive keys",
                ));
            }
            template.set_bool(attr::SENSITIVE, true);
        }
        let t = object::complete(template, Origin::Unwrap, self.is_so(s.slot))?;
        let policy = &self.slot_of(&s).policy;
        policy.check_protection(&t)?;
        policy.check_key_size(&t)?;
        let lifetime = self.lifetime_for(h, &s, &t)?;
        let id = b.unwrap_key(h, mech, &uid, wrapped, lifetime, t)?;
        Ok(self.handles.handle_for(s.slot, id))
    }

    pub(super) fn derive_key_unaudited(
        &self,
        h: u64,
        mech: &Mechanism,
        base: u64,
        mut template: AttrMap,
    ) -> Result<u64> {
        let Keyed {
            session: s,
            id: bid,
            backend: b,
            ..
        } = self.keyed(h, mech, Usage::Derive, base)?;
        let s = s.lock();
        if !template.contains(attr::CLASS) {
            template.set_ulong(attr::CLASS, class::SECRET_KEY);
        }
        if !template.contains(attr::KEY_TYPE) {
            template.set_ulong(attr::KEY_TYPE, key_type::GENERIC_SECRET);
        }
        if template.class()? != class::SECRET_KEY {
            return Err(Error::TemplateInconsistent("derivation makes secret keys"));
        }
        let base_attrs = b.attributes(h, &bid)?;
        // Every derivation keygate offers (ECDH) mixes in the peer's public value.
        let origin = Origin::Derive {
            base: &base_attrs,
            outside: true,
        };
        let t = object::complete(template, origin, self.is_so(s.slot))?;
        self.slot_of(&s).policy.check_protection(&t)?;
        let lifetime = self.lifetime_for(h, &s, &t)?;
        let id = b.derive_key(h, mech, &bid, lifetime, t)?;
        Ok(self.handles.handle_for(s.slot, id))
    }
}
