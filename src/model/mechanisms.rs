//! Decoded mechanisms and the table of what each one can do.
//!
//! `ffi/raw.rs` turns a `CK_MECHANISM` into a [`Mechanism`]; nothing below it sees parameter
//! pointers. The table [`MECHANISMS`] drives `C_GetMechanismList`/`C_GetMechanismInfo` and the
//! check that a mechanism is used for a function it supports.

use crate::error::{Error, Result};
use zeroize::Zeroizing;

/// Mechanism type numbers, under Rust names.
pub mod mech {
    use pkcs11_sys as ck;
    pub const AES_KEY_GEN: u64 = ck::CKM_AES_KEY_GEN;
    pub const GENERIC_SECRET_KEY_GEN: u64 = ck::CKM_GENERIC_SECRET_KEY_GEN;
    pub const EC_KEY_PAIR_GEN: u64 = ck::CKM_EC_KEY_PAIR_GEN;
    pub const EC_EDWARDS_KEY_PAIR_GEN: u64 = ck::CKM_EC_EDWARDS_KEY_PAIR_GEN;
    pub const EC_MONTGOMERY_KEY_PAIR_GEN: u64 = ck::CKM_EC_MONTGOMERY_KEY_PAIR_GEN;
    pub const ECDSA: u64 = ck::CKM_ECDSA;
    pub const ECDSA_SHA256: u64 = ck::CKM_ECDSA_SHA256;
    pub const ECDSA_SHA384: u64 = ck::CKM_ECDSA_SHA384;
    pub const ECDSA_SHA512: u64 = ck::CKM_ECDSA_SHA512;
    pub const RSA_PKCS_KEY_PAIR_GEN: u64 = ck::CKM_RSA_PKCS_KEY_PAIR_GEN;
    pub const RSA_PKCS: u64 = ck::CKM_RSA_PKCS;
    pub const SHA256_RSA_PKCS: u64 = ck::CKM_SHA256_RSA_PKCS;
    pub const SHA384_RSA_PKCS: u64 = ck::CKM_SHA384_RSA_PKCS;
    pub const SHA512_RSA_PKCS: u64 = ck::CKM_SHA512_RSA_PKCS;
    pub const RSA_PKCS_PSS: u64 = ck::CKM_RSA_PKCS_PSS;
    pub const SHA256_RSA_PKCS_PSS: u64 = ck::CKM_SHA256_RSA_PKCS_PSS;
    pub const SHA384_RSA_PKCS_PSS: u64 = ck::CKM_SHA384_RSA_PKCS_PSS;
    pub const SHA512_RSA_PKCS_PSS: u64 = ck::CKM_SHA512_RSA_PKCS_PSS;
    pub const RSA_PKCS_OAEP: u64 = ck::CKM_RSA_PKCS_OAEP;
    pub const AES_CBC: u64 = ck::CKM_AES_CBC;
    pub const AES_CBC_PAD: u64 = ck::CKM_AES_CBC_PAD;
    pub const EDDSA: u64 = ck::CKM_EDDSA;
    pub const ECDH1_DERIVE: u64 = ck::CKM_ECDH1_DERIVE;
    pub const AES_GCM: u64 = ck::CKM_AES_GCM;
    pub const AES_KEY_WRAP: u64 = ck::CKM_AES_KEY_WRAP;
    pub const AES_KEY_WRAP_PAD: u64 = ck::CKM_AES_KEY_WRAP_PAD;
    pub const AES_KEY_WRAP_KWP: u64 = ck::CKM_AES_KEY_WRAP_KWP;
    pub const SHA256: u64 = ck::CKM_SHA256;
    pub const SHA384: u64 = ck::CKM_SHA384;
    pub const SHA512: u64 = ck::CKM_SHA512;
    pub const SHA256_HMAC: u64 = ck::CKM_SHA256_HMAC;
    pub const SHA384_HMAC: u64 = ck::CKM_SHA384_HMAC;
    pub const SHA512_HMAC: u64 = ck::CKM_SHA512_HMAC;
    pub const SHA256_HMAC_GENERAL: u64 = ck::CKM_SHA256_HMAC_GENERAL;
    pub const SHA384_HMAC_GENERAL: u64 = ck::CKM_SHA384_HMAC_GENERAL;
    pub const SHA512_HMAC_GENERAL: u64 = ck::CKM_SHA512_HMAC_GENERAL;
    pub const AES_ECB: u64 = ck::CKM_AES_ECB;
    pub const AES_CTR: u64 = ck::CKM_AES_CTR;
    pub const AES_CMAC: u64 = ck::CKM_AES_CMAC;
    pub const AES_CMAC_GENERAL: u64 = ck::CKM_AES_CMAC_GENERAL;
    pub const SHA_1: u64 = ck::CKM_SHA_1;
    pub const SHA224: u64 = ck::CKM_SHA224;
    pub const SHA224_HMAC: u64 = ck::CKM_SHA224_HMAC;
    pub const SHA224_HMAC_GENERAL: u64 = ck::CKM_SHA224_HMAC_GENERAL;
    pub const SHA_1_HMAC: u64 = ck::CKM_SHA_1_HMAC;
    pub const SHA_1_HMAC_GENERAL: u64 = ck::CKM_SHA_1_HMAC_GENERAL;
    pub const ECDSA_SHA1: u64 = ck::CKM_ECDSA_SHA1;
    pub const ECDSA_SHA224: u64 = ck::CKM_ECDSA_SHA224;
    pub const SHA1_RSA_PKCS: u64 = ck::CKM_SHA1_RSA_PKCS;
    pub const SHA224_RSA_PKCS: u64 = ck::CKM_SHA224_RSA_PKCS;
    pub const SHA1_RSA_PKCS_PSS: u64 = ck::CKM_SHA1_RSA_PKCS_PSS;
    pub const SHA224_RSA_PKCS_PSS: u64 = ck::CKM_SHA224_RSA_PKCS_PSS;
}

