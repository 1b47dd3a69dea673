//! The attribute policy applied to templates and objects, driven by the table in
//! `attributes.rs`: which attributes a template may name, the defaults it gets, the attributes
//! only the token sets, what `C_SetAttributeValue` may change, and what `C_GetAttributeValue`
//! may reveal.

use crate::error::{Error, Result};
use crate::model::attributes::{attr, check_kind, class, flag, key_type, rule_for, AttrMap, Default, UNAVAILABLE};
use crate::model::mechanisms::Mechanism;

/// How a new object comes to be; decides the token-set attributes.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    Create,
    Generate(u64),
    Unwrap,
    /// Derived from a base key with these attributes; `outside`: the derivation took a value
    /// from outside the token (ECDH's peer public key), so whoever chose it may know the result.
    Derive {
        base: &'a AttrMap,
        outside: bool,
    },
}

/// Checks every attribute a caller put in a template for an object of `class`.
fn check_caller_attrs(t: &AttrMap, cls: u64, origin: Origin<'_>, is_so: bool) -> Result<()> {
    for (ty, v) in t.iter() {
        let r = rule_for(ty, cls).ok_or(Error::AttributeTypeInvalid(ty))?;
        check_kind(ty, r.kind, v)?;
        if r.flags & (flag::TOKEN_ONLY | flag::ONCE) != 0 {
            return Err(Error::AttributeReadOnly(ty));
        }
        if r.flags & flag::GENERATED != 0 && !matches!(origin, Origin::Create) {
            return Err(Error::TemplateInconsistent(
                "key material cannot be given to a generating function",
            ));
        }
        if r.flags & flag::SO_ONLY != 0 && v == [1] && !is_so {
            return Err(Error::AttributeReadOnly(ty));
        }
    }
    Ok(())
}

/// Completes a caller's template for a new object: checks, defaults, token-set attributes.
pub fn complete(mut t: AttrMap, origin: Origin<'_>, is_so: bool) -> Result<AttrMap> {
    let cls = t.class()?;
    if crate::model::attributes::Classes::of(cls).is_none() {
        // A class keygate does not hold (or no class at all): the value is what is wrong.
        return Err(Error::AttributeValueInvalid(attr::CLASS));
    }
    check_caller_attrs(&t, cls, origin, is_so)?;
    // An X.509 certificate names its subject (PKCS#11 3.0 §4.6.3: "must be specified when the
    // object is created"); keygate holds no other certificate type.
    if cls == class::CERTIFICATE && matches!(origin, Origin::Create) && !t.contains(attr::SUBJECT) {
        return Err(Error::TemplateIncomplete("an X.509 certificate needs CKA_SUBJECT"));
    }
    // A secret key asked to wrap or unwrap is a key-encryption key: it does not also encrypt
    // and decrypt unless the template says so (C_WrapKey and C_UnwrapKey refuse keys that do).
    if cls == class::SECRET_KEY && (t.flag(attr::WRAP) || t.flag(attr::UNWRAP)) {
        for role in [attr::ENCRYPT, attr::DECRYPT] {
            if !t.contains(role) {
                t.set_bool(role, false);
            }
        }
    }
    for r in crate::model::attributes::RULES
        .iter()
        .chain(std::iter::once(&value_rule(cls)))
    {
        let Some(r) = rule_for(r.ty, cls) else { continue };
        if t.contains(r.ty) {
            continue;
        }
        if r.flags & flag::REQUIRED != 0 && matches!(origin, Origin::Create) {
            return Err(Error::TemplateIncomplete("a required attribute is missing"));
        }
        match r.default {
            Some(Default::Bool(b)) => t.set_bool(r.ty, b),
            Some(Default::BoolSecretClasses) => t.set_bool(r.ty, matches!(cls, class::PRIVATE_KEY | class::SECRET_KEY)),
            Some(Default::Ulong(v)) => t.set_ulong(r.ty, v),
            Some(Default::Empty) => t.set(r.ty, Vec::new()),
            None => {}
        }
    }
    if matches!(cls, class::PUBLIC_KEY | class::PRIVATE_KEY | class::SECRET_KEY) {
        if t.key_type().is_none() {
            return Err(Error::TemplateIncomplete("CKA_KEY_TYPE missing"));
        }
        let sensitive = t.flag(attr::SENSITIVE);
        let extractable = t.flag(attr::EXTRACTABLE);
        let (local, mech, always_sensitive, never_extractable) = match origin {
            Origin::Create => (false, UNAVAILABLE, false, false),
            Origin::Unwrap => (false, UNAVAILABLE, false, false),
            Origin::Generate(m) => (true, m, sensitive, !extractable),
            // A key someone outside may know was never "always sensitive", whatever its base: it
            // must not pass for a key that never left the token (it could then wrap sensitive keys).
            Origin::Derive { base, outside } => (
                false,
                UNAVAILABLE,
                !outside && base.flag(attr::ALWAYS_SENSITIVE) && sensitive,
                base.flag(attr::NEVER_EXTRACTABLE) && !extractable,
            ),
        };
        t.set_bool(attr::LOCAL, local);
        t.set_ulong(attr::KEY_GEN_MECHANISM, mech);
        if cls != class::PUBLIC_KEY {
            t.set_bool(attr::ALWAYS_SENSITIVE, always_sensitive);
            t.set_bool(attr::NEVER_EXTRACTABLE, never_extractable);
        }
    }
    Ok(t)
}

