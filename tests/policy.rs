//! The policy floor, the allow-list and forced key protection, in both modes: a self-managed
//! token and an hsm-mode token over SoftHSM2 (which itself offers DES3, SHA-1 signatures, raw
//! RSA and PKCS#1 v1.5 encryption, so there the refusals are keygate's own).

#[macro_use]
mod common;

use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use pkcs11_sys as ck;

/// An initialised token of `mode` whose table has `policy_line`.
fn env(mode: Mode, policy_line: &str) -> Env {
    Env::of(mode, policy_line)
}

/// Whether SoftHSM2 itself offers each of `types` on the hsm-mode token's HSM token, asked
/// before keygate loads it (one PKCS#11 library instance per process).
fn softhsm_offers(types: &[MechanismType]) -> Vec<bool> {
    let p = Pkcs11::new(SOFTHSM).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = softhsm_slot(&p, "hsm-app");
    let offered = types.iter().map(|t| p.get_mechanism_info(slot, *t).is_ok()).collect();
    p.finalize().unwrap();
    offered
}

fn softhsm_slot(p: &Pkcs11, label: &str) -> cryptoki::slot::Slot {
    *p.get_slots_with_token()
        .unwrap()
        .iter()
        .find(|s| p.get_token_info(**s).unwrap().label() == label)
        .unwrap()
}

const FLOOR: &[(u64, &str)] = &[
    (ck::CKM_DES3_CBC, "3DES"),
    (ck::CKM_DES3_KEY_GEN, "3DES"),
    (ck::CKM_DES_ECB, "DES"),
    (ck::CKM_MD5, "MD5"),
    (ck::CKM_MD5_RSA_PKCS, "MD5 signature"),
    (ck::CKM_SHA1_RSA_PKCS, "SHA-1 signature"),
    (ck::CKM_SHA1_RSA_PKCS_PSS, "SHA-1 signature"),
    (ck::CKM_ECDSA_SHA1, "SHA-1 signature"),
    (ck::CKM_SHA_1_HMAC, "SHA-1 MAC"),
    (ck::CKM_RSA_X_509, "raw RSA"),
];

fn floor_refused_in_listing_and_use(mode: Mode) {
    let env = env(mode, "");
    if mode == Mode::Hsm {
        // The floor is keygate's doing: the HSM below offers most of these.
        let below = [
            MechanismType::DES3_CBC,
            MechanismType::SHA1_RSA_PKCS,
            MechanismType::RSA_X_509,
            MechanismType::SHA1_RSA_PKCS_PSS,
        ];
        assert_eq!(
            softhsm_offers(&below),
            vec![true; below.len()],
            "SoftHSM2 offers {below:?}"
        );
    }
    let p = env.load();
    let slot = Env::slot(&p);
    let offered = p.get_mechanism_list(slot).unwrap();
    assert!(offered.len() > 5, "the token offers mechanisms: {offered:?}");
    let s = Env::user_session(&p);
    let key = s
        .generate_key(&Mechanism::AesKeyGen, &[Attribute::ValueLen(Ulong::from(32u64))])
        .unwrap();
    let r = raw::raw();
    let raw_slot = Env::slot(&p).id();
    for (ty, what) in FLOOR {
        assert!(!offered.iter().any(|m| u64::from(*m) == *ty), "{what} ({ty:#x}) listed");
        let mut info = ck::CK_MECHANISM_INFO::default();
        assert_eq!(
            call!(r, C_GetMechanismInfo(raw_slot, *ty, &mut info)),
            ck::CKR_MECHANISM_INVALID,
            "{what}"
        );
    }
    // Refused when used, too (DES3 with an AES key: the mechanism check comes first).
    let des3 = Mechanism::Des3Cbc([0u8; 8]);
    assert_eq!(
        rv_of(s.encrypt(&des3, key, b"x").unwrap_err()),
        RvError::MechanismInvalid
    );
    // SHA-1 stays as a digest (legacy clients fingerprint with it); only its signatures and
    // MACs are below the floor.
    assert_eq!(s.digest(&Mechanism::Sha1, b"x").unwrap().len(), 20);
    assert_eq!(
        rv_of(s.sign(&Mechanism::Sha1RsaPkcs, key, b"x").unwrap_err()),
        RvError::MechanismInvalid
    );
    // AES below 128 bits.
    let e = s
        .generate_key(&Mechanism::AesKeyGen, &[Attribute::ValueLen(Ulong::from(8u64))])
        .unwrap_err();
    assert_eq!(rv_of(e), RvError::KeySizeRange);
    for (ty, info) in offered.iter().map(|m| (*m, p.get_mechanism_info(slot, *m).unwrap())) {
        if [MechanismType::AES_KEY_GEN, MechanismType::AES_GCM].contains(&ty) {
            assert!(info.min_key_size() >= 16, "{ty}: {}", info.min_key_size());
        }
    }
}