/// Function flags of a mechanism (`CKF_*` of `CK_MECHANISM_INFO`).
pub mod mflag {
    use pkcs11_sys as ck;
    pub const ENCRYPT: u64 = ck::CKF_ENCRYPT;
    pub const DECRYPT: u64 = ck::CKF_DECRYPT;
    pub const DIGEST: u64 = ck::CKF_DIGEST;
    pub const SIGN: u64 = ck::CKF_SIGN;
    pub const VERIFY: u64 = ck::CKF_VERIFY;
    pub const GENERATE: u64 = ck::CKF_GENERATE;
    pub const GENERATE_KEY_PAIR: u64 = ck::CKF_GENERATE_KEY_PAIR;
    pub const WRAP: u64 = ck::CKF_WRAP;
    pub const UNWRAP: u64 = ck::CKF_UNWRAP;
    pub const DERIVE: u64 = ck::CKF_DERIVE;
    pub const EC_CURVE: u64 = ck::CKF_EC_F_P | ck::CKF_EC_OID | ck::CKF_EC_UNCOMPRESS;
}

/// What `C_GetMechanismInfo` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MechanismInfo {
    pub min_key_size: u64,
    pub max_key_size: u64,
    pub flags: u64,
}

const fn info(min_key_size: u64, max_key_size: u64, flags: u64) -> MechanismInfo {
    MechanismInfo {
        min_key_size,
        max_key_size,
        flags,
    }
}

use mflag::*;

/// What a key is used for in one operation: the mechanism flag it needs (`CKF_SIGN`, ...) and
/// the key's usage attribute (`CKA_SIGN`, ...) go together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Wrap,
    Unwrap,
    Derive,
}

impl Usage {
    /// The `CKF_*` flag a mechanism needs for it.
    pub fn flag(self) -> u64 {
        match self {
            Usage::Sign => mflag::SIGN,
            Usage::Verify => mflag::VERIFY,
            Usage::Encrypt => mflag::ENCRYPT,
            Usage::Decrypt => mflag::DECRYPT,
            Usage::Wrap => mflag::WRAP,
            Usage::Unwrap => mflag::UNWRAP,
            Usage::Derive => mflag::DERIVE,
        }
    }

    /// The key attribute that permits it.
    pub fn attribute(self) -> u64 {
        use crate::model::attributes::attr;
        match self {
            Usage::Sign => attr::SIGN,
            Usage::Verify => attr::VERIFY,
            Usage::Encrypt => attr::ENCRYPT,
            Usage::Decrypt => attr::DECRYPT,
            Usage::Wrap => attr::WRAP,
            Usage::Unwrap => attr::UNWRAP,
            Usage::Derive => attr::DERIVE,
        }
    }

