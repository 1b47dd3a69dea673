//! `mirror =`: a second database kept in step with every committed change, which the token
//! serves from, read-only, when its store is missing or fails verification; `keygate restore`
//! rebuilds the store from it; `verify_on_open` checks every record when the module starts.
//! Keys are used through the built module and signatures checked with `p256`.

mod common;

use std::process::Command;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use p256::ecdsa::signature::hazmat::PrehashVerifier;

/// The rows of a database as the `sqlite3` program reads them (in its own process, so that a
/// module loaded in this one keeps its locks): header, objects and members, in order.
fn rows(db: &std::path::Path) -> String {
    let o = Command::new("sqlite3")
        .arg(db)
        .arg(
            "SELECT 'h', hex(body), hex(mac) FROM header; \
             SELECT 'o', hex(uid), class, hex(label), hex(ckid), hex(body), hex(mac) FROM objects ORDER BY uid; \
             SELECT 'm', hex(uid) FROM members ORDER BY uid;",
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    stdout(&o)
}

fn in_step(env: &Env) -> bool {
    rows(&env.store()) == rows(&env.mirror())
}

/// Removes a database and its WAL files.
fn delete_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Signs a digest with the private key labelled "priv" and checks it with p256 against the
/// public key labelled "pub".
fn p256_signs(s: &Session) -> bool {
    let (Some(private), Some(public)) = (find_one(s, "priv"), find_one(s, "pub")) else {
        return false;
    };
    let digest = [0x42u8; 32];
    let Ok(sig) = s.sign(&Mechanism::Ecdsa, private, &digest) else {
        return false;
    };
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(s, public)).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    vk.verify_prehash(&digest, &sig).is_ok()
}

/// Loads the module afresh and checks that every key of [`populated`] works, and whether the
/// token says it is write-protected and refuses a new token key.
fn serves_every_key(write_protected: bool) {
    let p = load_module();
    let slot = Env::slot(&p);
    assert_eq!(p.get_token_info(slot).unwrap().write_protected(), write_protected);
    let s = Env::user_session(&p);
    for l in ["a", "b", "c"] {
        assert!(gcm_works(&s, l), "key {l}");
    }
    assert!(p256_signs(&s), "the P-256 pair");
    let made = s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::ValueLen(32.into()),
            Attribute::Label("new".into()),
        ],
    );
    if write_protected {
        assert!(
            matches!(made, Err(CkError::Pkcs11(RvError::TokenWriteProtected, _))),
            "{made:?}"
        );
        // Session objects live in this process only, and still work.
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::Token(false), Attribute::ValueLen(32.into())],
        )
        .unwrap();
    } else {
        s.destroy_object(made.unwrap()).unwrap();
    }
    drop(s);
    p.finalize().unwrap();
}

fn verify_both(env: &Env) -> serde_json::Value {
    let o = env.cli(&["verify", "--token", "test", "--pin-env", "KG_USER", "--json"]);
    serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{o:?}: {e}"))
}

fn assert_both_verify(env: &Env) {
    let v = verify_both(env);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["objects"], 5, "{v}");
    assert_eq!(v["secrets_opened"], 4, "{v}");
    assert_eq!(v["mirror"]["ok"], true, "{v}");
    assert_eq!(v["mirror"]["objects"], 5, "{v}");
    assert_eq!(v["mirror"]["secrets_opened"], 4, "{v}");
    assert_eq!(v["mirror"]["path"], env.mirror().display().to_string(), "{v}");
}

#[test]
fn the_token_serves_from_its_mirror_when_the_store_is_deleted_or_corrupted() {
    let env = populated_with(&format!("{EXPORT_ALLOWED}{MIRRORED}"));
    assert!(in_step(&env));
    assert_both_verify(&env);

    // Deleted.
    delete_db(&env.store());
    let log = env.path().join("module.log");
    std::env::set_var("KEYGATE_LOG", "warn");
    {
        let _r = Redirect::to(&log);
        serves_every_key(true);
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("is missing; serving from the mirror") && logged.contains("keygate restore --token test"),
        "{logged}"
    );
    assert!(!env.store().exists(), "serving from the mirror leaves the store alone");
    let v = verify_both(&env);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["mirror"]["ok"], true, "{v}");
    fails(&env, &["verify", "--token", "test"], "failed");
    let out = ok(&env, &["restore", "--token", "test"]);
    assert!(out.contains(&format!("mirror {}", env.mirror().display())), "{out}");
    assert!(in_step(&env));
    assert_both_verify(&env);
    serves_every_key(false);

    // Corrupted: the first page overwritten.
    let mut bytes = std::fs::read(env.store()).unwrap();
    bytes[..512].fill(0x5a);
    std::fs::write(env.store(), &bytes).unwrap();
    serves_every_key(true);
    ok(&env, &["restore", "--token", "test", "--json"]);
    assert_both_verify(&env);
    serves_every_key(false);

    // Tampered: the header's MAC no longer verifies.
    rusqlite::Connection::open(env.store())
        .unwrap()
        .execute("UPDATE header SET mac = zeroblob(32)", [])
        .unwrap();
    serves_every_key(true);
    ok(&env, &["restore", "--token", "test"]);
    assert_both_verify(&env);
    serves_every_key(false);
}

