//! Key pinning: a label pinned to a fingerprint cannot be redirected to another key. In hsm
//! mode the substitute keys are made on the HSM behind keygate's back (pkcs11-tool straight
//! on SoftHSM2); in self-managed mode through keygate itself by someone holding the PIN.
//! Fingerprints are checked against the p256 and aes crates and the audit trail.

mod common;

use aes::cipher::{BlockEncrypt, KeyInit};
use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p256::pkcs8::EncodePublicKey;
use sha2::Digest;

const AES_VALUE: [u8; 32] = [0x42; 32];

/// The genuine keys: a P-256 pair and an AES key, with labels the application looks up.
fn genuine(s: &Session) -> (ObjectHandle, p256::ecdsa::VerifyingKey) {
    let (pu, _) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::Label(b"tls-key".to_vec()),
                Attribute::Id(vec![1]),
            ],
            &[
                Attribute::Token(true),
                Attribute::Sign(true),
                Attribute::Label(b"tls-key".to_vec()),
                Attribute::Id(vec![1]),
            ],
        )
        .unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(s, pu)).unwrap();
    import_secret(
        s,
        KeyType::AES,
        &AES_VALUE,
        &[
            Attribute::Token(true),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(b"data-key".to_vec()),
        ],
    );
    (pu, vk)
}

/// What `openssl pkey -pubin -outform DER | sha256sum` prints for the key, computed here with
/// the p256 crate.
fn spki_sha256(vk: &p256::ecdsa::VerifyingKey) -> String {
    hex::encode(sha2::Sha256::digest(vk.to_public_key_der().unwrap().as_bytes()))
}

/// AES-ECB of a zero block, first 3 bytes (the AES key check value).
fn kcv() -> String {
    let mut block = aes::Block::default();
    aes::Aes256::new_from_slice(&AES_VALUE)
        .unwrap()
        .encrypt_block(&mut block);
    hex::encode(&block[..3])
}

