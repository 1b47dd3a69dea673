//! `keygate import`: keys and certificates made by the `openssl` program (an independent
//! implementation) are imported from files, then used through the built module as a client
//! would; the results are checked against the file's own key material. Files that are not keys,
//! encrypted keys and a wrong PIN are refused with one line, and leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use sha1::Digest;

/// Runs `openssl` and returns its standard output.
fn openssl(args: &[&str]) -> Vec<u8> {
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {o:?}");
    o.stdout
}

fn file(env: &Env, name: &str) -> PathBuf {
    env.path().join(name)
}

/// `keygate import` of `path` labelled `label`, with extra arguments; the user PIN from KG_USER.
fn import(env: &Env, path: &Path, label: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "import",
        "--token",
        "test",
        "--pin-env",
        "KG_USER",
        "--label",
        label,
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    env.cli(&args)
}

fn bytes_of(s: &Session, h: ObjectHandle, t: AttributeType) -> Vec<u8> {
    match s.get_attributes(h, &[t]).unwrap().remove(0) {
        Attribute::Id(v) | Attribute::Value(v) | Attribute::Subject(v) | Attribute::EcPoint(v) => v,
        other => panic!("{other:?}"),
    }
}

/// The object of class `class` labelled `label`.
fn object(s: &Session, label: &str, class: ObjectClass) -> ObjectHandle {
    let found = s
        .find_objects(&[Attribute::Label(label.into()), Attribute::Class(class)])
        .unwrap();
    assert_eq!(found.len(), 1, "{label} {class:?}: {found:?}");
    found[0]
}

/// An openssl-made P-256 key in `name` (PKCS#8 PEM), and its public point from openssl.
fn p256_key(env: &Env, name: &str) -> (PathBuf, Vec<u8>) {
    let key = file(env, name);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key.to_str().unwrap(),
    ]);
    let spki = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout", "-outform", "DER"]);
    (key, spki[spki.len() - 65..].to_vec())
}

/// Signs through the module with the imported private key labelled `label` and checks the
/// signature with the p256 crate against openssl's public point.
fn signs_for(s: &Session, label: &str, point: &[u8]) {
    use p256::ecdsa::signature::Verifier;
    let key = object(s, label, ObjectClass::PRIVATE_KEY);
    let msg = b"imported keys sign";
    let sig = s.sign(&Mechanism::EcdsaSha256, key, msg).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("the signature of the imported key verifies under openssl's public key");
}

#[test]
fn a_pkcs8_and_a_sec1_p256_key_import_with_their_public_keys_and_sign() {
    let env = populated();
    let (pkcs8, point) = p256_key(&env, "k.pem");
    let o = import(&env, &pkcs8, "imported-p8", &[]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("EC key pair (P-256)"), "{o:?}");
    // The same kind of key as SEC 1 DER.
    let (other, other_point) = p256_key(&env, "k2.pem");
    let sec1 = file(&env, "k2.der");
    openssl(&[
        "ec",
        "-in",
        other.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        sec1.to_str().unwrap(),
    ]);
    let o = import(&env, &sec1, "imported-sec1", &["--id", "a1b2"]);
    assert!(o.status.success(), "{o:?}");

    let p = load_module();
    let s = Env::user_session(&p);
    signs_for(&s, "imported-p8", &point);
    signs_for(&s, "imported-sec1", &other_point);
    // The public key is the file's, the default CKA_ID is SHA-1 of the point, the given one is
    // kept, and the private key is sensitive.
    let public = object(&s, "imported-p8", ObjectClass::PUBLIC_KEY);
    assert_eq!(ec_point(&s, public), point);
    let id = sha1::Sha1::digest(&point).to_vec();
    assert_eq!(bytes_of(&s, public, AttributeType::Id), id);
    let private = object(&s, "imported-p8", ObjectClass::PRIVATE_KEY);
    assert_eq!(bytes_of(&s, private, AttributeType::Id), id);
    assert_eq!(
        s.get_attributes(private, &[AttributeType::Sensitive]).unwrap(),
        vec![Attribute::Sensitive(true)]
    );
    let other_private = object(&s, "imported-sec1", ObjectClass::PRIVATE_KEY);
    assert_eq!(bytes_of(&s, other_private, AttributeType::Id), vec![0xa1, 0xb2]);
}

#[test]
fn an_ed25519_key_imports_and_signs() {
    use ed25519_dalek::Verifier;
    let env = populated();
    let key = file(&env, "ed.pem");
    openssl(&["genpkey", "-algorithm", "ED25519", "-out", key.to_str().unwrap()]);
    let spki = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout", "-outform", "DER"]);
    let public: [u8; 32] = spki[spki.len() - 32..].try_into().unwrap();
    let o = import(&env, &key, "imported-ed", &[]);
    assert!(o.status.success(), "{o:?}");

    let p = load_module();
    let s = Env::user_session(&p);
    let msg = b"an imported Ed25519 key";
    let sig = s
        .sign(
            &Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
            )),
            object(&s, "imported-ed", ObjectClass::PRIVATE_KEY),
            msg,
        )
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify(msg, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .expect("the signature verifies under openssl's public key");
}