#[test]
fn the_mirror_follows_every_change_and_recovers_from_failures() {
    let env = populated_with(&format!("{EXPORT_ALLOWED}{MIRRORED}"));
    let p = load_module();
    let s = Env::user_session(&p);
    aes_token_key(&s, "d");
    assert!(in_step(&env), "after a key generation");
    let d = find_one(&s, "d").unwrap();
    s.update_attributes(d, &[Attribute::Label("d2".into())]).unwrap();
    assert!(in_step(&env), "after an attribute change");
    s.destroy_object(d).unwrap();
    assert!(in_step(&env), "after a destroy");
    s.logout().unwrap();
    assert!(s.login(UserType::User, Some(&AuthPin::from("wrong-pin-0000"))).is_err());
    assert!(in_step(&env), "after a wrong PIN (the failure counter)");
    rotate_dek(&env);
    assert!(in_step(&env), "after rotate-dek");
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();

    // Deleted while in use: the next change makes it again, whole.
    delete_db(&env.mirror());
    aes_token_key(&s, "e");
    assert!(in_step(&env), "a deleted mirror is made again");

    // Unusable (a directory in its place): the store takes the change; the mirror catches up
    // at the next change after it is usable again.
    delete_db(&env.mirror());
    std::fs::create_dir(env.mirror()).unwrap();
    aes_token_key(&s, "f");
    assert!(find_one(&s, "f").is_some(), "the store took the change");
    std::fs::remove_dir(env.mirror()).unwrap();
    aes_token_key(&s, "g");
    assert!(in_step(&env), "the mirror caught up");
    drop(s);
    p.finalize().unwrap();
    let v = verify_both(&env);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["mirror"]["objects"], 8, "{v}");
}

fn rotate_dek(env: &Env) {
    ok(env, &[&["rotate-dek"][..], &ROTATION_ARGS].concat());
}

#[test]
fn verify_on_open_serves_the_mirror_or_refuses_a_damaged_store() {
    let env = populated_with(&format!("{EXPORT_ALLOWED}{MIRRORED}verify_on_open = true\n"));
    serves_every_key(false);
    // One sealed blob changed: the header still verifies, the record does not.
    let flip = |path: &std::path::Path| {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute(
                "UPDATE objects SET body = CAST(substr(body, 1, length(body) - 1) || \
                 CASE WHEN substr(body, -1) = x'00' THEN x'01' ELSE x'00' END AS BLOB) \
                 WHERE label = CAST('b' AS BLOB)",
                [],
            )
            .unwrap();
    };
    flip(&env.store());
    serves_every_key(true);
    ok(&env, &["restore", "--token", "test"]);
    assert_both_verify(&env);
    serves_every_key(false);

    // Without a mirror, the damaged store is refused rather than served in part.
    let conf = env.path().join("keygate.toml");
    let toml = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        toml.replace(&MIRRORED.replace("@DIR@", env.path().to_str().unwrap()), ""),
    )
    .unwrap();
    flip(&env.store());
    let p = load_module();
    let refused = p.get_token_info(Env::slot(&p));
    assert!(
        matches!(refused, Err(CkError::Pkcs11(RvError::DeviceError, _))),
        "{refused:?}"
    );
    p.finalize().unwrap();
    // Without verify_on_open the header is still checked, and the other keys keep working.
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace("verify_on_open = true\n", ""),
    )
    .unwrap();
    let p = load_module();
    let s = Env::user_session(&p);
    assert!(gcm_works(&s, "a") && gcm_works(&s, "c"));
    assert!(!gcm_works(&s, "b"), "the damaged record is refused when used");
}

/// Generates 25 token keys "<MIRROR_CHILD_PREFIX>-N" (the child processes of the test below).
#[test]
#[ignore = "run by two_processes_writing_at_once_keep_the_mirror_in_step as its child process"]
fn keygen_child() {
    let prefix = std::env::var("MIRROR_CHILD_PREFIX").unwrap();
    let p = load_module();
    let s = Env::user_session(&p);
    for i in 0..25 {
        aes_token_key(&s, &format!("{prefix}-{i}"));
    }
}

#[test]
fn two_processes_writing_at_once_keep_the_mirror_in_step() {
    let env = populated_with(&format!("{EXPORT_ALLOWED}{MIRRORED}"));
    let children: Vec<_> = ["x", "y"]
        .iter()
        .map(|prefix| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "keygen_child", "--test-threads=1"])
                .env("MIRROR_CHILD_PREFIX", prefix)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert!(in_step(&env));
    let v = verify_both(&env);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["objects"], 55, "{v}");
    assert_eq!(v["mirror"]["objects"], 55, "{v}");
    // The mirror alone serves all of them.
    delete_db(&env.store());
    let p = load_module();
    let s = Env::user_session(&p);
    assert!(["x-0", "x-24", "y-0", "y-24", "a"].iter().all(|l| gcm_works(&s, l)));
}
