//! What the clients' own test suites (google/pkcs11test, python-pkcs11; ci/conformance runs
//! them) found keygate doing differently from the specification, one test per finding, run
//! against all three targets (KEYGATE_TEST_TARGET: self-managed, hsm, softhsm). Where SoftHSM2
//! 2.6.1 answers differently from the specification, the test says so.

#[macro_use]
mod common;

use std::ptr::null_mut;

use common::raw::*;
use common::*;
use cryptoki::error::RvError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use pkcs11_sys::*;

/// A P-256 session key pair; the private key with `private_extra` attributes.
fn p256_pair(s: &Session, private_extra: &[Attribute]) -> (ObjectHandle, ObjectHandle) {
    let mut private = vec![Attribute::Sign(true)];
    private.extend_from_slice(private_extra);
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[Attribute::EcParams(P256_OID.to_vec()), Attribute::Verify(true)],
        &private,
    )
    .unwrap()
}

fn verifying_key(s: &Session, public: ObjectHandle) -> p256::ecdsa::VerifyingKey {
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(s, public)).unwrap()
}

/// A CKM_ECDSA signature of `digest` checked by the p256 crate. ECDSA takes the digest as an
/// integer (SEC 1 §4.1.3): a shorter one is the same number with zero bytes in front.
fn ecdsa_valid(vk: &p256::ecdsa::VerifyingKey, digest: &[u8], signature: &[u8]) -> bool {
    let mut e = [0u8; 32];
    e[32 - digest.len()..].copy_from_slice(digest);
    let sig = p256::ecdsa::Signature::from_slice(signature).unwrap();
    vk.verify_prehash(&e, &sig).is_ok()
}

// 1 and 2: C_Login(CKU_CONTEXT_SPECIFIC) and CKA_ALWAYS_AUTHENTICATE keys. Through the C ABI:
// cryptoki has no single-part C_Sign after a separate C_SignInit, and SoftHSM2 has no
// multi-part CKM_ECDSA.

/// A P-256 session key pair made through the C ABI: (public, private).
fn raw_p256_pair(r: &Raw, h: CK_SESSION_HANDLE, always_authenticate: bool) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let yes: CK_BBOOL = CK_TRUE;
    let always: CK_BBOOL = if always_authenticate { CK_TRUE } else { CK_FALSE };
    let mut public = [
        CK_ATTRIBUTE {
            type_: CKA_EC_PARAMS,
            pValue: P256_OID.as_ptr() as CK_VOID_PTR,
            ulValueLen: P256_OID.len() as CK_ULONG,
        },
        attr(CKA_VERIFY, &yes),
    ];
    let mut private = [attr(CKA_SIGN, &yes), attr(CKA_ALWAYS_AUTHENTICATE, &always)];
    let mut m = mechanism(CKM_EC_KEY_PAIR_GEN);
    let (mut pubk, mut privk) = (0, 0);
    assert_eq!(
        call!(
            r,
            C_GenerateKeyPair(
                h,
                &mut m,
                public.as_mut_ptr(),
                2,
                private.as_mut_ptr(),
                2,
                &mut pubk,
                &mut privk
            )
        ),
        CKR_OK
    );
    (pubk, privk)
}

fn mechanism(ty: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: ty,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

/// The public key of a raw session's P-256 key, for the p256 crate.
fn raw_verifying_key(r: &Raw, h: CK_SESSION_HANDLE, public: CK_OBJECT_HANDLE) -> p256::ecdsa::VerifyingKey {
    let mut point = [0u8; 67];
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_EC_POINT,
        pValue: point.as_mut_ptr() as CK_VOID_PTR,
        ulValueLen: point.len() as CK_ULONG,
    }];
    assert_eq!(call!(r, C_GetAttributeValue(h, public, t.as_mut_ptr(), 1)), CKR_OK);
    assert_eq!(t[0].ulValueLen, 67, "CKA_EC_POINT is a DER OCTET STRING of 65 bytes");
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point[2..]).unwrap()
}

fn context_login(r: &Raw, h: CK_SESSION_HANDLE, pin: &str) -> CK_RV {
    let pin = pin.as_bytes();
    call!(
        r,
        C_Login(h, CKU_CONTEXT_SPECIFIC, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)
    )
}

fn sign_init(r: &Raw, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    let mut m = mechanism(CKM_ECDSA);
    call!(r, C_SignInit(h, &mut m, key))
}

