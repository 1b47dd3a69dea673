//! At `KEYGATE_LOG=trace`, the log of a whole session of work — token initialisation, logins
//! (right and wrong), key import and generation, every kind of operation, a PIN change, the CLI —
//! holds neither a PIN nor any byte string of a key, in raw, hex or `Debug` form.

mod common;

use common::*;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use p256::elliptic_curve::sec1::ToEncodedPoint;

const NEW_USER_PIN: &str = "rotated-user-2718";
const WRONG_PIN: &str = "wrong-guess-8841";

fn value(s: &Session, h: ObjectHandle) -> Vec<u8> {
    match s.get_attributes(h, &[AttributeType::Value]).unwrap().as_slice() {
        [Attribute::Value(v)] => v.clone(),
        other => panic!("{other:?}"),
    }
}

/// The forms in which a secret could show up in a log line: raw bytes, hex (plain, with
/// separators, upper case) and the `{:?}`/`{:x?}` forms of a byte slice.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let join = |f: &dyn Fn(&u8) -> String, sep: &str| secret.iter().map(f).collect::<Vec<_>>().join(sep);
    let mut out = vec![secret.to_vec()];
    for sep in ["", " ", ":", ", "] {
        out.push(join(&|b| format!("{b:02x}"), sep).into_bytes());
        out.push(join(&|b| format!("{b:02X}"), sep).into_bytes());
    }
    out.push(join(&|b| b.to_string(), ", ").into_bytes());
    out.push(join(&|b| format!("{b:x}"), ", ").into_bytes());
    out.push(join(&|b| format!("{b:X}"), ", ").into_bytes());
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Does any 8-byte piece of `secret` appear in `log`, in any form?
fn leaks(log: &[u8], secret: &[u8]) -> bool {
    let piece = 8.min(secret.len());
    secret.windows(piece).any(|w| forms(w).iter().any(|f| contains(log, f)))
}

/// The whole scenario; returns the key bytes it used or saw.
fn work(env: &Env) -> Vec<Vec<u8>> {
    let mut secrets = Vec::new();
    let p = env.load();
    let s = initialise_token(&p);
    assert!(s.login(UserType::User, Some(&AuthPin::from(WRONG_PIN))).is_err());
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();

    // Imported keys of every kind.
    let aes = [0xa5, 0x11, 0x7e, 0x42, 0x93, 0x0c, 0xd8, 0x61].repeat(4);
    let aes_h = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Value(aes.clone()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ])
        .unwrap();
    secrets.push(aes);
    let kek = [0x3c, 0x99, 0x05, 0xe7, 0x21, 0xb4, 0x6a, 0x18].repeat(4);
    let kek_h = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Value(kek.clone()),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ])
        .unwrap();
    secrets.push(kek);
    let hmac_key = b"trace-test hmac key, 32 bytes!!!".to_vec();
    let hmac_h = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(true),
            Attribute::Value(hmac_key.clone()),
            Attribute::Sign(true),
        ])
        .unwrap();
    secrets.push(hmac_key);
    let ec = p256::SecretKey::random(&mut rand_core::OsRng);
    let ec_h = s
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::EcParams(P256_OID.to_vec()),
            Attribute::Value(ec.to_bytes().to_vec()),
            Attribute::Sign(true),
            Attribute::Derive(true),
        ])
        .unwrap();
    secrets.push(ec.to_bytes().to_vec());
    let ed = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let ed_h = s
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::Token(true),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Value(ed.to_bytes().to_vec()),
            Attribute::Sign(true),
        ])
        .unwrap();
    secrets.push(ed.to_bytes().to_vec());

    // Generated keys whose value the test may read.
    let gen = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Token(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    secrets.push(value(&s, gen));
    let (_, gen_ec) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec())],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    secrets.push(value(&s, gen_ec));

    // Operations of every kind.
    s.sign(&Mechanism::Ecdsa, ec_h, &[7u8; 32]).unwrap();
    s.sign(&Mechanism::EcdsaSha256, gen_ec, b"message").unwrap();
    s.sign(
        &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        ed_h,
        b"m",
    )
    .unwrap();
    s.sign(&Mechanism::Sha256Hmac, hmac_h, b"m").unwrap();
    let mut iv = [9u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"aad", Ulong::from(128)).unwrap());
    let ct = s.encrypt(&gcm, aes_h, b"plaintext").unwrap();
    s.decrypt(&gcm, aes_h, &ct).unwrap();
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, kek_h, gen).unwrap();
    let unwrapped = s
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek_h,
            &wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    secrets.push(value(&s, unwrapped));
    let peer = p256::SecretKey::random(&mut rand_core::OsRng);
    let peer_point = peer.public_key().to_encoded_point(false).as_bytes().to_vec();
    let shared = s
        .derive_key(
            &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &peer_point)),
            ec_h,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    secrets.push(value(&s, shared));
    s.digest_init(&Mechanism::Sha256).unwrap();
    s.digest_key(gen).unwrap();
    s.digest_final().unwrap();
    // Refusals are logged too: a sensitive value asked for (cryptoki drops the refused
    // attribute from its answer), a key used for what it may not do.
    let sensitive = s.get_attributes(ec_h, &[AttributeType::Value]).unwrap();
    assert!(sensitive.is_empty());
    assert!(s.encrypt(&gcm, hmac_h, b"x").is_err());

    s.set_pin(&AuthPin::from(USER_PIN), &AuthPin::from(NEW_USER_PIN))
        .unwrap();
    s.logout().unwrap();
    s.login(UserType::User, Some(&AuthPin::from(NEW_USER_PIN))).unwrap();
    drop(s);
    p.finalize().unwrap();

    // Another process (the CLI) at the same log level.
    assert!(env.cli(&["status", "--json"]).status.success());
    secrets
}

#[test]
fn trace_logs_hold_no_pins_and_no_key_bytes() {
    let env = Env::bare();
    let log_path = env.path().join("trace.log");
    std::env::set_var("KEYGATE_LOG", "trace");
    let secrets = {
        let _r = Redirect::to(&log_path);
        work(&env)
    };
    let log = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&log);

    // The log is on and says what happened.
    for expected in [
        "TRACE",
        "C_Login",
        "C_InitToken",
        "C_SetPIN",
        "template [",
        "wrong user PIN",
        "object ",
    ] {
        assert!(text.contains(expected), "the trace log lacks {expected:?}:\n{text}");
    }
    assert!(
        text.lines().count() > 100,
        "a whole session logs more than that:\n{text}"
    );

    for pin in [SO_PIN, USER_PIN, NEW_USER_PIN, WRONG_PIN, ROOT_PIN] {
        assert!(
            !leaks(&log, pin.as_bytes()),
            "a PIN ({} bytes) appears in the trace log",
            pin.len()
        );
    }
    assert!(secrets.len() >= 8);
    for (i, key) in secrets.iter().enumerate() {
        assert!(!leaks(&log, key), "key #{i} appears in the trace log");
    }
    // The check itself finds a secret when there is one.
    let mut planted = log.clone();
    planted.extend_from_slice(format!("{:?}", &secrets[0]).as_bytes());
    assert!(leaks(&planted, &secrets[0]));
}
