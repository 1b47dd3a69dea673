//! hsm mode: a keygate token forwarding to a SoftHSM2 token. Results are checked by the
//! RustCrypto crates, as for the self-managed token.

mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::{AuthPin, Ulong};

#[test]
fn hsm_token_signs_encrypts_and_wraps_through_keygate() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let env = Env::hsm();
    let p = env.load();
    let slot = Env::slot(&p);
    let info = p.get_token_info(slot).unwrap();
    assert_eq!(info.label(), "test");
    assert!(info.token_initialized() && info.user_pin_initialized());
    let s = Env::user_session(&p);

    // ECDSA P-256: generated in the HSM, verified by p256.
    let (pu, pr) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Token(true),
                Attribute::Label(b"ec".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Label(b"ec".to_vec()),
            ],
        )
        .unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&s, pu)).unwrap();
    let digest = [0x11u8; 32];
    let sig = s.sign(&Mechanism::Ecdsa, pr, &digest).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    // The reverse: signed by p256, verified by keygate (forwarded), refused when altered.
    // (SoftHSM2 2.6.1 offers CKM_ECDSA but not CKM_ECDSA_SHA256.)
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let imported = import_p256_public(&s, sk.verifying_key());
    let theirs: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
    s.verify(&Mechanism::Ecdsa, imported, &digest, &theirs.to_bytes())
        .unwrap();
    let e = s
        .verify(&Mechanism::Ecdsa, imported, &[0x12u8; 32], &theirs.to_bytes())
        .unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::SignatureInvalid, _)), "{e:?}");
    // Multi-part digest, forwarded, against sha2.
    use sha2::Digest;
    s.digest_init(&Mechanism::Sha256).unwrap();
    s.digest_update(b"two ").unwrap();
    s.digest_update(b"parts").unwrap();
    assert_eq!(s.digest_final().unwrap(), sha2::Sha256::digest(b"two parts")[..]);

    // Ed25519.
    let (epu, epr) = s
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[Attribute::EcParams(ED25519_OID.to_vec())],
            &[Attribute::Sign(true)],
        )
        .unwrap();
    let point = match &s.get_attributes(epu, &[AttributeType::EcPoint]).unwrap()[0] {
        Attribute::EcPoint(v) => v[2..].to_vec(),
        other => panic!("{other:?}"),
    };
    let sig = s
        .sign(
            &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            epr,
            b"ed",
        )
        .unwrap();
    use ed25519_dalek::Verifier;
    ed25519_dalek::VerifyingKey::from_bytes(&point.try_into().unwrap())
        .unwrap()
        .verify(b"ed", &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .unwrap();

    // AES-256-GCM against aes-gcm, with a key imported so the outside side knows it.
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let key = [0x24u8; 32];
    let k = import_secret(
        &s,
        KeyType::AES,
        &key,
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ],
    );
    let mut iv = [7u8; 12];
    let m = Mechanism::AesGcm(GcmParams::new(&mut iv, b"aad", Ulong::from(128)).unwrap());
    let ct = s.encrypt(&m, k, b"forwarded").unwrap();
    let outside = aes_gcm::Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .decrypt((&[7u8; 12]).into(), Payload { msg: &ct, aad: b"aad" })
        .unwrap();
    assert_eq!(outside, b"forwarded");
    assert_eq!(s.decrypt(&m, k, &ct).unwrap(), b"forwarded");

    // AES key wrap (RFC 3394) of a generated extractable key, checked by aes-kw.
    let target = readable_aes(&s, 16);
    let value = match &s.get_attributes(target, &[AttributeType::Value]).unwrap()[..] {
        [Attribute::Value(v)] => v.clone(),
        other => panic!("{other:?}"),
    };
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, k, target).unwrap();
    let mut unwrapped = vec![0u8; value.len()];
    aes_kw::KekAes256::from(key).unwrap(&wrapped, &mut unwrapped).unwrap();
    assert_eq!(unwrapped, value);

    // Token objects are found again by label in a new process of keygate.
    drop(s);
    p.finalize().unwrap();
    let p = env.load();
    let s = Env::user_session(&p);
    assert_eq!(s.find_objects(&[Attribute::Label(b"ec".to_vec())]).unwrap().len(), 2);
    assert!(s.generate_random_vec(32).unwrap().iter().any(|b| *b != 0));
}