/// A single-part C_Sign of a 32-byte digest: the code, and the signature on success.
fn sign(r: &Raw, h: CK_SESSION_HANDLE, digest: &[u8; 32]) -> (CK_RV, Vec<u8>) {
    let mut out = [0u8; 64];
    let mut len = out.len() as CK_ULONG;
    let rv = call!(r, C_Sign(h, digest.as_ptr() as *mut u8, 32, out.as_mut_ptr(), &mut len));
    (rv, out[..len as usize].to_vec())
}

#[test]
fn a_context_specific_login_without_an_operation_is_operation_not_initialized() {
    let _env = Env::new();
    let r = raw_target();
    let h = target_session(&r, true);
    login(&r, h);
    assert_eq!(context_login(&r, h, USER_PIN), CKR_OPERATION_NOT_INITIALIZED);
    // An operation on a key that does not ask for it does not wait for one either.
    let (public, private) = raw_p256_pair(&r, h, false);
    assert_eq!(sign_init(&r, h, private), CKR_OK);
    assert_eq!(context_login(&r, h, USER_PIN), CKR_OPERATION_NOT_INITIALIZED);
    let digest = [0x11u8; 32];
    let (rv, sig) = sign(&r, h, &digest);
    assert_eq!(rv, CKR_OK);
    assert!(ecdsa_valid(&raw_verifying_key(&r, h, public), &digest, &sig));
}

#[test]
fn an_always_authenticate_key_signs_once_per_context_specific_login() {
    let _env = Env::new();
    let r = raw_target();
    let h = target_session(&r, true);
    login(&r, h);
    let (public, private) = raw_p256_pair(&r, h, true);
    let vk = raw_verifying_key(&r, h, public);
    let digest = [0x5au8; 32];

    // Without the login the signature is refused, and the operation ends.
    assert_eq!(sign_init(&r, h, private), CKR_OK);
    assert_eq!(sign(&r, h, &digest).0, CKR_USER_NOT_LOGGED_IN);
    assert_eq!(sign(&r, h, &digest).0, CKR_OPERATION_NOT_INITIALIZED);

    // A wrong PIN is refused, and the operation still waits for the right one.
    assert_eq!(sign_init(&r, h, private), CKR_OK);
    assert_eq!(context_login(&r, h, "wrong-pin-0000"), CKR_PIN_INCORRECT);
    assert_eq!(context_login(&r, h, USER_PIN), CKR_OK);
    let (rv, sig) = sign(&r, h, &digest);
    assert_eq!(rv, CKR_OK);
    assert!(ecdsa_valid(&vk, &digest, &sig));

    // One login, one signature: the next one needs its own.
    assert_eq!(sign_init(&r, h, private), CKR_OK);
    assert_eq!(sign(&r, h, &digest).0, CKR_USER_NOT_LOGGED_IN);
    assert_eq!(sign_init(&r, h, private), CKR_OK);
    assert_eq!(context_login(&r, h, USER_PIN), CKR_OK);
    assert_eq!(sign(&r, h, &digest).0, CKR_OK);
    // The application stays logged in as the user throughout.
    let mut info = CK_SESSION_INFO {
        slotID: 0,
        state: 0,
        flags: 0,
        ulDeviceError: 0,
    };
    assert_eq!(call!(r, C_GetSessionInfo(h, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RW_USER_FUNCTIONS);
}

// 3 and 9c: X.509 certificates.

/// A self-signed certificate made by OpenSSL, DER, and its subject name.
fn certificate(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join("cert.key");
    let der = dir.join("cert.der");
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
        .args(["-subj", "/CN=keygate conformance", "-days", "1", "-outform", "DER"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&der)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl req failed");
    let subject = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253"])
        .arg("-in")
        .arg(&der)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subject.stdout).contains("CN=keygate conformance"));
    // The DER subject Name: "CN=keygate conformance" as one RDN.
    let cn = b"keygate conformance";
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, cn.len() as u8];
    atv.extend_from_slice(cn);
    let mut seq = vec![0x30, atv.len() as u8];
    seq.extend_from_slice(&atv);
    let mut set = vec![0x31, seq.len() as u8];
    set.extend_from_slice(&seq);
    let mut name = vec![0x30, set.len() as u8];
    name.extend_from_slice(&set);
    (std::fs::read(&der).unwrap(), name)
}

