//! A key's life after creation: revocation (`keygate revoke`, `CKA_KEYGATE_REVOKED`), validity
//! dates, destruction (one object, and the whole token with its HSM root), and the wrapping
//! policy against the known wrap/unwrap attacks. Everything through the built module or the
//! built `keygate`; signatures and ciphertexts are checked with RustCrypto.

mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Date};

const KEYGATE_REVOKED: u64 = pkcs11_sys::CKA_VENDOR_DEFINED | 0x4b47_0001;

/// `keygate revoke` of `key` for `reason`, with the user PIN from `KG_USER`.
fn revoke_args<'a>(reason: &'a str, key: &'a str) -> [&'a str; 8] {
    [
        "revoke",
        "--token",
        "test",
        "--reason",
        reason,
        "--pin-env",
        "KG_USER",
        key,
    ]
}

/// Why `C_WrapKey` with CKM_AES_KEY_WRAP of `key` under `wrapping` was refused.
fn wrap_refused(s: &Session, wrapping: ObjectHandle, key: ObjectHandle) -> RvError {
    rv(s.wrap_key(&Mechanism::AesKeyWrap, wrapping, key))
}

fn p256_pair(s: &Session, label: &str) -> (ObjectHandle, ObjectHandle) {
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::EcParams(P256_OID.to_vec()),
            Attribute::Label(label.into()),
        ],
        &[Attribute::Token(true), Attribute::Label(label.into())],
    )
    .unwrap()
}

/// A token whose audit trail is `trail` (in `dir`, kept while the test runs); the PINs in the
/// environment for the keygate program.
fn with_trail() -> (Env, tempfile::TempDir, std::path::PathBuf) {
    pins_in_env();
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let env = Env::new_with(&format!("{EXPORT_ALLOWED}\n[audit]\npath = \"{}\"\n", trail.display()));
    (env, dir, trail)
}

