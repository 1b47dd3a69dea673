//! Rotation is crash-safe: `keygate rotate-dek` and `keygate rotate-root` are killed with SIGKILL
//! at random points, half of the kills inside the re-sealing transaction (timed from the log
//! line that opens it). After every kill the token verifies, with the PIN, and every key
//! encrypts and decrypts through the module.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;

const KEYS: usize = 150;

fn token_with_keys() -> Env {
    std::env::set_var("KG_SO", SO_PIN);
    std::env::set_var("KG_USER", USER_PIN);
    let env = Env::new();
    let p = env.load();
    let s = Env::user_session(&p);
    for i in 0..KEYS {
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Label(format!("k-{i}").into_bytes()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .unwrap();
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

/// Runs `keygate <command>` and kills it: at `delay` after start, or, when `in_tx` is set, at
/// `delay` after it logs that its transaction began. Returns (killed while running, the
/// transaction had begun).
fn run_and_kill(command: &str, delay: Duration, in_tx: bool) -> (bool, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args([
            command,
            "--token",
            "test",
            "--so-pin-env",
            "KG_SO",
            "--pin-env",
            "KG_USER",
        ])
        .env("KEYGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("in one transaction") {
                let _ = tx.send(());
            }
        }
    });
    let began = if in_tx {
        let seen = rx.recv_timeout(Duration::from_secs(30)).is_ok();
        std::thread::sleep(delay);
        seen
    } else {
        std::thread::sleep(delay);
        rx.try_recv().is_ok()
    };
    let running = child.try_wait().unwrap().is_none();
    // SIGKILL: no destructor, no rollback, no checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    (running, began)
}

/// How long an uninterrupted run takes, and how long its transaction part takes.
fn timing(command: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args([
            command,
            "--token",
            "test",
            "--so-pin-env",
            "KG_SO",
            "--pin-env",
            "KG_USER",
        ])
        .env("KEYGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut began = None;
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("in one transaction") {
            began = Some(Instant::now());
        }
    }
    assert!(child.wait().unwrap().success());
    let end = Instant::now();
    (end - start, end - began.expect("the transaction is logged"))
}

fn crash_runs(command: &str, runs: usize) {
    let env = token_with_keys();
    let (whole, tx_part) = timing(command);
    intact(&env, &format!("{command} uninterrupted"));
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
        intact(
            &env,
            &format!("{command} run {run}, killed after {delay:?} (in transaction: {in_tx})"),
        );
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