    /// Whether it makes something new (a revoked key, or one out of its dates, may not).
    pub fn makes(self) -> bool {
        matches!(self, Usage::Sign | Usage::Encrypt | Usage::Wrap | Usage::Derive)
    }

    /// How log lines name it.
    pub fn name(self) -> &'static str {
        match self {
            Usage::Sign => "signing",
            Usage::Verify => "verification",
            Usage::Encrypt => "encryption",
            Usage::Decrypt => "decryption",
            Usage::Wrap => "wrapping",
            Usage::Unwrap => "unwrapping",
            Usage::Derive => "derivation",
        }
    }
}

/// The smallest RSA modulus keygate's policy floor allows, in bits (no configuration lowers it).
pub const RSA_FLOOR_BITS: u64 = 2048;
/// What the self-managed token implements. Key sizes are in bytes for AES and secrets, in bits
/// for curves, as PKCS#11 defines per mechanism.
pub static MECHANISMS: &[(u64, MechanismInfo)] = &[
    (mech::AES_KEY_GEN, info(16, 32, GENERATE)),
    (mech::GENERIC_SECRET_KEY_GEN, info(1, 512, GENERATE)),
    (mech::EC_KEY_PAIR_GEN, info(256, 521, GENERATE_KEY_PAIR | EC_CURVE)),
    // Ed448 only where OpenSSL does it (src/crypto/ed448.rs).
    #[cfg(feature = "openssl")]
    (mech::EC_EDWARDS_KEY_PAIR_GEN, info(255, 448, GENERATE_KEY_PAIR)),
    #[cfg(not(feature = "openssl"))]
    (mech::EC_EDWARDS_KEY_PAIR_GEN, info(255, 255, GENERATE_KEY_PAIR)),
    (mech::EC_MONTGOMERY_KEY_PAIR_GEN, info(255, 255, GENERATE_KEY_PAIR)),
    (mech::ECDSA, info(256, 521, SIGN | VERIFY | EC_CURVE)),
    (mech::ECDSA_SHA256, info(256, 521, SIGN | VERIFY | EC_CURVE)),
    (mech::ECDSA_SHA384, info(256, 521, SIGN | VERIFY | EC_CURVE)),
    (mech::ECDSA_SHA512, info(256, 521, SIGN | VERIFY | EC_CURVE)),
    #[cfg(feature = "openssl")]
    (mech::EDDSA, info(255, 448, SIGN | VERIFY)),
    #[cfg(not(feature = "openssl"))]
    (mech::EDDSA, info(255, 255, SIGN | VERIFY)),
    (mech::ECDH1_DERIVE, info(255, 521, DERIVE | EC_CURVE)),
    (mech::AES_GCM, info(16, 32, ENCRYPT | DECRYPT)),
    (mech::AES_KEY_WRAP, info(16, 32, WRAP | UNWRAP)),
    (mech::AES_KEY_WRAP_PAD, info(16, 32, WRAP | UNWRAP)),
    (mech::AES_KEY_WRAP_KWP, info(16, 32, WRAP | UNWRAP)),
    (mech::AES_CBC, info(16, 32, ENCRYPT | DECRYPT)),
    (mech::AES_CBC_PAD, info(16, 32, ENCRYPT | DECRYPT)),
    (mech::AES_ECB, info(16, 32, ENCRYPT | DECRYPT)),
    (mech::AES_CTR, info(16, 32, ENCRYPT | DECRYPT)),
    (mech::AES_CMAC, info(16, 32, SIGN | VERIFY)),
    (mech::AES_CMAC_GENERAL, info(16, 32, SIGN | VERIFY)),
    (mech::SHA_1, info(0, 0, DIGEST)),
    (mech::SHA224, info(0, 0, DIGEST)),
    (mech::SHA256, info(0, 0, DIGEST)),
    (mech::SHA384, info(0, 0, DIGEST)),
    (mech::SHA512, info(0, 0, DIGEST)),
    (mech::SHA224_HMAC, info(1, 512, SIGN | VERIFY)),
    (mech::SHA256_HMAC, info(1, 512, SIGN | VERIFY)),
    (mech::SHA384_HMAC, info(1, 512, SIGN | VERIFY)),
    (mech::SHA512_HMAC, info(1, 512, SIGN | VERIFY)),
    (mech::SHA224_HMAC_GENERAL, info(1, 512, SIGN | VERIFY)),
    (mech::SHA256_HMAC_GENERAL, info(1, 512, SIGN | VERIFY)),
    (mech::SHA384_HMAC_GENERAL, info(1, 512, SIGN | VERIFY)),
    (mech::SHA512_HMAC_GENERAL, info(1, 512, SIGN | VERIFY)),
    // RSA, in bits, only where OpenSSL does it (src/crypto/rsa.rs says why). CKM_RSA_PKCS's
    // encryption flags are here because the mechanism has them; the policy floor strips them.
    #[cfg(feature = "openssl")]
    (mech::RSA_PKCS_KEY_PAIR_GEN, info(2048, 8192, GENERATE_KEY_PAIR)),
    #[cfg(feature = "openssl")]
    (mech::RSA_PKCS, info(2048, 8192, SIGN | VERIFY | ENCRYPT | DECRYPT)),
    #[cfg(feature = "openssl")]
    (mech::SHA256_RSA_PKCS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::SHA384_RSA_PKCS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::SHA512_RSA_PKCS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::RSA_PKCS_PSS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::SHA256_RSA_PKCS_PSS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::SHA384_RSA_PKCS_PSS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::SHA512_RSA_PKCS_PSS, info(2048, 8192, SIGN | VERIFY)),
    #[cfg(feature = "openssl")]
    (mech::RSA_PKCS_OAEP, info(2048, 8192, ENCRYPT | DECRYPT | WRAP | UNWRAP)),
];