#[test]
fn an_x509_certificate_is_stored_and_read_back_and_needs_its_subject() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let (der, subject) = certificate(env.path());
    let base = |with_subject: bool| {
        let mut t = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(b"conformance cert".to_vec()),
            Attribute::Id(vec![1, 2, 3]),
            Attribute::Value(der.clone()),
        ];
        if with_subject {
            t.push(Attribute::Subject(subject.clone()));
        }
        t
    };
    // Without CKA_SUBJECT: the specification requires it for an X.509 certificate.
    assert_eq!(rv(s.create_object(&base(false))), RvError::TemplateIncomplete);
    let cert = s.create_object(&base(true)).unwrap();
    let got = s
        .get_attributes(
            cert,
            &[
                AttributeType::Value,
                AttributeType::Subject,
                AttributeType::CertificateType,
            ],
        )
        .unwrap();
    assert!(got.contains(&Attribute::Value(der.clone())));
    assert!(got.contains(&Attribute::Subject(subject.clone())));
    assert!(got.contains(&Attribute::CertificateType(CertificateType::X_509)));
    let found = s
        .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), Attribute::Id(vec![1, 2, 3])])
        .unwrap();
    // SoftHSM2 2.6.1 leaves the token object it refused behind (it stores the object before it
    // checks the template).
    assert_eq!(found.len(), unless_softhsm(1, 2));
    assert!(found.contains(&cert));
}

// 4: CKM_ECDSA takes a digest of any length.

#[test]
fn ecdsa_signs_and_verifies_inputs_of_any_length() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let (public, private) = p256_pair(&s, &[]);
    let vk = verifying_key(&s, public);
    // python-pkcs11 signs b"HI BOB!"; 1 and 31 bytes are the edges below the field size.
    for input in [&b"HI BOB!"[..], &[7u8][..], &[9u8; 31][..], &[1u8; 32][..]] {
        let sig = s.sign(&Mechanism::Ecdsa, private, input).unwrap();
        assert!(ecdsa_valid(&vk, input, &sig), "{} bytes", input.len());
        s.verify(&Mechanism::Ecdsa, public, input, &sig).unwrap();
        let mut other = input.to_vec();
        other[0] ^= 1;
        assert_eq!(
            rv(s.verify(&Mechanism::Ecdsa, public, &other, &sig)),
            RvError::SignatureInvalid
        );
    }
}

// 5: read-only attributes stay read-only, even when set to the value they have.

#[test]
fn setting_a_read_only_attribute_to_its_own_value_is_attribute_read_only() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::ValueLen(32.into()), Attribute::Encrypt(true)],
        )
        .unwrap();
    let now = s
        .get_attributes(
            key,
            &[
                AttributeType::Class,
                AttributeType::KeyType,
                AttributeType::Local,
                AttributeType::KeyGenMechanism,
                AttributeType::ValueLen,
            ],
        )
        .unwrap();
    assert_eq!(now.len(), 5);
    for a in now {
        assert_eq!(
            rv(s.update_attributes(key, std::slice::from_ref(&a))),
            RvError::AttributeReadOnly,
            "{a:?}"
        );
    }
    // A modifiable attribute set to its own value is fine.
    s.update_attributes(key, &[Attribute::Encrypt(true)]).unwrap();
}

// 6: public session objects in a public session.

#[test]
fn a_public_session_may_create_and_generate_public_session_objects() {
    let env = Env::new();
    let p = env.load();
    let slot = Env::slot(&p);
    let s = p.open_rw_session(slot).unwrap();
    // pkcs11test's HMAC vectors: a generic secret session key, CKA_PRIVATE false.
    let hmac_key = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Value(vec![0x0b; 32]),
        ])
        .unwrap();
    let mac = s.sign(&Mechanism::Sha256Hmac, hmac_key, b"Hi There").unwrap();
    use hmac::Mac;
    let mut want = hmac::Hmac::<sha2::Sha256>::new_from_slice(&[0x0b; 32]).unwrap();
    want.update(b"Hi There");
    assert_eq!(mac, want.finalize().into_bytes().to_vec());
    let aes = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(16.into()),
                Attribute::Token(false),
                Attribute::Private(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .unwrap();
    let mut iv = [3u8; 12];
    let ct = s.encrypt(&gcm(&mut iv), aes, b"public").unwrap();
    assert_eq!(s.decrypt(&gcm(&mut iv), aes, &ct).unwrap(), b"public");
    let found = s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)]).unwrap();
    assert_eq!(found.len(), 2);
    // Private objects and token objects still need the user.
    assert_eq!(
        rv(s.generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::ValueLen(16.into()), Attribute::Private(true)],
        )),
        RvError::UserNotLoggedIn
    );
}