#[test]
fn hsm_login_is_passed_through_and_init_token_is_refused() {
    let env = Env::hsm();
    let p = env.load();
    let slot = Env::slot(&p);
    let s = p.open_rw_session(slot).unwrap();
    let e = s
        .login(UserType::User, Some(&AuthPin::from("wrong-pin-0000")))
        .unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::PinIncorrect, _)), "{e:?}");
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    s.logout().unwrap();
    drop(s);
    let e = p.init_token(slot, &AuthPin::from(SO_PIN), "test").unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::FunctionNotSupported, _)), "{e:?}");
}

#[test]
fn a_missing_hsm_token_is_token_not_present_and_logged() {
    let env = Env::hsm();
    let conf = env.path().join("keygate.toml");
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("hsm-app", "no-such-token");
    std::fs::write(&conf, text).unwrap();
    let p = env.load();
    let slot = Env::slot(&p);
    let e = p.open_rw_session(slot).unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::TokenNotPresent, _)), "{e:?}");
}

#[test]
fn both_modes_in_one_configuration_and_the_cli_status() {
    let env = Env::hsm();
    let conf = env.path().join("keygate.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "[[token]]\nlabel = \"local\"\nmode = \"self-managed\"\nstore = \"{}\"\nroot = {{ module = \"{SOFTHSM}\", token = \"keygate-root\", pin_env = \"KEYGATE_ROOT_PIN\" }}\n",
        env.store().display()
    ));
    std::fs::write(&conf, text).unwrap();
    let p = env.load();
    let slots = p.get_slots_with_token().unwrap();
    let labels: Vec<String> = slots
        .iter()
        .map(|s| p.get_token_info(*s).unwrap().label().to_string())
        .collect();
    assert_eq!(labels, ["test", "local"]);
    // The self-managed slot works next to the hsm one.
    p.init_token(slots[1], &AuthPin::from(SO_PIN), "local").unwrap();
    let s = p.open_rw_session(slots[0]).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    assert_eq!(s.generate_random_vec(16).unwrap().len(), 16);
    // pkcs11-tool (OpenSC) in another process sees both slots too.
    let out = std::process::Command::new("pkcs11-tool")
        .args(["--module", module_path().to_str().unwrap(), "-L"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for label in ["test", "local"] {
        assert!(
            listing.contains(&format!("token label        : {label}\n")),
            "{listing}"
        );
    }
    assert!(listing.contains("token model        : hsm\n") && listing.contains("token model        : self-managed\n"));
    let out = env.cli(&["status", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("\"token\":\"test\"") && text.contains("\"objects\":null"),
        "{text}"
    );
    assert!(
        text.contains("\"token\":\"local\"") && text.contains("\"objects\":0"),
        "{text}"
    );
}

fn bytes_of(s: &cryptoki::session::Session, h: cryptoki::object::ObjectHandle, t: AttributeType) -> Vec<u8> {
    match &s.get_attributes(h, &[t]).unwrap()[..] {
        [Attribute::Modulus(v) | Attribute::PublicExponent(v) | Attribute::Value(v)] => v.clone(),
        other => panic!("{other:?}"),
    }
}

/// RSA through keygate to the HSM: generation, PKCS#1 v1.5 and PSS signatures (token-hashed and
/// over a caller's digest), OAEP, each checked by the `rsa` crate; a public key made by `rsa`
/// imported and used to verify; AES-CBC-PAD against `cbc`; HMAC-SHA384 against `hmac`.
#[test]
fn rsa_aes_cbc_and_hmac_sha384_through_keygate() {
    use rsa::pkcs1v15::Pkcs1v15Sign;
    use rsa::traits::PublicKeyParts;
    use rsa::{BigUint, Oaep, Pss, RsaPrivateKey, RsaPublicKey};
    use sha2::{Digest, Sha256, Sha384};
    let env = Env::hsm();
    let p = env.load();
    let s = Env::user_session(&p);
    let (pu, pr) = s
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::ModulusBits(Ulong::from(2048u64)),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
                Attribute::Encrypt(true),
            ],
            &[Attribute::Sign(true), Attribute::Decrypt(true)],
        )
        .unwrap();
    let public = RsaPublicKey::new(
        BigUint::from_bytes_be(&bytes_of(&s, pu, AttributeType::Modulus)),
        BigUint::from_bytes_be(&bytes_of(&s, pu, AttributeType::PublicExponent)),
    )
    .unwrap();
    assert_eq!(public.size(), 256);
    // The private key's secret parts stay in the HSM.
    assert!(matches!(
        s.get_attribute_info(pr, &[AttributeType::PrivateExponent]).unwrap()[..],
        [cryptoki::object::AttributeInfo::Sensitive]
    ));

    let msg = b"forwarded to the HSM";
    let digest = Sha256::digest(msg);
    let sig = s.sign(&Mechanism::Sha256RsaPkcs, pr, msg).unwrap();
    public.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &sig).unwrap();
    // CKM_RSA_PKCS over a DigestInfo the caller built: the same signature.
    let mut info = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
        0x20,
    ];
    info.extend_from_slice(&digest);
    assert_eq!(s.sign(&Mechanism::RsaPkcs, pr, &info).unwrap(), sig);
    s.verify(&Mechanism::Sha256RsaPkcs, pu, msg, &sig).unwrap();
    assert!(s.verify(&Mechanism::Sha256RsaPkcs, pu, b"other", &sig).is_err());

    let pss = PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: Ulong::from(32u64),
    };
    let sig = s.sign(&Mechanism::Sha256RsaPkcsPss(pss), pr, msg).unwrap();
    public.verify(Pss::new::<Sha256>(), &digest, &sig).unwrap();
    let sig = s.sign(&Mechanism::RsaPkcsPss(pss), pr, &digest).unwrap();
    public.verify(Pss::new::<Sha256>(), &digest, &sig).unwrap();

    // OAEP: made by `rsa`, opened by the HSM; and the round trip. SoftHSM2 2.6.1 implements
    // OAEP with SHA-1 and MGF1-SHA1 and no label only (it answers CKR_ARGUMENTS_BAD to others,
    // which keygate passes on); keygate forwards any hash and label it is given.
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ));
    let ct = public
        .encrypt(&mut rand_core::OsRng, Oaep::new::<sha1::Sha1>(), b"sealed")
        .unwrap();
    assert_eq!(s.decrypt(&oaep, pr, &ct).unwrap(), b"sealed");
    let ct = s.encrypt(&oaep, pu, b"round trip").unwrap();
    assert_eq!(s.decrypt(&oaep, pr, &ct).unwrap(), b"round trip");

    // A public key made outside, imported, verifies the outside's signature.
    let outside = RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let imported = s
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Modulus(outside.n().to_bytes_be()),
            Attribute::PublicExponent(outside.e().to_bytes_be()),
            Attribute::Verify(true),
        ])
        .unwrap();
    let theirs = outside.sign(Pkcs1v15Sign::new::<Sha256>(), &digest).unwrap();
    s.verify(&Mechanism::Sha256RsaPkcs, imported, msg, &theirs).unwrap();

    // AES-256-CBC with PKCS#7 padding against `cbc`.
    use cbc::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let key = [0x5au8; 32];
    let iv = [0x11u8; 16];
    let k = import_secret(
        &s,
        KeyType::AES,
        &key,
        &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
    );
    let ct = s
        .encrypt(&Mechanism::AesCbcPad(iv), k, b"not a multiple of 16")
        .unwrap();
    let mut buf = [0u8; 32];
    buf[..20].copy_from_slice(b"not a multiple of 16");
    let expected = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, 20)
        .unwrap();
    assert_eq!(ct, expected);
    assert_eq!(
        s.decrypt(&Mechanism::AesCbcPad(iv), k, &ct).unwrap(),
        b"not a multiple of 16"
    );

    // HMAC-SHA384 against `hmac`, single- and multi-part.
    use hmac::Mac;
    let mac_key = [0x33u8; 48];
    let hk = import_secret(
        &s,
        KeyType::GENERIC_SECRET,
        &mac_key,
        &[Attribute::Sign(true), Attribute::Verify(true)],
    );
    let mut mac = hmac::Hmac::<Sha384>::new_from_slice(&mac_key).unwrap();
    mac.update(b"mac me");
    let want = mac.finalize().into_bytes().to_vec();
    assert_eq!(s.sign(&Mechanism::Sha384Hmac, hk, b"mac me").unwrap(), want);
    s.sign_init(&Mechanism::Sha384Hmac, hk).unwrap();
    s.sign_update(b"mac ").unwrap();
    s.sign_update(b"me").unwrap();
    assert_eq!(s.sign_final().unwrap(), want);
    s.verify(&Mechanism::Sha384Hmac, hk, b"mac me", &want).unwrap();
}

