//! The smoke run of `keygate bench` (ci/bench runs the real one): every workload, with tiny
//! durations, against a self-managed token, an hsm-mode token and SoftHSM2 directly, in JSON.
//! Each workload checks its own results against RustCrypto before timing, so a passing smoke
//! run also says every workload is correct on every target.

mod common;

use common::*;

fn bench(env: &Env, module: Option<&str>, token: &str, workloads: &[&str]) -> Vec<serde_json::Value> {
    std::env::set_var("BENCH_TEST_PIN", USER_PIN);
    let mut args = vec![
        "bench",
        "--token",
        token,
        "--pin-env",
        "BENCH_TEST_PIN",
        "--seconds",
        "0.05",
        "--json",
    ];
    if let Some(m) = module {
        args.extend(["--module", m]);
    }
    for w in workloads {
        args.extend(["--workload", w]);
    }
    let out = env.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), workloads.len());
    for (r, w) in rows.iter().zip(workloads) {
        assert_eq!(r["workload"], *w);
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        assert!(r["p99_us"].as_f64().unwrap() >= r["p50_us"].as_f64().unwrap(), "{r}");
    }
    rows
}

const QUICK: &[&str] = &[
    "ecdsa-sign",
    "ecdsa-verify",
    "ed25519-sign",
    "ed25519-verify",
    "aes-gcm-64",
    "aes-gcm-4k",
    "aes-gcm-1m",
    "aes-wrap",
    "sha256-64",
    "random-32",
    "aes-keygen",
    "p256-keygen",
    "login-logout",
];

#[test]
fn every_workload_on_a_self_managed_token() {
    let env = Env::new();
    let mut all = QUICK.to_vec();
    all.push("find-10k");
    let rows = bench(&env, Some(module_path().to_str().unwrap()), "test", &all);
    let gcm = rows.iter().find(|r| r["workload"] == "aes-gcm-4k").unwrap();
    assert!(gcm["mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_workload_in_hsm_mode_and_on_softhsm_directly() {
    let env = Env::hsm();
    bench(&env, Some(module_path().to_str().unwrap()), "test", QUICK);
    // The same SoftHSM2 token keygate forwards to, loaded without keygate.
    bench(&env, Some(SOFTHSM), "hsm-app", QUICK);
}

#[test]
fn a_wrong_workload_or_pin_is_a_clear_error() {
    let env = Env::new();
    std::env::set_var("BENCH_TEST_PIN", USER_PIN);
    let out = env.cli(&[
        "bench",
        "--token",
        "test",
        "--pin-env",
        "BENCH_TEST_PIN",
        "--module",
        module_path().to_str().unwrap(),
        "--workload",
        "nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nope             not run: no workload \"nope\""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not every workload ran: nope"));
    std::env::set_var("BENCH_TEST_PIN", "wrong-pin-0000");
    let out = env.cli(&[
        "bench",
        "--token",
        "test",
        "--pin-env",
        "BENCH_TEST_PIN",
        "--module",
        module_path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("C_Login"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
