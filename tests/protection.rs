//! Persistence and protection: keys survive C_Finalize and a new process; tampering with the
//! store is detected per object; wrong PINs lock the PIN for every process.

mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn gcm_works(s: &cryptoki::session::Session, label: &str) -> bool {
    let Some(k) = find_one(s, label) else { return false };
    let mut iv = [1u8; 12];
    s.encrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap()),
        k,
        b"x",
    )
    .is_ok()
}

#[test]
fn keys_survive_finalize_and_are_seen_by_another_process() {
    let env = Env::new();
    let p = env.load();
    aes_token_key(&Env::user_session(&p), "persistent");
    p.finalize().unwrap();
    let p = env.load();
    assert!(gcm_works(&Env::user_session(&p), "persistent"));
    // Another process (the CLI) sees the object the first one created.
    let out = env.cli(&["status", "--json"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"objects\":1"),
        "{out:?}"
    );
}

fn rows(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.store()).unwrap()
}

#[test]
fn flipped_sealed_byte_refuses_only_that_object() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    aes_token_key(&s, "victim");
    aes_token_key(&s, "bystander");
    drop(s);
    p.finalize().unwrap();
    let c = rows(&env);
    let uid = uid_of(&c, "victim");
    let mut body: Vec<u8> = c
        .query_row("SELECT body FROM objects WHERE uid = ?1", [&uid], |r| r.get(0))
        .unwrap();
    let last = body.len() - 1; // the sealed blob's tag ends the body
    body[last] ^= 1;
    c.execute(
        "UPDATE objects SET body = ?1 WHERE uid = ?2",
        rusqlite::params![body, uid],
    )
    .unwrap();
    drop(c);
    let p = env.load();
    let s = Env::user_session(&p);
    assert!(!gcm_works(&s, "victim"), "a tampered object must be refused");
    assert!(gcm_works(&s, "bystander"), "the other objects still work");
}

