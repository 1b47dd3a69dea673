//! The `keygate` CLI on real tokens (SoftHSM2 root): list, verify, backup, restore, change-pin,
//! rotate-dek and rotate-root, their output, `--json` shape and exit codes, failure cases
//! included. Keys are checked afterwards through the built module, as a client uses them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Runs `keygate rotate-dek` or `rotate-root` with both PINs and expects success.
fn rotate(env: &Env, command: &str) -> String {
    ok(env, &[&[command][..], &ROTATION_ARGS].concat())
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The store, opened directly. Only while no module instance in this process has it open: this
/// connection's SQLite is another copy than the module's, and closing it would drop the
/// module's POSIX locks on the file (see [`sealed_blob`]).
fn db(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.store()).unwrap()
}

/// `keygate restore` of the token "test" from `from`, authorised with the SO PIN in `so_env`.
fn restore_args<'a>(from: &'a std::path::Path, so_env: &'a str) -> [&'a str; 7] {
    [
        "restore",
        "--token",
        "test",
        "--from",
        from.to_str().unwrap(),
        "--so-pin-env",
        so_env,
    ]
}

/// The body of the record labelled `label`, read by the `sqlite3` program in its own process,
/// so that a module loaded in this process keeps its locks.
fn sealed_blob(env: &Env, label: &str) -> String {
    let o = Command::new("sqlite3")
        .arg(env.store())
        .arg(format!(
            "SELECT hex(body) FROM objects WHERE label = CAST('{label}' AS BLOB)"
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let hex = stdout(&o).trim().to_string();
    assert!(!hex.is_empty(), "no record labelled {label}");
    hex
}

fn verify_json(env: &Env, with_pin: bool) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["verify", "--token", "test", "--json"];
    if with_pin {
        args.extend(["--pin-env", "KG_USER"]);
    }
    let o = env.cli(&args);
    let v = json_lines(&stdout(&o));
    assert_eq!(v.len(), 1, "{o:?}");
    (o.status.code(), v[0].clone())
}

#[test]
fn list_shows_public_objects_without_a_pin_and_every_object_with_it() {
    let env = populated();
    let out = ok(&env, &["list", "--token", "test"]);
    assert!(out.contains("public-key") && out.contains("\"pub\""), "{out}");
    assert!(!out.contains("\"priv\"") && !out.contains("\"a\""), "{out}");
    assert!(out.contains("1 objects (public only"), "{out}");
    let rows = json_lines(&ok(
        &env,
        &["list", "--token", "test", "--pin-env", "KG_USER", "--json"],
    ));
    assert_eq!(rows.len(), 5);
    for r in &rows {
        for key in ["uid", "class", "key_type", "label", "id", "flags"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["uid"].as_str().unwrap().len(), 32);
    }
    let priv_ = rows.iter().find(|r| r["label"] == "priv").unwrap();
    assert_eq!(priv_["class"], "private-key");
    assert_eq!(priv_["key_type"], "ec");
    let flags: Vec<&str> = priv_["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(flags.contains(&"sensitive") && flags.contains(&"sign"), "{flags:?}");
    fails(&env, &["list", "--token", "test", "--pin-env", "KG_WRONG"], "login");
    fails(&env, &["list", "--token", "nope"], "no token \"nope\"");
}

#[test]
fn verify_passes_on_a_sound_token_and_opens_every_secret_with_the_pin() {
    let env = populated();
    let out = ok(&env, &["verify", "--token", "test"]);
    assert!(out.contains("5 objects checked, 0 sealed secrets opened"), "{out}");
    let (code, v) = verify_json(&env, true);
    assert_eq!(code, Some(0));
    assert_eq!(v["ok"], true);
    assert_eq!(v["token"], "test");
    assert_eq!(v["objects"], 5);
    assert_eq!(v["secrets_opened"], 4, "three AES keys and one private key");
    for empty in ["failed", "missing", "unlisted", "store_problems"] {
        assert_eq!(v[empty], serde_json::json!([]), "{empty}");
    }
    assert!(v["header_problem"].is_null() && v["membership_problem"].is_null());
}

#[test]
fn verify_with_a_wrong_pin_fails_and_counts_it() {
    let env = populated();
    fails(&env, &["verify", "--token", "test", "--pin-env", "KG_WRONG"], "PIN");
    let st = json_lines(&ok(&env, &["status", "--json"]));
    assert_eq!(st[0]["user_pin_locked"], false);
    // The failure was counted: the module reports it in the token flags.
    let p = load_module();
    let info = p.get_token_info(Env::slot(&p)).unwrap();
    assert!(info.user_pin_count_low(), "a wrong PIN through verify counts as one");
}

/// Applies `damage` to the closed store of a populated token and runs verify without and with
/// the PIN; returns the JSON reports (each with exit code 1).
fn damaged(damage: impl Fn(&Env, &rusqlite::Connection)) -> (Env, serde_json::Value, serde_json::Value) {
    let env = populated();
    let c = db(&env);
    damage(&env, &c);
    drop(c);
    let (code, public) = verify_json(&env, false);
    assert_eq!(code, Some(1), "{public}");
    assert_eq!(public["ok"], false);
    let (code, full) = verify_json(&env, true);
    assert_eq!(code, Some(1), "{full}");
    (env, public, full)
}

fn failed_ids(v: &serde_json::Value) -> Vec<String> {
    v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn verify_names_a_record_with_a_flipped_byte_in_its_sealed_blob() {
    let victim = std::cell::RefCell::new(Vec::new());
    let (_env, public, full) = damaged(|_, c| {
        let uid = uid_of(c, "b");
        let mut body: Vec<u8> = c
            .query_row("SELECT body FROM objects WHERE uid = ?1", [&uid], |r| r.get(0))
            .unwrap();
        let last = body.len() - 1;
        body[last] ^= 0x01;
        c.execute(
            "UPDATE objects SET body = ?1 WHERE uid = ?2",
            rusqlite::params![body, uid],
        )
        .unwrap();
        *victim.borrow_mut() = uid;
    });
    let id = hex::encode(victim.borrow().as_slice());
    assert_eq!(failed_ids(&public), vec![id.clone()]);
    assert_eq!(failed_ids(&full), vec![id]);
    assert_eq!(public["objects"], 5);
}

#[test]
fn verify_names_both_records_of_swapped_blobs() {
    let uids = std::cell::RefCell::new(Vec::new());
    let (_env, public, _) = damaged(|_, c| {
        let (ua, uc) = (uid_of(c, "a"), uid_of(c, "c"));
        let get = |u: &Vec<u8>| -> (Vec<u8>, Vec<u8>) {
            c.query_row("SELECT body, mac FROM objects WHERE uid = ?1", [u], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        let ((ba, ma), (bc, mc)) = (get(&ua), get(&uc));
        let set = "UPDATE objects SET body = ?1, mac = ?2 WHERE uid = ?3";
        c.execute(set, rusqlite::params![bc, mc, ua]).unwrap();
        c.execute(set, rusqlite::params![ba, ma, uc]).unwrap();
        *uids.borrow_mut() = vec![hex::encode(ua), hex::encode(uc)];
    });
    let mut got = failed_ids(&public);
    got.sort();
    let mut want = uids.borrow().clone();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn verify_names_an_edited_public_key() {
    let victim = std::cell::RefCell::new(String::new());
    let (_env, public, _) = damaged(|_, c| {
        let up = uid_of(c, "pub");
        let mut body: Vec<u8> = c
            .query_row("SELECT body FROM objects WHERE uid = ?1", [&up], |r| r.get(0))
            .unwrap();
        let pos = body.windows(3).position(|w| w == [0x04, 0x41, 0x04]).unwrap() + 10;
        body[pos] ^= 0xff;
        c.execute(
            "UPDATE objects SET body = ?1 WHERE uid = ?2",
            rusqlite::params![body, up],
        )
        .unwrap();
        *victim.borrow_mut() = hex::encode(up);
    });
    assert_eq!(failed_ids(&public), vec![victim.borrow().clone()]);
}

#[test]
fn verify_names_a_deleted_record() {
    let victim = std::cell::RefCell::new(Vec::new());
    let (env, public, _) = damaged(|_, c| {
        let u = uid_of(c, "a");
        c.execute("DELETE FROM objects WHERE uid = ?1", [&u]).unwrap();
        *victim.borrow_mut() = u;
    });
    let u = hex::encode(victim.into_inner());
    assert_eq!(public["missing"], serde_json::json!([u]));
    assert_eq!(public["objects"], 4);
    let human = env.cli(&["verify", "--token", "test"]);
    assert!(stdout(&human).contains(&format!("object {u}: missing")), "{human:?}");
    // Deleting its member row too leaves the header's count and digest to tell.
    let c = db(&env);
    c.execute("DELETE FROM members WHERE uid = ?1", [hex::decode(&u).unwrap()])
        .unwrap();
    drop(c);
    let (code, v) = verify_json(&env, false);
    assert_eq!(code, Some(1));
    let why = v["membership_problem"].as_str().unwrap();
    assert!(why.contains("vouches for 5 objects; the store lists 4"), "{v}");
}

#[test]
fn verify_names_a_destroyed_record_brought_back() {
    let env = populated();
    let c = db(&env);
    let u = uid_of(&c, "a");
    let row: (Vec<u8>, Vec<u8>, Vec<u8>) = c
        .query_row("SELECT class, label, body FROM objects WHERE uid = ?1", [&u], |r| {
            Ok((r.get::<_, i64>(0)?.to_be_bytes().to_vec(), r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let mac: Vec<u8> = c
        .query_row("SELECT mac FROM objects WHERE uid = ?1", [&u], |r| r.get(0))
        .unwrap();
    drop(c);
    let p = load_module();
    let s = Env::user_session(&p);
    s.destroy_object(find_one(&s, "a").unwrap()).unwrap();
    drop(s);
    p.finalize().unwrap();
    ok(&env, &["verify", "--token", "test"]);
    // The old record, with its valid MAC, put back behind keygate's back.
    let c = db(&env);
    let class = i64::from_be_bytes(row.0.try_into().unwrap());
    c.execute(
        "INSERT INTO objects (uid, class, label, ckid, body, mac) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
        rusqlite::params![u, class, row.1, row.2, mac],
    )
    .unwrap();
    drop(c);
    let (code, v) = verify_json(&env, false);
    assert_eq!(code, Some(1));
    assert_eq!(v["unlisted"], serde_json::json!([hex::encode(&u)]), "{v}");
    assert_eq!(v["failed"], serde_json::json!([]), "its MAC alone still verifies");
}

#[test]
fn verify_reports_a_truncated_store_file() {
    let env = populated();
    let f = std::fs::OpenOptions::new().write(true).open(env.store()).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    drop(f);
    let o = fails(
        &env,
        &["verify", "--token", "test"],
        "verify of \"test\" failed: the store:",
    );
    assert!(stdout(&o).contains("store file damaged"), "{o:?}");
}

#[test]
fn verify_of_a_file_that_is_not_a_database_is_a_clear_error() {
    let env = populated();
    std::fs::write(env.store(), b"this is not a sqlite database, it is a text file").unwrap();
    fails(&env, &["verify", "--token", "test"], "the store: file damaged: ");
    let o = fails(&env, &["verify", "--token", "test"], "not a database");
    assert!(stdout(&o).contains("store file damaged"), "{o:?}");
    // With a PIN, the login it needs cannot happen on such a file.
    fails(
        &env,
        &["verify", "--token", "test", "--pin-env", "KG_USER"],
        "cannot verify \"test\"",
    );
}

#[test]
fn verify_without_the_hsm_is_a_clear_error() {
    let env = populated();
    let conf = std::fs::read_to_string(env.path().join("keygate.toml")).unwrap();
    std::fs::write(
        env.path().join("keygate.toml"),
        conf.replace(SOFTHSM, "/nonexistent/libsofthsm2.so"),
    )
    .unwrap();
    fails(&env, &["verify", "--token", "test"], "cannot verify \"test\"");
}

#[test]
fn store_commands_refuse_an_hsm_mode_token() {
    pins_in_env();
    let env = Env::hsm();
    for args in [
        &["verify", "--token", "test"][..],
        &["backup", "--token", "test", "--to", "/tmp/never-written.db"],
        &["rotate-dek", "--token", "test", "--so-pin-env", "KG_SO"],
    ] {
        fails(&env, args, "hsm mode");
    }
    assert!(!std::path::Path::new("/tmp/never-written.db").exists());
}

/// Keeps generating token keys "load-N" until killed (the child of the backup test).
#[test]
#[ignore = "run by backup_taken_under_load_verifies_and_restores as its child process"]
fn keygen_child() {
    let p = load_module();
    let s = Env::user_session(&p);
    for i in 0.. {
        aes_token_key(&s, &format!("load-{i}"));
    }
}

fn child(test: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The labels of the token's AES keys, through the module.
fn labels() -> Vec<String> {
    let p = load_module();
    let s = Env::user_session(&p);
    let mut out = Vec::new();
    for k in s
        .find_objects(&[Attribute::KeyType(cryptoki::object::KeyType::AES)])
        .unwrap()
    {
        if let Attribute::Label(l) = &s.get_attributes(k, &[cryptoki::object::AttributeType::Label]).unwrap()[0] {
            out.push(String::from_utf8_lossy(l).into_owned());
        }
    }
    drop(s);
    p.finalize().unwrap();
    out
}

#[test]
fn backup_taken_under_load_verifies_and_restores_onto_the_same_root_only() {
    let env = populated();
    let mut gen = child("keygen_child");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let backup = env.path().join("backup.db");
    let out = ok(
        &env,
        &["backup", "--token", "test", "--to", backup.to_str().unwrap(), "--json"],
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    gen.kill().unwrap();
    gen.wait().unwrap();
    let rep = &json_lines(&out)[0];
    assert_eq!(rep["ok"], true, "{rep}");
    let in_backup = rep["objects"].as_u64().unwrap();
    assert!(in_backup > 5, "keys were being generated while the backup ran: {rep}");
    let before = labels();
    assert!(
        before.len() as u64 > in_backup - 2,
        "generation went on after the backup"
    );
    // Backups are made once: an existing file is not overwritten.
    fails(
        &env,
        &["backup", "--token", "test", "--to", backup.to_str().unwrap()],
        "already exists",
    );
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);

    // The backup is older than the token's HSM anchor (keys were made since): restoring it
    // undoes changes, so it needs the SO PIN, and says what it undoes.
    pins_in_env();
    let refused = fails(
        &env,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
        "give the SO PIN to restore it deliberately",
    );
    assert!(
        stderr(&refused).contains("was made since the copy; it is gone"),
        "{}",
        stderr(&refused)
    );
    fails(&env, &restore_args(&backup, "KG_WRONG"), "cannot restore");
    // Restored onto the same root and PIN, every key of the backup works.
    ok(&env, &restore_args(&backup, "KG_SO"));
    let restored = labels();
    assert_eq!(
        restored.len() as u64,
        in_backup - 2,
        "the backup's AES keys (not the EC pair)"
    );
    let refs: Vec<&str> = restored.iter().map(String::as_str).collect();
    assert!(all_work(&refs));
    let (code, v) = verify_json(&env, true);
    assert_eq!((code, &v["ok"]), (Some(0), &serde_json::json!(true)), "{v}");

    // Under another HSM root (a thief with the file and the PIN), it serves nothing.
    let other = populated();
    fails(
        &other,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
        "cannot restore",
    );
    std::fs::copy(&backup, other.store()).unwrap();
    let p = load_module();
    let slot = Env::slot(&p);
    let login = p.get_token_info(slot).map(|_| {
        let s = p.open_rw_session(slot).unwrap();
        s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))
    });
    assert!(
        !matches!(login, Ok(Ok(()))),
        "the backup must not open under another root"
    );
}

#[test]
fn restore_brings_back_a_deleted_or_damaged_store() {
    let env = populated();
    let backup = env.path().join("b.db");
    ok(&env, &["backup", "--token", "test", "--to", backup.to_str().unwrap()]);
    // Damaged: keys deleted behind keygate's back.
    db(&env).execute("DELETE FROM objects", []).unwrap();
    fails(&env, &["verify", "--token", "test"], "failed");
    ok(
        &env,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
    );
    assert!(all_work(&["a", "b", "c"]));
    // Gone altogether. The logins since have moved the anchor past the backup, so putting it
    // back is deliberate: the SO PIN.
    std::fs::remove_file(env.store()).unwrap();
    pins_in_env();
    ok(&env, &restore_args(&backup, "KG_SO"));
    assert!(all_work(&["a", "b", "c"]));
    ok(&env, &["verify", "--token", "test", "--pin-env", "KG_USER"]);
    // A backup that does not verify is refused, and the store is left as it was.
    let bad = env.path().join("bad.db");
    std::fs::copy(&backup, &bad).unwrap();
    rusqlite::Connection::open(&bad)
        .unwrap()
        .execute("UPDATE objects SET mac = zeroblob(32)", [])
        .unwrap();
    fails(
        &env,
        &["restore", "--token", "test", "--from", bad.to_str().unwrap()],
        "does not verify",
    );
    fails(
        &env,
        &["restore", "--token", "test", "--from", "/nonexistent/backup.db"],
        "does not exist",
    );
    // A backup of another token under the same HSM root verifies, but is not this token's.
    let conf = env.path().join("keygate.toml");
    let toml = std::fs::read_to_string(&conf).unwrap();
    let other_store = env.path().join("other.db");
    std::fs::write(
        &conf,
        format!(
            "{toml}\n[[token]]\nlabel = \"other\"\nmode = \"self-managed\"\nstore = \"{}\"\nroot = {{ module = \"{SOFTHSM}\", token = \"keygate-root\", pin_env = \"KEYGATE_ROOT_PIN\" }}\n",
            other_store.display()
        ),
    )
    .unwrap();
    ok(
        &env,
        &[
            "init",
            "--token",
            "other",
            "--so-pin-env",
            "KG_SO",
            "--pin-env",
            "KG_USER",
        ],
    );
    let other_backup = env.path().join("other-backup.db");
    ok(
        &env,
        &["backup", "--token", "other", "--to", other_backup.to_str().unwrap()],
    );
    fails(
        &env,
        &["restore", "--token", "test", "--from", other_backup.to_str().unwrap()],
        "backup of another token",
    );
    assert!(all_work(&["a", "b", "c"]));
}

#[test]
fn change_pin_rewraps_the_data_key_only() {
    let env = populated();
    std::env::set_var("KG_NEW", "new-user-pin-7777");
    fails(
        &env,
        &[
            "change-pin",
            "--token",
            "test",
            "--old-pin-env",
            "KG_WRONG",
            "--new-pin-env",
            "KG_NEW",
        ],
        "wrong PIN",
    );
    let before: Vec<Vec<u8>> = {
        let c = db(&env);
        let mut st = c.prepare("SELECT body FROM objects ORDER BY uid").unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        rows
    };
    let out = ok(&env, &change_pin_args("KG_USER", "KG_NEW"));
    assert!(out.contains("user PIN of \"test\" changed"), "{out}");
    let after: Vec<Vec<u8>> = {
        let c = db(&env);
        let mut st = c.prepare("SELECT body FROM objects ORDER BY uid").unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        rows
    };
    assert_eq!(before, after, "no record is re-sealed by a PIN change");
    let p = load_module();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    assert!(matches!(
        s.login(UserType::User, Some(&AuthPin::from(USER_PIN))),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _))
    ));
    s.login(UserType::User, Some(&AuthPin::from("new-user-pin-7777")))
        .unwrap();
    assert!(gcm_works(&s, "a"));
    drop(s);
    p.finalize().unwrap();
    // The SO PIN, from standard input this time (old line, then new line).
    let mut c = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["change-pin", "--token", "test", "--so"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(c.stdin.take().unwrap(), "{SO_PIN}\nnew-so-pin-8888").unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    std::env::set_var("KG_SO", "new-so-pin-8888");
    std::env::set_var("KG_USER", "new-user-pin-7777");
    rotate(&env, "rotate-dek");
}

#[test]
fn rotate_dek_reseals_every_secret_and_a_process_logged_in_before_logs_in_again() {
    let env = populated();
    let p = load_module();
    let s = Env::user_session(&p);
    assert!(gcm_works(&s, "a"));
    let sealed_before = sealed_blob(&env, "b");
    fails(
        &env,
        &["rotate-dek", "--token", "test", "--so-pin-env", "KG_SO"],
        "user PIN",
    );
    let out = rotate(&env, "rotate-dek");
    assert!(out.contains("4 secrets re-sealed"), "{out}");
    let sealed_after = sealed_blob(&env, "b");
    assert_ne!(sealed_before, sealed_after);
    // The process logged in under the old data key is asked to log in again, and writes nothing
    // sealed under it.
    assert!(!gcm_works(&s, "a"));
    let r = s.generate_key(
        &Mechanism::AesKeyGen,
        &[Attribute::ValueLen(32.into()), Attribute::Token(true)],
    );
    assert!(matches!(r, Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))), "{r:?}");
    s.logout().unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    assert!(gcm_works(&s, "a") && gcm_works(&s, "c"));
    aes_token_key(&s, "after");
    drop(s);
    p.finalize().unwrap();
    assert!(all_work(&["a", "b", "c", "after"]));
    let (code, v) = verify_json(&env, true);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["secrets_opened"], 5);
}

#[test]
fn rotate_root_moves_the_token_to_a_new_root_key_and_retires_the_old_one() {
    let env = populated();
    let backup = env.path().join("old-root.db");
    ok(&env, &["backup", "--token", "test", "--to", backup.to_str().unwrap()]);
    let p = load_module();
    let s = Env::user_session(&p);
    assert!(gcm_works(&s, "a"));
    let out = rotate(&env, "rotate-root");
    assert!(out.contains("root key of \"test\" rotated"), "{out}");
    // A process that was using the token goes on: it picks up the new integrity key.
    assert!(gcm_works(&s, "b"));
    aes_token_key(&s, "after");
    drop(s);
    p.finalize().unwrap();
    assert!(all_work(&["a", "b", "c", "after"]));
    ok(&env, &["verify", "--token", "test", "--pin-env", "KG_USER"]);
    // The old root key is gone from the HSM: the backup made under it no longer opens.
    fails(
        &env,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
        "cannot restore",
    );
    // Exactly one keygate root key is left in the HSM.
    assert_eq!(root_keys_in_hsm(), vec!["keygate-root test".to_string()]);
}

/// Runs `f` in a user session on the root HSM token (SoftHSM2, loaded directly).
fn with_root_hsm<T>(f: impl FnOnce(&cryptoki::session::Session) -> T) -> T {
    let hsm = cryptoki::context::Pkcs11::new(SOFTHSM).unwrap();
    hsm.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ))
    .unwrap();
    let slot = hsm
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|sl| hsm.get_token_info(*sl).unwrap().label() == "keygate-root")
        .unwrap();
    let hs = hsm.open_rw_session(slot).unwrap();
    hs.login(UserType::User, Some(&AuthPin::from(ROOT_PIN))).unwrap();
    let out = f(&hs);
    drop(hs);
    hsm.finalize().unwrap();
    out
}

/// The root keys of keygate tokens in the root HSM token, labelled `keygate-root <token>`.
fn root_keys_in_hsm() -> Vec<String> {
    with_root_hsm(|hs| {
        hs.find_objects(&[])
            .unwrap()
            .into_iter()
            .filter_map(|o| {
                match hs
                    .get_attributes(o, &[cryptoki::object::AttributeType::Label])
                    .ok()?
                    .pop()?
                {
                    Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
                    _ => None,
                }
            })
            .filter(|l| l.starts_with("keygate-root"))
            .collect()
    })
}

/// `keygate status --orphans` lists the root keys no configured token uses: one labelled for
/// a token no longer configured, and a second key under a configured token's label that its
/// store does not name. The key in use, and one labelled for a configured token whose store
/// is missing (it may be restored), are not listed.
#[test]
fn status_orphans_lists_root_keys_no_token_uses() {
    let env = populated();
    let conf = env.path().join("keygate.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\n[[token]]\nlabel = \"other\"\nmode = \"self-managed\"\nstore = \"{}\"\nroot = {{ module = \"{SOFTHSM}\", token = \"keygate-root\", pin_env = \"KEYGATE_ROOT_PIN\" }}\n",
        env.path().join("other-missing.db").display()
    ));
    std::fs::write(&conf, text).unwrap();
    let o = env.cli(&["status", "--orphans"]);
    assert_eq!(stdout(&o), "no orphaned root keys\n", "{o:?}");
    with_root_hsm(|hs| {
        for (label, id) in [
            ("keygate-root gone", [1u8; 16]),
            ("keygate-root test", [2u8; 16]),
            ("keygate-root other", [3u8; 16]),
        ] {
            hs.create_object(&[
                Attribute::Class(cryptoki::object::ObjectClass::SECRET_KEY),
                Attribute::KeyType(cryptoki::object::KeyType::GENERIC_SECRET),
                Attribute::Value(vec![9; 32]),
                Attribute::Token(true),
                Attribute::Label(label.into()),
                Attribute::Id(id.to_vec()),
            ])
            .unwrap();
        }
    });
    let o = env.cli(&["status", "--orphans", "--json"]);
    assert!(o.status.success(), "{o:?}");
    let mut got: Vec<(String, String)> = json_lines(&stdout(&o))
        .iter()
        .map(|v| (v["label"].as_str().unwrap().into(), v["id"].as_str().unwrap().into()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("keygate-root gone".to_string(), hex::encode([1u8; 16])),
            ("keygate-root test".to_string(), hex::encode([2u8; 16])),
        ]
    );
    let o = env.cli(&["status", "--orphans"]);
    assert!(stdout(&o).contains("orphan: \"keygate-root gone\""), "{o:?}");
    // The token's own key still works.
    assert!(all_work(&["a", "b", "c"]));
}

/// `keygate init` checks that the store can be made before it makes anything in the HSM: a
/// store directory that does not exist leaves no root key behind. A token's root key carries
/// the token's label.
#[test]
fn a_failed_init_leaves_no_root_key_and_root_keys_are_labelled() {
    pins_in_env();
    let env = Env::bare();
    let conf = env.path().join("keygate.toml");
    let missing = env.path().join("no-such-dir");
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace(env.store().to_str().unwrap(), missing.join("test.db").to_str().unwrap());
    std::fs::write(&conf, text).unwrap();
    fails(&env, &INIT_ARGS, "no-such-dir");
    assert_eq!(
        root_keys_in_hsm(),
        Vec::<String>::new(),
        "a failed init left a root key"
    );
    std::fs::create_dir(&missing).unwrap();
    ok(&env, &INIT_ARGS);
    assert_eq!(root_keys_in_hsm(), vec!["keygate-root test".to_string()]);
}

#[test]
fn man_writes_one_page_per_subcommand_from_the_clap_definitions() {
    let env = Env::bare();
    let dir = env.path().join("man1");
    let out = ok(&env, &["man", "--dir", dir.to_str().unwrap()]);
    let help = ok(&env, &["--help"]);
    // The subcommands `--help` lists, each with its page.
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(subcommands.len() >= 14, "{help}");
    for c in subcommands
        .iter()
        .map(|c| format!("keygate-{c}"))
        .chain(["keygate".into()])
    {
        let page = std::fs::read_to_string(dir.join(format!("{c}.1"))).unwrap_or_else(|e| panic!("{c}.1: {e}"));
        assert!(page.contains(&format!(".TH {c} 1")), "{c}.1: {page}");
        assert!(out.contains(&format!("{c}.1")), "{out}");
    }
    let restore = std::fs::read_to_string(dir.join("keygate-restore.1")).unwrap();
    assert!(restore.contains("mirror") && restore.contains("from"), "{restore}");
    // Exactly those: no page for a hidden helper subcommand (bench-open).
    let pages = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(pages, subcommands.len() + 1, "{out}");
    assert!(!dir.join("keygate-bench-open.1").exists());
}

/// A usage error exits 1, as every other error (README); `--help` exits 0.
#[test]
fn a_usage_error_exits_1() {
    let env = Env::bare();
    let o = env.cli(&["--no-such-option"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("--no-such-option"), "{o:?}");
    let o = env.cli(&["status", "--json", "extra"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(env.cli(&["--help"]).status.code(), Some(0));
}

/// `keygate status` shows every token: one whose store is not a database is reported with its
/// error, the healthy one after it still shows, and the exit status says one is broken.
#[test]
fn status_shows_every_token_even_after_a_broken_one() {
    pins_in_env();
    let env = Env::new();
    let garbage = env.path().join("broken.db");
    std::fs::write(&garbage, b"this is not an sqlite database, only some bytes").unwrap();
    let conf = env.path().join("keygate.toml");
    let mine = std::fs::read_to_string(&conf).unwrap();
    let broken = mine
        .replace("label = \"test\"", "label = \"broken\"")
        .replace(env.store().to_str().unwrap(), garbage.to_str().unwrap());
    std::fs::write(&conf, format!("{broken}\n{mine}")).unwrap();
    for json in [false, true] {
        let mut args = vec!["status"];
        if json {
            args.push("--json");
        }
        let o = env.cli(&args);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        if json {
            let v = json_lines(&out);
            assert_eq!(v[0]["token"], "broken");
            assert!(v[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{out}");
            assert_eq!(v[1]["token"], "test");
            assert_eq!(v[1]["initialized"], true);
        } else {
            assert!(lines[0].starts_with("broken: error: "), "{out}");
            assert!(lines[1].starts_with("test: initialised"), "{out}");
        }
        assert!(stderr(&o).contains("1 of 2 tokens cannot be read: broken"), "{o:?}");
    }
}

/// A token whose store is gone but whose root key the HSM holds is missing, not new: `keygate
/// status` and `C_GetTokenInfo` say so (`CKR_TOKEN_NOT_PRESENT`), initialising over it is
/// refused, and restoring a backup brings it back.
#[test]
fn a_missing_store_is_reported_missing_not_uninitialised() {
    let env = populated();
    let backup = env.path().join("backup.db");
    ok(&env, &["backup", "--token", "test", "--to", backup.to_str().unwrap()]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", env.store().display()));
    }
    let o = env.cli(&["status"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("test: error:"), "{o:?}");
    assert!(
        stdout(&o).contains("is missing, but the HSM holds this token's root key"),
        "{o:?}"
    );
    fails(&env, &INIT_ARGS, "cannot initialise");
    let p = load_module();
    let slot = Env::slot(&p);
    assert_eq!(rv(p.get_token_info(slot)), cryptoki::error::RvError::TokenNotPresent);
    assert_eq!(
        rv(p.init_token(slot, &AuthPin::from(SO_PIN), "test")),
        cryptoki::error::RvError::TokenNotPresent
    );
    p.finalize().unwrap();
    ok(
        &env,
        &["restore", "--token", "test", "--from", backup.to_str().unwrap()],
    );
    assert!(all_work(&["a", "b", "c"]));
}

/// Routine administration succeeds quietly: with the default log level (warnings), a rotation
/// and a restore print their result on standard output and nothing on standard error (their
/// log lines are at info; warnings are for what needs attention).
#[test]
fn routine_administration_logs_nothing_at_the_default_level() {
    let env = populated();
    std::env::remove_var("KEYGATE_LOG");
    let backup = env.path().join("quiet.db");
    for args in [
        vec!["backup", "--token", "test", "--to", backup.to_str().unwrap()],
        [&["rotate-dek"][..], &ROTATION_ARGS].concat(),
        vec![
            "restore",
            "--token",
            "test",
            "--from",
            backup.to_str().unwrap(),
            "--so-pin-env",
            "KG_SO",
        ],
        [&["rotate-root"][..], &ROTATION_ARGS].concat(),
    ] {
        let o = env.cli(&args);
        assert!(o.status.success(), "{args:?}: {o:?}");
        assert_eq!(stderr(&o), "", "{args:?} wrote to standard error");
    }
}

/// A wrong root PIN is one line that names the HSM token, its module, where the PIN came from
/// and the HSM's answer by name; a wrong user PIN is one line too (the library's own log lines
/// are not repeated by the program at the default level).
#[test]
fn a_wrong_root_pin_is_one_line_that_says_which_credential() {
    let env = populated();
    std::env::remove_var("KEYGATE_LOG");
    std::env::set_var("KEYGATE_ROOT_PIN", "not-the-root-pin");
    let o = env.cli(&["verify", "--token", "test", "--pin-env", "KG_USER"]);
    std::env::set_var("KEYGATE_ROOT_PIN", ROOT_PIN);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    for part in [
        "\"keygate-root\"",
        SOFTHSM,
        "environment variable KEYGATE_ROOT_PIN",
        "CKR_PIN_INCORRECT",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    std::env::set_var("KG_USER", "999999");
    let o = env.cli(&["verify", "--token", "test", "--pin-env", "KG_USER"]);
    std::env::set_var("KG_USER", USER_PIN);
    assert_eq!(stderr(&o), "keygate: cannot verify \"test\": wrong PIN\n", "{o:?}");
}
