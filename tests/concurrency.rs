//! Many processes and threads on one token: 4 processes × 2 threads (each thread its own
//! session) generate P-256 key pairs, sign (checked by the p256 crate), find and destroy, for
//! `KEYGATE_LOAD_SECONDS` (default 5; `ci/stress` runs 60). No call may fail, nothing may hang,
//! and at the end the token holds exactly the keys the workers kept: none lost, none twice.
//! The workers are this test binary again, running the ignored test `worker`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

const PROCESSES: usize = 4;
const THREADS: usize = 2;

fn seconds() -> u64 {
    env_number("KEYGATE_LOAD_SECONDS", 5)
}

/// One worker process: THREADS sessions working until the deadline; writes the labels it kept
/// and its operation count to `KEYGATE_LOAD_OUT`.
#[test]
#[ignore = "run by many_processes_and_threads as its worker"]
fn worker() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let out = std::env::var("KEYGATE_LOAD_OUT").expect("run by many_processes_and_threads");
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let p = load_module();
    let me = std::process::id();
    let results: Vec<(Vec<String>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let p = &p;
                scope.spawn(move || {
                    // Login state is the application's: the thread that logs in second finds the
                    // user logged in already (tests below: two logins never both succeed).
                    let s = p.open_rw_session(Env::slot(p)).unwrap();
                    match s.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
                        Ok(())
                        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
                        Err(e) => panic!("C_Login: {e}"),
                    }
                    let (mut kept, mut ops) = (Vec::new(), 0u64);
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let label = format!("w-{me}-{t}-{n}");
                        n += 1;
                        let (pu, pr) = s
                            .generate_key_pair(
                                &Mechanism::EccKeyPairGen,
                                &[
                                    Attribute::EcParams(P256_OID.to_vec()),
                                    Attribute::Token(true),
                                    Attribute::Label(label.clone().into_bytes()),
                                ],
                                &[
                                    Attribute::Token(true),
                                    Attribute::Sign(true),
                                    Attribute::Label(label.clone().into_bytes()),
                                ],
                            )
                            .expect("C_GenerateKeyPair");
                        let digest = [n as u8; 32];
                        let sig = s.sign(&Mechanism::Ecdsa, pr, &digest).expect("C_Sign");
                        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&s, pu)).unwrap();
                        vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
                            .expect("the signature verifies");
                        let found = s
                            .find_objects(&[Attribute::Label(label.clone().into_bytes())])
                            .expect("C_FindObjects");
                        assert_eq!(found.len(), 2, "{label}: public and private key, once each");
                        if n % 2 == 0 {
                            s.destroy_object(pu).expect("C_DestroyObject");
                            s.destroy_object(pr).expect("C_DestroyObject");
                        } else {
                            kept.push(label);
                        }
                        ops += 5;
                    }
                    (kept, ops)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut text = String::new();
    let mut ops = 0;
    for (kept, n) in results {
        ops += n;
        for l in kept {
            text.push_str(&l);
            text.push('\n');
        }
    }
    text.push_str(&format!("ops {ops}\n"));
    std::fs::write(out, text).unwrap();
}

#[test]
fn many_processes_and_threads() {
    let env = Env::new();
    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            let out = env.path().join(format!("worker-{i}.out"));
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "worker", "--nocapture", "--test-threads=1"])
                .env("KEYGATE_LOAD_OUT", &out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    // A worker still running well past the deadline is a deadlock.
    let limit = Duration::from_secs(seconds() + 60);
    let mut kept = std::collections::BTreeSet::new();
    let mut ops = 0u64;
    for (mut child, out) in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(status.success(), "a worker failed: {err}");
                break;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                panic!("a worker did not finish within {limit:?}: deadlock");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for line in std::fs::read_to_string(out).unwrap().lines() {
            match line.strip_prefix("ops ") {
                Some(n) => ops += n.parse::<u64>().unwrap(),
                None => assert!(kept.insert(line.to_string()), "{line} reported twice"),
            }
        }
    }

    // The token holds exactly the kept pairs.
    let p = env.load();
    let s = Env::user_session(&p);
    let mut present = std::collections::BTreeMap::<String, usize>::new();
    for class in [ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
        for k in s.find_objects(&[Attribute::Class(class)]).unwrap() {
            if let Attribute::Label(l) = &s.get_attributes(k, &[AttributeType::Label]).unwrap()[0] {
                *present.entry(String::from_utf8(l.clone()).unwrap()).or_default() += 1;
            }
        }
    }
    for l in &kept {
        assert_eq!(present.get(l), Some(&2), "{l}: lost or duplicated");
    }
    assert_eq!(present.len(), kept.len(), "objects nobody kept are left");
    eprintln!(
        "concurrency: {PROCESSES} processes x {THREADS} threads, {}s, {ops} operations, {} key pairs kept, 0 errors",
        seconds(),
        kept.len()
    );
    assert!(ops > 0);
}

/// Two threads log in at once, on two sessions of one token: the login state is checked and
/// set under one lock, so exactly one succeeds and the other is told the user is already
/// logged in (before, both could pass the check while the PIN was being checked). The same
/// for an SO login racing a user login: never both.
#[test]
fn concurrent_logins_on_one_token_cannot_both_succeed() {
    let env = Env::new();
    let p = std::sync::Arc::new(env.load());
    let slot = Env::slot(&p);
    for (first, second) in [
        (UserType::User, UserType::User),
        (UserType::User, UserType::So),
        (UserType::So, UserType::User),
    ] {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let results: Vec<_> = [first, second]
            .into_iter()
            .map(|who| {
                let (p, barrier) = (p.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let s = p.open_rw_session(slot).unwrap();
                    let pin = if matches!(who, UserType::So) { SO_PIN } else { USER_PIN };
                    barrier.wait();
                    let r = s.login(who, Some(&AuthPin::from(pin)));
                    (s, r)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
        assert_eq!(
            ok,
            1,
            "{first:?} and {second:?}: {:?}",
            results.iter().map(|(_, r)| r).collect::<Vec<_>>()
        );
        for (_, r) in &results {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        cryptoki::error::Error::Pkcs11(
                            cryptoki::error::RvError::UserAlreadyLoggedIn
                                | cryptoki::error::RvError::UserAnotherAlreadyLoggedIn,
                            _
                        )
                    ),
                    "{e:?}"
                );
            }
        }
        let (s, _) = results.into_iter().find(|(_, r)| r.is_ok()).unwrap();
        s.logout().unwrap();
    }
}
