//! Attributes and templates, and the attribute policy table.
//!
//! An attribute value is kept in its C byte form (`CK_BBOOL` is one byte, `CK_ULONG` eight
//! little-endian bytes on the 64-bit little-endian targets keygate builds for), so that values
//! round-trip exactly. Which attribute applies to which class, which one is required, defaulted,
//! modifiable or secret is DATA ([`RULES`]), consulted by `token/object.rs`; there are no
//! scattered `if`s about individual attributes. This module never sees raw pointers.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use pkcs11_sys as ck;

/// Attribute type numbers, under Rust names.
pub mod attr {
    use pkcs11_sys as ck;
    pub const CLASS: u64 = ck::CKA_CLASS;
    pub const TOKEN: u64 = ck::CKA_TOKEN;
    pub const PRIVATE: u64 = ck::CKA_PRIVATE;
    pub const LABEL: u64 = ck::CKA_LABEL;
    pub const UNIQUE_ID: u64 = ck::CKA_UNIQUE_ID;
    pub const APPLICATION: u64 = ck::CKA_APPLICATION;
    pub const VALUE: u64 = ck::CKA_VALUE;
    pub const OBJECT_ID: u64 = ck::CKA_OBJECT_ID;
    pub const CERTIFICATE_TYPE: u64 = ck::CKA_CERTIFICATE_TYPE;
    pub const ISSUER: u64 = ck::CKA_ISSUER;
    pub const SERIAL_NUMBER: u64 = ck::CKA_SERIAL_NUMBER;
    pub const TRUSTED: u64 = ck::CKA_TRUSTED;
    pub const CERTIFICATE_CATEGORY: u64 = ck::CKA_CERTIFICATE_CATEGORY;
    pub const CHECK_VALUE: u64 = ck::CKA_CHECK_VALUE;
    pub const KEY_TYPE: u64 = ck::CKA_KEY_TYPE;
    pub const SUBJECT: u64 = ck::CKA_SUBJECT;
    pub const ID: u64 = ck::CKA_ID;
    pub const SENSITIVE: u64 = ck::CKA_SENSITIVE;
    pub const ENCRYPT: u64 = ck::CKA_ENCRYPT;
    pub const DECRYPT: u64 = ck::CKA_DECRYPT;
    pub const WRAP: u64 = ck::CKA_WRAP;
    pub const UNWRAP: u64 = ck::CKA_UNWRAP;
    pub const SIGN: u64 = ck::CKA_SIGN;
    pub const SIGN_RECOVER: u64 = ck::CKA_SIGN_RECOVER;
    pub const VERIFY: u64 = ck::CKA_VERIFY;
    pub const VERIFY_RECOVER: u64 = ck::CKA_VERIFY_RECOVER;
    pub const DERIVE: u64 = ck::CKA_DERIVE;
    pub const START_DATE: u64 = ck::CKA_START_DATE;
    pub const END_DATE: u64 = ck::CKA_END_DATE;
    pub const VALUE_LEN: u64 = ck::CKA_VALUE_LEN;
    pub const EXTRACTABLE: u64 = ck::CKA_EXTRACTABLE;
    pub const LOCAL: u64 = ck::CKA_LOCAL;
    pub const NEVER_EXTRACTABLE: u64 = ck::CKA_NEVER_EXTRACTABLE;
    pub const ALWAYS_SENSITIVE: u64 = ck::CKA_ALWAYS_SENSITIVE;
    pub const KEY_GEN_MECHANISM: u64 = ck::CKA_KEY_GEN_MECHANISM;
    pub const MODIFIABLE: u64 = ck::CKA_MODIFIABLE;
    pub const COPYABLE: u64 = ck::CKA_COPYABLE;
    pub const DESTROYABLE: u64 = ck::CKA_DESTROYABLE;
    pub const EC_PARAMS: u64 = ck::CKA_EC_PARAMS;
    pub const EC_POINT: u64 = ck::CKA_EC_POINT;
    pub const ALWAYS_AUTHENTICATE: u64 = ck::CKA_ALWAYS_AUTHENTICATE;
    pub const WRAP_WITH_TRUSTED: u64 = ck::CKA_WRAP_WITH_TRUSTED;
    pub const WRAP_TEMPLATE: u64 = ck::CKA_WRAP_TEMPLATE;
    pub const UNWRAP_TEMPLATE: u64 = ck::CKA_UNWRAP_TEMPLATE;
    pub const ALLOWED_MECHANISMS: u64 = ck::CKA_ALLOWED_MECHANISMS;
    pub const PUBLIC_KEY_INFO: u64 = ck::CKA_PUBLIC_KEY_INFO;
    pub const URL: u64 = ck::CKA_URL;
    pub const HASH_OF_SUBJECT_PUBLIC_KEY: u64 = ck::CKA_HASH_OF_SUBJECT_PUBLIC_KEY;
    pub const HASH_OF_ISSUER_PUBLIC_KEY: u64 = ck::CKA_HASH_OF_ISSUER_PUBLIC_KEY;
    pub const JAVA_MIDP_SECURITY_DOMAIN: u64 = ck::CKA_JAVA_MIDP_SECURITY_DOMAIN;
    pub const NAME_HASH_ALGORITHM: u64 = ck::CKA_NAME_HASH_ALGORITHM;
    pub const MODULUS: u64 = ck::CKA_MODULUS;
    pub const MODULUS_BITS: u64 = ck::CKA_MODULUS_BITS;
    pub const PUBLIC_EXPONENT: u64 = ck::CKA_PUBLIC_EXPONENT;
    pub const PRIVATE_EXPONENT: u64 = ck::CKA_PRIVATE_EXPONENT;
    pub const PRIME_1: u64 = ck::CKA_PRIME_1;
    pub const PRIME_2: u64 = ck::CKA_PRIME_2;
    pub const EXPONENT_1: u64 = ck::CKA_EXPONENT_1;
    pub const EXPONENT_2: u64 = ck::CKA_EXPONENT_2;
    pub const COEFFICIENT: u64 = ck::CKA_COEFFICIENT;
    /// keygate's own (`include/keygate.h`): the key is revoked, for the `CK_ULONG` reason
    /// held (see [`super::revocation`]). Absent while the key is in service.
    pub const KEYGATE_REVOKED: u64 = ck::CKA_VENDOR_DEFINED | 0x4b47_0001;
}

