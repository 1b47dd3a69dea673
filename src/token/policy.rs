//! The token policy, enforced here in `token/` so that it guards both modes alike.
//!
//! A built-in floor no configuration can lower: no DES/3DES, no MD5 or SHA-1 signatures, no
//! RSA below 2048 bits, no AES below 128 bits, no PKCS#1 v1.5 encryption, no raw RSA. Above
//! it, a token's configuration may narrow the mechanisms further (an allow-list), raise the RSA
//! minimum, and decide whether private and secret keys may ever be readable or extractable.
//! Every refusal is logged at warn with the rule that refused.

use pkcs11_sys as ck;

use crate::config::PolicyConfig;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, key_type, AttrMap};
use crate::model::mechanisms::{mech, mflag, Mechanism, MechanismInfo};

pub use crate::model::mechanisms::RSA_FLOOR_BITS;
/// The smallest AES key the floor allows, in bytes.
const AES_FLOOR_BYTES: u64 = 16;

/// Mechanism names as the specification spells them, for the configuration's allow-list and
/// for log lines: every mechanism keygate can forward, and those the floor refuses by name.
static NAMES: &[(&str, u64)] = &[
    ("CKM_AES_KEY_GEN", mech::AES_KEY_GEN),
    ("CKM_GENERIC_SECRET_KEY_GEN", mech::GENERIC_SECRET_KEY_GEN),
    ("CKM_EC_KEY_PAIR_GEN", mech::EC_KEY_PAIR_GEN),
    ("CKM_EC_EDWARDS_KEY_PAIR_GEN", mech::EC_EDWARDS_KEY_PAIR_GEN),
    ("CKM_EC_MONTGOMERY_KEY_PAIR_GEN", mech::EC_MONTGOMERY_KEY_PAIR_GEN),
    ("CKM_RSA_PKCS_KEY_PAIR_GEN", mech::RSA_PKCS_KEY_PAIR_GEN),
    ("CKM_ECDSA", mech::ECDSA),
    ("CKM_ECDSA_SHA256", mech::ECDSA_SHA256),
    ("CKM_ECDSA_SHA384", mech::ECDSA_SHA384),
    ("CKM_ECDSA_SHA512", mech::ECDSA_SHA512),
    ("CKM_EDDSA", mech::EDDSA),
    ("CKM_RSA_PKCS", mech::RSA_PKCS),
    ("CKM_SHA256_RSA_PKCS", mech::SHA256_RSA_PKCS),
    ("CKM_SHA384_RSA_PKCS", mech::SHA384_RSA_PKCS),
    ("CKM_SHA512_RSA_PKCS", mech::SHA512_RSA_PKCS),
    ("CKM_RSA_PKCS_PSS", mech::RSA_PKCS_PSS),
    ("CKM_SHA256_RSA_PKCS_PSS", mech::SHA256_RSA_PKCS_PSS),
    ("CKM_SHA384_RSA_PKCS_PSS", mech::SHA384_RSA_PKCS_PSS),
    ("CKM_SHA512_RSA_PKCS_PSS", mech::SHA512_RSA_PKCS_PSS),
    ("CKM_RSA_PKCS_OAEP", mech::RSA_PKCS_OAEP),
    ("CKM_ECDH1_DERIVE", mech::ECDH1_DERIVE),
    ("CKM_AES_GCM", mech::AES_GCM),
    ("CKM_AES_CBC", mech::AES_CBC),
    ("CKM_AES_CBC_PAD", mech::AES_CBC_PAD),
    ("CKM_AES_ECB", mech::AES_ECB),
    ("CKM_AES_CTR", mech::AES_CTR),
    ("CKM_AES_CMAC", mech::AES_CMAC),
    ("CKM_AES_CMAC_GENERAL", mech::AES_CMAC_GENERAL),
    ("CKM_AES_KEY_WRAP", mech::AES_KEY_WRAP),
    ("CKM_AES_KEY_WRAP_PAD", mech::AES_KEY_WRAP_PAD),
    ("CKM_AES_KEY_WRAP_KWP", mech::AES_KEY_WRAP_KWP),
    ("CKM_SHA256", mech::SHA256),
    ("CKM_SHA384", mech::SHA384),
    ("CKM_SHA512", mech::SHA512),
    ("CKM_SHA256_HMAC", mech::SHA256_HMAC),
    ("CKM_SHA384_HMAC", mech::SHA384_HMAC),
    ("CKM_SHA512_HMAC", mech::SHA512_HMAC),
    ("CKM_SHA_1", mech::SHA_1),
    ("CKM_SHA224", mech::SHA224),
    ("CKM_SHA224_HMAC", mech::SHA224_HMAC),
    ("CKM_SHA224_HMAC_GENERAL", mech::SHA224_HMAC_GENERAL),
    ("CKM_SHA256_HMAC_GENERAL", mech::SHA256_HMAC_GENERAL),
    ("CKM_SHA384_HMAC_GENERAL", mech::SHA384_HMAC_GENERAL),
    ("CKM_SHA512_HMAC_GENERAL", mech::SHA512_HMAC_GENERAL),
    // Refused by the floor; named so that a configuration asking for them is told why.
    ("CKM_RSA_X_509", ck::CKM_RSA_X_509),
    ("CKM_MD5", ck::CKM_MD5),
    ("CKM_MD5_HMAC", ck::CKM_MD5_HMAC),
    ("CKM_MD5_RSA_PKCS", ck::CKM_MD5_RSA_PKCS),
    ("CKM_SHA1_RSA_PKCS", ck::CKM_SHA1_RSA_PKCS),
    ("CKM_SHA1_RSA_PKCS_PSS", ck::CKM_SHA1_RSA_PKCS_PSS),
    ("CKM_ECDSA_SHA1", ck::CKM_ECDSA_SHA1),
    ("CKM_DSA_SHA1", ck::CKM_DSA_SHA1),
    ("CKM_SHA_1_HMAC", ck::CKM_SHA_1_HMAC),
    ("CKM_SHA_1_HMAC_GENERAL", ck::CKM_SHA_1_HMAC_GENERAL),
    ("CKM_DES_KEY_GEN", ck::CKM_DES_KEY_GEN),
    ("CKM_DES_ECB", ck::CKM_DES_ECB),
    ("CKM_DES_CBC", ck::CKM_DES_CBC),
    ("CKM_DES_CBC_PAD", ck::CKM_DES_CBC_PAD),
    ("CKM_DES2_KEY_GEN", ck::CKM_DES2_KEY_GEN),
    ("CKM_DES3_KEY_GEN", ck::CKM_DES3_KEY_GEN),
    ("CKM_DES3_ECB", ck::CKM_DES3_ECB),
    ("CKM_DES3_CBC", ck::CKM_DES3_CBC),
    ("CKM_DES3_CBC_PAD", ck::CKM_DES3_CBC_PAD),
    ("CKM_DES3_CMAC", ck::CKM_DES3_CMAC),
];

