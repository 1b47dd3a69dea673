//! Objects, sessions, PINs and mechanism information through cryptoki: C_CopyObject,
//! C_SetAttributeValue, C_DigestKey, C_SetPIN, C_GetMechanismList/Info, C_GetSessionInfo and
//! the key attributes the specification sets on generation and import.

mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::types::{AuthPin, Ulong};

fn aes_key(s: &Session, label: &str, value: &[u8], extra: &[Attribute]) -> ObjectHandle {
    let mut t = vec![
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ];
    t.extend_from_slice(extra);
    import_secret(s, KeyType::AES, value, &t)
}

fn flag(s: &Session, h: ObjectHandle, ty: AttributeType) -> bool {
    match s.get_attributes(h, &[ty]).unwrap().as_slice() {
        [Attribute::Sensitive(b)]
        | [Attribute::Extractable(b)]
        | [Attribute::AlwaysSensitive(b)]
        | [Attribute::NeverExtractable(b)]
        | [Attribute::Local(b)]
        | [Attribute::Token(b)]
        | [Attribute::Private(b)]
        | [Attribute::Modifiable(b)]
        | [Attribute::Encrypt(b)] => *b,
        other => panic!("{ty:?}: {other:?}"),
    }
}

fn label(s: &Session, h: ObjectHandle) -> String {
    match s.get_attributes(h, &[AttributeType::Label]).unwrap().as_slice() {
        [Attribute::Label(l)] => String::from_utf8(l.clone()).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn gcm_encrypt(s: &Session, key: ObjectHandle, iv: &mut [u8; 12], data: &[u8]) -> Result<Vec<u8>, CkError> {
    let params = GcmParams::new(iv, &[], Ulong::from(128)).unwrap();
    s.encrypt(&Mechanism::AesGcm(params), key, data)
}

fn gcm_decrypt(s: &Session, key: ObjectHandle, iv: &mut [u8; 12], data: &[u8]) -> Result<Vec<u8>, CkError> {
    let params = GcmParams::new(iv, &[], Ulong::from(128)).unwrap();
    s.decrypt(&Mechanism::AesGcm(params), key, data)
}

#[test]
fn copy_object_keeps_the_secret_and_the_one_way_attributes() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = aes_key(&s, "orig", &[7u8; 32], &[Attribute::Sensitive(true)]);

    // A session copy with a new label works on what the original encrypted.
    let copy = s
        .copy_object(key, &[Attribute::Label(b"copy".to_vec()), Attribute::Token(false)])
        .unwrap();
    assert_ne!(copy, key);
    assert_eq!(label(&s, copy), "copy");
    assert!(!flag(&s, copy, AttributeType::Token));
    assert!(flag(&s, copy, AttributeType::Sensitive));
    let mut iv = [3u8; 12];
    let ct = gcm_encrypt(&s, key, &mut iv, b"copied keys decrypt").unwrap();
    assert_eq!(gcm_decrypt(&s, copy, &mut iv, &ct).unwrap(), b"copied keys decrypt");

    // A copy may not undo SENSITIVE, nor change the key's class or value length.
    assert_eq!(
        rv(s.copy_object(key, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(s.copy_object(key, &[Attribute::Class(ObjectClass::PUBLIC_KEY)])),
        RvError::AttributeReadOnly
    );

    // CKA_COPYABLE=FALSE forbids copying; CKA_COPYABLE itself can only be made FALSE.
    let fixed = aes_key(&s, "fixed", &[8u8; 16], &[Attribute::Copyable(false)]);
    assert_eq!(rv(s.copy_object(fixed, &[])), RvError::ActionProhibited);
    assert_eq!(
        rv(s.update_attributes(fixed, &[Attribute::Copyable(true)])),
        RvError::AttributeReadOnly
    );

    // The token copy is a token object: the module loaded afresh still finds it.
    s.copy_object(key, &[Attribute::Label(b"copy2".to_vec())]).unwrap();
    drop(s);
    p.finalize().unwrap();
    let p = env.load();
    let s = Env::user_session(&p);
    let copy2 = find_one(&s, "copy2").expect("the token copy persists");
    assert_eq!(gcm_decrypt(&s, copy2, &mut iv, &ct).unwrap(), b"copied keys decrypt");
    assert!(find_one(&s, "copy").is_none(), "the session copy is gone");
}

#[test]
fn set_attribute_value_changes_persist_and_read_only_ones_are_refused() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = aes_key(
        &s,
        "before",
        &[9u8; 32],
        &[Attribute::Sensitive(false), Attribute::Extractable(true)],
    );
    s.update_attributes(key, &[Attribute::Label(b"after".to_vec()), Attribute::Encrypt(false)])
        .unwrap();
    let mut iv = [1u8; 12];
    assert_eq!(
        rv(gcm_encrypt(&s, key, &mut iv, b"x")),
        RvError::KeyFunctionNotPermitted
    );

    // One-way attributes: SENSITIVE may only become TRUE, EXTRACTABLE only FALSE.
    s.update_attributes(key, &[Attribute::Sensitive(true)]).unwrap();
    assert_eq!(
        rv(s.update_attributes(key, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    s.update_attributes(key, &[Attribute::Extractable(false)]).unwrap();
    assert_eq!(
        rv(s.update_attributes(key, &[Attribute::Extractable(true)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(s.get_attributes(key, &[AttributeType::Value]).and_then(|v| {
            // cryptoki leaves out unavailable attributes; an empty answer is a refusal.
            if v.is_empty() {
                Err(CkError::Pkcs11(
                    RvError::AttributeSensitive,
                    cryptoki::context::Function::GetAttributeValue,
                ))
            } else {
                Ok(v)
            }
        })),
        RvError::AttributeSensitive
    );
    // Read-only after creation.
    for a in [
        Attribute::Class(ObjectClass::DATA),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(Ulong::from(16)),
        Attribute::Local(true),
        Attribute::AlwaysSensitive(true),
    ] {
        assert_eq!(
            rv(s.update_attributes(key, std::slice::from_ref(&a))),
            RvError::AttributeReadOnly,
            "{a:?}"
        );
    }
    // A non-modifiable object refuses every change.
    let frozen = aes_key(&s, "frozen", &[5u8; 16], &[Attribute::Modifiable(false)]);
    assert_eq!(
        rv(s.update_attributes(frozen, &[Attribute::Label(b"x".to_vec())])),
        RvError::ActionProhibited
    );

    // The changes are on disk: a new process sees them.
    drop(s);
    p.finalize().unwrap();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = find_one(&s, "after").expect("renamed key persisted");
    assert!(find_one(&s, "before").is_none());
    assert!(flag(&s, key, AttributeType::Sensitive));
    assert!(!flag(&s, key, AttributeType::Extractable));
    assert!(!flag(&s, key, AttributeType::Encrypt));
}

#[test]
fn generated_and_imported_keys_carry_the_spec_attributes() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let generated = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Token(true),
            ],
        )
        .unwrap();
    assert!(flag(&s, generated, AttributeType::Local));
    assert!(flag(&s, generated, AttributeType::AlwaysSensitive));
    assert!(flag(&s, generated, AttributeType::NeverExtractable));
    match s
        .get_attributes(generated, &[AttributeType::KeyGenMechanism])
        .unwrap()
        .as_slice()
    {
        [Attribute::KeyGenMechanism(m)] => assert_eq!(*m, MechanismType::AES_KEY_GEN),
        other => panic!("{other:?}"),
    }
    // Private keys default to private and sensitive.
    assert!(flag(&s, generated, AttributeType::Private));

    let imported = aes_key(&s, "imported", &[1u8; 16], &[Attribute::Sensitive(true)]);
    assert!(!flag(&s, imported, AttributeType::Local));
    assert!(!flag(&s, imported, AttributeType::AlwaysSensitive));
    assert!(!flag(&s, imported, AttributeType::NeverExtractable));

    // A key made extractable later loses NEVER_EXTRACTABLE for good; making a key sensitive
    // later does not make it ALWAYS_SENSITIVE.
    let later = readable_aes(&s, 16);
    assert!(!flag(&s, later, AttributeType::AlwaysSensitive));
    assert!(!flag(&s, later, AttributeType::NeverExtractable));
    s.update_attributes(later, &[Attribute::Sensitive(true)]).unwrap();
    assert!(!flag(&s, later, AttributeType::AlwaysSensitive));

    // Contradictory or wrongly sized templates.
    assert_eq!(
        rv(s.generate_key(&Mechanism::AesKeyGen, &[Attribute::ValueLen(Ulong::from(20))])),
        // Both codes fit; keygate answers with the one for a size the mechanism cannot make.
        unless_softhsm(RvError::KeySizeRange, RvError::AttributeValueInvalid)
    );
    assert_eq!(
        rv(s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Class(ObjectClass::PUBLIC_KEY)
            ]
        )),
        // The class contradicts the mechanism, which is what TEMPLATE_INCONSISTENT means;
        // SoftHSM2 2.6.1 calls the class value invalid.
        unless_softhsm(RvError::TemplateInconsistent, RvError::AttributeValueInvalid)
    );
    // A 15-byte AES key is no AES key; SoftHSM2 2.6.1 stores it (and fails later, at use).
    let aes15 = s.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(vec![0u8; 15]),
    ]);
    if target() == Target::SoftHsm {
        aes15.unwrap();
    } else {
        assert_eq!(rv(aes15), RvError::AttributeValueInvalid);
    }
    assert_eq!(
        rv(s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES)
        ])),
        RvError::TemplateIncomplete
    );
}