/// Revocation reasons of `CKA_KEYGATE_REVOKED`: the RFC 5280 `CRLReason` codes that apply to a
/// key (`include/keygate.h`).
pub mod revocation {
    pub const UNSPECIFIED: u64 = 0;
    pub const COMPROMISED: u64 = 1;
    pub const AFFILIATION_CHANGED: u64 = 3;
    pub const SUPERSEDED: u64 = 4;
    pub const CESSATION: u64 = 5;

    /// Every reason with its name, as the CLI and the audit trail spell it.
    pub const NAMES: &[(u64, &str)] = &[
        (UNSPECIFIED, "unspecified"),
        (COMPROMISED, "compromised"),
        (AFFILIATION_CHANGED, "affiliation-changed"),
        (SUPERSEDED, "superseded"),
        (CESSATION, "cessation"),
    ];

    pub fn name(reason: u64) -> Option<&'static str> {
        NAMES.iter().find(|(r, _)| *r == reason).map(|(_, n)| *n)
    }

    pub fn by_name(name: &str) -> Option<u64> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(r, _)| *r)
    }
}

/// Object classes.
pub mod class {
    use pkcs11_sys as ck;
    pub const DATA: u64 = ck::CKO_DATA;
    pub const CERTIFICATE: u64 = ck::CKO_CERTIFICATE;
    pub const PUBLIC_KEY: u64 = ck::CKO_PUBLIC_KEY;
    pub const PRIVATE_KEY: u64 = ck::CKO_PRIVATE_KEY;
    pub const SECRET_KEY: u64 = ck::CKO_SECRET_KEY;
}

/// Key types.
pub mod key_type {
    use pkcs11_sys as ck;
    pub const EC: u64 = ck::CKK_EC;
    pub const RSA: u64 = ck::CKK_RSA;
    pub const EC_EDWARDS: u64 = ck::CKK_EC_EDWARDS;
    pub const EC_MONTGOMERY: u64 = ck::CKK_EC_MONTGOMERY;
    pub const GENERIC_SECRET: u64 = ck::CKK_GENERIC_SECRET;
    pub const AES: u64 = ck::CKK_AES;
    pub const SHA256_HMAC: u64 = ck::CKK_SHA256_HMAC;
    pub const SHA384_HMAC: u64 = ck::CKK_SHA384_HMAC;
    pub const SHA512_HMAC: u64 = ck::CKK_SHA512_HMAC;
}

/// `CK_UNAVAILABLE_INFORMATION`.
pub const UNAVAILABLE: u64 = ck::CK_UNAVAILABLE_INFORMATION;

pub use super::rules::{flag, rule, rule_for, Classes, Default, Kind, Rule, RULES};

/// An ordered map of attributes: what an object is, and what a template asks for.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AttrMap(BTreeMap<u64, Vec<u8>>);

/// Never prints values: an object's attributes may include key material.
impl std::fmt::Debug for AttrMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|k| format!("0x{k:x}")))
            .finish()
    }
}