#[test]
fn a_certificate_finds_its_key_by_the_default_id() {
    let env = populated();
    let (key, point) = p256_key(&env, "k.pem");
    let cert = file(&env, "cert.pem");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=keygate import test",
        "-days",
        "2",
        "-out",
        cert.to_str().unwrap(),
    ]);
    let der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"]);
    assert!(import(&env, &key, "server", &[]).status.success());
    let o = import(&env, &cert, "server", &[]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("X.509 certificate for CN=keygate import test"),
        "{o:?}"
    );

    let p = load_module();
    let s = Env::user_session(&p);
    let c = object(&s, "server", ObjectClass::CERTIFICATE);
    assert_eq!(bytes_of(&s, c, AttributeType::Value), der);
    let key_id = bytes_of(&s, object(&s, "server", ObjectClass::PRIVATE_KEY), AttributeType::Id);
    assert_eq!(bytes_of(&s, c, AttributeType::Id), key_id);
    assert_eq!(key_id, sha1::Sha1::digest(&point).to_vec());
    // CKA_SUBJECT is the DER Name: it holds the common name's bytes.
    let subject = bytes_of(&s, c, AttributeType::Subject);
    let cn = b"keygate import test";
    assert!(subject.windows(cn.len()).any(|w| w == cn), "{subject:02x?}");
}

#[test]
fn a_raw_aes_key_imports_binary_or_hex_and_encrypts() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let env = populated();
    let raw = openssl(&["rand", "32"]);
    std::fs::write(file(&env, "aes.bin"), &raw).unwrap();
    std::fs::write(file(&env, "aes.hex"), format!("{}\n", hex::encode(&raw))).unwrap();
    for (name, label) in [("aes.bin", "aes-bin"), ("aes.hex", "aes-hex")] {
        let o = import(&env, &file(&env, name), label, &["--aes"]);
        assert!(o.status.success(), "{o:?}");
        assert!(stdout(&o).contains("AES-256 key"), "{o:?}");
    }
    let p = load_module();
    let s = Env::user_session(&p);
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&raw).unwrap();
    for label in ["aes-bin", "aes-hex"] {
        let mut iv = [7u8; 12];
        let params = GcmParams::new(&mut iv, b"aad", 128.into()).unwrap();
        let key = object(&s, label, ObjectClass::SECRET_KEY);
        let ct = s.encrypt(&Mechanism::AesGcm(params), key, b"imported").unwrap();
        let pt = cipher
            .decrypt(&[7u8; 12].into(), Payload { msg: &ct, aad: b"aad" })
            .expect("the file's key decrypts what the imported key encrypted");
        assert_eq!(pt, b"imported");
    }
}

#[test]
fn what_cannot_be_imported_is_refused_in_one_line_and_leaves_nothing() {
    let env = populated();
    let (key, _) = p256_key(&env, "k.pem");
    let encrypted = file(&env, "enc.pem");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        key.to_str().unwrap(),
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:throw-away",
        "-out",
        encrypted.to_str().unwrap(),
    ]);
    let junk = file(&env, "junk.bin");
    std::fs::write(&junk, b"neither PEM nor DER").unwrap();
    let short_aes = file(&env, "short.bin");
    std::fs::write(&short_aes, [1u8; 15]).unwrap();
    for (path, extra, why) in [
        (&encrypted, &[][..], "encrypted with a password"),
        (&junk, &[][..], "not a PEM or DER key or certificate"),
        (&short_aes, &["--aes"][..], "16, 24 or 32 bytes"),
    ] {
        let o = import(&env, path, "refused", extra);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert_eq!(stderr(&o).lines().count(), 1, "{o:?}");
        assert!(stderr(&o).contains(why), "{why}: {o:?}");
    }
    std::env::set_var("KG_USER", "not-the-pin-0000");
    let o = import(&env, &key, "refused", &[]);
    std::env::set_var("KG_USER", USER_PIN);
    assert!(stderr(&o).contains("login to \"test\" failed: wrong PIN"), "{o:?}");
    let p = load_module();
    let s = Env::user_session(&p);
    assert!(find_one(&s, "refused").is_none(), "a refused import left an object");
}

/// An RSA key in PKCS#1 PEM, generated by openssl with `bits`.
fn rsa_key(env: &Env, name: &str, bits: u32) -> PathBuf {
    let key = file(env, name);
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        &format!("rsa_keygen_bits:{bits}"),
        "-out",
        key.to_str().unwrap(),
    ]);
    let pkcs1 = file(env, &format!("{name}.rsa"));
    openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-traditional",
        "-out",
        pkcs1.to_str().unwrap(),
    ]);
    pkcs1
}

/// Both modes take RSA keys (hsm mode: the HSM holds them; self-managed: sealed as PKCS#1);
/// the policy floor refuses one below 2048 bits in either.
#[test]
fn rsa_keys_import_into_both_modes_above_the_floor() {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    pins_in_env();
    // One at a time: an Env points the process's environment at itself.
    for make in [populated as fn() -> Env, Env::hsm] {
        let env = make();
        let key = rsa_key(&env, "rsa.pem", 2048);
        let o = import(&env, &key, "rsa", &[]);
        assert!(o.status.success(), "{o:?}");
        assert!(stdout(&o).contains("RSA-2048 key pair"), "{o:?}");
        let weak = rsa_key(&env, "weak.pem", 1024);
        let o = import(&env, &weak, "weak", &[]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert_eq!(stderr(&o).lines().count(), 1, "{o:?}");
        assert!(stderr(&o).contains("refused the RSA-1024 key pair"), "{o:?}");

        let p = env.load();
        let s = Env::user_session(&p);
        assert!(find_one(&s, "weak").is_none(), "the refused key left an object");
        let msg = b"an imported RSA key";
        let sig = s
            .sign(
                &Mechanism::Sha256RsaPkcs,
                object(&s, "rsa", ObjectClass::PRIVATE_KEY),
                msg,
            )
            .unwrap();
        let spki = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout", "-outform", "DER"]);
        let vk = VerifyingKey::<sha2::Sha256>::new(rsa::RsaPublicKey::from_public_key_der(&spki).unwrap());
        vk.verify(msg, &Signature::try_from(sig.as_slice()).unwrap())
            .expect("the signature verifies under openssl's public key");
        p.finalize().unwrap();
    }
}