/// Records rewritten with another SQLite type (TEXT where keygate stores BLOBs, as an edit with
/// the `sqlite3` program can leave them): the same bytes as TEXT are the same record, and other
/// bytes as TEXT are one tampered record. Searches and the other keys go on working, and verify
/// names only the tampered one. (Reading a TEXT column as bytes used to fail every search.)
#[test]
fn records_stored_as_text_are_read_as_their_bytes() {
    pins_in_env();
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    for l in ["retyped", "victim", "bystander"] {
        aes_token_key(&s, l);
    }
    drop(s);
    p.finalize().unwrap();
    let c = rows(&env);
    let (retyped, victim) = (uid_of(&c, "retyped"), uid_of(&c, "victim"));
    c.execute(
        "UPDATE objects SET body = CAST(body AS TEXT), mac = CAST(mac AS TEXT) WHERE uid = ?1",
        [&retyped],
    )
    .unwrap();
    c.execute("UPDATE objects SET body = 'not a record' WHERE uid = ?1", [&victim])
        .unwrap();
    for uid in [&retyped, &victim] {
        let kind: String = c
            .query_row("SELECT typeof(body) FROM objects WHERE uid = ?1", [uid], |r| r.get(0))
            .unwrap();
        assert_eq!(kind, "text");
    }
    drop(c);
    let p = env.load();
    let s = Env::user_session(&p);
    assert!(gcm_works(&s, "bystander"), "the other objects still work");
    assert!(gcm_works(&s, "retyped"), "the same bytes, stored as TEXT");
    assert!(!gcm_works(&s, "victim"), "other bytes are refused");
    assert_eq!(
        s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .unwrap()
            .len(),
        2,
        "a search skips the tampered record and finds the rest"
    );
    drop(s);
    p.finalize().unwrap();
    let out = env.cli(&["verify", "--token", "test", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["failed"][0]["id"], hex::encode(&victim), "{v}");
}

#[test]
fn swapped_sealed_blobs_and_edited_public_key_are_refused() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    aes_token_key(&s, "a");
    aes_token_key(&s, "b");
    aes_token_key(&s, "c");
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::EcParams(P256_OID.to_vec()),
            Attribute::Token(true),
            Attribute::Label("pub".into()),
        ],
        &[Attribute::Token(true), Attribute::Label("priv".into())],
    )
    .unwrap();
    drop(s);
    p.finalize().unwrap();
    let c = rows(&env);
    let (ua, ub) = (uid_of(&c, "a"), uid_of(&c, "b"));
    let get = |u: &Vec<u8>| -> (Vec<u8>, Vec<u8>) {
        c.query_row("SELECT body, mac FROM objects WHERE uid = ?1", [u], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let (ba, ma) = get(&ua);
    let (bb, mb) = get(&ub);
    // The bodies swapped in place (each record keeps its MAC column): each fails its MAC.
    let set = |uid: &Vec<u8>, body: &Vec<u8>, mac: &Vec<u8>| {
        c.execute(
            "UPDATE objects SET body = ?1, mac = ?2 WHERE uid = ?3",
            rusqlite::params![body, mac, uid],
        )
        .unwrap();
    };
    set(&ua, &bb, &ma);
    set(&ub, &ba, &mb);
    // Edit one byte of the public key's EC point inside its record.
    let up = uid_of(&c, "pub");
    let (mut bp, _) = get(&up);
    let pos = bp.windows(3).position(|w| w == [0x04, 0x41, 0x04]).unwrap() + 10;
    bp[pos] ^= 0xff;
    c.execute("UPDATE objects SET body = ?1 WHERE uid = ?2", rusqlite::params![bp, up])
        .unwrap();
    let p = env.load();
    let s = Env::user_session(&p);
    assert!(
        !gcm_works(&s, "a") && !gcm_works(&s, "b"),
        "moved records must be refused"
    );
    assert!(gcm_works(&s, "c"));
    assert!(find_one(&s, "pub").is_none(), "an edited public key must be refused");
    assert!(find_one(&s, "priv").is_some());
    drop(s);
    p.finalize().unwrap();

    // Whole records moved with their MACs: each is a genuine record under another identifier,
    // which the header's record set does not vouch for. Which record is which cannot be told,
    // so the token's records are refused as a set, with a line saying so (with a mirror, the
    // mirror would serve; without one the token opens so that `keygate verify` can report).
    set(&ua, &bb, &mb);
    set(&ub, &ba, &ma);
    drop(c);
    let p = env.load();
    let s = Env::user_session(&p);
    let r = s.find_objects(&[Attribute::Label("c".into())]);
    assert!(
        matches!(
            r,
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::DeviceError, _))
        ),
        "rows moved with their MACs must be refused, got {r:?}"
    );
}

#[test]
fn wrong_pin_and_destroyed_root_key() {
    let env = Env::new();
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    let e = s
        .login(UserType::User, Some(&AuthPin::from("wrong-pin-0000")))
        .unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::PinIncorrect, _)), "{e:?}");
    drop(s);
    p.finalize().unwrap();
    // Destroy the root key inside SoftHSM2.
    let hsm = cryptoki::context::Pkcs11::new(SOFTHSM).unwrap();
    hsm.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ))
    .unwrap();
    let slot = hsm.get_slots_with_token().unwrap()[0];
    let hs = hsm.open_rw_session(slot).unwrap();
    hs.login(UserType::User, Some(&AuthPin::from(ROOT_PIN))).unwrap();
    for k in hs
        .find_objects(&[Attribute::Label(b"keygate-root test".to_vec())])
        .unwrap()
    {
        hs.destroy_object(k).unwrap();
    }
    drop(hs);
    hsm.finalize().unwrap();
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    let e = s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::DeviceError, _)), "{e:?}");
}