#[test]
fn a_revoked_key_verifies_and_decrypts_but_makes_nothing_new() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let (env, _dir, trail) = with_trail();
    let p = env.load();
    let s = Env::user_session(&p);
    let (public, private) = p256_pair(&s, "signer");
    aes_token_key(&s, "data");
    let aes = find_one(&s, "data").unwrap();
    let digest = [0x5au8; 32];
    let sig = s.sign(&Mechanism::Ecdsa, private, &digest).unwrap();
    let mut iv = [3u8; 12];
    let ct = s.encrypt(&gcm(&mut iv), aes, b"before").unwrap();

    for label in ["signer", "data"] {
        let id = uid(&env, label);
        let out = ok(&env, &revoke_args("compromised", &id));
        assert!(out.contains("revoked"), "{out}");
    }
    // The running process sees the revocation at its next operation.
    assert_eq!(
        rv_of(s.sign(&Mechanism::Ecdsa, private, &digest).unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv_of(s.encrypt(&gcm(&mut iv), aes, b"after").unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );
    s.verify(&Mechanism::Ecdsa, public, &digest, &sig).unwrap();
    assert_eq!(s.decrypt(&gcm(&mut iv), aes, &ct).unwrap(), b"before");
    // The signature made before still verifies outside too.
    let point = ec_point(&s, public);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();

    // Revocation is for good: not undone, not changed, not given at creation.
    let revoked = |reason: u64| {
        Attribute::VendorDefined((
            AttributeType::VendorDefined(KEYGATE_REVOKED),
            reason.to_le_bytes().to_vec(),
        ))
    };
    assert_eq!(
        rv_of(s.update_attributes(aes, &[revoked(4)]).unwrap_err()),
        RvError::AttributeReadOnly
    );
    s.update_attributes(aes, &[revoked(1)]).unwrap();
    let e = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![1; 16]),
            revoked(1),
        ])
        .unwrap_err();
    assert_eq!(rv_of(e), RvError::AttributeReadOnly);
    // An application may revoke a key too, with a known reason only.
    aes_token_key(&s, "other");
    let other = find_one(&s, "other").unwrap();
    assert_eq!(
        rv_of(s.update_attributes(other, &[revoked(77)]).unwrap_err()),
        RvError::AttributeValueInvalid
    );
    s.update_attributes(other, &[revoked(4)]).unwrap();
    assert_eq!(
        rv_of(s.encrypt(&gcm(&mut iv), other, b"x").unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );

    let id = uid(&env, "data");
    fails(&env, &revoke_args("compromised", &id), "already revoked (compromised)");
    fails(&env, &revoke_args("bored", &id), "unknown reason");
    fails(&env, &revoke_args("superseded", "00"), "not an object identifier");
    let listed = ok(&env, &["list", "--token", "test", "--pin-env", "KG_USER", "--json"]);
    assert!(listed.contains("\"revoked\":\"compromised\""), "{listed}");

    // Audited.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trail)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let revokes: Vec<_> = lines.iter().filter(|l| l["op"] == "keygate revoke").collect();
    assert_eq!(revokes.len(), 2, "{lines:?}");
    assert_eq!(revokes[0]["keys"][0]["label"], "signer");
    assert_eq!(revokes[0]["detail"], "reason: compromised");
    assert_eq!(revokes[0]["result"], "ok");
    // `keygate audit` shows them, in both forms.
    let all = ok(&env, &["audit", "--token", "test"]);
    let revoke_lines: Vec<_> = all.lines().filter(|l| l.contains("keygate revoke")).collect();
    assert_eq!(revoke_lines.len(), 2, "{all}");
    assert!(
        revoke_lines[0].contains("[\"signer\"] (reason: compromised) -> ok"),
        "{all}"
    );
    let tail = ok(&env, &["audit", "--token", "test", "--last", "2"]);
    let every: Vec<_> = all.lines().collect();
    assert_eq!(tail.lines().collect::<Vec<_>>(), every[every.len() - 2..]);
    let shown = ok(&env, &["audit", "--json"]);
    assert_eq!(shown.lines().count(), lines.len());
    assert_eq!(ok(&env, &["audit", "--token", "other"]), "");

    // It survives backup and restore.
    let backup = env.path().join("backup.db");
    ok(&env, &["backup", "--token", "test", "--to", backup.to_str().unwrap()]);
    drop(s);
    p.finalize().unwrap();
    std::fs::remove_file(env.store()).unwrap();
    ok(
        &env,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
    );
    let p = env.load();
    let s = Env::user_session(&p);
    let private = s
        .find_objects(&[
            Attribute::Label("signer".into()),
            Attribute::Class(ObjectClass::PRIVATE_KEY),
        ])
        .unwrap()[0];
    assert_eq!(
        rv_of(s.sign(&Mechanism::Ecdsa, private, &digest).unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );
    let aes = find_one(&s, "data").unwrap();
    assert_eq!(s.decrypt(&gcm(&mut iv), aes, &ct).unwrap(), b"before");
}

#[test]
fn start_and_end_dates_bound_new_work_only() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    aes_token_key(&s, "dated");
    let k = find_one(&s, "dated").unwrap();
    let mut iv = [4u8; 12];
    let ct = s.encrypt(&gcm(&mut iv), k, b"in service").unwrap();
    let date = |y: &str| Date::new_from_str_slice(y, "01", "01").unwrap();

    s.update_attributes(k, &[Attribute::EndDate(date("2000"))]).unwrap();
    assert_eq!(
        rv_of(s.encrypt(&gcm(&mut iv), k, b"x").unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(s.decrypt(&gcm(&mut iv), k, &ct).unwrap(), b"in service");

    s.update_attributes(
        k,
        &[
            Attribute::EndDate(Date::new_empty()),
            Attribute::StartDate(date("2999")),
        ],
    )
    .unwrap();
    assert_eq!(
        rv_of(s.encrypt(&gcm(&mut iv), k, b"x").unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(s.decrypt(&gcm(&mut iv), k, &ct).unwrap(), b"in service");

    // Inside the window (or with no dates), the key works.
    s.update_attributes(
        k,
        &[Attribute::StartDate(date("2000")), Attribute::EndDate(date("2999"))],
    )
    .unwrap();
    s.encrypt(&gcm(&mut iv), k, b"x").unwrap();

    // A signing key past its end date.
    let (_, private) = p256_pair(&s, "old-signer");
    s.update_attributes(private, &[Attribute::EndDate(date("2001"))])
        .unwrap();
    assert_eq!(
        rv_of(s.sign(&Mechanism::Ecdsa, private, &[1; 32]).unwrap_err()),
        RvError::KeyFunctionNotPermitted
    );
}

/// The high-entropy 32-byte windows of an object's stored record (its sealed blob's nonce,
/// ciphertext and tag; attribute encodings are low-entropy and shared between records).
fn record_windows(env: &Env, uid: &str) -> Vec<Vec<u8>> {
    let out = std::process::Command::new("sqlite3")
        .arg(env.store())
        .arg(format!("SELECT hex(body) FROM objects WHERE hex(uid) = upper('{uid}')"))
        .output()
        .unwrap();
    let body = hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(body.len() > 64, "record of {uid} read");
    body.windows(32)
        .filter(|w| w.iter().collect::<std::collections::BTreeSet<_>>().len() >= 24)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Which of the store's and the mirror's files (databases and write-ahead logs) hold any of
/// `windows`.
fn in_files(env: &Env, windows: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    for (db, suffix) in [env.store(), env.mirror()]
        .iter()
        .flat_map(|db| [(db, ""), (db, "-wal")])
    {
        let path = format!("{}{suffix}", db.display());
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if windows.iter().any(|w| bytes.windows(w.len()).any(|b| b == &w[..])) {
            found.push(path);
        }
    }
    found
}

#[test]
fn destroyed_keys_leave_no_sealed_bytes_in_the_database_its_log_or_the_mirror() {
    pins_in_env();
    let env = Env::new_with(&format!("{EXPORT_ALLOWED}{MIRRORED}"));
    let p = env.load();
    let s = Env::user_session(&p);
    aes_token_key(&s, "by-api");
    aes_token_key(&s, "by-cli");
    aes_token_key(&s, "kept");
    let (api, cli) = (uid(&env, "by-api"), uid(&env, "by-cli"));
    let (api_w, cli_w, kept_w) = (
        record_windows(&env, &api),
        record_windows(&env, &cli),
        record_windows(&env, &uid(&env, "kept")),
    );
    assert!(!api_w.is_empty() && !cli_w.is_empty());
    let mirror = env.mirror().display().to_string();
    assert!(
        in_files(&env, &api_w).iter().any(|f| f.starts_with(&mirror))
            && in_files(&env, &api_w).iter().any(|f| !f.starts_with(&mirror)),
        "the sealed bytes are in the store's and the mirror's files before"
    );

    s.destroy_object(find_one(&s, "by-api").unwrap()).unwrap();
    assert_eq!(in_files(&env, &api_w), Vec::<String>::new(), "after C_DestroyObject");

    fails(
        &env,
        &["destroy", "--token", "test", "--pin-env", "KG_USER", &cli],
        "--yes",
    );
    assert!(find_one(&s, "by-cli").is_some(), "nothing destroyed unconfirmed");
    ok(
        &env,
        &["destroy", "--token", "test", "--yes", "--pin-env", "KG_USER", &cli],
    );
    assert_eq!(in_files(&env, &cli_w), Vec::<String>::new(), "after keygate destroy");
    assert!(find_one(&s, "by-cli").is_none());
    // The rest of the token is intact.
    assert!(!in_files(&env, &kept_w).is_empty());
    let k = find_one(&s, "kept").unwrap();
    let mut iv = [5u8; 12];
    let ct = s.encrypt(&gcm(&mut iv), k, b"kept").unwrap();
    assert_eq!(s.decrypt(&gcm(&mut iv), k, &ct).unwrap(), b"kept");
    let v = ok(&env, &["verify", "--token", "test", "--pin-env", "KG_USER", "--json"]);
    assert!(v.contains("\"ok\":true") && v.contains("\"objects\":1"), "{v}");
}

#[test]
fn destroying_the_token_shreds_every_copy() {
    pins_in_env();
    let env = Env::new_with(&format!("{EXPORT_ALLOWED}{MIRRORED}"));
    {
        let p = env.load();
        aes_token_key(&Env::user_session(&p), "k");
        p.finalize().unwrap();
    }
    let backup = env.path().join("backup.db");
    ok(&env, &["backup", "--token", "test", "--to", backup.to_str().unwrap()]);
    assert!(env.mirror().exists());
    fails(
        &env,
        &["destroy", "--token", "test", "--all", "--pin-env", "KG_SO"],
        "--yes",
    );
    fails(
        &env,
        &["destroy", "--token", "test", "--all", "--yes", "--pin-env", "KG_WRONG"],
        "wrong PIN",
    );
    ok(&env, &["verify", "--token", "test", "--pin-env", "KG_USER"]);

    let out = ok(
        &env,
        &["destroy", "--token", "test", "--all", "--yes", "--pin-env", "KG_SO"],
    );
    assert!(out.contains("destroyed"), "{out}");
    assert!(!env.store().exists() && !env.mirror().exists());
    // The backup is whole, but nothing can open it: its root key is gone from the HSM.
    fails(
        &env,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
        "",
    );
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    assert!(s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).is_err());
}

/// A sensitive key to protect, extractable only so that wrapping is the question.
fn precious(s: &Session, extra: &[Attribute]) -> ObjectHandle {
    let mut t = vec![
        Attribute::ValueLen(32.into()),
        Attribute::Label("precious".into()),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(true),
    ];
    t.extend_from_slice(extra);
    s.generate_key(&Mechanism::AesKeyGen, &t).unwrap()
}

/// An AES key of `len` bytes with `extra` attributes.
fn aes_key_of(s: &Session, len: u64, extra: &[Attribute]) -> Result<ObjectHandle, CkError> {
    let mut t = vec![Attribute::ValueLen(len.into())];
    t.extend_from_slice(extra);
    s.generate_key(&Mechanism::AesKeyGen, &t)
}

fn kek(s: &Session, extra: &[Attribute]) -> ObjectHandle {
    let mut t = vec![Attribute::Wrap(true), Attribute::Unwrap(true)];
    t.extend_from_slice(extra);
    aes_key_of(s, 32, &t).unwrap()
}

/// Unwraps an RFC 3394 `wrapped` AES key under `kek`, with one attribute of the test's own.
fn unwrap_aes(s: &Session, kek: ObjectHandle, wrapped: &[u8], extra: Attribute) -> Result<ObjectHandle, CkError> {
    s.unwrap_key(
        &Mechanism::AesKeyWrap,
        kek,
        wrapped,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            extra,
        ],
    )
}

#[test]
fn wrap_and_unwrap_attacks_are_refused() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let target = precious(&s, &[]);

    // 1. Wrap a sensitive key under a key the attacker knows, then unwrap it outside.
    let known = [0x42u8; 32];
    let attacker = import_secret(
        &s,
        KeyType::AES,
        &known,
        &[Attribute::Wrap(true), Attribute::Unwrap(true)],
    );
    assert_eq!(wrap_refused(&s, attacker, target), RvError::KeyNotWrappable);

    // 2. Wrap under a key that can also decrypt, then decrypt the wrapping with it (AES-CBC
    //    decryption of the RFC 3394 blocks).
    let both = kek(&s, &[Attribute::Decrypt(true)]);
    assert_eq!(wrap_refused(&s, both, target), RvError::KeyFunctionNotPermitted);

    // 3. Encrypt a value of one's choosing, then unwrap it as a key (encrypt + unwrap roles).
    let enc_unwrap = kek(&s, &[Attribute::Encrypt(true)]);
    let chosen = import_secret(
        &s,
        KeyType::AES,
        &[7u8; 32],
        &[Attribute::Sensitive(false), Attribute::Extractable(true)],
    );
    let blob = s.wrap_key(&Mechanism::AesKeyWrap, enc_unwrap, chosen).unwrap();
    let e = unwrap_aes(&s, enc_unwrap, &blob, Attribute::Token(false)).unwrap_err();
    assert_eq!(rv_of(e), RvError::KeyFunctionNotPermitted);

    // 4. Wrap, then unwrap the same key as not sensitive and read it: a key-encryption key
    //    whose CKA_UNWRAP_TEMPLATE fixes CKA_SENSITIVE refuses the weaker template (the C-level
    //    template attribute is in tests/abi.rs). Here: the honest path works and keeps it
    //    sensitive.
    let good = kek(&s, &[]);
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, good, target).unwrap();
    let back = unwrap_aes(&s, good, &wrapped, Attribute::Sensitive(true)).unwrap();
    // cryptoki leaves out an attribute the token calls sensitive.
    assert!(s.get_attributes(back, &[AttributeType::Value]).unwrap().is_empty());

    // 5. The unwrapped copy was known outside the token (CKA_ALWAYS_SENSITIVE false): it can
    //    not become a wrapping key for sensitive keys.
    let copy = unwrap_aes(&s, good, &wrapped, Attribute::Wrap(true)).unwrap();
    assert_eq!(wrap_refused(&s, copy, target), RvError::KeyNotWrappable);

    // 6. A user cannot make a key trusted.
    let e = aes_key_of(&s, 32, &[Attribute::Wrap(true), Attribute::Trusted(true)]).unwrap_err();
    assert_eq!(rv_of(e), RvError::AttributeReadOnly);
    assert_eq!(
        rv_of(s.update_attributes(good, &[Attribute::Trusted(true)]).unwrap_err()),
        RvError::AttributeReadOnly
    );
}

#[test]
fn wrap_with_trusted_needs_a_key_the_so_trusted() {
    let env = Env::new();
    let p = env.load();
    let slot = Env::slot(&p);
    // The SO makes a public (CKA_PRIVATE false) key-encryption key and trusts it.
    let so = p.open_rw_session(slot).unwrap();
    so.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    let trusted = so
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label("trusted-kek".into()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Trusted(true),
            ],
        )
        .unwrap();
    so.logout().unwrap();
    drop(so);
    let s = Env::user_session(&p);
    let guarded = precious(&s, &[Attribute::WrapWithTrusted(true)]);
    let untrusted = kek(&s, &[]);
    assert_eq!(wrap_refused(&s, untrusted, guarded), RvError::KeyNotWrappable);
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, trusted, guarded).unwrap();
    assert_eq!(wrapped.len(), 40);
    // CKA_WRAP_WITH_TRUSTED is one-way.
    assert_eq!(
        rv_of(
            s.update_attributes(guarded, &[Attribute::WrapWithTrusted(false)])
                .unwrap_err()
        ),
        RvError::AttributeReadOnly
    );
}

