//! Serving a token to another process: keygate runs behind `p11-kit server`, and this test
//! process, which never loads keygate, uses it through p11-kit's client module
//! (`p11-kit-client.so`) over the server's socket, as a container given only the socket would.
//! A key is generated and used through the RPC and the signature checked with the p256 crate;
//! which mechanisms survive p11-kit 0.24's RPC is asserted, as the README states it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

/// p11-kit's client module, from Debian's p11-kit-modules.
fn client_module() -> PathBuf {
    let multiarch = Command::new("gcc").arg("-print-multiarch").output().unwrap();
    let dir = String::from_utf8_lossy(&multiarch.stdout).trim().to_string();
    let p = PathBuf::from(format!("/usr/lib/{dir}/pkcs11/p11-kit-client.so"));
    assert!(
        p.exists(),
        "{} is missing: install p11-kit-modules (ci/test does)",
        p.display()
    );
    p
}

/// A `p11-kit server` in the foreground serving the token "test" of the built module on
/// `socket`; killed when dropped.
struct Server(Child);

impl Server {
    fn start(socket: &Path) -> Server {
        let child = Command::new("p11-kit")
            .args(["server", "-f", "-n"])
            .arg(socket)
            .arg("--provider")
            .arg(target_module())
            .arg("pkcs11:token=test")
            .stdout(Stdio::null())
            .spawn()
            .expect("p11-kit server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "p11-kit server made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client module in this process, connected to `socket`, with a user session on the token.
fn client(socket: &Path) -> (Pkcs11, Session) {
    std::env::set_var("P11_KIT_SERVER_ADDRESS", format!("unix:path={}", socket.display()));
    let p = Pkcs11::new(client_module()).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = *p
        .get_slots_with_token()
        .unwrap()
        .iter()
        .find(|s| p.get_token_info(**s).unwrap().label() == "test")
        .expect("the keygate token through the socket");
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    (p, s)
}

#[test]
fn a_second_process_signs_through_p11_kit_server() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let env = Env::new();
    let socket = env.path().join("p11-kit.sock");
    let _server = Server::start(&socket);
    let (p, s) = client(&socket);
    let info = p.get_library_info().unwrap();
    assert!(
        info.manufacturer_id().starts_with("PKCS#11 Kit"),
        "this process loaded {info:?}, not p11-kit's client"
    );

    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Token(true),
                Attribute::Label("served".into()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label("served".into()),
                Attribute::Sign(true),
            ],
        )
        .unwrap();
    // CKM_ECDSA over a SHA-256 digest, as TLS libraries sign (p11-kit 0.24 does not pass
    // CKM_ECDSA_SHA256 on; see below).
    let digest = sha2::Sha256::digest(b"signed by keygate in another process");
    let sig = s.sign(&Mechanism::Ecdsa, private, &digest).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&s, public)).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("the signature made through the socket verifies");
    // The private key stayed in keygate: not readable through the socket either.
    assert_eq!(
        s.get_attributes(private, &[cryptoki::object::AttributeType::Sensitive])
            .unwrap(),
        vec![Attribute::Sensitive(true)]
    );
}

/// What p11-kit 0.24's RPC carries (README, "Using keygate from another process or
/// container"). p11-kit passes only mechanisms whose parameters its protocol knows, and lists
/// only those: from a self-managed token, key generation (AES, generic secret, P-256, RSA),
/// `CKM_ECDSA` on a digest, SHA-1 and SHA-2 digests, `CKM_SHA*_HMAC`, AES-ECB, RSA PKCS#1 v1.5
/// (raw and `CKM_SHA*_RSA_PKCS`), `CKM_RSA_PKCS_PSS` on a digest, RSA-OAEP and random numbers.
/// AES-GCM, AES-CBC, AES key wrap (with or without padding), EdDSA, `CKM_ECDSA_SHA*`,
/// `CKM_SHA*_RSA_PKCS_PSS`, the HMAC `_GENERAL` mechanisms and ECDH are refused with
/// `CKR_MECHANISM_INVALID` before they reach keygate. If a newer p11-kit carries more, this
/// test fails and the README should say so.
#[test]
fn which_mechanisms_survive_p11_kit_rpc() {
    use cryptoki::mechanism::MechanismType as M;
    let env = Env::new();
    let socket = env.path().join("p11-kit.sock");
    let _server = Server::start(&socket);
    let (p, s) = client(&socket);

    let slot = s.get_session_info().unwrap().slot_id();
    let mut listed = p.get_mechanism_list(slot).unwrap();
    listed.sort_by_key(|m| **m);
    // As cryptoki lists them: it drops types it has no name for (CKM_SHA224 among them).
    let mut want = vec![
        M::SHA1,
        M::AES_KEY_GEN,
        M::GENERIC_SECRET_KEY_GEN,
        M::ECC_KEY_PAIR_GEN,
        M::ECDSA,
        M::SHA256,
        M::SHA384,
        M::SHA512,
        M::SHA256_HMAC,
        M::SHA384_HMAC,
        M::SHA512_HMAC,
        M::AES_ECB,
        M::RSA_PKCS_KEY_PAIR_GEN,
        M::RSA_PKCS,
        M::RSA_PKCS_OAEP,
        M::RSA_PKCS_PSS,
        M::SHA256_RSA_PKCS,
        M::SHA384_RSA_PKCS,
        M::SHA512_RSA_PKCS,
    ];
    want.sort_by_key(|m| **m);
    assert_eq!(
        listed, want,
        "the mechanisms p11-kit passes on changed: update the README"
    );

    // Each listed one works through the socket.
    let secret = s
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[Attribute::ValueLen(32.into()), Attribute::Sign(true)],
        )
        .unwrap();
    assert_eq!(s.sign(&Mechanism::Sha256Hmac, secret, b"m").unwrap().len(), 32);
    assert_eq!(s.digest(&Mechanism::Sha512, b"m").unwrap().len(), 64);
    assert_eq!(s.generate_random_vec(16).unwrap().len(), 16);
    let (rsa_public, rsa_private) = s
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::ModulusBits(2048u64.into()), Attribute::Verify(true)],
            &[Attribute::Sign(true)],
        )
        .unwrap();
    let sig = s.sign(&Mechanism::Sha256RsaPkcs, rsa_private, b"m").unwrap();
    s.verify(&Mechanism::Sha256RsaPkcs, rsa_public, b"m", &sig).unwrap();
    let aes = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::ValueLen(32.into()), Attribute::Encrypt(true)],
        )
        .unwrap();
    // And one that is not listed is refused by p11-kit itself.
    let mut iv = [3u8; 12];
    let gcm = s.encrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap()),
        aes,
        b"over the socket",
    );
    assert!(
        matches!(
            gcm,
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::MechanismInvalid,
                _
            ))
        ),
        "{gcm:?}"
    );
    let ed = s.generate_key_pair(
        &Mechanism::EccEdwardsKeyPairGen,
        &[Attribute::EcParams(ED25519_OID.to_vec())],
        &[Attribute::Sign(true)],
    );
    assert!(
        ed.is_err(),
        "EdDSA key generation now passes p11-kit's RPC: update the README"
    );
}