fn value_rule(cls: u64) -> crate::model::attributes::Rule {
    rule_for(attr::VALUE, cls).unwrap_or(crate::model::attributes::Rule {
        ty: attr::VALUE,
        kind: crate::model::attributes::Kind::Bytes,
        classes: crate::model::attributes::Classes::DATA,
        flags: 0,
        default: None,
    })
}

/// Fills the class and key type a generation mechanism implies, refusing contradictions.
pub fn implied(mut t: AttrMap, cls: u64, kt: u64) -> Result<AttrMap> {
    if t.ulong(attr::CLASS)?.is_some_and(|c| c != cls) {
        return Err(Error::TemplateInconsistent("CKA_CLASS does not fit the mechanism"));
    }
    if t.ulong(attr::KEY_TYPE)?.is_some_and(|k| k != kt) {
        return Err(Error::TemplateInconsistent("CKA_KEY_TYPE does not fit the mechanism"));
    }
    t.set_ulong(attr::CLASS, cls);
    t.set_ulong(attr::KEY_TYPE, kt);
    Ok(t)
}

/// The key type a secret-key generation mechanism makes.
pub fn keygen_type(m: &Mechanism, t: &AttrMap) -> Result<u64> {
    Ok(match m {
        Mechanism::AesKeyGen => key_type::AES,
        Mechanism::GenericSecretKeyGen => match t.key_type() {
            Some(k @ (key_type::GENERIC_SECRET | key_type::SHA256_HMAC)) => k,
            None => key_type::GENERIC_SECRET,
            Some(_) => return Err(Error::TemplateInconsistent("CKA_KEY_TYPE does not fit the mechanism")),
        },
        other => return Err(Error::MechanismInvalid(other.ty())),
    })
}

/// An AES key's `CKA_VALUE` is 16, 24 or 32 bytes; checked here so both modes refuse another
/// length alike (an HSM may accept it).
pub fn check_aes_value(t: &AttrMap) -> Result<()> {
    match (t.key_type(), t.get(attr::VALUE)) {
        (Some(key_type::AES), Some(v)) if !matches!(v.len(), 16 | 24 | 32) => {
            Err(Error::AttributeValueInvalid(attr::VALUE))
        }
        _ => Ok(()),
    }
}

/// Applies `changes` (`C_SetAttributeValue`, or the template of `C_CopyObject` when `copy`)
/// to an object's attributes, enforcing the one-way attributes.
pub fn apply_changes(obj: &AttrMap, changes: &AttrMap, copy: bool, is_so: bool) -> Result<AttrMap> {
    let cls = obj.class()?;
    if !copy && !obj.flag(attr::MODIFIABLE) {
        return Err(Error::ActionProhibited);
    }
    let mut out = obj.clone();
    for (ty, v) in changes.iter() {
        let r = rule_for(ty, cls).ok_or(Error::AttributeTypeInvalid(ty))?;
        check_kind(ty, r.kind, v)?;
        let copy_settable = copy
            && matches!(
                ty,
                attr::TOKEN | attr::PRIVATE | attr::MODIFIABLE | attr::DESTROYABLE | attr::COPYABLE
            );
        if r.flags & flag::MODIFIABLE == 0 && !copy_settable {
            // A copy's template may repeat what the copy keeps anyway; C_SetAttributeValue may
            // not write a read-only attribute, even with the value it has (PKCS#11 3.0 §4.1.2).
            if copy && obj.get(ty) == Some(v) {
                continue;
            }
            return Err(Error::AttributeReadOnly(ty));
        }
        let now = obj.flag(ty);
        let to = v == [1];
        let one_way_violated = match ty {
            attr::SENSITIVE => now && !to,
            attr::EXTRACTABLE => !now && to,
            attr::WRAP_WITH_TRUSTED => now && !to,
            _ => false,
        };
        if one_way_violated {
            return Err(Error::AttributeReadOnly(ty));
        }
        if r.flags & flag::SO_ONLY != 0 && to && !is_so {
            return Err(Error::AttributeReadOnly(ty));
        }
        if r.flags & flag::ONCE != 0 {
            if obj.get(ty) == Some(v) {
                continue;
            }
            if obj.contains(ty) {
                return Err(Error::AttributeReadOnly(ty));
            }
        }
        if ty == attr::KEYGATE_REVOKED {
            let reason = u64::from_le_bytes(v.try_into().map_err(|_| Error::AttributeValueInvalid(ty))?);
            if crate::model::attributes::revocation::name(reason).is_none() {
                return Err(Error::AttributeValueInvalid(ty));
            }
        }
        out.set(ty, v.to_vec());
    }
    Ok(out)
}

