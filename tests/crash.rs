//! Crash safety: a child process generates and destroys token keys, changes the user PIN, and
//! tries a wrong PIN then the right one, in a loop, and is killed with SIGKILL at random moments.
//! After every kill the token opens (no false rollback alarm from the HSM anchor), the PIN is the
//! last one a change of returned CKR_OK for (or the one being set when the kill came), every key
//! whose creation returned CKR_OK (and whose destruction did not) is present and encrypts and
//! decrypts, and every key whose destruction returned CKR_OK is gone. The child is this test
//! binary again, running the ignored test `child_loop`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::{AuthPin, Ulong};

/// Kills per run: `KEYGATE_CRASH_KILLS`, else 100.
fn kills() -> usize {
    env_number("KEYGATE_CRASH_KILLS", 100)
}

/// The two user PINs the child changes between.
const PINS: [&str; 2] = [USER_PIN, "crash-other-pin-7"];

/// The child: generate a key, record it; every third round destroy the oldest live one and
/// record that; every fourth, log out, try a wrong PIN and log in again; every fifth, change the
/// user PIN. A line is written (and flushed to disk) only after the call returned CKR_OK; a PIN
/// change is announced before it too.
#[test]
#[ignore = "run by crash_safety as its child process"]
fn child_loop() {
    let ack = std::env::var("KEYGATE_CRASH_ACK").expect("run by crash_safety");
    let start: usize = std::env::var("KEYGATE_CRASH_START").unwrap().parse().unwrap();
    let mut log = std::fs::OpenOptions::new().append(true).open(&ack).unwrap();
    let mut record = |line: String| {
        log.write_all(line.as_bytes()).unwrap();
        log.sync_data().unwrap();
    };
    let mut pin = std::env::var("KEYGATE_CRASH_PIN").unwrap();
    let p = load_module();
    let s = p.open_rw_session(Env::slot(&p)).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(pin.as_str()))).unwrap();
    for i in start.. {
        let label = format!("k-{i}");
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Token(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.clone().into_bytes()),
            ],
        )
        .unwrap();
        record(format!("created {label}\n"));
        if i % 3 == 0 {
            let victim = format!("k-{}", i - 2);
            if let Some(k) = find_one(&s, &victim) {
                // Announced first: a kill between the call and its acknowledgement leaves the
                // key either way, and the parent accepts both.
                record(format!("destroying {victim}\n"));
                s.destroy_object(k).unwrap();
                record(format!("destroyed {victim}\n"));
            }
        }
        if i % 4 == 1 {
            s.logout().unwrap();
            let wrong = s.login(UserType::User, Some(&AuthPin::from("not-the-pin-0000")));
            assert!(
                matches!(wrong, Err(cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _))),
                "{wrong:?}"
            );
            s.login(UserType::User, Some(&AuthPin::from(pin.as_str()))).unwrap();
        }
        if i % 5 == 2 {
            let new = if pin == PINS[0] { PINS[1] } else { PINS[0] };
            record(format!("setting-pin {new}\n"));
            s.set_pin(&AuthPin::from(pin.as_str()), &AuthPin::from(new)).unwrap();
            record(format!("pin {new}\n"));
            pin = new.to_string();
        }
    }
}

#[test]
fn crash_safety() {
    let env = Env::new();
    let ack = env.path().join("ack.log");
    std::fs::write(&ack, "").unwrap();
    let mut next = 0usize;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut checked = 0usize;
    let mut maybe = std::collections::BTreeSet::new();
    let mut pin = PINS[0].to_string();
    for round in 0..kills() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_loop", "--nocapture", "--test-threads=1"])
            .env("KEYGATE_CRASH_ACK", &ack)
            .env("KEYGATE_CRASH_START", next.to_string())
            .env("KEYGATE_CRASH_PIN", &pin)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Somewhere between starting up and a few dozen keys in.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(60 + rng % 240));
        // SAFETY: signals our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child ended on its own: {status:?}"
        );

        // What the child was told succeeded, and what may have happened unacknowledged: a key
        // created but killed before its line, a destruction announced but not acknowledged.
        let text = std::fs::read_to_string(&ack).unwrap();
        let mut live = std::collections::BTreeSet::new();
        let mut gone = std::collections::BTreeSet::new();
        let mut pins = vec![pin.clone()];
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("created", l)) => {
                    live.insert(l.to_string());
                    let n: usize = l[2..].parse().unwrap();
                    next = next.max(n + 1);
                }
                Some(("destroying", l)) => {
                    live.remove(l);
                    maybe.insert(l.to_string());
                }
                Some(("destroyed", l)) => {
                    maybe.remove(l);
                    gone.insert(l.to_string());
                }
                Some(("setting-pin", new)) => pins = vec![pins[0].clone(), new.to_string()],
                Some(("pin", new)) => pins = vec![new.to_string()],
                _ => panic!("round {round}: torn acknowledgement line {line:?}"),
            }
        }
        // The child may have been killed between a generation and its line.
        maybe.insert(format!("k-{next}"));
        next += 1;

        // The token opens, under the PIN of the last acknowledged change, or the one a killed
        // change was setting (PIN failures of the wrong one are reset by the right one).
        let p = env.load();
        let s = p.open_rw_session(Env::slot(&p)).unwrap();
        let opened = pins
            .iter()
            .find(
                |candidate| match s.login(UserType::User, Some(&AuthPin::from(candidate.as_str()))) {
                    Ok(()) => true,
                    Err(cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _)) => false,
                    Err(e) => panic!("round {round}: the token does not open: {e}"),
                },
            )
            .unwrap_or_else(|| panic!("round {round}: none of {pins:?} is the PIN"));
        pin = opened.clone();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&ack)
            .unwrap()
            .write_all(format!("pin {pin}\n").as_bytes())
            .unwrap();
        let mut present = std::collections::BTreeMap::new();
        for k in s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)]).unwrap() {
            let label = match &s.get_attributes(k, &[AttributeType::Label]).unwrap()[0] {
                Attribute::Label(l) => String::from_utf8(l.clone()).unwrap(),
                other => panic!("{other:?}"),
            };
            assert!(
                present.insert(label.clone(), k).is_none(),
                "round {round}: {label} twice"
            );
        }
        for l in &live {
            let k = *present
                .get(l)
                .unwrap_or_else(|| panic!("round {round}: acknowledged key {l} is lost"));
            let mut iv = [7u8; 12];
            let m = Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).unwrap());
            let ct = s.encrypt(&m, k, b"still here").unwrap();
            let m = Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).unwrap());
            assert_eq!(s.decrypt(&m, k, &ct).unwrap(), b"still here");
            checked += 1;
        }
        for l in present.keys() {
            assert!(!gone.contains(l), "round {round}: destroyed key {l} is back");
            assert!(
                live.contains(l) || maybe.contains(l),
                "round {round}: {l} exists but was never acknowledged or in flight"
            );
        }
        drop(s);
        p.finalize().unwrap();
    }
    let text = std::fs::read_to_string(&ack).unwrap();
    let changes = text.lines().filter(|l| l.starts_with("setting-pin ")).count();
    let destroyed = text.lines().filter(|l| l.starts_with("destroyed ")).count();
    eprintln!(
        "crash safety: {} kills survived, {checked} acknowledged keys checked, 0 lost; {destroyed} destructions and {changes} PIN changes made by the children",
        kills()
    );
    assert!(checked > 0);
    assert!(
        changes > 0 && destroyed > 0,
        "the kills must land among PIN changes and destructions too"
    );
}