#[test]
fn digest_key_hashes_the_secret_and_refuses_sensitive_keys() {
    use sha2::Digest;
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let value = [0x5au8; 32];
    let key = aes_key(
        &s,
        "k",
        &value,
        &[Attribute::Sensitive(false), Attribute::Extractable(true)],
    );
    s.digest_init(&Mechanism::Sha256).unwrap();
    s.digest_update(b"prefix").unwrap();
    s.digest_key(key).unwrap();
    let got = s.digest_final().unwrap();
    let want = sha2::Sha256::new()
        .chain_update(b"prefix")
        .chain_update(value)
        .finalize();
    assert_eq!(got, want[..]);

    // A sensitive key is not digested: its hash would let anyone test guesses of it offline.
    // SoftHSM2 2.6.1 digests it.
    let sensitive = aes_key(&s, "s", &value, &[Attribute::Sensitive(true)]);
    s.digest_init(&Mechanism::Sha256).unwrap();
    if target() == Target::SoftHsm {
        s.digest_key(sensitive).unwrap();
    } else {
        assert_eq!(rv(s.digest_key(sensitive)), RvError::KeyIndigestible);
    }
}

#[test]
fn set_pin_rewraps_the_dek_for_user_and_so() {
    let env = Env::new();
    let p = env.load();
    let slot = Env::slot(&p);
    let s = Env::user_session(&p);
    aes_key(&s, "kept", &[4u8; 32], &[]);
    let new_user = AuthPin::from("changed-user-6612");
    // The old PIN must be right; the new one must fit the token's bounds.
    assert_eq!(
        rv(s.set_pin(&AuthPin::from("not-the-pin-1"), &new_user)),
        RvError::PinIncorrect
    );
    assert_eq!(
        rv(s.set_pin(&AuthPin::from(USER_PIN), &AuthPin::from("abc"))),
        RvError::PinLenRange
    );
    s.set_pin(&AuthPin::from(USER_PIN), &new_user).unwrap();
    s.logout().unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))),
        RvError::PinIncorrect
    );

    // In a new process the new PIN opens the same keys.
    drop(s);
    p.finalize().unwrap();
    let p = env.load();
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&new_user)).unwrap();
    let key = find_one(&s, "kept").expect("key still there");
    let mut iv = [2u8; 12];
    let ct = gcm_encrypt(&s, key, &mut iv, b"after set-pin").unwrap();
    assert_eq!(gcm_decrypt(&s, key, &mut iv, &ct).unwrap(), b"after set-pin");
    s.logout().unwrap();

    // The SO changes its own PIN the same way.
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    s.set_pin(&AuthPin::from(SO_PIN), &AuthPin::from("changed-so-3390"))
        .unwrap();
    s.logout().unwrap();
    assert_eq!(
        rv(s.login(UserType::So, Some(&AuthPin::from(SO_PIN)))),
        RvError::PinIncorrect
    );
    s.login(UserType::So, Some(&AuthPin::from("changed-so-3390"))).unwrap();
}