/// The name of a mechanism (`CKM_…`), or its number in hex when keygate has no name for it.
pub fn name(ty: u64) -> String {
    NAMES
        .iter()
        .find(|(_, t)| *t == ty)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| crate::error::mechanism_name(ty))
}

/// A mechanism number from its name, with or without the `CKM_` prefix.
pub fn by_name(n: &str) -> Option<u64> {
    let full = if n.starts_with("CKM_") {
        n.to_string()
    } else {
        format!("CKM_{n}")
    };
    NAMES.iter().find(|(m, _)| *m == full).map(|(_, t)| *t)
}

/// The floor rule that refuses mechanism `ty` outright, if any.
pub fn floor_refuses(ty: u64) -> Option<&'static str> {
    match ty {
        // CKM_DES_KEY_GEN … CKM_DES3_CMAC, the DES OFB/CFB modes, DES3 key derivation.
        0x120..=0x13f | 0x150..=0x155 | 0x1100..=0x1103 => Some("no DES or 3DES"),
        ck::CKM_MD2_RSA_PKCS | ck::CKM_MD5_RSA_PKCS | 0x200..=0x212 => Some("no MD5 (or MD2)"),
        ck::CKM_SHA1_RSA_PKCS
        | ck::CKM_SHA1_RSA_PKCS_PSS
        | ck::CKM_SHA1_RSA_X9_31
        | ck::CKM_ECDSA_SHA1
        | ck::CKM_DSA_SHA1
        | ck::CKM_SHA_1_HMAC
        | ck::CKM_SHA_1_HMAC_GENERAL => Some("no SHA-1 signatures"),
        ck::CKM_RSA_X_509 => Some("no raw RSA (CKM_RSA_X_509)"),
        _ => None,
    }
}