#[test]
fn floor_self_managed() {
    floor_refused_in_listing_and_use(Mode::SelfManaged);
}

#[test]
fn floor_hsm() {
    floor_refused_in_listing_and_use(Mode::Hsm);
}

/// RSA in hsm mode (tests/rsa.rs runs the same refusals on every target): PKCS#1 v1.5 signs
/// but does not encrypt, keys below 2048 bits are neither generated nor used (a 1024-bit key
/// made on the HSM behind keygate's back included), PSS over SHA-1 is refused.
#[test]
fn rsa_floor_hsm() {
    let env = env(Mode::Hsm, "");
    // A 1024-bit key made on the HSM behind keygate's back.
    {
        let p = Pkcs11::new(SOFTHSM).unwrap();
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let s = p.open_rw_session(softhsm_slot(&p, "hsm-app")).unwrap();
        s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
        s.generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::ModulusBits(Ulong::from(1024u64)),
                Attribute::Label(b"small".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label(b"small".to_vec()),
                Attribute::Sign(true),
            ],
        )
        .unwrap();
        drop(s);
        p.finalize().unwrap();
    }
    let p = env.load();
    let slot = Env::slot(&p);
    let info = p.get_mechanism_info(slot, MechanismType::RSA_PKCS).unwrap();
    assert!(info.sign() && info.verify());
    assert!(!info.encrypt() && !info.decrypt() && !info.wrap() && !info.unwrap());
    assert!(info.min_key_size() >= 2048);
    let s = Env::user_session(&p);
    let gen = |bits: u64| {
        s.generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::ModulusBits(Ulong::from(bits))],
            &[Attribute::Sign(true), Attribute::Decrypt(true)],
        )
    };
    assert_eq!(rv_of(gen(1024).unwrap_err()), RvError::KeySizeRange);
    let (pu, pr) = gen(2048).unwrap();
    assert!(!s.sign(&Mechanism::RsaPkcs, pr, &[0x30; 51]).unwrap().is_empty());
    assert_eq!(
        rv_of(s.encrypt(&Mechanism::RsaPkcs, pu, b"secret").unwrap_err()),
        RvError::MechanismInvalid,
        "PKCS#1 v1.5 encryption"
    );
    let pss_sha1 = Mechanism::RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA1,
        mgf: PkcsMgfType::MGF1_SHA1,
        s_len: Ulong::from(20u64),
    });
    assert_eq!(
        rv_of(s.sign(&pss_sha1, pr, &[1; 20]).unwrap_err()),
        RvError::MechanismParamInvalid
    );
    let small = s
        .find_objects(&[
            Attribute::Label(b"small".to_vec()),
            Attribute::Class(ObjectClass::PRIVATE_KEY),
        ])
        .unwrap();
    assert_eq!(small.len(), 1, "the HSM's own key is visible");
    assert_eq!(
        rv_of(s.sign(&Mechanism::Sha256RsaPkcs, small[0], b"data").unwrap_err()),
        RvError::KeySizeRange
    );
}