#[test]
fn mechanism_list_and_info_carry_sizes_and_flags() {
    let env = Env::new();
    let p = env.load();
    let slot = Env::slot(&p);
    let list = p.get_mechanism_list(slot).unwrap();
    let mut want = vec![
        MechanismType::AES_KEY_GEN,
        MechanismType::GENERIC_SECRET_KEY_GEN,
        MechanismType::ECC_KEY_PAIR_GEN,
        MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
        MechanismType::ECDSA,
        MechanismType::EDDSA,
        MechanismType::AES_GCM,
        MechanismType::AES_KEY_WRAP,
        MechanismType::SHA256,
        MechanismType::SHA384,
        MechanismType::SHA512,
        MechanismType::SHA256_HMAC,
        MechanismType::ECDH1_DERIVE,
    ];
    // SoftHSM2 2.6.1 has no CKM_ECDSA_SHA256 (keygate's hsm mode hashes for it), and its
    // CKM_AES_KEY_WRAP_PAD is RFC 5649 (keygate's hsm mode offers it as KWP; tests/crypto.rs).
    match target() {
        Target::SelfManaged => want.extend([MechanismType::ECDSA_SHA256, MechanismType::AES_KEY_WRAP_PAD]),
        Target::Hsm => want.push(MechanismType::ECDSA_SHA256),
        Target::SoftHsm => want.push(MechanismType::AES_KEY_WRAP_PAD),
    }
    for m in want {
        assert!(list.contains(&m), "{m} missing from C_GetMechanismList");
    }
    if target() == Target::Hsm {
        assert!(!list.contains(&MechanismType::AES_KEY_WRAP_PAD));
    }
    let gcm = p.get_mechanism_info(slot, MechanismType::AES_GCM).unwrap();
    assert!(gcm.encrypt() && gcm.decrypt() && !gcm.sign());
    assert_eq!((gcm.min_key_size(), gcm.max_key_size()), (16, 32));
    let ec = p.get_mechanism_info(slot, MechanismType::ECC_KEY_PAIR_GEN).unwrap();
    assert!(ec.generate_key_pair() && !ec.generate());
    // keygate's own tokens do P-256, P-384 and P-521; an HSM states its own range.
    if target() == Target::SelfManaged {
        assert_eq!((ec.min_key_size(), ec.max_key_size()), (256, 521));
    } else {
        assert!(ec.min_key_size() <= 256 && ec.max_key_size() >= 256);
    }
    assert!(ec.ec_from_oid() && ec.ec_uncompressed());
    let ecdsa = p.get_mechanism_info(slot, MechanismType::ECDSA).unwrap();
    assert!(ecdsa.sign() && ecdsa.verify() && !ecdsa.encrypt());
    let wrap = p.get_mechanism_info(slot, MechanismType::AES_KEY_WRAP).unwrap();
    assert!(wrap.wrap() && wrap.unwrap());
    let sha = p.get_mechanism_info(slot, MechanismType::SHA256).unwrap();
    assert!(sha.digest());
    let derive = p.get_mechanism_info(slot, MechanismType::ECDH1_DERIVE).unwrap();
    assert!(derive.derive());
    // 3DES is below keygate's floor (tests/policy.rs); SoftHSM2 offers it.
    let des3 = p.get_mechanism_info(slot, MechanismType::DES3_CBC);
    if target() == Target::SoftHsm {
        assert!(des3.unwrap().encrypt());
    } else {
        assert_eq!(rv(des3), RvError::MechanismInvalid);
    }
    // The token flags a client checks before logging in.
    let info = p.get_token_info(slot).unwrap();
    assert!(info.token_initialized() && info.login_required() && info.user_pin_initialized() && info.rng());
    assert!(!info.user_pin_count_low() && !info.user_pin_locked());
}