/// Looks a mechanism up in a table.
pub fn lookup(table: &[(u64, MechanismInfo)], ty: u64) -> Option<MechanismInfo> {
    table.iter().find(|(t, _)| *t == ty).map(|(_, i)| *i)
}

/// The digest algorithms keygate implements. SHA-1 is a digest only: the policy floor refuses
/// it in signatures and MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    /// One of five values, by algorithm.
    pub fn pick<T>(self, sha1: T, sha224: T, sha256: T, sha384: T, sha512: T) -> T {
        match self {
            DigestAlg::Sha1 => sha1,
            DigestAlg::Sha224 => sha224,
            DigestAlg::Sha256 => sha256,
            DigestAlg::Sha384 => sha384,
            DigestAlg::Sha512 => sha512,
        }
    }

    /// The digest's length in bytes.
    pub fn output_len(self) -> usize {
        self.pick(20, 28, 32, 48, 64)
    }
}

/// Every mechanism type keygate can decode and so forward to an HSM. What a token offers is
/// the part of this its backend supports, less what its policy refuses.
pub static FORWARDABLE: &[u64] = &[
    mech::AES_KEY_GEN,
    mech::GENERIC_SECRET_KEY_GEN,
    mech::EC_KEY_PAIR_GEN,
    mech::EC_EDWARDS_KEY_PAIR_GEN,
    mech::EC_MONTGOMERY_KEY_PAIR_GEN,
    mech::RSA_PKCS_KEY_PAIR_GEN,
    mech::ECDSA,
    mech::ECDSA_SHA256,
    mech::ECDSA_SHA384,
    mech::ECDSA_SHA512,
    mech::EDDSA,
    mech::RSA_PKCS,
    mech::SHA256_RSA_PKCS,
    mech::SHA384_RSA_PKCS,
    mech::SHA512_RSA_PKCS,
    mech::RSA_PKCS_PSS,
    mech::SHA256_RSA_PKCS_PSS,
    mech::SHA384_RSA_PKCS_PSS,
    mech::SHA512_RSA_PKCS_PSS,
    mech::RSA_PKCS_OAEP,
    mech::ECDH1_DERIVE,
    mech::AES_GCM,
    mech::AES_CBC,
    mech::AES_CBC_PAD,
    mech::AES_KEY_WRAP,
    mech::AES_KEY_WRAP_PAD,
    mech::AES_KEY_WRAP_KWP,
    mech::SHA256,
    mech::SHA384,
    mech::SHA512,
    mech::SHA256_HMAC,
    mech::SHA384_HMAC,
    mech::SHA512_HMAC,
    mech::SHA256_HMAC_GENERAL,
    mech::SHA384_HMAC_GENERAL,
    mech::SHA512_HMAC_GENERAL,
    mech::AES_ECB,
    mech::AES_CTR,
    mech::AES_CMAC,
    mech::AES_CMAC_GENERAL,
    mech::SHA_1,
    mech::SHA224,
    mech::SHA224_HMAC,
    mech::SHA224_HMAC_GENERAL,
];