/// Runs `f` with standard error sent to a file; returns what was logged.
fn logged(env: &Env, f: impl FnOnce()) -> String {
    let path = env.path().join("stderr.log");
    {
        let _r = Redirect::to(&path);
        f();
    }
    std::fs::read_to_string(path).unwrap()
}

/// With `login = "held"` the application logs in without a PIN (protected authentication
/// path) and keygate presents its own credential to the HSM.
fn held_login_works(env: &Env) {
    let p = env.load();
    let slot = Env::slot(&p);
    assert!(p.get_token_info(slot).unwrap().protected_authentication_path());
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, None).unwrap();
    let k = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32u64)),
                Attribute::Token(true),
                Attribute::Label(b"held".to_vec()),
            ],
        )
        .unwrap();
    assert_eq!(s.encrypt(&Mechanism::AesCbcPad([0; 16]), k, b"x").unwrap().len(), 16);
    s.logout().unwrap();
    assert!(
        s.find_objects(&[Attribute::Label(b"held".to_vec())])
            .unwrap()
            .is_empty(),
        "private once logged out"
    );
    drop(s);
    p.finalize().unwrap();
}

#[test]
fn held_credential_from_the_environment() {
    std::env::set_var("KG_HELD_PIN", USER_PIN);
    let env = Env::hsm_with(", login = \"held\", pin_env = \"KG_HELD_PIN\"");
    held_login_works(&env);
}