#[test]
fn session_states_follow_login_across_every_session_of_the_token() {
    let env = Env::new();
    let p = env.load();
    let slot = Env::slot(&p);
    let ro = p.open_ro_session(slot).unwrap();
    let rw = p.open_rw_session(slot).unwrap();
    assert_eq!(ro.get_session_info().unwrap().session_state(), SessionState::RoPublic);
    assert_eq!(rw.get_session_info().unwrap().session_state(), SessionState::RwPublic);
    assert!(!ro.get_session_info().unwrap().read_write());
    assert!(rw.get_session_info().unwrap().read_write());

    // The SO cannot log in while a read-only session is open.
    assert_eq!(
        rv(rw.login(UserType::So, Some(&AuthPin::from(SO_PIN)))),
        RvError::SessionReadOnlyExists
    );
    // Logging in on one session logs in every session of the token.
    ro.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    assert_eq!(ro.get_session_info().unwrap().session_state(), SessionState::RoUser);
    assert_eq!(rw.get_session_info().unwrap().session_state(), SessionState::RwUser);
    assert_eq!(
        rv(rw.login(UserType::User, Some(&AuthPin::from(USER_PIN)))),
        RvError::UserAlreadyLoggedIn
    );
    // Two reasons apply (the user is logged in, a read-only session is open); the
    // specification does not order them, and SoftHSM2 2.6.1 gives the other one.
    assert_eq!(
        rv(rw.login(UserType::So, Some(&AuthPin::from(SO_PIN)))),
        unless_softhsm(RvError::UserAnotherAlreadyLoggedIn, RvError::SessionReadOnlyExists)
    );
    rw.logout().unwrap();
    assert_eq!(ro.get_session_info().unwrap().session_state(), SessionState::RoPublic);
    if target() == Target::SoftHsm {
        // SoftHSM2 2.6.1's C_Logout succeeds when nobody is logged in.
        rw.logout().unwrap();
    } else {
        assert_eq!(rv(rw.logout()), RvError::UserNotLoggedIn);
    }

    // The SO's sessions are read/write only.
    drop(ro);
    rw.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    assert_eq!(
        rw.get_session_info().unwrap().session_state(),
        SessionState::RwSecurityOfficer
    );
    assert_eq!(rv(p.open_ro_session(slot)), RvError::SessionReadWriteSoExists);
    // The SO has no access to the user's keys.
    assert_eq!(
        rv(rw.generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::ValueLen(Ulong::from(32)), Attribute::Private(true)]
        )),
        RvError::UserNotLoggedIn
    );
}