/// No elliptic curve below 224 bits: P-192 keys are neither generated nor imported
/// (`CKR_CURVE_NOT_SUPPORTED`), in either mode; SoftHSM2 itself makes them, so in hsm mode the
/// refusal is keygate's.
fn small_curves_refused(mode: Mode) {
    const P192_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01];
    let env = env(mode, "");
    let p = env.load();
    let s = Env::user_session(&p);
    let gen = s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[Attribute::EcParams(P192_OID.to_vec())],
        &[Attribute::Sign(true)],
    );
    assert_eq!(rv_of(gen.unwrap_err()), RvError::CurveNotSupported);
    let mut point = vec![0x04, 49, 0x04];
    point.extend([7u8; 48]);
    let created = s.create_object(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::EcParams(P192_OID.to_vec()),
        Attribute::EcPoint(point),
    ]);
    assert_eq!(rv_of(created.unwrap_err()), RvError::CurveNotSupported);
    // P-224 and up are not the floor's business.
    let p256 = s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[Attribute::EcParams(P256_OID.to_vec())],
        &[Attribute::Sign(true)],
    );
    assert!(p256.is_ok(), "{p256:?}");
}

#[test]
fn small_curves_refused_self_managed() {
    small_curves_refused(Mode::SelfManaged);
}

#[test]
fn small_curves_refused_hsm() {
    small_curves_refused(Mode::Hsm);
}

/// Every way a private or secret key comes to be refuses a template that would let it out.
fn protection_forced(mode: Mode) {
    let env = env(mode, "");
    let log = env.path().join("stderr.log");
    let p = env.load();
    let s = Env::user_session(&p);
    fn inconsistent<T: std::fmt::Debug>(r: Result<T, CkError>) {
        assert_eq!(rv_of(r.unwrap_err()), RvError::TemplateInconsistent);
    }
    let aes =
        |extra: Attribute| s.generate_key(&Mechanism::AesKeyGen, &[Attribute::ValueLen(Ulong::from(32u64)), extra]);
    {
        let _r = Redirect::to(&log);
        inconsistent(aes(Attribute::Extractable(true)));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("policy refuses") && logged.contains("allow_export"),
        "the refusal names its rule: {logged}"
    );
    inconsistent(aes(Attribute::Sensitive(false)));
    let k = aes(Attribute::Token(false)).unwrap();
    let got = s
        .get_attributes(k, &[AttributeType::Sensitive, AttributeType::Extractable])
        .unwrap();
    assert_eq!(got, vec![Attribute::Sensitive(true), Attribute::Extractable(false)]);

    // Imported: a readable or extractable secret is refused; the default is sealed in.
    let kek = [0x42u8; 32];
    let import = |extra: &[Attribute]| {
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(kek.to_vec()),
            Attribute::Unwrap(true),
        ];
        t.extend_from_slice(extra);
        s.create_object(&t)
    };
    inconsistent(import(&[Attribute::Extractable(true)]));
    inconsistent(import(&[Attribute::Sensitive(false)]));
    let unwrapping = import(&[]).unwrap();
    assert!(matches!(
        s.get_attribute_info(unwrapping, &[AttributeType::Value]).unwrap()[..],
        [cryptoki::object::AttributeInfo::Sensitive]
    ));

    // Unwrapped: the blob is made by aes-kw (RFC 3394) outside the token.
    let mut wrapped = [0u8; 40];
    aes_kw::KekAes256::from(kek).wrap(&[7u8; 32], &mut wrapped).unwrap();
    let template = |extra: Attribute| {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Encrypt(true),
            extra,
        ]
    };
    inconsistent(s.unwrap_key(
        &Mechanism::AesKeyWrap,
        unwrapping,
        &wrapped,
        &template(Attribute::Extractable(true)),
    ));
    let k = s
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            unwrapping,
            &wrapped,
            &template(Attribute::Token(false)),
        )
        .unwrap();
    assert_eq!(
        s.get_attributes(k, &[AttributeType::Extractable]).unwrap(),
        vec![Attribute::Extractable(false)]
    );

    // Generated key pairs and derived secrets.
    let pair = |private_extra: Attribute| {
        s.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec())],
            &[Attribute::Derive(true), private_extra],
        )
    };
    inconsistent(pair(Attribute::Extractable(true)));
    let (pu, pr) = pair(Attribute::Sign(true)).unwrap();
    let point = {
        let mut v = vec![0x04, 65];
        v.extend(ec_point(&s, pu));
        v
    };
    let ecdh = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &point[2..]));
    let derived = |extra: Attribute| {
        s.derive_key(
            &ecdh,
            pr,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(Ulong::from(32u64)),
                extra,
            ],
        )
    };
    inconsistent(derived(Attribute::Sensitive(false)));
    derived(Attribute::Token(false)).unwrap();
}

