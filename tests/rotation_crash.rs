//! Rotation is crash-safe: `keygate rotate-dek` and `keygate rotate-root` are killed with SIGKILL
//! at random points, half of the kills inside the re-sealing transaction (timed from the log
//! line that opens it). After every kill the token verifies, with the PIN, and every key
//! encrypts and decrypts through the module.
//!
//! The kills start once the process has logged in to the HSM holding the root keys: SoftHSM2
//! 2.6.1 rewrites its token file in place on every `C_Login`, and a process killed in that
//! window leaves the file empty and the token gone for good (with the root key in it). That is
//! SoftHSM2's own crash-safety, not keygate's, and a real HSM does not write on login; the
//! README tells operators who use SoftHSM2 as the root to keep a copy of its token directory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;

const KEYS: usize = 150;

fn token_with_keys() -> Env {
    std::env::set_var("KG_SO", SO_PIN);
    std::env::set_var("KG_USER", USER_PIN);
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    for i in 0..KEYS {
        aes_token_key(&s, &format!("k-{i}"));
    }
    drop(s);
    p.finalize().unwrap();
    env
}

/// The token verifies with the PIN and every key round-trips through the module.
fn intact(env: &Env, after: &str) {
    let o = env.cli(&["verify", "--token", "test", "--pin-env", "KG_USER", "--json"]);
    assert!(
        o.status.success(),
        "{after}: verify failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["objects"], KEYS as u64, "{after}: {v}");
    assert_eq!(v["secrets_opened"], KEYS as u64, "{after}: {v}");
    let p = load_module();
    let s = Env::user_session(&p);
    for i in 0..KEYS {
        let k = find_one(&s, &format!("k-{i}")).unwrap_or_else(|| panic!("{after}: k-{i} is gone"));
        let mut iv = [3u8; 12];
        let m = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
        let ct = s
            .encrypt(&m, k, b"data")
            .unwrap_or_else(|e| panic!("{after}: k-{i}: {e}"));
        let mut iv = [3u8; 12];
        let m = Mechanism::AesGcm(GcmParams::new(&mut iv, b"", 128.into()).unwrap());
        assert_eq!(s.decrypt(&m, k, &ct).unwrap(), b"data", "{after}: k-{i}");
    }
    drop(s);
    p.finalize().unwrap();
}

/// How many root keys the HSM's root token holds (each test has its own SoftHSM2 token
/// directory, so they are all this token's). Read while no keygate module is loaded here.
fn root_keys() -> usize {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::Attribute;
    let p = Pkcs11::new(SOFTHSM).unwrap();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| p.get_token_info(*s).unwrap().label() == "keygate-root")
        .unwrap();
    let s = p.open_ro_session(slot).unwrap();
    s.login(cryptoki::session::UserType::User, Some(&ROOT_PIN.into()))
        .unwrap();
    let n = s
        .find_objects(&[Attribute::Label(b"keygate-root test".to_vec())])
        .unwrap()
        .len();
    drop(s);
    p.finalize().unwrap();
    n
}

/// Starts `keygate <command>` with both PINs, logging at info level to a pipe.
fn spawn(command: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg(command)
        .args(ROTATION_ARGS)
        .env("KEYGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

const LOGGED_IN: &str = "holding root keys: logged in";
const IN_TX: &str = "in one transaction";

/// Runs `keygate <command>` and kills it at `delay` after it logs that it has logged in to the
/// HSM or, when `in_tx` is set, that its transaction began. Returns (killed while running, the
/// transaction had begun).
fn run_and_kill(command: &str, delay: Duration, in_tx: bool) -> (bool, bool) {
    let mut child = spawn(command);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for marker in [LOGGED_IN, IN_TX] {
                if line.contains(marker) {
                    let _ = tx.send(marker);
                }
            }
        }
    });
    let wait_for = if in_tx { IN_TX } else { LOGGED_IN };
    let mut seen = Vec::new();
    while !seen.contains(&wait_for) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(m) => seen.push(m),
            Err(_) => panic!("{command} never logged {wait_for:?}"),
        }
    }
    std::thread::sleep(delay);
    seen.extend(rx.try_iter());
    let began = seen.contains(&IN_TX);
    let running = child.try_wait().unwrap().is_none();
    // SIGKILL: no destructor, no rollback, no checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    (running, began)
}

/// How long an uninterrupted run takes from its HSM login, and from its transaction's start.
fn timing(command: &str) -> (Duration, Duration) {
    let mut child = spawn(command);
    let (mut login, mut began) = (None, None);
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains(LOGGED_IN) {
            login = Some(Instant::now());
        }
        if line.contains(IN_TX) {
            began = Some(Instant::now());
        }
    }
    assert!(child.wait().unwrap().success());
    let end = Instant::now();
    (
        end - login.expect("the HSM login is logged"),
        end - began.expect("the transaction is logged"),
    )
}

fn crash_runs(command: &str, runs: usize) {
    let env = token_with_keys();
    let (whole, tx_part) = timing(command);
    intact(&env, &format!("{command} uninterrupted"));
    assert_eq!(root_keys(), 1, "{command} uninterrupted: one root key in the HSM");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: Duration| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        bound.mul_f64((rng % 10_000) as f64 / 10_000.0)
    };
    let (mut killed, mut killed_in_tx) = (0, 0);
    for run in 0..runs {
        let in_tx = run % 2 == 1;
        let delay = next(if in_tx { tx_part } else { whole });
        let (running, began) = run_and_kill(command, delay, in_tx);
        killed += running as usize;
        killed_in_tx += (running && began) as usize;
        let after = format!("{command} run {run}, killed after {delay:?} (in transaction: {in_tx})");
        intact(&env, &after);
        // `verify` (in `intact`) destroyed whatever root key an interrupted rotation left.
        assert_eq!(root_keys(), 1, "{after}: one root key in the HSM");
    }
    eprintln!(
        "{command}: {runs} runs, {killed} killed while running, {killed_in_tx} of them inside the transaction; whole run {whole:?}, transaction part {tx_part:?}"
    );
    assert!(
        killed >= runs / 4,
        "too few runs were killed while running to test anything"
    );
    assert!(killed_in_tx >= 1, "no kill landed inside the transaction");
}

#[test]
fn rotate_dek_killed_at_random_points_leaves_a_working_token() {
    crash_runs("rotate-dek", env_number("KEYGATE_ROTATION_KILLS", 20));
}

#[test]
fn rotate_root_killed_at_random_points_leaves_a_working_token() {
    crash_runs("rotate-root", env_number("KEYGATE_ROTATION_KILLS", 20) / 2);
}