#[test]
fn pin_locks_for_every_process_until_the_so_resets_it() {
    let env = Env::bare_with("max_pin_failures = 3\n");
    let p = env.load();
    let slot = Env::slot(&p);
    let s = initialise_token(&p);
    for i in 0..3 {
        assert!(s.login(UserType::User, Some(&AuthPin::from("wrong-pin-0000"))).is_err());
        let info = p.get_token_info(slot).unwrap();
        match i {
            0 => assert!(info.user_pin_count_low() && !info.user_pin_final_try() && !info.user_pin_locked()),
            1 => assert!(info.user_pin_count_low() && info.user_pin_final_try()),
            _ => assert!(info.user_pin_locked()),
        }
    }
    assert!(p.get_token_info(slot).unwrap().user_pin_locked());
    let e = s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::PinLocked, _)), "{e:?}");
    // Another process sees the lock.
    let out = env.cli(&["status", "--json"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"user_pin_locked\":true"),
        "{out:?}"
    );
    // Restarting does not reset it.
    drop(s);
    p.finalize().unwrap();
    let p = env.load();
    let s = p.open_rw_session(slot).unwrap();
    let e = s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap_err();
    assert!(
        matches!(e, CkError::Pkcs11(RvError::PinLocked, _)),
        "after a restart: {e:?}"
    );
    // Nor does editing the counter in the store without the HSM: the header's MAC no longer
    // matches and the token refuses to open, rather than unlocking.
    let db = rows(&env);
    let body: Vec<u8> = db.query_row("SELECT body FROM header", [], |r| r.get(0)).unwrap();
    let mut zeroed = body.clone();
    let n = zeroed.len();
    zeroed[n - 4..].copy_from_slice(&0u32.to_be_bytes());
    db.execute("UPDATE header SET body = ?1", [&zeroed]).unwrap();
    let e = s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap_err();
    assert!(
        !matches!(e, CkError::Pkcs11(RvError::PinIncorrect, _)),
        "an edited counter: {e:?}"
    );
    db.execute("UPDATE header SET body = ?1", [&body]).unwrap();
    let e = s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap_err();
    assert!(matches!(e, CkError::Pkcs11(RvError::PinLocked, _)), "restored: {e:?}");
    // The SO resets it.
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    s.init_pin(&AuthPin::from("new-user-pin-77")).unwrap();
    s.logout().unwrap();
    s.login(UserType::User, Some(&AuthPin::from("new-user-pin-77")))
        .unwrap();
    assert!(!p.get_token_info(slot).unwrap().user_pin_locked());
}

#[test]
fn reinitialising_destroys_every_object() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    aes_token_key(&s, "doomed");
    drop(s);
    p.init_token(Env::slot(&p), &AuthPin::from(SO_PIN), "test").unwrap();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    s.login(UserType::So, Some(&AuthPin::from(SO_PIN))).unwrap();
    s.init_pin(&AuthPin::from(USER_PIN)).unwrap();
    s.logout().unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    assert!(find_one(&s, "doomed").is_none());
    let _ = (ObjectClass::SECRET_KEY, KeyType::AES);
}

