//! The smoke run of `keygate bench` (ci/bench runs the real one): every workload, with tiny
//! durations, against a self-managed token, an hsm-mode token and SoftHSM2 directly, in JSON.
//! Each workload checks its own results against RustCrypto before timing, so a passing smoke
//! run also says every workload is correct on every target.

mod common;

use common::*;

/// Runs `keygate bench` with the test PIN (or `pin`), the module, and `extra` arguments.
fn cli(env: &Env, pin: &str, module: &str, extra: &[&str]) -> std::process::Output {
    std::env::set_var("BENCH_TEST_PIN", pin);
    let mut args = vec!["bench", "--pin-env", "BENCH_TEST_PIN", "--module", module];
    args.extend_from_slice(extra);
    env.cli(&args)
}

/// The workloads `keygate bench --list` names, less `find-10k` and `open-login-10k` unless
/// `with_find` (making their 10,000 objects on SoftHSM2 takes a minute).
fn workloads(env: &Env, with_find: bool) -> Vec<String> {
    let out = env.cli(&["bench", "--list"]);
    assert!(out.status.success());
    let all: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(all.len() >= 14 && all.contains(&"find-10k".to_string()), "{all:?}");
    all.into_iter().filter(|w| with_find || !w.ends_with("-10k")).collect()
}

fn bench(env: &Env, module: &str, token: &str, workloads: &[String]) -> Vec<serde_json::Value> {
    let mut args = vec!["--token", token, "--seconds", "0.05", "--json"];
    for w in workloads {
        args.extend(["--workload", w]);
    }
    let out = cli(env, USER_PIN, module, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), workloads.len());
    for (r, w) in rows.iter().zip(workloads) {
        assert_eq!(r["workload"], w.as_str());
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        assert!(r["p99_us"].as_f64().unwrap() >= r["p50_us"].as_f64().unwrap(), "{r}");
    }
    rows
}

#[test]
fn every_workload_on_a_self_managed_token() {
    let env = Env::new();
    let all = workloads(&env, true);
    let rows = bench(&env, module_path().to_str().unwrap(), "test", &all);
    let gcm = rows.iter().find(|r| r["workload"] == "aes-gcm-4k").unwrap();
    assert!(gcm["mb_per_s"].as_f64().unwrap() > 0.0);
    // A new process's initialise + open + login: the login (Argon2id, mostly) is within it.
    let open = rows.iter().find(|r| r["workload"] == "open-login-10k").unwrap();
    let (total, login, kdf) = (
        open["p50_us"].as_f64().unwrap(),
        open["login_p50_us"].as_f64().unwrap(),
        open["argon2id_us"].as_f64().unwrap(),
    );
    assert!(0.0 < login && login < total && kdf > 0.0, "{open}");
}

#[test]
fn every_workload_in_hsm_mode_and_on_softhsm_directly() {
    let env = Env::hsm();
    let quick = workloads(&env, false);
    bench(&env, module_path().to_str().unwrap(), "test", &quick);
    // The same SoftHSM2 token keygate forwards to, loaded without keygate.
    bench(&env, SOFTHSM, "hsm-app", &quick);
}

#[test]
fn a_wrong_workload_or_pin_is_a_clear_error() {
    let env = Env::new();
    let module = module_path();
    let module = module.to_str().unwrap();
    let out = cli(&env, USER_PIN, module, &["--token", "test", "--workload", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nope             not run: no workload \"nope\""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not every workload ran: nope"));
    let out = cli(&env, "wrong-pin-0000", module, &["--token", "test"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("C_Login"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `keygate bench --raw`: the primitives alone, no module (the ceiling column of ci/bench).
/// Every workload with a primitive runs (each checks its result first); those that measure a
/// token are named as not run, and the exit code says not every workload ran.
#[test]
fn raw_primitives_run_without_a_module() {
    let env = Env::new();
    let out = env.cli(&["bench", "--raw", "--seconds", "0.05", "--json"]);
    assert_eq!(out.status.code(), Some(1), "some workloads have no primitive");
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ran: Vec<&str> = rows
        .iter()
        .filter(|r| r["ops"].as_u64().is_some_and(|n| n > 0))
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    for w in [
        "ecdsa-sign",
        "ecdsa-verify",
        "ed25519-sign",
        "aes-gcm-64",
        "aes-gcm-1m",
        "sha256-64",
        "hmac-sha256-64",
        "rsa2048-sign",
    ] {
        assert!(ran.contains(&w), "{w} did not run: {rows:?}");
    }
    let refused: Vec<&str> = rows
        .iter()
        .filter(|r| r["error"].is_string())
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        refused,
        [
            "aes-keygen",
            "aes-keygen-destroy",
            "p256-keygen",
            "find-10k",
            "login-logout",
            "open-login-10k",
            "cold-sign"
        ]
    );
    // A module cannot be named with --raw.
    let out = env.cli(&["bench", "--raw", "--token", "test"]);
    assert_eq!(out.status.code(), Some(1));
}