/// Attribute types whose values can be key material (`CKA_VALUE` of a key, or a data object's
/// value, and the private parts of an RSA key): zeroised when a map drops. The rest (labels,
/// flags, public keys) are not secret, and zeroising them on every operation cost keygate bench
/// 15 % of an AES-GCM encryption.
const SECRET_TYPES: &[u64] = &[
    attr::VALUE,
    attr::PRIVATE_EXPONENT,
    attr::PRIME_1,
    attr::PRIME_2,
    attr::EXPONENT_1,
    attr::EXPONENT_2,
    attr::COEFFICIENT,
];

impl Drop for AttrMap {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (ty, v) in self.0.iter_mut() {
            if SECRET_TYPES.contains(ty) {
                v.zeroize();
            }
        }
    }
}

impl AttrMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a template from (type, value) pairs; a type given twice with different values is
    /// inconsistent.
    pub fn from_pairs(pairs: Vec<(u64, Vec<u8>)>) -> Result<Self> {
        let mut m = AttrMap::new();
        for (t, v) in pairs {
            if let Some(old) = m.0.get(&t) {
                if *old != v {
                    return Err(Error::TemplateInconsistent(
                        "attribute given twice with different values",
                    ));
                }
            }
            m.0.insert(t, v);
        }
        Ok(m)
    }

    pub fn get(&self, t: u64) -> Option<&[u8]> {
        self.0.get(&t).map(Vec::as_slice)
    }
    pub fn contains(&self, t: u64) -> bool {
        self.0.contains_key(&t)
    }
    pub fn set(&mut self, t: u64, v: Vec<u8>) {
        self.0.insert(t, v);
    }
    pub fn set_bool(&mut self, t: u64, v: bool) {
        self.0.insert(t, vec![v as u8]);
    }
    pub fn set_ulong(&mut self, t: u64, v: u64) {
        self.0.insert(t, v.to_le_bytes().to_vec());
    }
    pub fn remove(&mut self, t: u64) -> Option<Vec<u8>> {
        self.0.remove(&t)
    }
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.0.iter().map(|(k, v)| (*k, v.as_slice()))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A boolean attribute; absent reads as `None`, a malformed one as an error.
    pub fn bool(&self, t: u64) -> Result<Option<bool>> {
        match self.get(t) {
            None => Ok(None),
            Some([b]) => Ok(Some(*b != 0)),
            Some(_) => Err(Error::AttributeValueInvalid(t)),
        }
    }
    /// A boolean attribute, FALSE when absent.
    pub fn flag(&self, t: u64) -> bool {
        matches!(self.get(t), Some([b]) if *b != 0)
    }
    pub fn ulong(&self, t: u64) -> Result<Option<u64>> {
        match self.get(t) {
            None => Ok(None),
            Some(v) => {
                let arr: [u8; 8] = v.try_into().map_err(|_| Error::AttributeValueInvalid(t))?;
                Ok(Some(u64::from_le_bytes(arr)))
            }
        }
    }
    pub fn class(&self) -> Result<u64> {
        self.ulong(attr::CLASS)?
            .ok_or(Error::TemplateIncomplete("CKA_CLASS missing"))
    }
    pub fn key_type(&self) -> Option<u64> {
        self.ulong(attr::KEY_TYPE).ok().flatten()
    }

    /// Whether every attribute of `template` is present here with the same value (`C_FindObjects`).
    pub fn matches(&self, template: &AttrMap) -> bool {
        template.iter().all(|(t, v)| self.get(t) == Some(v))
    }

    /// The mechanisms a key is restricted to; `None` when it is not restricted. An empty
    /// `CKA_ALLOWED_MECHANISMS` restricts nothing (SoftHSM2 and other HSMs report keys so).
    pub fn allowed_mechanisms(&self) -> Option<Vec<u64>> {
        let v = self.get(attr::ALLOWED_MECHANISMS).filter(|v| !v.is_empty())?;
        Some(
            v.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        )
    }
}

/// Nested templates in their canonical byte form: per attribute, its type and value length as
/// eight little-endian bytes each, then the value; attributes in ascending type order. A nested
/// template names attributes keygate knows, with values of their kind, and no template.
pub mod nested {
    use super::{check_kind, rule, AttrMap, Kind};
    use crate::error::{Error, Result};

    /// The attribute types whose value is a nested template.
    pub fn is_template(ty: u64) -> bool {
        rule(ty).is_some_and(|r| r.kind == Kind::Template)
    }