/// A process keeps the objects it has used open (and their secrets unsealed while logged in);
/// a change another keygate process (here the CLI) commits must be seen at the very next
/// operation: every keygate commit bumps the store's change counter.
#[test]
fn a_process_with_keys_open_sees_a_keygate_change_at_the_next_operation() {
    pins_in_env();
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    for label in ["destroyed", "revoked", "bystander"] {
        aes_token_key(&s, label);
        assert!(gcm_works(&s, label), "{label} works before the change");
    }
    let (destroyed, revoked) = (find_one(&s, "destroyed").unwrap(), find_one(&s, "revoked").unwrap());
    destroy_by_cli(&env, "destroyed");
    ok(
        &env,
        &[
            "revoke",
            "--token",
            "test",
            "--reason",
            "compromised",
            "--pin-env",
            "KG_USER",
            &uid(&env, "revoked"),
        ],
    );
    let mut iv = [1u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
    assert!(
        matches!(
            s.encrypt(&gcm, destroyed, b"x"),
            Err(CkError::Pkcs11(RvError::KeyHandleInvalid, _))
        ),
        "a key `keygate destroy` removed must be gone at once"
    );
    assert!(
        s.encrypt(&gcm, revoked, b"x").is_err(),
        "a key `keygate revoke` revoked must no longer encrypt, at once"
    );
    assert!(gcm_works(&s, "bystander"), "the other objects still work");
}

/// A change made to the store by a writer that is not keygate (here SQLite directly: the
/// attacker of SECURITY.md) bumps no change counter; the process still sees it within the
/// backstop's 250 ms, when it asks SQLite itself, and refuses what no longer checks.
#[test]
fn a_process_with_keys_open_sees_changes_committed_elsewhere() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    for label in ["deleted", "tampered", "bystander"] {
        aes_token_key(&s, label);
        assert!(gcm_works(&s, label), "{label} works before the change");
    }
    let (deleted, tampered) = (find_one(&s, "deleted").unwrap(), find_one(&s, "tampered").unwrap());
    let c = rows(&env);
    c.execute("DELETE FROM objects WHERE uid = ?1", [uid_of(&c, "deleted")])
        .unwrap();
    let uid = uid_of(&c, "tampered");
    let mut mac: Vec<u8> = c
        .query_row("SELECT mac FROM objects WHERE uid = ?1", [&uid], |r| r.get(0))
        .unwrap();
    mac[0] ^= 1;
    c.execute(
        "UPDATE objects SET mac = ?1 WHERE uid = ?2",
        rusqlite::params![mac, uid],
    )
    .unwrap();
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mut iv = [1u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
    assert!(
        matches!(
            s.encrypt(&gcm, deleted, b"x"),
            Err(CkError::Pkcs11(RvError::KeyHandleInvalid, _))
        ),
        "a key deleted by another process must be gone here too"
    );
    assert!(
        s.encrypt(&gcm, tampered, b"x").is_err(),
        "a record tampered with by another process must be refused here too"
    );
    assert!(gcm_works(&s, "bystander"), "the other objects still work");
}

/// Secrets unsealed while the user was logged in are not usable after logout, even for token
/// keys that stay visible (CKA_PRIVATE=FALSE): their secret is sealed under the DEK, which goes
/// with the login. A public *session* key is what PKCS#11 says it is, usable in a public
/// session (sealed under the process's session key, never stored).
#[test]
fn unsealed_secrets_are_unusable_after_logout() {
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = |token: bool| {
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(token),
                Attribute::Private(false),
                Attribute::Encrypt(true),
            ],
        )
        .unwrap()
    };
    let (token_key, session_key) = (key(true), key(false));
    let mut iv = [1u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
    let before: Vec<Vec<u8>> = [token_key, session_key]
        .iter()
        .map(|&k| s.encrypt(&gcm, k, b"x").unwrap())
        .collect();
    s.logout().unwrap();
    assert!(
        matches!(
            s.encrypt(&gcm, token_key, b"x"),
            Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))
        ),
        "a token key unsealed before logout must need the login again"
    );
    s.encrypt(&gcm, session_key, b"x").unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    // The same key, IV and data give the same bytes: a key kept masked under the old login's
    // memory key and unmasked under the new one would give others, silently.
    for (k, was) in [token_key, session_key].iter().zip(&before) {
        assert_eq!(
            &s.encrypt(&gcm, *k, b"x").unwrap(),
            was,
            "the same key after a new login"
        );
    }
}

