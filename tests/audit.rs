//! The audit trail: a scripted session gives exactly the expected lines, in both modes; no PIN,
//! credential or key byte reaches the trail or the trace log; a trail that cannot be written
//! makes key operations fail closed when it is required, and only logs when it is not.

mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::{AuthPin, Ulong};

/// An initialised token of `mode` whose configuration ends with `[audit]` `audit_lines`.
fn env(mode: Mode, audit_lines: &str) -> Env {
    let env = Env::of(mode, EXPORT_ALLOWED);
    let conf = env.path().join("keygate.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("\n[audit]\n{audit_lines}"));
    std::fs::write(&conf, text).unwrap();
    env
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (op, mechanism, key labels, result) of a line.
fn summary(v: &serde_json::Value) -> (String, String, Vec<String>, String) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let labels = v["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| k["label"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    (s("op"), s("mechanism"), labels, s("result"))
}

const KEY: [u8; 32] = [0x5c; 32];

fn scripted_session(mode: Mode) {
    // Before the first load: the module sets its logger up once per process.
    std::env::set_var("KEYGATE_LOG", "trace");
    let env = env(mode, "");
    let trail = env.path().join("audit.jsonl");
    let conf = env.path().join("keygate.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}path = \"{}\"\n", trail.display())).unwrap();
    let log = env.path().join("trace.log");
    let redirect = Redirect::to(&log);
    let p = env.load();
    let slot = Env::slot(&p);
    let s = p.open_rw_session(slot).unwrap();
    let e = s
        .login(UserType::User, Some(&AuthPin::from("wrong-pin-4242")))
        .unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::PinIncorrect, _)), "{e:?}");
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    let kek = import_secret(
        &s,
        KeyType::AES,
        &KEY,
        &[
            Attribute::Label(b"kek".to_vec()),
            Attribute::Id(vec![0xa1]),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ],
    );
    // Not sensitive: the KEK's value is known outside, so a sensitive key would not be
    // wrapped under it.
    let data = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32u64)),
                Attribute::Label(b"data".to_vec()),
                Attribute::Extractable(true),
                Attribute::Sensitive(false),
            ],
        )
        .unwrap();
    let mut iv = [1u8; 12];
    s.encrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"", Ulong::from(128u64)).unwrap()),
        data,
        b"hello",
    )
    .unwrap();
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, kek, data).unwrap();
    let back = s
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(b"back".to_vec()),
            ],
        )
        .unwrap();
    let e = s.sign(&Mechanism::Ecdsa, back, &[0; 32]).unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::KeyTypeInconsistent, _)), "{e:?}");
    s.destroy_object(back).unwrap();
    s.logout().unwrap();
    drop(s);
    p.finalize().unwrap();
    drop(redirect);

    let got: Vec<_> = lines(&trail).iter().map(summary).collect();
    let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let want = vec![
        ("C_Login(user)".into(), "".into(), l(&[]), "CKR_PIN_INCORRECT".into()),
        ("C_Login(user)".into(), "".into(), l(&[]), "ok".into()),
        ("C_CreateObject".into(), "".into(), l(&["kek"]), "ok".into()),
        (
            "C_GenerateKey".into(),
            "CKM_AES_KEY_GEN".into(),
            l(&["data"]),
            "ok".into(),
        ),
        ("C_EncryptInit".into(), "CKM_AES_GCM".into(), l(&["data"]), "ok".into()),
        (
            "C_WrapKey".into(),
            "CKM_AES_KEY_WRAP".into(),
            l(&["kek", "data"]),
            "ok".into(),
        ),
        (
            "C_UnwrapKey".into(),
            "CKM_AES_KEY_WRAP".into(),
            l(&["kek", "back"]),
            "ok".into(),
        ),
        (
            "C_SignInit".into(),
            "CKM_ECDSA".into(),
            l(&["back"]),
            "CKR_KEY_TYPE_INCONSISTENT".into(),
        ),
        ("C_DestroyObject".into(), "".into(), l(&["back"]), "ok".into()),
        ("C_Logout".into(), "".into(), l(&[]), "ok".into()),
    ];
    assert_eq!(got, want);
    let all = lines(&trail);
    for v in &all {
        assert_eq!(v["token"], "test");
        assert_eq!(v["pid"], std::process::id());
        assert!(v["session"].as_u64().unwrap() > 0);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(all[2]["keys"][0]["id"], "a1");

    // Nothing secret in the trail or in the trace log.
    let trail_bytes = std::fs::read(&trail).unwrap();
    let log_bytes = std::fs::read(&log).unwrap();
    assert!(log_bytes.len() > 1000, "the trace log is on");
    let key_hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    for (what, bytes) in [("audit trail", &trail_bytes), ("trace log", &log_bytes)] {
        for secret in [
            USER_PIN.as_bytes(),
            b"wrong-pin-4242",
            &KEY[..8],
            key_hex.as_bytes(),
            &wrapped[..],
        ] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "a secret in the {what}"
            );
        }
    }
}