/// `CK_RSA_PKCS_PSS_PARAMS`: the hash and MGF are mechanism / `CKG_*` numbers as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PssParams {
    pub hash: u64,
    pub mgf: u64,
    pub salt_len: u64,
}

/// `CK_RSA_PKCS_OAEP_PARAMS`, with the label (source data) copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OaepParams {
    pub hash: u64,
    pub mgf: u64,
    pub label: Vec<u8>,
}

/// A mechanism with its parameter decoded. Parameters are copied out of the caller's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    AesKeyGen,
    GenericSecretKeyGen,
    EcKeyPairGen,
    EdwardsKeyPairGen,
    /// X25519 key pairs (`CKK_EC_MONTGOMERY`).
    MontgomeryKeyPairGen,
    RsaKeyPairGen,
    /// ECDSA over a digest the caller made.
    Ecdsa,
    /// ECDSA with the hash done by the token.
    EcdsaWith(DigestAlg),
    /// PKCS#1 v1.5 over a DigestInfo the caller made (signing; encryption is below the floor).
    RsaPkcs,
    /// PKCS#1 v1.5 signature with the hash done by the token.
    RsaPkcsWith(DigestAlg),
    /// RSA-PSS over a digest the caller made.
    RsaPss(PssParams),
    /// RSA-PSS with the hash done by the token.
    RsaPssWith(DigestAlg, PssParams),
    RsaOaep(OaepParams),
    /// Pure Ed25519 (no pre-hash, no context).
    Eddsa,
    Ecdh1Derive {
        kdf: u64,
        shared_data: Vec<u8>,
        public_data: Vec<u8>,
    },
    AesGcm {
        iv: Vec<u8>,
        aad: Vec<u8>,
        tag_bits: u64,
    },
    /// RFC 3394, with an optional alternative initial value.
    AesKeyWrap {
        iv: Option<[u8; 8]>,
    },
    /// PKCS#11 2.40 `CKM_AES_KEY_WRAP_PAD`: PKCS#7 padding to a multiple of 8, then RFC 3394.
    AesKeyWrapPad,
    /// RFC 5649.
    AesKeyWrapKwp,
    AesCbc {
        iv: [u8; 16],
    },
    /// AES-CBC with PKCS#7 padding.
    AesCbcPad {
        iv: [u8; 16],
    },
    /// AES-ECB: single blocks (key check values, legacy clients).
    AesEcb,
    /// AES-CTR: the low `counter_bits` bits of the counter block `cb` count (big-endian).
    AesCtr {
        counter_bits: u64,
        cb: [u8; 16],
    },
    /// AES-CMAC (NIST SP 800-38B), 16 bytes.
    AesCmac,
    /// AES-CMAC truncated to the given length in bytes.
    AesCmacGeneral(u64),
    Digest(DigestAlg),
    Hmac(DigestAlg),
    /// HMAC truncated to the given length in bytes (`CK_MAC_GENERAL_PARAMS`).
    HmacGeneral(DigestAlg, u64),
    /// Known to PKCS#11 but not implemented here.
    Other(u64),
}