/// Issue 16 item 6, with `allow_export` on (this suite's tokens allow export): no chain of calls
/// reveals a sensitive key.
#[test]
fn no_call_chain_reveals_a_sensitive_key_with_export_allowed() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let target = precious(&s, &[]);

    // a. Wrap it under a key made in the token, then unwrap the blob as not sensitive and read
    //    it. A key that may wrap sensitive keys unwraps only sensitive keys.
    let good = kek(&s, &[]);
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, good, target).unwrap();
    let e = unwrap_aes(&s, good, &wrapped, Attribute::Sensitive(false)).unwrap_err();
    assert_eq!(rv_of(e), RvError::TemplateInconsistent);
    let back = unwrap_aes(&s, good, &wrapped, Attribute::Extractable(true)).unwrap();
    assert!(
        s.get_attributes(back, &[AttributeType::Value]).unwrap().is_empty(),
        "sensitive by force"
    );
    // The same through a copy of the key-encryption key that may only unwrap.
    let copy = s
        .copy_object(good, &[Attribute::Wrap(false), Attribute::Token(false)])
        .unwrap();
    let e = unwrap_aes(&s, copy, &wrapped, Attribute::Sensitive(false)).unwrap_err();
    assert_eq!(rv_of(e), RvError::TemplateInconsistent);

    // b. A key derived by ECDH from a public key the attacker chose: the attacker knows it. It
    //    must not count as "always sensitive", so it cannot wrap a sensitive key; had it
    //    wrapped one, the attacker would unwrap it offline.
    let (_, ours) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec())],
            &[Attribute::Derive(true)],
        )
        .unwrap();
    let attacker = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&attacker.public_key(), false)
        .as_bytes()
        .to_vec();
    let derived = s
        .derive_key(
            &Mechanism::Ecdh1Derive(cryptoki::mechanism::elliptic_curve::Ecdh1DeriveParams::new(
                cryptoki::mechanism::elliptic_curve::EcKdf::null(),
                &point,
            )),
            ours,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
            ],
        )
        .unwrap();
    match &s.get_attributes(derived, &[AttributeType::AlwaysSensitive]).unwrap()[0] {
        Attribute::AlwaysSensitive(a) => assert!(!a, "a key an outsider may know is not always sensitive"),
        other => panic!("{other:?}"),
    }
    assert_eq!(wrap_refused(&s, derived, target), RvError::KeyNotWrappable);

    // c. Not under a weaker key: an AES-128 key made in the token does not wrap an AES-256 key.
    let short = aes_key_of(&s, 16, &[Attribute::Wrap(true), Attribute::Unwrap(true)]).unwrap();
    assert_eq!(wrap_refused(&s, short, target), RvError::KeyNotWrappable);
}