#[test]
fn scripted_session_self_managed() {
    scripted_session(Mode::SelfManaged);
}

#[test]
fn scripted_session_hsm() {
    scripted_session(Mode::Hsm);
}

fn generate(s: &cryptoki::session::Session, label: &str) -> Result<cryptoki::object::ObjectHandle, CkError> {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::ValueLen(Ulong::from(32u64)),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )
}

fn unwritable(mode: Mode, path: &str) {
    // Required: key operations fail closed, and nothing they made is left behind.
    let env = env(mode, &format!("path = \"{path}\"\nrequired = true\n"));
    let log = env.path().join("stderr.log");
    let redirect = Redirect::to(&log);
    let p = env.load();
    let s = Env::user_session(&p);
    let e = generate(&s, "unrecorded").unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::GeneralError, _)), "{e:?}");
    assert!(s
        .find_objects(&[Attribute::Label(b"unrecorded".to_vec())])
        .unwrap()
        .is_empty());
    drop(s);
    p.finalize().unwrap();
    drop(redirect);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("cannot write") && logged.contains("audit.required is set"),
        "{logged}"
    );

    // Not required: the work is done and the failure logged.
    let text = std::fs::read_to_string(env.path().join("keygate.toml"))
        .unwrap()
        .replace("required = true", "required = false");
    std::fs::write(env.path().join("keygate.toml"), text).unwrap();
    let redirect = Redirect::to(&log);
    let p = env.load();
    let s = Env::user_session(&p);
    generate(&s, "recorded-nowhere").unwrap();
    drop(s);
    p.finalize().unwrap();
    drop(redirect);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("cannot write") && logged.contains("not recorded"),
        "{logged}"
    );
}

#[test]
fn a_full_disk_fails_closed_self_managed() {
    unwritable(Mode::SelfManaged, "/dev/full");
}

#[test]
fn a_full_disk_fails_closed_hsm() {
    unwritable(Mode::Hsm, "/dev/full");
}

#[test]
fn an_unwritable_path_fails_closed() {
    // Under a file, no directory can be made (a missing directory is made: see
    // the_trail_is_private_and_follows_a_rotation).
    unwritable(Mode::SelfManaged, "/dev/null/keygate/audit.jsonl");
}

