//! keygate.toml(5) keeps up with the code: every configuration key the parser accepts and every
//! `KEYGATE_*` variable the module or the program reads is described in the page (the program's
//! own pages are generated from its definitions, so they cannot drift).

use std::collections::BTreeSet;

const PAGE: &str = include_str!("../docs/keygate.toml.5");

/// The fields of the configuration's structs: `pub name:` lines of src/config.rs.
fn config_keys() -> BTreeSet<String> {
    let src = include_str!("../src/config.rs");
    src.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        // `tokens` is spelled `token` in the file (serde rename).
        .map(|n| if n == "tokens" { "token".into() } else { n })
        .collect()
}

/// Every `"KEYGATE_…"` string in src/, less those only tests set.
fn environment() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for piece in text.split("\"KEYGATE_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') {
                        out.insert(format!("KEYGATE_{name}"));
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.remove("KEYGATE_TEST_PANIC_IN"); // the panic-guard tests' hook
    out.remove("KEYGATE_TEST_TODAY"); // the validity-date tests' hook (debug builds)
    out.remove("KEYGATE_BENCH_PIN"); // the hidden bench-open's, set by ci/bench
    out
}

#[test]
fn every_configuration_key_is_in_keygate_toml_5() {
    let keys = config_keys();
    assert!(keys.len() > 20, "found only {keys:?}");
    let missing: Vec<_> = keys.iter().filter(|k| !PAGE.contains(k.as_str())).collect();
    assert!(missing.is_empty(), "keygate.toml(5) does not describe {missing:?}");
}

#[test]
fn every_environment_variable_is_in_keygate_toml_5() {
    let vars = environment();
    assert!(vars.contains("KEYGATE_CONF"), "{vars:?}");
    let missing: Vec<_> = vars.iter().filter(|v| !PAGE.contains(v.as_str())).collect();
    assert!(missing.is_empty(), "keygate.toml(5) ENVIRONMENT lacks {missing:?}");
    for section in ["ENVIRONMENT", "FILES", "EXIT STATUS"] {
        assert!(PAGE.contains(&format!(".SH {section}")), "no {section} section");
    }
}