/// `keygate destroy` and `keygate revoke` go through the token layer's rules, as
/// `C_DestroyObject` and `C_SetAttributeValue` do: a key marked `CKA_DESTROYABLE=FALSE` is not
/// destroyed, one marked `CKA_MODIFIABLE=FALSE` is not revoked (the program used to change the
/// store directly, past both), and each refusal is in the audit trail.
#[test]
fn the_program_keeps_the_rules_the_c_api_keeps() {
    let (env, _dir, trail) = with_trail();
    {
        let p = env.load();
        let s = Env::user_session(&p);
        for (label, extra) in [
            ("kept", Attribute::Destroyable(false)),
            ("fixed", Attribute::Modifiable(false)),
        ] {
            s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Label(label.into()),
                    extra,
                ],
            )
            .unwrap();
        }
        drop(s);
        p.finalize().unwrap();
    }
    let kept = uid(&env, "kept");
    fails(
        &env,
        &["destroy", "--token", "test", "--yes", "--pin-env", "KG_USER", &kept],
        "cannot destroy",
    );
    let fixed = uid(&env, "fixed");
    fails(&env, &revoke_args("superseded", &fixed), "cannot revoke");
    let p = env.load();
    let s = Env::user_session(&p);
    assert!(find_one(&s, "kept").is_some(), "a non-destroyable key stays");
    let f = find_one(&s, "fixed").unwrap();
    assert!(
        gcm_works(&s, "fixed"),
        "the non-modifiable key still works: not revoked"
    );
    assert!(s.get_attributes(f, &[AttributeType::Label]).is_ok());
    let results: Vec<(String, String)> = std::fs::read_to_string(&trail)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["op"].as_str().unwrap_or("").starts_with("keygate "))
        .map(|v| (v["op"].as_str().unwrap().into(), v["result"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        results,
        vec![
            ("keygate destroy".to_string(), "CKR_ACTION_PROHIBITED".to_string()),
            ("keygate revoke".to_string(), "CKR_ACTION_PROHIBITED".to_string())
        ]
    );
}

/// `C_InitToken` under another label than the configuration's is refused (and logged with the
/// configured label): the token stays findable under the label clients and the keygate program
/// use. Under its own label it is initialised again.
#[test]
fn c_init_token_keeps_the_configured_label() {
    let env = Env::new();
    let log = env.path().join("stderr.log");
    let p = env.load();
    let slot = Env::slot(&p);
    let redirect = Redirect::to(&log);
    let e = p.init_token(slot, &AuthPin::from(SO_PIN), "renamed").unwrap_err();
    drop(redirect);
    assert_eq!(rv_of(e), RvError::ArgumentsBad);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("C_InitToken with the label \"renamed\" refused") && logged.contains("label = \"test\""),
        "{logged}"
    );
    assert_eq!(p.get_token_info(slot).unwrap().label(), "test");
    let s = Env::user_session(&p);
    s.logout().unwrap();
    drop(s);
    p.init_token(slot, &AuthPin::from(SO_PIN), "test").unwrap();
    assert_eq!(p.get_token_info(slot).unwrap().label(), "test");
}
