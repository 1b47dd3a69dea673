//! The attribute policy table: which attributes each class of object has, their shape, their
//! flags (required, read-only, secret, set by the token...) and their defaults. Attribute rules
//! are data; `token/object.rs` applies them.

use super::attributes::{attr, class};

/// How an attribute's bytes are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Ulong,
    Bytes,
    /// `CK_DATE`: 8 ASCII digits, or empty.
    Date,
    /// A list of `CK_MECHANISM_TYPE`.
    MechList,
    /// A nested template (`CKA_WRAP_TEMPLATE`, `CKA_UNWRAP_TEMPLATE`), kept in the canonical
    /// form of [`nested`]; the C layer converts it from and to an array of `CK_ATTRIBUTE`.
    Template,
}

/// The classes an attribute applies to, as a bit set.
#[derive(Debug, Clone, Copy)]
pub struct Classes(u8);

impl Classes {
    pub const DATA: Classes = Classes(1);
    pub const CERT: Classes = Classes(2);
    pub const PUB: Classes = Classes(4);
    pub const PRIV: Classes = Classes(8);
    pub const SECRET: Classes = Classes(16);
    pub const KEYS: Classes = Classes(4 | 8 | 16);
    pub const ALL: Classes = Classes(31);

    pub const fn or(self, o: Classes) -> Classes {
        Classes(self.0 | o.0)
    }

    /// The bit for an object class, `None` for classes keygate does not store.
    pub fn of(class: u64) -> Option<Classes> {
        Some(match class {
            class::DATA => Classes::DATA,
            class::CERTIFICATE => Classes::CERT,
            class::PUBLIC_KEY => Classes::PUB,
            class::PRIVATE_KEY => Classes::PRIV,
            class::SECRET_KEY => Classes::SECRET,
            _ => return None,
        })
    }

    pub fn contains(self, o: Classes) -> bool {
        self.0 & o.0 == o.0
    }
}

/// Policy flags of an attribute.
pub mod flag {
    /// Must be present in a `C_CreateObject` template.
    pub const REQUIRED: u16 = 1;
    /// May be changed by `C_SetAttributeValue`/`C_CopyObject` (subject to `CKA_MODIFIABLE`).
    pub const MODIFIABLE: u16 = 2;
    /// Set by the token only; a template that names it is refused (`CKR_ATTRIBUTE_READ_ONLY`).
    pub const TOKEN_ONLY: u16 = 4;
    /// Secret material: sealed at rest, never returned when the key is sensitive/unextractable.
    pub const SECRET: u16 = 8;
    /// Produced by key generation; a generation template must not carry it.
    pub const GENERATED: u16 = 16;
    /// Only the Security Officer may set it to TRUE.
    pub const SO_ONLY: u16 = 32;
    /// Fixed at creation: part of the immutable-attribute hash bound into a sealed blob's AAD.
    pub const IMMUTABLE: u16 = 64;
    /// Set once by `C_SetAttributeValue` (or the CLI), never in a creation template, and never
    /// changed or removed afterwards (`CKA_KEYGATE_REVOKED`).
    pub const ONCE: u16 = 128;
}

/// One row of the attribute policy table.
#[derive(Debug)]
pub struct Rule {
    pub ty: u64,
    pub kind: Kind,
    pub classes: Classes,
    pub flags: u16,
    /// The default when a template omits it (`None`: absent unless given).
    pub default: Option<Default>,
}

/// Default values, by class where they differ.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    Bool(bool),
    /// TRUE for private and secret keys, FALSE otherwise (`CKA_PRIVATE`).
    BoolSecretClasses,
    Ulong(u64),
    Empty,
}

use flag::*;
const C: Classes = Classes::ALL;
const K: Classes = Classes::KEYS;
const PU: Classes = Classes::PUB;
const PR: Classes = Classes::PRIV;
const SE: Classes = Classes::SECRET;
const PS: Classes = Classes::PRIV.or(Classes::SECRET);
const PUSE: Classes = Classes::PUB.or(Classes::SECRET);
const CE: Classes = Classes::CERT;