// 7: an operation's init reports the init's errors.

#[test]
fn an_hmac_key_too_short_for_its_mechanism_is_refused_at_init() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let mut too_short = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Sign(true),
        Attribute::Value(vec![0x0b; 8]),
    ];
    let key = match s.create_object(&too_short) {
        Ok(k) => k,
        // The policy may refuse to hold such a key at all; then the question does not arise.
        Err(e) => {
            assert_eq!(rv::<()>(Err(e)), RvError::KeySizeRange);
            too_short.pop();
            return;
        }
    };
    let init = s.sign_init(&Mechanism::Sha256Hmac, key);
    match init {
        Err(e) => assert_eq!(rv::<()>(Err(e)), RvError::KeySizeRange),
        // An init that succeeds is followed by a sign that succeeds: no init error later.
        Ok(()) => {
            s.sign_update(b"data").unwrap();
            assert_eq!(s.sign_final().unwrap().len(), 32);
        }
    }
}

// 8: multi-part AES-CBC streams whole blocks.

#[test]
fn multi_part_aes_cbc_returns_whole_blocks_from_every_update() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let offered = p.get_mechanism_list(Env::slot(&p)).unwrap();
    if !offered.contains(&MechanismType::AES_CBC_PAD) {
        // A self-managed token has no AES-CBC yet (issue 19).
        assert_eq!(target(), Target::SelfManaged);
        return;
    }
    let value = [0x42u8; 16];
    let key = import_secret(
        &s,
        KeyType::AES,
        &value,
        &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
    );
    let iv = [9u8; 16];
    let plain: Vec<u8> = (0..40u8).collect();
    s.encrypt_init(&Mechanism::AesCbcPad(iv), key).unwrap();
    let a = s.encrypt_update(&plain[..20]).unwrap();
    assert_eq!(a.len(), 16);
    let b = s.encrypt_update(&plain[20..]).unwrap();
    assert_eq!(b.len(), 16);
    let c = s.encrypt_final().unwrap();
    assert_eq!(c.len(), 16);
    let ct = [a, b, c].concat();
    // Checked against the aes crate: CBC with PKCS#7 padding.
    use aes::cipher::{BlockEncrypt, KeyInit};
    let cipher = aes::Aes128::new(&value.into());
    let mut padded = plain.clone();
    padded.extend_from_slice(&[8u8; 8]);
    let mut prev = iv;
    let mut want = Vec::new();
    for block in padded.chunks(16) {
        let mut b = aes::Block::default();
        for i in 0..16 {
            b[i] = block[i] ^ prev[i];
        }
        cipher.encrypt_block(&mut b);
        prev.copy_from_slice(&b);
        want.extend_from_slice(&b);
    }
    assert_eq!(ct, want);
    // Decryption holds back the last block (it may be padding) until the end.
    s.decrypt_init(&Mechanism::AesCbcPad(iv), key).unwrap();
    let a = s.decrypt_update(&ct[..24]).unwrap();
    assert_eq!(a.len(), 16);
    let b = s.decrypt_update(&ct[24..]).unwrap();
    assert_eq!(b.len(), 16);
    let c = s.decrypt_final().unwrap();
    assert_eq!([a, b, c].concat(), plain);
}

// 9: the specification's codes.

#[test]
fn a_generic_secret_wrapping_key_is_wrapping_key_type_inconsistent() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let generic = import_secret(&s, KeyType::GENERIC_SECRET, &[5u8; 32], &[Attribute::Wrap(true)]);
    let key = import_secret(
        &s,
        KeyType::AES,
        &[6u8; 16],
        &[Attribute::Extractable(true), Attribute::Sensitive(false)],
    );
    assert_eq!(
        rv(s.wrap_key(&Mechanism::AesKeyWrap, generic, key)),
        RvError::WrappingKeyTypeInconsistent
    );
}