/// Issue 16 item 7: a client that has not logged in cannot write what the store cannot read back
/// (a value over the codec's 1 MiB), nor a record over 64 KiB; a logged-in user is held to the
/// codec's limits only. Whatever was accepted reads back, and the token verifies.
#[test]
fn nothing_is_accepted_that_cannot_be_read_back() {
    let env = Env::new();
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    let data = |len: usize, label: &str| {
        vec![
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Value(vec![0x5a; len]),
        ]
    };
    let refused = |r: Result<cryptoki::object::ObjectHandle, CkError>| {
        matches!(r, Err(CkError::Pkcs11(RvError::AttributeValueInvalid, _)))
    };
    assert!(
        refused(s.create_object(&data((1 << 20) + 1, "huge"))),
        "over the codec's limit, without login"
    );
    assert!(
        refused(s.create_object(&data(64 * 1024 + 1, "big"))),
        "over 64 KiB, without login"
    );
    s.create_object(&data(1024, "small")).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(USER_PIN))).unwrap();
    assert!(
        refused(s.create_object(&data((1 << 20) + 1, "huge"))),
        "over the codec's limit, logged in"
    );
    s.create_object(&data(512 * 1024, "large")).unwrap();
    drop(s);
    p.finalize().unwrap();
    let o = env.cli(&["verify", "--token", "test"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let p = env.load();
    let s = p.open_ro_session(Env::slot(&p)).unwrap();
    for (label, len) in [("small", 1024), ("large", 512 * 1024)] {
        let k = s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())]).unwrap();
        assert_eq!(k.len(), 1, "{label}");
        match &s
            .get_attributes(k[0], &[cryptoki::object::AttributeType::Value])
            .unwrap()[0]
        {
            Attribute::Value(v) => assert_eq!(v.len(), len),
            other => panic!("{other:?}"),
        }
    }
}

/// Each thread works on copies of the objects it used last (issue 21: no shared cache line per
/// operation); a change made on another thread of the process must still be seen at this
/// thread's next operation: a destroyed session key, a token key whose CKA_ENCRYPT went to
/// FALSE, a destroyed token key, and a logout, with and without `key_cache`.
#[test]
fn a_thread_sees_what_another_thread_changed_at_its_next_operation() {
    use std::sync::mpsc::channel;
    for extra in ["", "key_cache = true\n"] {
        let env = Env::new_with(extra);
        let p = env.load();
        let admin = Env::user_session(&p);
        let session_key = admin
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(false),
                    Attribute::Label("s".into()),
                ],
            )
            .unwrap();
        for label in ["restricted", "destroyed", "kept"] {
            aes_token_key(&admin, label);
        }
        let (restricted, destroyed, kept) = (
            find_one(&admin, "restricted").unwrap(),
            find_one(&admin, "destroyed").unwrap(),
            find_one(&admin, "kept").unwrap(),
        );
        let (to_worker, from_main) = channel::<()>();
        let (to_main, from_worker) = channel::<()>();
        std::thread::scope(|scope| {
            let p = &p;
            let worker = scope.spawn(move || {
                let s = p.open_rw_session(Env::slot(p)).unwrap();
                let encrypt = |k| {
                    let mut iv = [7u8; 12];
                    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
                    s.encrypt(&gcm, k, b"x").map(|_| ()).map_err(rv_of)
                };
                for k in [session_key, restricted, destroyed, kept] {
                    for _ in 0..3 {
                        encrypt(k).unwrap();
                    }
                }
                to_main.send(()).unwrap();
                from_main.recv().unwrap();
                let after = [session_key, restricted, destroyed, kept].map(encrypt);
                to_main.send(()).unwrap();
                from_main.recv().unwrap();
                (after, encrypt(kept))
            });
            from_worker.recv().unwrap();
            admin.destroy_object(session_key).unwrap();
            admin
                .update_attributes(restricted, &[Attribute::Encrypt(false)])
                .unwrap();
            admin.destroy_object(destroyed).unwrap();
            to_worker.send(()).unwrap();
            from_worker.recv().unwrap();
            admin.logout().unwrap();
            to_worker.send(()).unwrap();
            let (after, after_logout) = worker.join().unwrap();
            assert_eq!(after[0], Err(RvError::KeyHandleInvalid), "{extra}destroyed session key");
            assert_eq!(
                after[1],
                Err(RvError::KeyFunctionNotPermitted),
                "{extra}CKA_ENCRYPT false"
            );
            assert_eq!(after[2], Err(RvError::KeyHandleInvalid), "{extra}destroyed token key");
            assert_eq!(after[3], Ok(()), "{extra}the untouched key still works");
            assert!(after_logout.is_err(), "{extra}after logout: {after_logout:?}");
        });
        drop(admin);
        p.finalize().unwrap();
    }
}