macro_rules! rule {
    ($ty:ident, $kind:ident, $classes:expr, $flags:expr, $default:expr) => {
        Rule {
            ty: attr::$ty,
            kind: Kind::$kind,
            classes: $classes,
            flags: $flags,
            default: $default,
        }
    };
}

/// The attribute policy table. Attributes of key material that depend on the key type
/// (`CKA_VALUE` of a key, `CKA_EC_PARAMS`, `CKA_EC_POINT`) are further checked by the key's
/// codec in `token/object.rs`.
///
/// Defaults follow what SoftHSM2 and most vendor modules do for usage flags (TRUE for the
/// operations of the class), but are secure for protection flags: keys are `CKA_SENSITIVE` and
/// not `CKA_EXTRACTABLE` unless the template says otherwise (see `docs/decisions.md`).
pub static RULES: &[Rule] = &[
    rule!(CLASS, Ulong, C, REQUIRED | IMMUTABLE, None),
    rule!(TOKEN, Bool, C, IMMUTABLE, Some(Default::Bool(false))),
    rule!(PRIVATE, Bool, C, IMMUTABLE, Some(Default::BoolSecretClasses)),
    rule!(MODIFIABLE, Bool, C, IMMUTABLE, Some(Default::Bool(true))),
    rule!(COPYABLE, Bool, C, 0, Some(Default::Bool(true))),
    rule!(DESTROYABLE, Bool, C, 0, Some(Default::Bool(true))),
    rule!(LABEL, Bytes, C, MODIFIABLE, Some(Default::Empty)),
    rule!(UNIQUE_ID, Bytes, C, TOKEN_ONLY | IMMUTABLE, None),
    // Data objects.
    rule!(APPLICATION, Bytes, Classes::DATA, MODIFIABLE, Some(Default::Empty)),
    rule!(OBJECT_ID, Bytes, Classes::DATA.or(CE), MODIFIABLE, None),
    // Certificates (X.509 public key certificates).
    rule!(CERTIFICATE_TYPE, Ulong, CE, REQUIRED | IMMUTABLE, None),
    rule!(TRUSTED, Bool, CE.or(PU).or(SE), SO_ONLY, Some(Default::Bool(false))),
    rule!(CERTIFICATE_CATEGORY, Ulong, CE, 0, Some(Default::Ulong(0))),
    rule!(CHECK_VALUE, Bytes, CE.or(SE), 0, None),
    rule!(ISSUER, Bytes, CE, MODIFIABLE, None),
    rule!(SERIAL_NUMBER, Bytes, CE, MODIFIABLE, None),
    rule!(URL, Bytes, CE, 0, None),
    rule!(HASH_OF_SUBJECT_PUBLIC_KEY, Bytes, CE, 0, None),
    rule!(HASH_OF_ISSUER_PUBLIC_KEY, Bytes, CE, 0, None),
    rule!(JAVA_MIDP_SECURITY_DOMAIN, Ulong, CE, 0, None),
    rule!(NAME_HASH_ALGORITHM, Ulong, CE, 0, None),
    // Keys.
    rule!(KEY_TYPE, Ulong, K, REQUIRED | IMMUTABLE, None),
    rule!(ID, Bytes, K.or(CE), MODIFIABLE, Some(Default::Empty)),
    rule!(START_DATE, Date, K.or(CE), MODIFIABLE, Some(Default::Empty)),
    rule!(END_DATE, Date, K.or(CE), MODIFIABLE, Some(Default::Empty)),
    rule!(DERIVE, Bool, K, MODIFIABLE, Some(Default::Bool(false))),
    rule!(LOCAL, Bool, K, TOKEN_ONLY | IMMUTABLE, None),
    rule!(KEY_GEN_MECHANISM, Ulong, K, TOKEN_ONLY | IMMUTABLE, None),
    rule!(ALLOWED_MECHANISMS, MechList, K, 0, None),
    rule!(SUBJECT, Bytes, PU.or(PR).or(CE), MODIFIABLE, Some(Default::Empty)),
    rule!(PUBLIC_KEY_INFO, Bytes, PU.or(PR).or(CE), 0, None),
    rule!(ENCRYPT, Bool, PUSE, MODIFIABLE, Some(Default::Bool(true))),
    rule!(VERIFY, Bool, PUSE, MODIFIABLE, Some(Default::Bool(true))),
    rule!(VERIFY_RECOVER, Bool, PU, MODIFIABLE, Some(Default::Bool(false))),
    rule!(WRAP, Bool, PUSE, MODIFIABLE, Some(Default::Bool(true))),
    rule!(WRAP_TEMPLATE, Template, PUSE, 0, None),
    rule!(DECRYPT, Bool, PS, MODIFIABLE, Some(Default::Bool(true))),
    rule!(SIGN, Bool, PS, MODIFIABLE, Some(Default::Bool(true))),
    rule!(SIGN_RECOVER, Bool, PR, MODIFIABLE, Some(Default::Bool(false))),
    rule!(UNWRAP, Bool, PS, MODIFIABLE, Some(Default::Bool(true))),
    rule!(UNWRAP_TEMPLATE, Template, PS, 0, None),
    rule!(SENSITIVE, Bool, PS, MODIFIABLE, Some(Default::Bool(true))),
    rule!(EXTRACTABLE, Bool, PS, MODIFIABLE, Some(Default::Bool(false))),
    rule!(ALWAYS_SENSITIVE, Bool, PS, TOKEN_ONLY, None),
    rule!(NEVER_EXTRACTABLE, Bool, PS, TOKEN_ONLY, None),
    rule!(WRAP_WITH_TRUSTED, Bool, PS, MODIFIABLE, Some(Default::Bool(false))),
    rule!(ALWAYS_AUTHENTICATE, Bool, PR, 0, Some(Default::Bool(false))),
    rule!(KEYGATE_REVOKED, Ulong, K, MODIFIABLE | ONCE, None),
    // Key material.
    rule!(EC_PARAMS, Bytes, PU.or(PR), IMMUTABLE, None),
    rule!(EC_POINT, Bytes, PU, GENERATED | IMMUTABLE, None),
    rule!(VALUE_LEN, Ulong, SE, IMMUTABLE, None),
    // RSA key material. A self-managed token seals the private parts as one PKCS#1 secret
    // (backend/local/rsa.rs); they are never clear attributes there.
    rule!(MODULUS, Bytes, PU.or(PR), GENERATED | IMMUTABLE, None),
    rule!(MODULUS_BITS, Ulong, PU, IMMUTABLE, None),
    rule!(PUBLIC_EXPONENT, Bytes, PU.or(PR), IMMUTABLE, None),
    rule!(PRIVATE_EXPONENT, Bytes, PR, SECRET | GENERATED | IMMUTABLE, None),
    rule!(PRIME_1, Bytes, PR, SECRET | GENERATED | IMMUTABLE, None),
    rule!(PRIME_2, Bytes, PR, SECRET | GENERATED | IMMUTABLE, None),
    rule!(EXPONENT_1, Bytes, PR, SECRET | GENERATED | IMMUTABLE, None),
    rule!(EXPONENT_2, Bytes, PR, SECRET | GENERATED | IMMUTABLE, None),
    rule!(COEFFICIENT, Bytes, PR, SECRET | GENERATED | IMMUTABLE, None),
];

/// The rule for `ty`, if keygate knows the attribute at all.
pub fn rule(ty: u64) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.ty == ty)
}

/// The rule for `ty` on an object of class `class`, taking `CKA_VALUE`'s per-class meaning into
/// account: secret for keys, plain bytes for data objects and certificates.
pub fn rule_for(ty: u64, class: u64) -> Option<Rule> {
    let bit = Classes::of(class)?;
    if ty == attr::VALUE {
        let flags = match class {
            class::SECRET_KEY | class::PRIVATE_KEY => SECRET | GENERATED | IMMUTABLE,
            class::CERTIFICATE => REQUIRED | IMMUTABLE,
            class::DATA => MODIFIABLE,
            _ => return None,
        };
        let default = (class == class::DATA).then_some(Default::Empty);
        return Some(Rule {
            ty,
            kind: Kind::Bytes,
            classes: bit,
            flags,
            default,
        });
    }
    let r = rule(ty)?;
    r.classes.contains(bit).then_some(Rule { ..*r })
}

impl Clone for Rule {
    fn clone(&self) -> Self {
        Rule { ..*self }
    }
}