impl Mechanism {
    /// The mechanism type number.
    pub fn ty(&self) -> u64 {
        match self {
            Mechanism::AesKeyGen => mech::AES_KEY_GEN,
            Mechanism::GenericSecretKeyGen => mech::GENERIC_SECRET_KEY_GEN,
            Mechanism::EcKeyPairGen => mech::EC_KEY_PAIR_GEN,
            Mechanism::EdwardsKeyPairGen => mech::EC_EDWARDS_KEY_PAIR_GEN,
            Mechanism::MontgomeryKeyPairGen => mech::EC_MONTGOMERY_KEY_PAIR_GEN,
            Mechanism::RsaKeyPairGen => mech::RSA_PKCS_KEY_PAIR_GEN,
            Mechanism::Ecdsa => mech::ECDSA,
            Mechanism::EcdsaWith(d) => d.pick(
                mech::ECDSA_SHA1,
                mech::ECDSA_SHA224,
                mech::ECDSA_SHA256,
                mech::ECDSA_SHA384,
                mech::ECDSA_SHA512,
            ),
            Mechanism::RsaPkcs => mech::RSA_PKCS,
            Mechanism::RsaPkcsWith(d) => d.pick(
                mech::SHA1_RSA_PKCS,
                mech::SHA224_RSA_PKCS,
                mech::SHA256_RSA_PKCS,
                mech::SHA384_RSA_PKCS,
                mech::SHA512_RSA_PKCS,
            ),
            Mechanism::RsaPss(_) => mech::RSA_PKCS_PSS,
            Mechanism::RsaPssWith(d, _) => d.pick(
                mech::SHA1_RSA_PKCS_PSS,
                mech::SHA224_RSA_PKCS_PSS,
                mech::SHA256_RSA_PKCS_PSS,
                mech::SHA384_RSA_PKCS_PSS,
                mech::SHA512_RSA_PKCS_PSS,
            ),
            Mechanism::RsaOaep(_) => mech::RSA_PKCS_OAEP,
            Mechanism::Eddsa => mech::EDDSA,
            Mechanism::Ecdh1Derive { .. } => mech::ECDH1_DERIVE,
            Mechanism::AesGcm { .. } => mech::AES_GCM,
            Mechanism::AesKeyWrap { .. } => mech::AES_KEY_WRAP,
            Mechanism::AesKeyWrapPad => mech::AES_KEY_WRAP_PAD,
            Mechanism::AesKeyWrapKwp => mech::AES_KEY_WRAP_KWP,
            Mechanism::AesCbc { .. } => mech::AES_CBC,
            Mechanism::AesCbcPad { .. } => mech::AES_CBC_PAD,
            Mechanism::Digest(d) => d.pick(mech::SHA_1, mech::SHA224, mech::SHA256, mech::SHA384, mech::SHA512),
            Mechanism::Hmac(d) => d.pick(
                mech::SHA_1_HMAC,
                mech::SHA224_HMAC,
                mech::SHA256_HMAC,
                mech::SHA384_HMAC,
                mech::SHA512_HMAC,
            ),
            Mechanism::HmacGeneral(d, _) => d.pick(
                mech::SHA_1_HMAC_GENERAL,
                mech::SHA224_HMAC_GENERAL,
                mech::SHA256_HMAC_GENERAL,
                mech::SHA384_HMAC_GENERAL,
                mech::SHA512_HMAC_GENERAL,
            ),
            Mechanism::AesEcb => mech::AES_ECB,
            Mechanism::AesCtr { .. } => mech::AES_CTR,
            Mechanism::AesCmac => mech::AES_CMAC,
            Mechanism::AesCmacGeneral(_) => mech::AES_CMAC_GENERAL,
            Mechanism::Other(t) => *t,
        }
    }

    /// A mechanism that takes no parameter, from its type; `None` if it needs one.
    pub fn without_param(ty: u64) -> Option<Mechanism> {
        Some(match ty {
            mech::AES_KEY_GEN => Mechanism::AesKeyGen,
            mech::GENERIC_SECRET_KEY_GEN => Mechanism::GenericSecretKeyGen,
            mech::EC_KEY_PAIR_GEN => Mechanism::EcKeyPairGen,
            mech::EC_EDWARDS_KEY_PAIR_GEN => Mechanism::EdwardsKeyPairGen,
            mech::EC_MONTGOMERY_KEY_PAIR_GEN => Mechanism::MontgomeryKeyPairGen,
            mech::RSA_PKCS_KEY_PAIR_GEN => Mechanism::RsaKeyPairGen,
            mech::ECDSA => Mechanism::Ecdsa,
            mech::ECDSA_SHA256 => Mechanism::EcdsaWith(DigestAlg::Sha256),
            mech::ECDSA_SHA384 => Mechanism::EcdsaWith(DigestAlg::Sha384),
            mech::ECDSA_SHA512 => Mechanism::EcdsaWith(DigestAlg::Sha512),
            mech::RSA_PKCS => Mechanism::RsaPkcs,
            mech::SHA256_RSA_PKCS => Mechanism::RsaPkcsWith(DigestAlg::Sha256),
            mech::SHA384_RSA_PKCS => Mechanism::RsaPkcsWith(DigestAlg::Sha384),
            mech::SHA512_RSA_PKCS => Mechanism::RsaPkcsWith(DigestAlg::Sha512),
            mech::EDDSA => Mechanism::Eddsa,
            mech::AES_KEY_WRAP => Mechanism::AesKeyWrap { iv: None },
            mech::AES_KEY_WRAP_PAD => Mechanism::AesKeyWrapPad,
            mech::AES_KEY_WRAP_KWP => Mechanism::AesKeyWrapKwp,
            mech::AES_ECB => Mechanism::AesEcb,
            mech::AES_CMAC => Mechanism::AesCmac,
            mech::SHA_1 => Mechanism::Digest(DigestAlg::Sha1),
            mech::SHA224 => Mechanism::Digest(DigestAlg::Sha224),
            mech::SHA256 => Mechanism::Digest(DigestAlg::Sha256),
            mech::SHA384 => Mechanism::Digest(DigestAlg::Sha384),
            mech::SHA512 => Mechanism::Digest(DigestAlg::Sha512),
            mech::SHA224_HMAC => Mechanism::Hmac(DigestAlg::Sha224),
            mech::SHA256_HMAC => Mechanism::Hmac(DigestAlg::Sha256),
            mech::SHA384_HMAC => Mechanism::Hmac(DigestAlg::Sha384),
            mech::SHA512_HMAC => Mechanism::Hmac(DigestAlg::Sha512),
            _ => return None,
        })
    }

