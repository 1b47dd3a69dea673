//! Objects on the HSM: keygate's ids for HSM handles, creating objects (through the library's
//! own `C_CreateObject`), and reading attributes, with the fallbacks HSMs need.

use std::sync::Arc;

use cryptoki::error::Error as CkError;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};

use super::{convert, fwd, id_of, HsmBackend};
use crate::backend::{Lifetime, ObjectId};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, flag, rule_for, AttrMap, RULES};

impl HsmBackend {
    /// One C_GetAttributeValue for what a key operation checks, instead of the class and then
    /// every attribute of the class.
    pub(super) fn read_key_attributes(&self, session: u64, id: &ObjectId) -> Result<Arc<AttrMap>> {
        static TYPES: std::sync::LazyLock<Vec<AttributeType>> = std::sync::LazyLock::new(|| {
            // Not the dates (SoftHSM2 2.6.1 fails the whole request when one is empty), nor
            // keygate's own revocation attribute (no HSM holds it), nor the nested templates
            // (cryptoki does not carry them): in hsm mode the HSM enforces these, if it does
            // (docs/decisions.md).
            crate::backend::KEY_USE
                .iter()
                .filter(|t| {
                    ![
                        attr::START_DATE,
                        attr::END_DATE,
                        attr::KEYGATE_REVOKED,
                        attr::WRAP_TEMPLATE,
                        attr::UNWRAP_TEMPLATE,
                    ]
                    .contains(t)
                })
                .filter_map(|t| convert::attribute_type(*t))
                .collect()
        });
        self.read_these(session, id, &TYPES)
    }

    /// One C_GetAttributeValue for `types` of an object, falling back to reading the class and
    /// then every attribute of the class when the HSM fails the request as a whole.
    fn read_these(&self, session: u64, id: &ObjectId, types: &[AttributeType]) -> Result<Arc<AttrMap>> {
        let h = self.handle(id)?;
        let got = {
            let s = self.session(session)?;
            let s = s.lock();
            s.get_attributes(h, types)
        };
        match got {
            Ok(got) => {
                let mut out = AttrMap::new();
                for a in &got {
                    if let Some((ty, v)) = convert::attribute_in(a) {
                        out.set(ty, v);
                    }
                }
                if out.class().is_err() {
                    return Err(Error::ObjectHandleInvalid);
                }
                Ok(Arc::new(out))
            }
            // An HSM that fails the request as a whole: the careful way.
            Err(CkError::Pkcs11(cryptoki::error::RvError::GeneralError, _)) => {
                self.object_attributes(session, id).map(Arc::new)
            }
            Err(e) => Err(fwd("C_GetAttributeValue")(e)),
        }
    }

    pub(super) fn handle(&self, id: &ObjectId) -> Result<ObjectHandle> {
        self.objects.read().get(id).copied().ok_or(Error::ObjectHandleInvalid)
    }

    pub(super) fn register(&self, h: ObjectHandle) -> ObjectId {
        let id = id_of(h);
        self.objects.write().insert(id, h);
        id
    }

    pub(super) fn created(&self, s: u64, lifetime: Lifetime, h: ObjectHandle) -> ObjectId {
        if let Lifetime::Session(_) = lifetime {
            self.session_objects.lock().entry(s).or_default().push(h);
        }
        self.register(h)
    }

    /// The attributes of `attrs` that differ from the object's now: only those are sent, since
    /// an HSM refuses writes to attributes it fixed, even with an unchanged value.
    pub(super) fn changes(&self, session: u64, id: &ObjectId, attrs: &AttrMap) -> Result<AttrMap> {
        let before = self.object_attributes(session, id)?;
        let mut changed = AttrMap::new();
        for (ty, v) in attrs.iter() {
            if before.get(ty) != Some(v) {
                changed.set(ty, v.to_vec());
            }
        }
        Ok(changed)
    }

    /// The non-secret attributes an object of `class` may have that cryptoki cannot express.
    fn beyond_cryptoki(class: u64) -> impl Iterator<Item = u64> {
        RULES
            .iter()
            .filter_map(move |r| rule_for(r.ty, class))
            .filter(|r| r.flags & flag::SECRET == 0 && r.ty != attr::KEYGATE_REVOKED)
            .map(|r| r.ty)
            .filter(|ty| convert::attribute_type(*ty).is_none())
    }