    pub fn encode(t: &AttrMap) -> Vec<u8> {
        let mut out = Vec::new();
        for (ty, v) in t.iter() {
            out.extend(ty.to_le_bytes());
            out.extend((v.len() as u64).to_le_bytes());
            out.extend(v);
        }
        out
    }

    pub fn decode(mut v: &[u8]) -> Result<AttrMap> {
        let bad = || Error::TemplateInconsistent("a nested template is malformed");
        let mut pairs = Vec::new();
        let mut last = None;
        while !v.is_empty() {
            let (head, rest) = v.split_at_checked(16).ok_or_else(bad)?;
            let ty = u64::from_le_bytes(head[..8].try_into().map_err(|_| bad())?);
            let len = u64::from_le_bytes(head[8..].try_into().map_err(|_| bad())?);
            let (value, rest) = rest
                .split_at_checked(usize::try_from(len).map_err(|_| bad())?)
                .ok_or_else(bad)?;
            if last.is_some_and(|l| l >= ty) {
                return Err(bad());
            }
            let r = rule(ty).ok_or(Error::AttributeTypeInvalid(ty))?;
            if r.kind == Kind::Template {
                return Err(bad());
            }
            check_kind(ty, r.kind, value)?;
            pairs.push((ty, value.to_vec()));
            last = Some(ty);
            v = rest;
        }
        AttrMap::from_pairs(pairs)
    }
}

/// Checks the shape of one attribute value against its kind.
pub fn check_kind(ty: u64, kind: Kind, v: &[u8]) -> Result<()> {
    let ok = match kind {
        Kind::Bool => v.len() == 1 && v[0] <= 1,
        Kind::Ulong => v.len() == 8,
        Kind::Bytes => true,
        // Empty, or eight digits; eight NULs or spaces are how some clients (cryptoki's
        // `Date::new_empty`) say empty, and are taken as no date.
        Kind::Date => {
            v.is_empty()
                || (v.len() == 8
                    && (v.iter().all(u8::is_ascii_digit) || v.iter().all(|&b| b == 0) || v.iter().all(|&b| b == b' ')))
        }
        Kind::MechList => v.len().is_multiple_of(8),
        Kind::Template => nested::decode(v).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::AttributeValueInvalid(ty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_templates_round_trip_and_refuse_malformed() {
        let mut t = AttrMap::new();
        t.set_bool(attr::SENSITIVE, true);
        t.set_ulong(attr::KEY_TYPE, key_type::AES);
        let e = nested::encode(&t);
        assert_eq!(nested::decode(&e).unwrap(), t);
        assert!(check_kind(attr::WRAP_TEMPLATE, Kind::Template, &e).is_ok());
        assert!(nested::decode(&e[..e.len() - 1]).is_err());
        let mut inner = AttrMap::new();
        inner.set(attr::WRAP_TEMPLATE, e.clone());
        assert!(
            nested::decode(&nested::encode(&inner)).is_err(),
            "no template in a template"
        );
        let mut bad = AttrMap::new();
        bad.set(attr::SENSITIVE, vec![7]);
        assert!(nested::decode(&nested::encode(&bad)).is_err());
    }

    #[test]
    fn every_rule_is_unique() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|o| o.ty != r.ty),
                "duplicate rule 0x{:x}",
                r.ty
            );
        }
    }

    #[test]
    fn value_is_secret_only_for_keys() {
        assert!(rule_for(attr::VALUE, class::SECRET_KEY).unwrap().flags & flag::SECRET != 0);
        assert!(rule_for(attr::VALUE, class::PRIVATE_KEY).unwrap().flags & flag::SECRET != 0);
        assert!(rule_for(attr::VALUE, class::DATA).unwrap().flags & flag::SECRET == 0);
        assert!(rule_for(attr::VALUE, class::PUBLIC_KEY).is_none());
    }

    #[test]
    fn sign_is_not_an_attribute_of_public_keys() {
        assert!(rule_for(attr::SIGN, class::PUBLIC_KEY).is_none());
        assert!(rule_for(attr::VERIFY, class::PUBLIC_KEY).is_some());
    }

    #[test]
    fn kinds_are_checked() {
        assert!(check_kind(attr::TOKEN, Kind::Bool, &[2]).is_err());
        assert!(check_kind(attr::CLASS, Kind::Ulong, &[0; 4]).is_err());
        assert!(check_kind(attr::START_DATE, Kind::Date, b"20261122").is_ok());
        assert!(check_kind(attr::START_DATE, Kind::Date, b"2026-11-").is_err());
    }

    #[test]
    fn debug_hides_values() {
        let mut m = AttrMap::new();
        m.set(attr::VALUE, b"topsecretkey".to_vec());
        assert!(!format!("{m:?}").contains("topsecret"));
    }
}