/// Another P-256 pair and AES key under the same labels.
fn substitutes(mode: Mode, env: &Env) {
    match mode {
        Mode::Hsm => {
            // Behind keygate's back: straight on the HSM with its user PIN.
            for args in [
                &[
                    "--keypairgen",
                    "--key-type",
                    "EC:prime256v1",
                    "--label",
                    "tls-key",
                    "--id",
                    "01",
                ][..],
                &["--keygen", "--key-type", "AES:32", "--label", "data-key"][..],
            ] {
                let out = std::process::Command::new("pkcs11-tool")
                    .args([
                        "--module",
                        SOFTHSM,
                        "--token-label",
                        "hsm-app",
                        "--login",
                        "--pin",
                        USER_PIN,
                    ])
                    .args(args)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Mode::SelfManaged => {
            // Through keygate, by someone holding the PIN, before the pins were configured.
            let p = env.load();
            let s = Env::user_session(&p);
            let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
            for (class, value) in [
                (ObjectClass::PRIVATE_KEY, Attribute::Value(sk.to_bytes().to_vec())),
                (
                    ObjectClass::PUBLIC_KEY,
                    Attribute::EcPoint(sk.verifying_key().to_encoded_point(false).as_bytes().to_vec()),
                ),
            ] {
                s.create_object(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::EcParams(P256_OID.to_vec()),
                    value,
                    Attribute::Token(true),
                    Attribute::Label(b"tls-key".to_vec()),
                    Attribute::Id(vec![1]),
                ])
                .unwrap();
            }
            import_secret(
                &s,
                KeyType::AES,
                &[0x66; 32],
                &[
                    Attribute::Token(true),
                    Attribute::Encrypt(true),
                    Attribute::Label(b"data-key".to_vec()),
                ],
            );
            drop(s);
            p.finalize().unwrap();
        }
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, CkError>) -> bool {
    match r {
        Ok(_) => false,
        Err(CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _)) => true,
        Err(e) => panic!("refused with {e:?}, expected CKR_KEY_FUNCTION_NOT_PERMITTED"),
    }
}

fn objects(s: &Session, class: ObjectClass, label: &str) -> Vec<ObjectHandle> {
    s.find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
        .unwrap()
}

fn substituted_keys_are_refused_and_the_genuine_ones_work(mode: Mode) {
    let env = Env::of(mode, EXPORT_ALLOWED);
    let p = env.load();
    let s = Env::user_session(&p);
    let (_, vk) = genuine(&s);
    drop(s);
    p.finalize().unwrap();

    // `keygate fingerprint` prints what the independent computations give.
    std::env::set_var("PINNING_TEST_PIN", USER_PIN);
    let print = |label: &str| {
        let out = env.cli(&[
            "fingerprint",
            "--token",
            "test",
            "--label",
            label,
            "--pin-env",
            "PINNING_TEST_PIN",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (sha, kcv) = (spki_sha256(&vk), kcv());
    let printed = print("tls-key");
    assert!(
        printed.contains(&format!("public key \"tls-key\" (CKA_ID 01): sha256:{sha}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("pins = [{{ label = \"tls-key\", sha256 = \"{sha}\" }}]")),
        "{printed}"
    );
    assert!(printed.contains("private key \"tls-key\""), "{printed}");
    assert!(print("data-key").contains(&format!("secret key \"data-key\" (CKA_ID ): kcv:{kcv}")));

    substitutes(mode, &env);
    let conf = env.path().join("keygate.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "pins = [{{ label = \"tls-key\", sha256 = \"{sha}\" }}, {{ label = \"data-key\", kcv = \"{kcv}\" }}]\n\n[audit]\npath = \"{}\"\n",
        env.path().join("audit.jsonl").display()
    ));
    std::fs::write(&conf, text).unwrap();

    let log = env.path().join("stderr.log");
    let redirect = Redirect::to(&log);
    let p = env.load();
    let s = Env::user_session(&p);

    // Two private keys answer to the label: the genuine one signs, the substitute is refused.
    let privates = objects(&s, ObjectClass::PRIVATE_KEY, "tls-key");
    assert_eq!(privates.len(), 2);
    let digest = [9u8; 32];
    let mut signed = 0;
    for k in privates {
        match s.sign(&Mechanism::Ecdsa, k, &digest) {
            Ok(sig) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
                    .expect("the key that signs is the genuine one");
                signed += 1;
            }
            Err(e) => assert!(refused::<()>(Err(e))),
        }
    }
    assert_eq!(signed, 1, "exactly the genuine private key signs");
    // Again, from the cache of proven keys.
    let again = objects(&s, ObjectClass::PRIVATE_KEY, "tls-key");
    assert_eq!(
        again
            .iter()
            .filter(|k| s.sign(&Mechanism::Ecdsa, **k, &digest).is_ok())
            .count(),
        1
    );

    // The substitute public key is refused; the genuine one verifies.
    let publics = objects(&s, ObjectClass::PUBLIC_KEY, "tls-key");
    assert_eq!(publics.len(), 2);
    let verdicts: Vec<bool> = publics
        .iter()
        .map(|k| refused(s.verify_init(&Mechanism::Ecdsa, *k)))
        .collect();
    assert_eq!(verdicts.iter().filter(|r| **r).count(), 1, "{verdicts:?}");

    // The substitute AES key is refused; the genuine one encrypts what the aes-gcm crate opens.
    let secrets = objects(&s, ObjectClass::SECRET_KEY, "data-key");
    assert_eq!(secrets.len(), 2);
    let mut encrypted = 0;
    for k in secrets {
        let iv = [5u8; 12];
        let mut iv_buf = iv;
        let m = Mechanism::AesGcm(GcmParams::new(&mut iv_buf, &[], 128.into()).unwrap());
        match s.encrypt(&m, k, b"pinned") {
            Ok(ct) => {
                use aes_gcm::aead::{Aead, KeyInit as _};
                let cipher = aes_gcm::Aes256Gcm::new_from_slice(&AES_VALUE).unwrap();
                assert_eq!(cipher.decrypt(&iv.into(), ct.as_slice()).unwrap(), b"pinned");
                encrypted += 1;
            }
            Err(e) => assert!(refused::<()>(Err(e))),
        }
    }
    assert_eq!(encrypted, 1);
    drop(s);
    p.finalize().unwrap();
    drop(redirect);

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("the key with label \"tls-key\" is not the pinned key")
            && logged.contains("the key with label \"data-key\" is not the pinned key"),
        "{logged}"
    );
    // The audit trail names keys by fingerprint: the genuine private key once proven.
    let trail = std::fs::read_to_string(env.path().join("audit.jsonl")).unwrap();
    let signs: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["op"] == "C_SignInit" && v["result"] == "ok")
        .collect();
    assert_eq!(signs.len(), 2);
    for v in signs {
        assert_eq!(v["keys"][0]["fingerprint"], format!("sha256:{sha}"), "{v}");
    }
    assert!(trail.contains("CKR_KEY_FUNCTION_NOT_PERMITTED"));
}

#[test]
fn hsm_mode_refuses_keys_made_behind_its_back_under_a_pinned_label() {
    substituted_keys_are_refused_and_the_genuine_ones_work(Mode::Hsm);
}

#[test]
fn self_managed_mode_refuses_substitutes_under_a_pinned_label() {
    substituted_keys_are_refused_and_the_genuine_ones_work(Mode::SelfManaged);
}

#[test]
fn a_malformed_pin_is_refused_at_load() {
    let env = Env::bare_with(&format!(
        "{EXPORT_ALLOWED}pins = [{{ label = \"k\", sha256 = \"abcd\" }}]\n"
    ));
    let out = env.cli(&["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token \"test\": pin for label \"k\": `sha256` must be 32 bytes"),
        "{err}"
    );
}