/// What `C_GetAttributeValue` may return for one attribute.
pub enum Readable<'a> {
    Value(&'a [u8]),
    /// The value is secret material that this key may not reveal.
    Sensitive,
    /// The secret is extractable: fetch it from the backend.
    Secret,
    /// Not an attribute of this object.
    Invalid,
}

pub fn readable(obj: &AttrMap, ty: u64) -> Readable<'_> {
    let cls = obj.class().unwrap_or(u64::MAX);
    if let Some(v) = obj.get(ty) {
        return Readable::Value(v);
    }
    // The table is per class; these attributes belong to one key type of it.
    let rsa = obj.key_type() == Some(crate::model::attributes::key_type::RSA);
    let rsa_only = matches!(
        ty,
        attr::MODULUS
            | attr::MODULUS_BITS
            | attr::PUBLIC_EXPONENT
            | attr::PRIVATE_EXPONENT
            | attr::PRIME_1
            | attr::PRIME_2
            | attr::EXPONENT_1
            | attr::EXPONENT_2
            | attr::COEFFICIENT
    );
    if rsa_only != rsa && (rsa_only || ty == attr::VALUE) && cls != class::DATA && cls != class::CERTIFICATE {
        return Readable::Invalid;
    }
    match rule_for(ty, cls) {
        Some(r) if r.flags & flag::SECRET != 0 => {
            if obj.flag(attr::SENSITIVE) || !obj.flag(attr::EXTRACTABLE) {
                Readable::Sensitive
            } else {
                Readable::Secret
            }
        }
        _ => Readable::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_template() -> AttrMap {
        let mut t = AttrMap::new();
        t.set_ulong(attr::CLASS, class::SECRET_KEY);
        t.set_ulong(attr::KEY_TYPE, key_type::AES);
        t.set_ulong(attr::VALUE_LEN, 32);
        t
    }

    #[test]
    fn generated_keys_get_token_attributes() {
        let t = complete(secret_template(), Origin::Generate(0x1080), false).unwrap();
        assert!(t.flag(attr::LOCAL));
        assert!(t.flag(attr::SENSITIVE) && t.flag(attr::ALWAYS_SENSITIVE));
        assert!(!t.flag(attr::EXTRACTABLE) && t.flag(attr::NEVER_EXTRACTABLE));
        assert_eq!(t.ulong(attr::KEY_GEN_MECHANISM).unwrap(), Some(0x1080));
        assert!(t.flag(attr::PRIVATE));
    }

    #[test]
    fn token_only_attributes_refused() {
        let mut t = secret_template();
        t.set_bool(attr::LOCAL, true);
        assert_eq!(
            complete(t, Origin::Generate(1), false).unwrap_err(),
            Error::AttributeReadOnly(attr::LOCAL)
        );
    }

    #[test]
    fn value_refused_in_generation() {
        let mut t = secret_template();
        t.set(attr::VALUE, vec![0; 32]);
        assert!(matches!(
            complete(t, Origin::Generate(1), false),
            Err(Error::TemplateInconsistent(_))
        ));
    }

    #[test]
    fn wrong_attribute_for_class() {
        let mut t = secret_template();
        t.set(attr::EC_POINT, vec![4]);
        assert_eq!(
            complete(t, Origin::Generate(1), false).unwrap_err(),
            Error::AttributeTypeInvalid(attr::EC_POINT)
        );
    }

    #[test]
    fn sensitive_is_one_way() {
        let obj = complete(secret_template(), Origin::Generate(1), false).unwrap();
        let mut ch = AttrMap::new();
        ch.set_bool(attr::SENSITIVE, false);
        assert_eq!(
            apply_changes(&obj, &ch, false, false).unwrap_err(),
            Error::AttributeReadOnly(attr::SENSITIVE)
        );
        let mut ch = AttrMap::new();
        ch.set(attr::LABEL, b"x".to_vec());
        assert_eq!(
            apply_changes(&obj, &ch, false, false).unwrap().get(attr::LABEL),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn sensitive_value_not_readable() {
        let obj = complete(secret_template(), Origin::Generate(1), false).unwrap();
        assert!(matches!(readable(&obj, attr::VALUE), Readable::Sensitive));
        assert!(matches!(readable(&obj, attr::EC_POINT), Readable::Invalid));
    }
}