#[test]
fn held_credential_from_a_private_file_and_not_from_a_readable_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hsm.pin");
    std::fs::write(&file, format!("{USER_PIN}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = Env::hsm_with(&format!(", login = \"held\", pin_file = \"{}\"", file.display()));
    held_login_works(&env);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    let mut result = None;
    let log = logged(&env, || result = Some(s.login(UserType::User, None)));
    let e = result.unwrap().unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::GeneralError, _)), "{e:?}");
    assert!(
        log.contains("hsm.pin is readable by group or others (mode 0644); refusing it"),
        "{log}"
    );
    assert!(!log.contains(USER_PIN), "the credential is never logged");
}

#[test]
fn a_wrong_held_credential_is_a_clear_error_presented_once() {
    std::env::set_var("KG_HELD_PIN", "wrong-credential-0000");
    let env = Env::hsm_with(", login = \"held\", pin_env = \"KG_HELD_PIN\"");
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    let mut results = Vec::new();
    let log = logged(&env, || {
        for _ in 0..5 {
            results.push(s.login(UserType::User, None));
        }
    });
    for r in results {
        assert!(matches!(r, Err(CkError::Pkcs11(RvError::PinIncorrect, _))), "{r:?}");
    }
    assert_eq!(log.matches("the HSM refused the held credential").count(), 1, "{log}");
    assert_eq!(log.matches("refused before; fix it and restart").count(), 4, "{log}");
    assert!(!log.contains("wrong-credential-0000"), "the credential is never logged");
    drop(s);
    p.finalize().unwrap();
    // The HSM's user PIN is not locked: the right PIN still logs in on SoftHSM2 directly.
    let direct = cryptoki::context::Pkcs11::new(SOFTHSM).unwrap();
    direct
        .initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        ))
        .unwrap();
    let slot = *direct
        .get_slots_with_token()
        .unwrap()
        .iter()
        .find(|s| direct.get_token_info(**s).unwrap().label() == "hsm-app")
        .unwrap();
    assert!(!direct.get_token_info(slot).unwrap().user_pin_locked());
    let s = direct.open_ro_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
}