#[test]
fn an_unknown_object_class_is_attribute_value_invalid() {
    let _env = Env::new();
    let r = raw_target();
    let h = target_session(&r, true);
    login(&r, h);
    let class: CK_OBJECT_CLASS = 0xDEAD_BEEF;
    let label = *b"x";
    let mut t = [attr(CKA_CLASS, &class), attr(CKA_LABEL, &label)];
    let mut o = 0;
    assert_eq!(
        call!(r, C_CreateObject(h, t.as_mut_ptr(), 2, &mut o)),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
}

// 10: C_WaitForSlotEvent.

#[test]
fn wait_for_slot_event_reports_no_event_and_a_blocked_wait_ends_at_finalize() {
    let _env = Env::new();
    let r = raw_target();
    let mut slot: CK_SLOT_ID = 99;
    assert_eq!(
        call!(r, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    assert_eq!(
        call!(r, C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, null_mut())),
        CKR_NO_EVENT
    );
    if target() == Target::SoftHsm {
        // SoftHSM2 2.6.1 does not wait: CKR_FUNCTION_NOT_SUPPORTED at once.
        assert_eq!(
            call!(r, C_WaitForSlotEvent(0, &mut slot, null_mut())),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        return;
    }
    assert_eq!(
        call!(r, C_WaitForSlotEvent(CKF_DONT_BLOCK, null_mut(), null_mut())),
        CKR_ARGUMENTS_BAD
    );
    // Slots here never change: a blocking wait lasts until C_Finalize releases it.
    let wait = r.f.C_WaitForSlotEvent.unwrap();
    let waiter = std::thread::spawn(move || {
        let mut slot: CK_SLOT_ID = 99;
        // SAFETY: a valid out-pointer; the module's function list outlives the thread (the
        // library stays loaded until `r` drops, after the join).
        unsafe { wait(0, &mut slot, null_mut()) }
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!waiter.is_finished(), "a blocking wait returned with no event");
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
    assert_eq!(waiter.join().unwrap(), CKR_CRYPTOKI_NOT_INITIALIZED);
}

// A client that logs in on one session and leaks it (python-pkcs11's setUp when a key
// generation fails): the login is the application's, as the specification says; every target
// answers a second C_Login alike, and the other sessions work without one.

#[test]
fn a_leaked_logged_in_session_keeps_the_application_logged_in() {
    let env = Env::new();
    let p = env.load();
    let leaked = Env::user_session(&p);
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))),
        RvError::UserAlreadyLoggedIn
    );
    let key = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::ValueLen(16.into()), Attribute::Private(true)],
        )
        .unwrap();
    assert!(s.get_attributes(key, &[AttributeType::Private]).is_ok());
    std::mem::forget(leaked);
}

// C_SeedRandom and C_GetMechanismInfo check their arguments first.

#[test]
fn seed_random_and_mechanism_info_check_their_pointers() {
    let _env = Env::new();
    let r = raw_target();
    let h = target_session(&r, false);
    assert_eq!(call!(r, C_SeedRandom(h, null_mut(), 16)), CKR_ARGUMENTS_BAD);
    let slot = test_slot(&r);
    assert_eq!(
        call!(r, C_GetMechanismInfo(slot, CKM_RSA_PKCS_KEY_PAIR_GEN, null_mut())),
        CKR_ARGUMENTS_BAD
    );
}

// AES-GCM with a shorter tag (python-pkcs11 uses 120 bits): NIST's 96 to 128 bits are taken;
// a shorter tag is the full tag's first bytes.

#[test]
fn aes_gcm_takes_tags_of_96_to_128_bits() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let value = [0x24u8; 16];
    let key = import_secret(
        &s,
        KeyType::AES,
        &value,
        &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
    );
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let full = aes_gcm::Aes128Gcm::new_from_slice(&value)
        .unwrap()
        .encrypt(
            &[5u8; 12].into(),
            Payload {
                msg: b"INPUT DATA",
                aad: b"foo",
            },
        )
        .unwrap();
    for bits in [96u64, 104, 112, 120, 128] {
        let mut iv = [5u8; 12];
        let ct = s.encrypt(&gcm_tag(&mut iv, bits), key, b"INPUT DATA").unwrap();
        assert_eq!(ct[..], full[..10 + bits as usize / 8], "{bits}-bit tag");
        assert_eq!(s.decrypt(&gcm_tag(&mut iv, bits), key, &ct).unwrap(), b"INPUT DATA");
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(
            s.decrypt(&gcm_tag(&mut iv, bits), key, &bad).is_err(),
            "{bits}-bit tag forged"
        );
    }
}

fn gcm_tag(iv: &mut [u8; 12], bits: u64) -> Mechanism<'_> {
    Mechanism::AesGcm(cryptoki::mechanism::aead::GcmParams::new(iv, b"foo", bits.into()).unwrap())
}