#[test]
fn library_slot_and_token_info_and_random_seeding() {
    let env = Env::new();
    let p = env.load();
    let info = p.get_library_info().unwrap();
    let slot = Env::slot(&p);
    let si = p.get_slot_info(slot).unwrap();
    assert!(si.token_present() && !si.removable_device());
    let version = (info.cryptoki_version().major(), info.cryptoki_version().minor());
    if target() == Target::SoftHsm {
        // SoftHSM2 2.6.1 implements PKCS#11 2.40 and shows a free slot besides its tokens.
        assert_eq!(version, (2, 40));
        assert!(info.manufacturer_id().starts_with("SoftHSM"));
    } else {
        assert_eq!(version, (3, 0));
        assert_eq!(info.manufacturer_id(), "keygate");
        assert_eq!(p.get_all_slots().unwrap(), vec![slot]);
        assert!(si.slot_description().contains("test"));
    }
    let s = Env::user_session(&p);
    let _ro = p.open_ro_session(slot).unwrap();
    let ti = p.get_token_info(slot).unwrap();
    assert_eq!(ti.label(), "test");
    match target() {
        Target::SelfManaged => assert_eq!(ti.model(), "self-managed"),
        Target::Hsm => assert_eq!(ti.model(), "hsm"),
        Target::SoftHsm => assert_eq!(ti.model(), "SoftHSM v2"),
    }
    assert!(!ti.serial_number().is_empty());
    assert_eq!((ti.min_pin_length(), ti.max_pin_length()), (4, 255));
    // SoftHSM2 2.6.1 does not count sessions (CK_UNAVAILABLE_INFORMATION).
    assert_eq!(ti.session_count(), unless_softhsm(Some(2), None));
    assert_eq!(ti.rw_session_count(), unless_softhsm(Some(1), None));
    // A self-managed token mixes the seed into the OS's generator (written to /dev/urandom);
    // hsm mode passes it to the HSM; SoftHSM2 mixes it into OpenSSL's.
    s.seed_random(b"seed").unwrap();
    assert_eq!(s.generate_random_vec(48).unwrap().len(), 48);
    // An invalid slot is refused everywhere.
    let bad = cryptoki::slot::Slot::try_from(9u64).unwrap();
    assert_eq!(rv(p.get_slot_info(bad)), RvError::SlotIdInvalid);
    assert_eq!(rv(p.get_token_info(bad)), RvError::SlotIdInvalid);
    assert_eq!(rv(p.open_rw_session(bad)), RvError::SlotIdInvalid);
}