    /// The key types this mechanism works with (`None`: it takes no key).
    pub fn key_types(&self) -> Option<&'static [u64]> {
        use crate::model::attributes::key_type as k;
        const HMAC: &[u64] = &[k::GENERIC_SECRET, k::SHA256_HMAC, k::SHA384_HMAC, k::SHA512_HMAC];
        Some(match self {
            Mechanism::Ecdsa | Mechanism::EcdsaWith(_) => &[k::EC],
            Mechanism::Ecdh1Derive { .. } => &[k::EC, k::EC_MONTGOMERY],
            Mechanism::Eddsa => &[k::EC_EDWARDS],
            Mechanism::RsaPkcs
            | Mechanism::RsaPkcsWith(_)
            | Mechanism::RsaPss(_)
            | Mechanism::RsaPssWith(..)
            | Mechanism::RsaOaep(_) => &[k::RSA],
            Mechanism::AesGcm { .. }
            | Mechanism::AesCbc { .. }
            | Mechanism::AesCbcPad { .. }
            | Mechanism::AesKeyWrap { .. }
            | Mechanism::AesKeyWrapPad
            | Mechanism::AesKeyWrapKwp
            | Mechanism::AesEcb
            | Mechanism::AesCtr { .. }
            | Mechanism::AesCmac
            | Mechanism::AesCmacGeneral(_) => &[k::AES],
            Mechanism::Hmac(_) | Mechanism::HmacGeneral(..) => HMAC,
            _ => return None,
        })
    }

    /// Checks that this mechanism supports `function` (a `CKF_*` function flag) in `table`.
    pub fn check(&self, table: &[(u64, MechanismInfo)], function: u64) -> Result<()> {
        match lookup(table, self.ty()) {
            Some(i) if i.flags & function != 0 => Ok(()),
            _ => Err(Error::MechanismInvalid(self.ty())),
        }
    }
}

/// A PIN as given by the caller: zeroised on drop, never printed.
pub struct Pin(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    pub fn new(v: &[u8]) -> Pin {
        Pin(Zeroizing::new(v.to_vec()))
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The shortest and longest PIN accepted (bytes).
pub const PIN_MIN: usize = 4;
pub const PIN_MAX: usize = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_through_without_param() {
        for (ty, _) in MECHANISMS {
            assert!(FORWARDABLE.contains(ty), "{ty:#x} implemented but not forwardable");
        }
        for ty in FORWARDABLE {
            if let Some(m) = Mechanism::without_param(*ty) {
                assert_eq!(m.ty(), *ty);
            }
        }
    }

    #[test]
    fn wrong_function_is_refused() {
        assert!(Mechanism::Ecdsa.check(MECHANISMS, mflag::SIGN).is_ok());
        assert_eq!(
            Mechanism::Ecdsa.check(MECHANISMS, mflag::ENCRYPT),
            Err(Error::MechanismInvalid(mech::ECDSA))
        );
    }

    #[test]
    fn pin_debug_is_redacted() {
        assert_eq!(format!("{:?}", Pin::new(b"123456")), "Pin(<redacted>)");
    }
}