/// Whoever can write the store's directory must not be able to turn keygate's change counter
/// (`<store>.changes`, written in place through a shared mapping) into a write to another file
/// of the user's: a symbolic link planted there is refused with a warning, the file it points
/// to is left as it was, and the token works, asking SQLite about changes instead.
#[test]
fn a_link_planted_as_the_change_counter_writes_nothing_through_it() {
    pins_in_env();
    let env = Env::new();
    let victim = env.path().join("victim");
    std::fs::write(&victim, b"precious contents").unwrap();
    let counter = std::path::PathBuf::from(format!("{}.changes", env.store().display()));
    let _ = std::fs::remove_file(&counter);
    std::os::unix::fs::symlink(&victim, &counter).unwrap();
    let p = env.load();
    let s = Env::user_session(&p);
    aes_token_key(&s, "works");
    assert!(gcm_works(&s, "works"));
    // Another keygate process's change is still seen at the next operation (through SQLite).
    let k = find_one(&s, "works").unwrap();
    destroy_by_cli(&env, "works");
    let mut iv = [1u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
    assert!(matches!(
        s.encrypt(&gcm, k, b"x"),
        Err(CkError::Pkcs11(RvError::KeyHandleInvalid, _))
    ));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious contents");
    assert!(std::fs::symlink_metadata(&counter).unwrap().file_type().is_symlink());
}

/// The lock files beside the store are not followed either: with a link planted as
/// `<store>.lock`, what needs the lock (a login counts its attempt in a commit) fails with
/// `CKR_DEVICE_ERROR`, the file the link names is never created, and once the link is gone the
/// token works as before, nothing lost.
#[test]
fn a_link_planted_as_the_write_lock_is_refused_not_followed() {
    let env = Env::new();
    {
        let p = env.load();
        aes_token_key(&Env::user_session(&p), "kept");
        p.finalize().unwrap();
    }
    let target = env.path().join("created-through-the-link");
    let lock = std::path::PathBuf::from(format!("{}.lock", env.store().display()));
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let p = env.load();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    assert_eq!(
        rv(s.login(UserType::User, Some(&AuthPin::from(USER_PIN)))),
        RvError::DeviceError
    );
    assert!(!target.exists(), "nothing was created through the link");
    drop(s);
    p.finalize().unwrap();
    std::fs::remove_file(&lock).unwrap();
    let p = env.load();
    let s = Env::user_session(&p);
    assert!(gcm_works(&s, "kept"), "the token works again, its key intact");
}

/// SQLite's own files beside the store are not followed either: with links planted as
/// `<store>-wal` and `<store>-shm` (one naming a file of the user's, one naming a file that does
/// not exist), the token cannot be opened (SQLite opens them without following a link), the
/// linked file keeps its contents, nothing is created through the other link, and once the links
/// are gone the token works as before.
#[test]
fn links_planted_as_sqlites_wal_and_shm_are_refused_not_followed() {
    let env = Env::new();
    {
        let p = env.load();
        aes_token_key(&Env::user_session(&p), "kept");
        p.finalize().unwrap();
    }
    let victim = env.path().join("victim");
    std::fs::write(&victim, b"precious contents").unwrap();
    let absent = env.path().join("created-through-the-link");
    let wal = std::path::PathBuf::from(format!("{}-wal", env.store().display()));
    let shm = std::path::PathBuf::from(format!("{}-shm", env.store().display()));
    for (link, target) in [(&wal, &victim), (&shm, &absent), (&wal, &absent), (&shm, &victim)] {
        for f in [&wal, &shm] {
            let _ = std::fs::remove_file(f);
        }
        std::os::unix::fs::symlink(target, link).unwrap();
        let p = env.load();
        let opened = p
            .open_rw_session(Env::slot(&p))
            .and_then(|s| s.login(UserType::User, Some(&AuthPin::from(USER_PIN))));
        assert!(
            opened.is_err(),
            "{} planted: the token opened through it",
            link.display()
        );
        p.finalize().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious contents");
        assert!(!absent.exists(), "nothing was created through the link");
    }
    for f in [&wal, &shm] {
        let _ = std::fs::remove_file(f);
    }
    let p = env.load();
    let s = Env::user_session(&p);
    assert!(gcm_works(&s, "kept"), "the token works again, its key intact");
}

/// A thread remembers that a key passed the usage checks for one mechanism and use
/// (`token/operations.rs`): the verdict must not carry over to another mechanism, another use,
/// another key, or a key whose validity dates are set, nor survive a change to the key.
#[test]
fn a_key_judged_fit_once_is_judged_again_for_anything_else() {
    use cryptoki::mechanism::MechanismType;
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    let key = |allowed: MechanismType| {
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(false),
                Attribute::AllowedMechanisms(vec![allowed]),
            ],
        )
        .unwrap()
    };
    let (gcm_only, cbc_only) = (key(MechanismType::AES_GCM), key(MechanismType::AES_CBC_PAD));
    let mut iv = [3u8; 12];
    let gcm = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
    let cbc = Mechanism::AesCbcPad([4u8; 16]);
    let refused = |r: Result<Vec<u8>, CkError>, rv: RvError| matches!(r, Err(CkError::Pkcs11(got, _)) if got == rv);
    for _ in 0..3 {
        s.encrypt(&gcm, gcm_only, b"data").unwrap();
        assert!(
            refused(s.encrypt(&gcm, cbc_only, b"data"), RvError::MechanismInvalid),
            "another key, restricted to CBC"
        );
        s.encrypt(&gcm, gcm_only, b"data").unwrap();
        assert!(
            refused(s.encrypt(&cbc, gcm_only, b"data"), RvError::MechanismInvalid),
            "the same key with a mechanism it does not allow"
        );
        s.encrypt(&gcm, gcm_only, b"data").unwrap();
        let ct = s.encrypt(&gcm, gcm_only, b"data").unwrap();
        assert!(
            refused(s.decrypt(&gcm, gcm_only, &ct), RvError::KeyFunctionNotPermitted),
            "the same key and mechanism for a use it does not permit"
        );
    }
    // A change to the key: its last day is past.
    let day = |y: &str| cryptoki::types::Date::new_from_str_slice(y, "01", "01").unwrap();
    s.encrypt(&gcm, gcm_only, b"data").unwrap();
    s.update_attributes(gcm_only, &[Attribute::EndDate(day("2001"))])
        .unwrap();
    for _ in 0..2 {
        assert!(
            refused(s.encrypt(&gcm, gcm_only, b"data"), RvError::KeyFunctionNotPermitted),
            "out of service since 2001"
        );
    }
    s.update_attributes(gcm_only, &[Attribute::EndDate(day("2999"))])
        .unwrap();
    for _ in 0..2 {
        s.encrypt(&gcm, gcm_only, b"data").unwrap();
    }
    // A key whose last day is today works today and not tomorrow, with nothing about it
    // changed: its verdict must not have been remembered (`KEYGATE_TEST_TODAY`, debug builds).
    std::env::set_var("KEYGATE_TEST_TODAY", "20500101");
    s.update_attributes(gcm_only, &[Attribute::EndDate(day("2050"))])
        .unwrap();
    for _ in 0..2 {
        s.encrypt(&gcm, gcm_only, b"data").unwrap();
    }
    std::env::set_var("KEYGATE_TEST_TODAY", "20500102");
    assert!(
        refused(s.encrypt(&gcm, gcm_only, b"data"), RvError::KeyFunctionNotPermitted),
        "the day after the key's last day"
    );
    std::env::remove_var("KEYGATE_TEST_TODAY");
    s.update_attributes(gcm_only, &[Attribute::Encrypt(false)]).unwrap();
    assert!(
        refused(s.encrypt(&gcm, gcm_only, b"data"), RvError::KeyFunctionNotPermitted),
        "CKA_ENCRYPT turned off"
    );
}