#[test]
fn aes_keys_of_every_size_and_multi_part_verify() {
    use hmac::Mac;
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    for len in [16u64, 24, 32] {
        let k = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::ValueLen(Ulong::from(len)),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                ],
            )
            .unwrap();
        match s
            .get_attributes(k, &[AttributeType::ValueLen, AttributeType::Value])
            .unwrap()
            .as_slice()
        {
            [Attribute::ValueLen(l), Attribute::Value(v)] => {
                assert_eq!(u64::from(*l), len);
                assert_eq!(v.len() as u64, len);
            }
            other => panic!("{other:?}"),
        }
        // The generated key works with an independent AES-GCM for every size it can.
        let mut iv = [4u8; 12];
        let ct = gcm_encrypt(&s, k, &mut iv, b"sized").unwrap();
        assert_eq!(gcm_decrypt(&s, k, &mut iv, &ct).unwrap(), b"sized");
    }

    // Multi-part verify: HMAC made outside, checked in pieces; a wrong tag is refused at the end.
    let key = b"multi-part verify key 0123456789".to_vec();
    let k = import_secret(&s, KeyType::GENERIC_SECRET, &key, &[Attribute::Verify(true)]);
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    m.update(b"in three parts");
    let tag = m.finalize().into_bytes().to_vec();
    s.verify_init(&Mechanism::Sha256Hmac, k).unwrap();
    for part in [&b"in "[..], b"three", b" parts"] {
        s.verify_update(part).unwrap();
    }
    s.verify_final(&tag).unwrap();
    s.verify_init(&Mechanism::Sha256Hmac, k).unwrap();
    s.verify_update(b"in three parts!").unwrap();
    assert_eq!(rv(s.verify_final(&tag)), RvError::SignatureInvalid);

    // Multi-part ECDSA-SHA256 verify of a signature made by p256 directly (SoftHSM2 2.6.1 has
    // no CKM_ECDSA_SHA256; keygate's hsm mode hashes for it).
    use p256::ecdsa::signature::Signer;
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let sig: p256::ecdsa::Signature = sk.sign(b"signed outside");
    let pubk = import_p256_public(&s, sk.verifying_key());
    if target() == Target::SoftHsm {
        assert_eq!(
            rv(s.verify_init(&Mechanism::EcdsaSha256, pubk)),
            RvError::MechanismInvalid
        );
        return;
    }
    s.verify_init(&Mechanism::EcdsaSha256, pubk).unwrap();
    s.verify_update(b"signed ").unwrap();
    s.verify_update(b"outside").unwrap();
    s.verify_final(&sig.to_bytes()).unwrap();
}

#[test]
fn destroy_honours_destroyable_and_read_only_sessions() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let kept = aes_key(&s, "kept", &[3u8; 32], &[Attribute::Destroyable(false)]);
    assert_eq!(rv(s.destroy_object(kept)), RvError::ActionProhibited);
    assert!(find_one(&s, "kept").is_some());
    let ro = p.open_ro_session(Env::slot(&p)).unwrap();
    let token_key = aes_key(&s, "token-key", &[4u8; 32], &[]);
    assert_eq!(rv(ro.destroy_object(token_key)), RvError::SessionReadOnly);
    s.destroy_object(token_key).unwrap();
    assert!(find_one(&s, "token-key").is_none());
    // Without a login, a private key is not there to destroy.
    let private = aes_key(&s, "private", &[5u8; 32], &[Attribute::Private(true)]);
    s.logout().unwrap();
    assert_eq!(rv(s.destroy_object(private)), RvError::ObjectHandleInvalid);
}

#[test]
fn login_before_the_pins_exist_is_user_pin_not_initialized() {
    if target() != Target::SelfManaged {
        return; // SoftHSM2 makes no token without its PINs; Env::hsm starts from an initialised one.
    }
    let env = Env::bare();
    let p = env.load();
    let slot = Env::slot(&p);
    let s = p.open_rw_session(slot).unwrap();
    for user in [UserType::User, UserType::So] {
        assert_eq!(
            rv(s.login(user, Some(&AuthPin::from(SO_PIN)))),
            RvError::UserPinNotInitialized
        );
    }
    drop(s);
    // Initialised, with an SO PIN but no user PIN yet.
    p.init_token(slot, &AuthPin::from(SO_PIN), "test").unwrap();
    let s = p.open_rw_session(slot).unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))),
        RvError::UserPinNotInitialized
    );
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    drop(env);
}