/// Function flags the floor takes away from a mechanism it otherwise allows.
fn floor_strips(ty: u64) -> u64 {
    match ty {
        // PKCS#1 v1.5 encryption (Bleichenbacher); PKCS#1 v1.5 signatures stay.
        mech::RSA_PKCS => mflag::ENCRYPT | mflag::DECRYPT | mflag::WRAP | mflag::UNWRAP,
        _ => 0,
    }
}

fn is_rsa(ty: u64) -> bool {
    matches!(
        ty,
        mech::RSA_PKCS_KEY_PAIR_GEN
            | mech::RSA_PKCS
            | mech::SHA256_RSA_PKCS
            | mech::SHA384_RSA_PKCS
            | mech::SHA512_RSA_PKCS
            | mech::RSA_PKCS_PSS
            | mech::SHA256_RSA_PKCS_PSS
            | mech::SHA384_RSA_PKCS_PSS
            | mech::SHA512_RSA_PKCS_PSS
            | mech::RSA_PKCS_OAEP
    )
}

fn is_aes(ty: u64) -> bool {
    matches!(
        ty,
        mech::AES_KEY_GEN
            | mech::AES_GCM
            | mech::AES_CBC
            | mech::AES_CBC_PAD
            | mech::AES_KEY_WRAP
            | mech::AES_KEY_WRAP_PAD
            | mech::AES_KEY_WRAP_KWP
            | mech::AES_ECB
            | mech::AES_CTR
            | mech::AES_CMAC
            | mech::AES_CMAC_GENERAL
    )
}

/// The smallest elliptic curve the floor allows, in bits: 112-bit security, as for RSA-2048
/// (NIST SP 800-57 part 1; SP 800-131A disallows P-192 for signatures since 2014).
const EC_FLOOR_BITS: u64 = 224;

/// The size in bits of the named curves below [`EC_FLOOR_BITS`] that HSMs still offer, by DER
/// OID; `None` for every other curve (the floor has no rule for it, the backend decides).
fn weak_curve_bits(params: &[u8]) -> Option<u64> {
    use der::Decode;
    let oid = der::asn1::ObjectIdentifier::from_der(params).ok()?.to_string();
    Some(match oid.as_str() {
        // prime192v1 (P-192), prime192v2, prime192v3, secp192k1.
        "1.2.840.10045.3.1.1" | "1.2.840.10045.3.1.2" | "1.2.840.10045.3.1.3" | "1.3.132.0.31" => 192,
        // secp160k1, secp160r1, secp160r2, brainpoolP160r1.
        "1.3.132.0.9" | "1.3.132.0.8" | "1.3.132.0.30" | "1.3.36.3.3.2.8.1.1.1" => 160,
        // brainpoolP192r1.
        "1.3.36.3.3.2.8.1.1.3" => 192,
        // secp112r1, secp112r2, secp128r1, secp128r2.
        "1.3.132.0.6" | "1.3.132.0.7" => 112,
        "1.3.132.0.28" | "1.3.132.0.29" => 128,
        _ => return None,
    })
}

/// One token's policy: the floor plus what its configuration adds.
#[derive(Debug, Clone)]
pub struct Policy {
    token: String,
    allow: Option<Vec<u64>>,
    allow_export: bool,
    min_rsa_bits: u64,
}