    /// The types of the non-secret attributes an object of `class` may have.
    fn readable_types(class: u64) -> Vec<AttributeType> {
        let mut out: Vec<AttributeType> = RULES
            .iter()
            .filter_map(|r| {
                rule_for(r.ty, class)
                    .filter(|r| r.flags & flag::SECRET == 0)
                    .map(|r| r.ty)
            })
            .filter_map(convert::attribute_type)
            .collect();
        if rule_for(attr::VALUE, class).is_some_and(|r| r.flags & flag::SECRET == 0) {
            out.push(AttributeType::Value);
        }
        out
    }

    pub(super) fn create_object(&self, session: u64, lifetime: Lifetime, mut attrs: AttrMap) -> Result<ObjectId> {
        convert::der_point(&mut attrs)?;
        let raw = self.device()?.raw.clone();
        let s = self.session(session)?;
        let attrs = convert::template_for_hsm(&attrs);
        let template: Vec<(u64, &[u8])> = attrs.iter().collect();
        // Through the library's own C_CreateObject: cryptoki has no variant for some
        // attributes a client sets (CKA_CERTIFICATE_CATEGORY of a certificate).
        let h = raw
            .create_object(s.lock().handle(), &template)
            .map_err(|rv| Error::Forwarded {
                function: "C_CreateObject",
                rv,
            })?;
        Ok(self.created(session, lifetime, h))
    }

    pub(super) fn object_attributes(&self, session: u64, id: &ObjectId) -> Result<AttrMap> {
        let h = self.handle(id)?;
        let s = self.session(session)?;
        let s = s.lock();
        let class = match s
            .get_attributes(h, &[AttributeType::Class])
            .map_err(fwd("C_GetAttributeValue"))?[..]
        {
            [Attribute::Class(c)] => u64::from(c),
            _ => return Err(Error::ObjectHandleInvalid),
        };
        // Asked for alone, after the rest: CKA_KEY_GEN_MECHANISM (cryptoki cannot represent the
        // CK_UNAVAILABLE_INFORMATION an imported key has there) and the two dates (SoftHSM2
        // 2.6.1 fails a request for an empty CKA_START_DATE/CKA_END_DATE with
        // CKR_GENERAL_ERROR, which made every key operation's attribute read fall back to one
        // call per attribute: keygate bench showed it).
        let alone = [
            AttributeType::KeyGenMechanism,
            AttributeType::StartDate,
            AttributeType::EndDate,
        ];
        let (alone, types): (Vec<_>, Vec<_>) = Self::readable_types(class).into_iter().partition(|t| alone.contains(t));
        let mut got = match s.get_attributes(h, &types) {
            Ok(got) => got,
            // Some HSMs fail a whole request over one attribute they handle badly; ask one by
            // one and keep what works.
            Err(CkError::Pkcs11(cryptoki::error::RvError::GeneralError, _)) => types
                .iter()
                .filter_map(|t| s.get_attributes(h, &[*t]).ok())
                .flatten()
                .collect(),
            Err(e) => return Err(fwd("C_GetAttributeValue")(e)),
        };
        let mut out = AttrMap::new();
        for t in alone {
            match s.get_attributes(h, &[t]) {
                Ok(v) => got.extend(v),
                Err(CkError::Pkcs11(..)) => {}
                Err(_) if t == AttributeType::KeyGenMechanism => {
                    out.set_ulong(attr::KEY_GEN_MECHANISM, pkcs11_sys::CK_UNAVAILABLE_INFORMATION)
                }
                Err(_) => {}
            }
        }
        for a in &got {
            if let Some((ty, v)) = convert::attribute_in(a) {
                out.set(ty, v);
            }
        }
        // The attributes cryptoki has no variant for, one by one through the library itself.
        let raw = self.device()?.raw.clone();
        for ty in Self::beyond_cryptoki(class) {
            if let Some(v) = raw.attribute(s.handle(), h, ty) {
                out.set(ty, v);
            }
        }
        Ok(out)
    }
}