/// An X.509 certificate keeps the attributes clients set and search by (subject, issuer,
/// serial number, id) and gets the check value the specification derives from it; a
/// data object keeps its application and object identifier; an AES key's check value is the
/// first three bytes of AES-ECB over a zero block (checked with OpenSSL).
#[test]
fn certificates_data_objects_and_check_values() {
    use der::{Decode, Encode};
    use sha2::Digest;
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = env.path().join("c.key");
    let der_path = env.path().join("c.der");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=keygate objects",
            "-days",
            "1",
            "-outform",
            "DER",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&der_path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req failed");
    let der = std::fs::read(&der_path).unwrap();
    let cert = x509_cert::Certificate::from_der(&der).unwrap();
    let subject = cert.tbs_certificate.subject.to_der().unwrap();
    let issuer = cert.tbs_certificate.issuer.to_der().unwrap();
    let serial = cert.tbs_certificate.serial_number.to_der().unwrap();
    let h = s
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(b"tls".to_vec()),
            Attribute::Id(vec![0x71]),
            Attribute::Subject(subject.clone()),
            Attribute::Issuer(issuer.clone()),
            Attribute::SerialNumber(serial.clone()),
            Attribute::Value(der.clone()),
        ])
        .unwrap();
    let got = s
        .get_attributes(
            h,
            &[
                AttributeType::Subject,
                AttributeType::Issuer,
                AttributeType::SerialNumber,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert_eq!(
        got,
        vec![
            Attribute::Subject(subject.clone()),
            Attribute::Issuer(issuer.clone()),
            Attribute::SerialNumber(serial.clone()),
            Attribute::Value(der.clone()),
        ]
    );
    // What libp11 and NSS search a certificate by.
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Issuer(issuer),
            Attribute::SerialNumber(serial),
        ])
        .unwrap();
    assert_eq!(found, vec![h]);
    let kcv = sha1::Sha1::digest(&der)[..3].to_vec();
    if target() == Target::SelfManaged {
        assert_eq!(
            s.get_attributes(h, &[AttributeType::CheckValue]).unwrap(),
            vec![Attribute::CheckValue(kcv)]
        );
        // A check value that is not the certificate's is refused.
        let wrong = s.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(cryptoki::object::CertificateType::X_509),
            Attribute::Subject(subject),
            Attribute::Value(der),
            Attribute::CheckValue(vec![1, 2, 3]),
        ]);
        assert_eq!(rv(wrong), RvError::AttributeValueInvalid);
    }

    let data = s
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Label(b"config".to_vec()),
            Attribute::Application(b"keygate tests".to_vec()),
            Attribute::ObjectId(vec![0x06, 0x03, 0x2a, 0x03, 0x04]),
            Attribute::Value(b"not a secret".to_vec()),
        ])
        .unwrap();
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(b"keygate tests".to_vec()),
        ])
        .unwrap();
    assert_eq!(found, vec![data]);
    assert_eq!(
        s.get_attributes(data, &[AttributeType::ObjectId, AttributeType::Value])
            .unwrap(),
        vec![
            Attribute::ObjectId(vec![0x06, 0x03, 0x2a, 0x03, 0x04]),
            Attribute::Value(b"not a secret".to_vec())
        ]
    );

    let value = [0x3cu8; 32];
    let aes = import_secret(&s, KeyType::AES, &value, &[Attribute::Encrypt(true)]);
    let mut c = openssl::symm::Crypter::new(
        openssl::symm::Cipher::aes_256_ecb(),
        openssl::symm::Mode::Encrypt,
        &value,
        None,
    )
    .unwrap();
    c.pad(false);
    let mut block = [0u8; 32];
    let n = c.update(&[0u8; 16], &mut block).unwrap();
    assert_eq!(n, 16);
    assert_eq!(
        s.get_attributes(aes, &[AttributeType::CheckValue]).unwrap(),
        vec![Attribute::CheckValue(block[..3].to_vec())]
    );
}