impl Policy {
    /// The policy of a token from its (already checked) configuration.
    pub fn new(token: &str, cfg: &PolicyConfig) -> Policy {
        Policy {
            token: token.to_string(),
            allow: cfg
                .allow
                .as_ref()
                .map(|names| names.iter().filter_map(|n| by_name(n)).collect()),
            allow_export: cfg.allow_export,
            min_rsa_bits: u64::from(cfg.min_rsa_bits).max(RSA_FLOOR_BITS),
        }
    }

    /// Checks a token's policy configuration: every name known, nothing below the floor.
    pub fn check_config(token: &str, cfg: &PolicyConfig) -> std::result::Result<(), String> {
        for n in cfg.allow.iter().flatten() {
            let ty = by_name(n)
                .ok_or_else(|| format!("token {token:?}: policy.allow names {n:?}, which keygate does not know"))?;
            if let Some(rule) = floor_refuses(ty) {
                return Err(format!(
                    "token {token:?}: policy.allow names {n}, which the built-in floor refuses ({rule}); the floor cannot be lowered"
                ));
            }
        }
        if u64::from(cfg.min_rsa_bits) < RSA_FLOOR_BITS {
            return Err(format!(
                "token {token:?}: policy.min_rsa_bits = {} is below the built-in floor of {RSA_FLOOR_BITS}; the floor cannot be lowered",
                cfg.min_rsa_bits
            ));
        }
        Ok(())
    }

    /// Logs, at warn, why a mechanism asked for is not offered when the policy is the reason:
    /// the built-in floor (with its rule) or the token's `policy.allow`, naming the mechanism.
    /// A mechanism the backend does not implement is not a refusal and is not logged here.
    pub fn explain_refusal(&self, ty: u64) {
        if let Some(rule) = floor_refuses(ty) {
            log::warn!(
                "token {:?}: {} refused by the built-in floor: {rule}",
                self.token,
                name(ty)
            );
        } else if self.allow.as_ref().is_some_and(|a| !a.contains(&ty)) {
            log::warn!(
                "token {:?}: {} refused: policy.allow does not list it (the configuration's allow-list for this token)",
                self.token,
                name(ty)
            );
        }
    }

    /// What the token offers: the backend's mechanisms, less what the floor and the allow-list
    /// refuse, with flags and key sizes narrowed to the floor.
    pub fn mechanisms(&self, offered: &[(u64, MechanismInfo)]) -> Vec<(u64, MechanismInfo)> {
        offered
            .iter()
            .filter(|(ty, _)| floor_refuses(*ty).is_none())
            .filter(|(ty, _)| self.allow.as_ref().is_none_or(|a| a.contains(ty)))
            .filter_map(|&(ty, mut info)| {
                info.flags &= !floor_strips(ty);
                if is_rsa(ty) {
                    info.min_key_size = info.min_key_size.max(self.min_rsa_bits);
                    if info.min_key_size > info.max_key_size {
                        return None;
                    }
                } else if is_aes(ty) {
                    info.min_key_size = info.min_key_size.max(AES_FLOOR_BYTES);
                }
                (info.flags & !mflag::EC_CURVE != 0).then_some((ty, info))
            })
            .collect()
    }

    fn refuse(&self, rule: &str, what: &str) {
        log::warn!("token {:?}: policy refuses {what}: {rule}", self.token);
    }

    /// Parameters the floor refuses inside an otherwise allowed mechanism: RSA-PSS over SHA-1.
    pub fn check_params(&self, m: &Mechanism) -> Result<()> {
        let sha1 = |t: u64| t == ck::CKM_SHA_1 || t == ck::CKG_MGF1_SHA1;
        if let Mechanism::RsaPss(p) | Mechanism::RsaPssWith(_, p) = m {
            if sha1(p.hash) || sha1(p.mgf) {
                self.refuse("no SHA-1 signatures", &format!("{} with SHA-1", name(m.ty())));
                return Err(Error::MechanismParamInvalid);
            }
        }
        Ok(())
    }