#[test]
fn protection_self_managed() {
    protection_forced(Mode::SelfManaged);
}

#[test]
fn protection_hsm() {
    protection_forced(Mode::Hsm);
}

/// An allow-list narrows the token to what it names (and what the backend has).
fn allow_list(mode: Mode) {
    let env = env(
        mode,
        "policy = { allow = [\"CKM_EC_KEY_PAIR_GEN\", \"CKM_ECDSA\", \"CKM_SHA512\"] }\n",
    );
    let p = env.load();
    let slot = Env::slot(&p);
    let mut listed = p.get_mechanism_list(slot).unwrap();
    listed.sort_by_key(|m| u64::from(*m));
    assert_eq!(
        listed,
        vec![
            MechanismType::SHA512,
            MechanismType::ECC_KEY_PAIR_GEN,
            MechanismType::ECDSA
        ]
    );
    let s: Session = Env::user_session(&p);
    let log = env.path().join("stderr.log");
    let e = {
        let _r = Redirect::to(&log);
        s.generate_key(&Mechanism::AesKeyGen, &[Attribute::ValueLen(Ulong::from(32u64))])
            .unwrap_err()
    };
    assert_eq!(rv_of(e), RvError::MechanismInvalid);
    // The refusal is a warning that names the mechanism and the rule.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("CKM_AES_KEY_GEN refused: policy.allow does not list it"),
        "{logged}"
    );
    assert_eq!(
        rv_of(s.digest(&Mechanism::Sha256, b"x").unwrap_err()),
        RvError::MechanismInvalid
    );
    assert_eq!(s.digest(&Mechanism::Sha512, b"x").unwrap().len(), 64);
    let (_, pr) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec())],
            &[Attribute::Sign(true)],
        )
        .unwrap();
    assert_eq!(s.sign(&Mechanism::Ecdsa, pr, &[9; 32]).unwrap().len(), 64);
}

#[test]
fn allow_list_self_managed() {
    allow_list(Mode::SelfManaged);
}

#[test]
fn allow_list_hsm() {
    allow_list(Mode::Hsm);
}

/// A configuration that tries to lower the floor is refused at load, with a message that says
/// which rule; the module comes up with no slots rather than with a weakened one.
#[test]
fn lowering_the_floor_is_refused_at_load() {
    for (policy, says) in [
        ("policy = { allow = [\"CKM_DES3_CBC\"] }\n", "CKM_DES3_CBC"),
        ("policy = { allow = [\"CKM_SHA1_RSA_PKCS\", \"CKM_ECDSA\"] }\n", "SHA-1"),
        ("policy = { min_rsa_bits = 1024 }\n", "min_rsa_bits"),
    ] {
        let env = Env::bare_with(policy);
        let out = env.cli(&["status"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.contains("floor"), "{err}");
        let log = env.path().join("stderr.log");
        let p = {
            let _r = Redirect::to(&log);
            env.load()
        };
        assert!(
            p.get_all_slots().unwrap().is_empty(),
            "no slot from a refused configuration"
        );
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains(says) && logged.contains("floor"), "{logged}");
        p.finalize().unwrap();
    }
}