/// Every administrative act of the `keygate` program leaves one line in the trail, with its
/// result as a `CKR_*` name, and no PIN: init, change-pin (a refused one too), rotate-dek,
/// rotate-root, revoke, destroy, backup's restore.
#[test]
fn the_keygate_programs_admin_acts_are_in_the_trail() {
    pins_in_env();
    let env = Env::bare();
    let trail = env.path().join("audit.jsonl");
    let conf = env.path().join("keygate.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("\n[audit]\npath = \"{}\"\n", trail.display()));
    std::fs::write(&conf, text).unwrap();
    let run = |args: &[&str]| ok(&env, args);
    run(&INIT_ARGS);
    {
        let p = env.load();
        let s = Env::user_session(&p);
        aes_token_key(&s, "to-revoke");
        aes_token_key(&s, "to-destroy");
        drop(s);
        p.finalize().unwrap();
    }
    let uid = |label: &str| {
        let out = run(&["list", "--token", "test", "--pin-env", "KG_USER", "--json"]);
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["label"] == label)
            .map(|v| v["uid"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (revoked, destroyed) = (uid("to-revoke"), uid("to-destroy"));
    std::env::set_var("KG_NEW", "new-user-pin-7788");
    let change = change_pin_args("KG_USER", "KG_NEW");
    let undo = change_pin_args("KG_NEW", "KG_USER");
    run(&change);
    fails(&env, &change, "PIN");
    run(&undo);
    for rotation in ["rotate-dek", "rotate-root"] {
        let mut args = vec![rotation];
        args.extend(ROTATION_ARGS);
        run(&args);
    }
    run(&[
        "revoke",
        "--token",
        "test",
        "--reason",
        "superseded",
        "--pin-env",
        "KG_USER",
        &revoked,
    ]);
    run(&[
        "destroy",
        "--token",
        "test",
        "--yes",
        "--pin-env",
        "KG_USER",
        &destroyed,
    ]);
    let aes = env.path().join("aes.bin");
    std::fs::write(&aes, [0x5a; 32]).unwrap();
    run(&[
        "import",
        "--token",
        "test",
        "--aes",
        "--label",
        "imported",
        "--pin-env",
        "KG_USER",
        aes.to_str().unwrap(),
    ]);
    let backup = env.path().join("backup.db");
    run(&["backup", "--token", "test", "--to", backup.to_str().unwrap()]);
    run(&["restore", "--token", "test", "--from", backup.to_str().unwrap()]);

    let got: Vec<(String, String)> = lines(&trail)
        .iter()
        .filter(|v| v["op"].as_str().unwrap_or("").starts_with("keygate "))
        .map(|v| {
            (
                v["op"].as_str().unwrap().to_string(),
                v["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("keygate init", "ok"),
        ("keygate change-pin", "ok"),
        ("keygate change-pin", "CKR_PIN_INCORRECT"),
        ("keygate change-pin", "ok"),
        ("keygate rotate-dek", "ok"),
        ("keygate rotate-root", "ok"),
        ("keygate revoke", "ok"),
        ("keygate destroy", "ok"),
        ("keygate import", "ok"),
        ("keygate restore", "ok"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(o, r)| (o.to_string(), r.to_string())).collect();
    assert_eq!(got, want);
    let all = std::fs::read_to_string(&trail).unwrap();
    for secret in [SO_PIN, USER_PIN, "new-user-pin-7788"] {
        assert!(!all.contains(secret), "a PIN in the trail");
    }
}

/// The trail is made private (directory `0700`, file `0600`) where the configuration names it,
/// and follows logrotate: once the file is renamed away, the next line goes to a new file at
/// the configured path, not to the old one.
#[test]
fn the_trail_is_private_and_follows_a_rotation() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("logs/keygate/audit.jsonl");
    let env = env(Mode::SelfManaged, &format!("path = \"{}\"\n", trail.display()));
    let p = env.load();
    let s = Env::user_session(&p);
    generate(&s, "before").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(trail.parent().unwrap()), 0o700);
    assert_eq!(mode(&trail), 0o600);
    let rotated = trail.with_extension("jsonl.1");
    std::fs::rename(&trail, &rotated).unwrap();
    let old = lines(&rotated).len();
    generate(&s, "after").unwrap();
    assert_eq!(lines(&rotated).len(), old, "nothing more goes to the rotated file");
    let new = lines(&trail);
    assert!(
        new.iter()
            .any(|v| v["op"] == "C_GenerateKey" && v["keys"][0]["label"] == "after"),
        "{new:?}"
    );
    assert_eq!(mode(&trail), 0o600);
}