    /// The size of a key in bits, as the floor counts it; `None` when the floor has no rule
    /// for its type.
    fn key_bits(attrs: &AttrMap) -> Result<Option<u64>> {
        Ok(match attrs.key_type() {
            Some(key_type::RSA) => match attrs.get(attr::MODULUS) {
                Some(m) => {
                    let m: &[u8] = m;
                    let first = m.iter().position(|b| *b != 0).unwrap_or(m.len());
                    let m = &m[first..];
                    Some(m.len() as u64 * 8 - m.first().map_or(0, |b| b.leading_zeros() as u64))
                }
                None => attrs.ulong(attr::MODULUS_BITS)?,
            },
            // Some HSMs (SoftHSM2 2.6.1 for unwrapped keys) report CKA_VALUE_LEN 0: unknown.
            Some(key_type::AES) => attrs.ulong(attr::VALUE_LEN)?.filter(|n| *n != 0).map(|n| n * 8),
            Some(key_type::EC) => attrs.get(attr::EC_PARAMS).and_then(weak_curve_bits),
            _ => None,
        })
    }

    /// Refuses a key (or a template for one) smaller than the floor: `CKR_KEY_SIZE_RANGE`, or
    /// `CKR_CURVE_NOT_SUPPORTED` for an elliptic curve below 224 bits.
    pub fn check_key_size(&self, attrs: &AttrMap) -> Result<()> {
        let Some(bits) = Self::key_bits(attrs)? else {
            return Ok(());
        };
        let (min, rule, err) = match attrs.key_type() {
            Some(key_type::RSA) => (
                self.min_rsa_bits,
                "no RSA below the token's minimum (2048 bits at least)",
                Error::KeySizeRange,
            ),
            Some(key_type::EC) => (
                EC_FLOOR_BITS,
                "no elliptic curve below 224 bits (P-192 and smaller)",
                Error::CurveNotSupported,
            ),
            _ => (AES_FLOOR_BYTES * 8, "no AES below 128 bits", Error::KeySizeRange),
        };
        if bits < min {
            self.refuse(rule, &format!("a {bits}-bit key"));
            return Err(err);
        }
        Ok(())
    }

    /// Private and secret keys made through keygate are sensitive and unextractable unless the
    /// token's policy allows export. `t` is a completed template (defaults filled).
    pub fn check_protection(&self, t: &AttrMap) -> Result<()> {
        if self.allow_export || !matches!(t.class()?, class::PRIVATE_KEY | class::SECRET_KEY) {
            return Ok(());
        }
        if !t.flag(attr::SENSITIVE) || t.flag(attr::EXTRACTABLE) {
            self.refuse(
                "private and secret keys are CKA_SENSITIVE and not CKA_EXTRACTABLE (policy.allow_export is off)",
                "a key that could leave the token",
            );
            return Err(Error::TemplateInconsistent(
                "the token's policy forbids keys that are not sensitive or are extractable",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mechanisms::{PssParams, MECHANISMS};

    #[test]
    fn a_configuration_cannot_lower_the_floor() {
        assert!(Policy::check_config("t", &cfg(Some(&["CKM_ECDSA"]), 2048)).is_ok());
        let e = Policy::check_config("t", &cfg(Some(&["CKM_DES3_CBC"]), 2048)).unwrap_err();
        assert!(e.contains("floor"), "{e}");
        assert!(Policy::check_config("t", &cfg(None, 1024)).is_err());
    }

    fn cfg(allow: Option<&[&str]>, min_rsa_bits: u32) -> PolicyConfig {
        PolicyConfig {
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            allow_export: false,
            min_rsa_bits,
        }
    }

    #[test]
    fn every_forwardable_mechanism_has_a_name() {
        for ty in crate::model::mechanisms::FORWARDABLE {
            assert_eq!(by_name(&name(*ty)), Some(*ty));
            assert_eq!(
                floor_refuses(*ty),
                None,
                "{} is forwardable but below the floor",
                name(*ty)
            );
        }
    }

    #[test]
    fn floor_cannot_be_lowered() {
        for n in [
            "CKM_DES3_CBC",
            "DES_ECB",
            "CKM_SHA1_RSA_PKCS",
            "CKM_MD5",
            "CKM_RSA_X_509",
            "CKM_SHA_1_HMAC",
        ] {
            let e = Policy::check_config("t", &cfg(Some(&[n]), 2048)).unwrap_err();
            assert!(e.contains("floor"), "{n}: {e}");
        }
        assert!(Policy::check_config("t", &cfg(Some(&["CKM_NONSENSE"]), 2048))
            .unwrap_err()
            .contains("does not know"));
        assert!(Policy::check_config("t", &cfg(None, 1024))
            .unwrap_err()
            .contains("floor"));
        assert!(Policy::check_config("t", &cfg(Some(&["CKM_ECDSA", "AES_GCM"]), 3072)).is_ok());
    }

    #[test]
    fn listing_applies_floor_and_allow_list() {
        let offered = [
            (
                mech::RSA_PKCS,
                MechanismInfo {
                    min_key_size: 512,
                    max_key_size: 16384,
                    flags: mflag::SIGN | mflag::ENCRYPT | mflag::DECRYPT,
                },
            ),
            (
                ck::CKM_RSA_X_509,
                MechanismInfo {
                    min_key_size: 512,
                    max_key_size: 16384,
                    flags: mflag::SIGN,
                },
            ),
            (
                ck::CKM_DES3_CBC,
                MechanismInfo {
                    min_key_size: 24,
                    max_key_size: 24,
                    flags: mflag::ENCRYPT,
                },
            ),
            (
                mech::ECDSA,
                MechanismInfo {
                    min_key_size: 256,
                    max_key_size: 521,
                    flags: mflag::SIGN,
                },
            ),
        ];
        let all = Policy::new("t", &cfg(None, 2048)).mechanisms(&offered);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, mech::RSA_PKCS);
        assert_eq!(all[0].1.flags, mflag::SIGN, "PKCS#1 v1.5 encryption stripped");
        assert_eq!(all[0].1.min_key_size, 2048);
        let some = Policy::new("t", &cfg(Some(&["CKM_ECDSA"]), 2048)).mechanisms(&offered);
        assert_eq!(some.iter().map(|m| m.0).collect::<Vec<_>>(), vec![mech::ECDSA]);
        // The self-managed table is entirely above the floor.
        assert_eq!(
            Policy::new("t", &cfg(None, 2048)).mechanisms(MECHANISMS).len(),
            MECHANISMS.len()
        );
    }

    #[test]
    fn small_keys_and_exportable_keys_refused() {
        let p = Policy::new("t", &cfg(None, 3072));
        let mut k = AttrMap::new();
        k.set_ulong(attr::CLASS, class::PUBLIC_KEY);
        k.set_ulong(attr::KEY_TYPE, key_type::RSA);
        k.set(attr::MODULUS, [&[0u8][..], &[0x80; 256][..]].concat());
        assert_eq!(p.check_key_size(&k), Err(Error::KeySizeRange), "2048 < 3072");
        k.set(attr::MODULUS, vec![0xff; 384]);
        assert_eq!(p.check_key_size(&k), Ok(()));
        let mut s = AttrMap::new();
        s.set_ulong(attr::CLASS, class::SECRET_KEY);
        s.set_ulong(attr::KEY_TYPE, key_type::AES);
        s.set_ulong(attr::VALUE_LEN, 8);
        assert_eq!(p.check_key_size(&s), Err(Error::KeySizeRange));
        s.set_bool(attr::SENSITIVE, true);
        s.set_bool(attr::EXTRACTABLE, true);
        assert!(matches!(p.check_protection(&s), Err(Error::TemplateInconsistent(_))));
        s.set_bool(attr::EXTRACTABLE, false);
        assert_eq!(p.check_protection(&s), Ok(()));
        let pss = |hash| {
            Mechanism::RsaPss(PssParams {
                hash,
                mgf: ck::CKG_MGF1_SHA256,
                salt_len: 32,
            })
        };
        assert_eq!(p.check_params(&pss(ck::CKM_SHA_1)), Err(Error::MechanismParamInvalid));
        assert_eq!(p.check_params(&pss(mech::SHA256)), Ok(()));
    }
}
