//! What the keygate program shows: listings, verification reports, the audit trail, status.
//! Each has a `--json` form, one object per line.

use keygate_pkcs11::backend::local::admin::VerifyReport;
use keygate_pkcs11::backend::{UserType, ADMIN_SESSION};
use keygate_pkcs11::config::Config;
use keygate_pkcs11::model::attributes::{attr, class, key_type, revocation, AttrMap};
use keygate_pkcs11::model::mechanisms::Pin;
use keygate_pkcs11::token::pinning::Fingerprint;
use keygate_pkcs11::token::provider::Slot;

fn class_name(c: u64) -> &'static str {
    match c {
        class::DATA => "data",
        class::CERTIFICATE => "certificate",
        class::PUBLIC_KEY => "public-key",
        class::PRIVATE_KEY => "private-key",
        class::SECRET_KEY => "secret-key",
        _ => "other",
    }
}

fn key_type_name(t: u64) -> &'static str {
    match t {
        key_type::EC => "ec",
        key_type::EC_EDWARDS => "ec-edwards",
        key_type::EC_MONTGOMERY => "ec-montgomery",
        key_type::RSA => "rsa",
        key_type::AES => "aes",
        key_type::GENERIC_SECRET => "generic-secret",
        key_type::SHA256_HMAC => "sha256-hmac",
        key_type::SHA384_HMAC => "sha384-hmac",
        key_type::SHA512_HMAC => "sha512-hmac",
        _ => "other",
    }
}

/// `keygate list`: the token objects, public ones only without a PIN.
/// One object of `keygate list`, as its JSON form.
fn row(id: &[u8], a: &AttrMap) -> serde_json::Value {
    let c = a.class().unwrap_or(u64::MAX);
    let text = |t| String::from_utf8_lossy(a.get(t).unwrap_or_default()).into_owned();
    let flags: Vec<&str> = [
        (attr::PRIVATE, "private"),
        (attr::SENSITIVE, "sensitive"),
        (attr::EXTRACTABLE, "extractable"),
        (attr::MODIFIABLE, "modifiable"),
        (attr::SIGN, "sign"),
        (attr::VERIFY, "verify"),
        (attr::ENCRYPT, "encrypt"),
        (attr::DECRYPT, "decrypt"),
        (attr::WRAP, "wrap"),
        (attr::UNWRAP, "unwrap"),
        (attr::DERIVE, "derive"),
    ]
    .into_iter()
    .filter(|(t, _)| a.flag(*t))
    .map(|(_, n)| n)
    .collect();
    serde_json::json!({
        "uid": hex::encode(id),
        "class": class_name(c),
        "key_type": a.key_type().map(key_type_name),
        "label": text(attr::LABEL),
        "id": hex::encode(a.get(attr::ID).unwrap_or_default()),
        "flags": flags,
        "revoked": a.ulong(attr::KEYGATE_REVOKED).ok().flatten().map(|r| revocation::name(r).unwrap_or("unknown")),
    })
}

pub fn list(slot: &Slot, pin: Option<Pin>, json: bool) -> Result<(), String> {
    let b = &slot.backend;
    let token = &slot.label;
    b.session_opened(ADMIN_SESSION, false)
        .map_err(|e| format!("cannot open {token:?}: {e}"))?;
    let result = (|| -> Result<Vec<serde_json::Value>, String> {
        if let Some(pin) = &pin {
            b.login(ADMIN_SESSION, UserType::User, pin)
                .map_err(|e| format!("login to {token:?} failed: {e}"))?;
        }
        let mut template = AttrMap::new();
        template.set_bool(attr::TOKEN, true);
        let ids = b
            .find(ADMIN_SESSION, &template, pin.is_some())
            .map_err(|e| format!("cannot search {token:?}: {e}"))?;
        let mut rows = Vec::new();
        for id in ids {
            let a = b
                .attributes(ADMIN_SESSION, &id)
                .map_err(|e| format!("cannot read object {}: {e}", hex::encode(id)))?;
            rows.push(row(&id, &a));
        }
        Ok(rows)
    })();
    if pin.is_some() {
        b.logout(ADMIN_SESSION);
    }
    b.session_closed(ADMIN_SESSION);
    let rows = result?;
    for r in &rows {
        if json {
            println!("{r}");
        } else {
            println!(
                "{} {:<12} {:<14} label {:?} id {} [{}]",
                r["uid"].as_str().unwrap_or_default(),
                r["class"].as_str().unwrap_or_default(),
                r["key_type"].as_str().unwrap_or("-"),
                r["label"].as_str().unwrap_or_default(),
                r["id"].as_str().filter(|s| !s.is_empty()).unwrap_or("-"),
                r["flags"]
                    .as_array()
                    .map(|f| f.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            );
        }
    }
    if !json {
        println!(
            "{} objects{}",
            rows.len(),
            if pin.is_some() {
                ""
            } else {
                " (public only: give the user PIN to see private ones)"
            }
        );
    }
    Ok(())
}

/// Prints a verification report; an error when anything failed.
pub fn report(what: &str, token: &str, rep: &VerifyReport, json: bool) -> Result<(), String> {
    if json {
        let mut o = serde_json::to_value(rep).map_err(|e| e.to_string())?;
        o["token"] = token.into();
        o["ok"] = rep.ok().into();
        if let Some(m) = &rep.mirror {
            o["mirror"]["ok"] = (m.problem.is_none() && m.report.ok()).into();
        }
        println!("{o}");
    } else {
        print_report(&format!("{what} {token:?}"), rep);
        if let Some(m) = &rep.mirror {
            match &m.problem {
                Some(p) => println!("mirror {}: cannot be checked: {p}\n  FAILED", m.path),
                None => print_report(&format!("mirror {}", m.path), &m.report),
            }
        }
    }
    if rep.ok() {
        return Ok(());
    }
    let mut failed = Vec::new();
    if !rep.store_ok() {
        failed.push(format!("the store: {}", rep.summary()));
    }
    if let Some(m) = &rep.mirror {
        match &m.problem {
            Some(p) => failed.push(format!("the mirror: {p}")),
            None if !m.report.store_ok() => failed.push(format!("the mirror: {}", m.report.summary())),
            None => {}
        }
    }
    Err(format!(
        "{what} of {token:?} failed: {} (details above)",
        failed.join("; ")
    ))
}

fn print_report(title: &str, rep: &VerifyReport) {
    println!(
        "{title}: {} objects checked, {} sealed secrets opened",
        rep.objects, rep.secrets_opened
    );
    for p in &rep.store_problems {
        println!("  store file damaged: {p}");
    }
    if let Some(p) = &rep.header_problem {
        println!("  header: {p}");
    }
    if let Some(p) = &rep.membership_problem {
        println!("  object set: {p}");
    }
    if let Some(p) = &rep.anchor_problem {
        println!("  HSM anchor: {p}");
    }
    for r in &rep.returned {
        println!("  restored: {r}");
    }
    for f in &rep.failed {
        println!("  object {}: {}", f.id, f.reason);
    }
    for m in &rep.missing {
        println!("  object {m}: missing (the header vouches for it; its record is gone)");
    }
    for u in &rep.unlisted {
        println!("  object {u}: not vouched for by the header (added behind keygate's back)");
    }
    println!("  {}", if rep.store_ok() { "ok" } else { "FAILED" });
}

/// `keygate audit`: the trail's events, oldest first.
pub fn audit_trail(cfg: &Config, token: Option<&str>, last: Option<usize>, json: bool) -> Result<(), String> {
    let a = cfg
        .audit
        .as_ref()
        .ok_or("the configuration has no [audit] section, so there is no trail")?;
    let text = std::fs::read_to_string(&a.path).map_err(|e| format!("cannot read {}: {e}", a.path.display()))?;
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: not an audit event ({e})", a.path.display(), n + 1))?;
        if token.is_none_or(|t| v["token"] == t) {
            events.push(v);
        }
    }
    let skip = last.map_or(0, |n| events.len().saturating_sub(n));
    for v in &events[skip..] {
        if json {
            println!("{v}");
            continue;
        }
        let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
        let keys: Vec<String> = v["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                k["label"]
                    .as_str()
                    .map(|l| format!("{l:?}"))
                    .or_else(|| k["id"].as_str().map(|i| format!("id {i}")))
                    .unwrap_or_else(|| "?".into())
            })
            .collect();
        println!(
            "{} {} pid {} {}{}{}{} -> {}",
            s("time"),
            s("token"),
            v["pid"],
            s("op"),
            v["mechanism"].as_str().map(|m| format!(" {m}")).unwrap_or_default(),
            if keys.is_empty() {
                String::new()
            } else {
                format!(" [{}]", keys.join(", "))
            },
            v["detail"].as_str().map(|d| format!(" ({d})")).unwrap_or_default(),
            s("result")
        );
    }
    Ok(())
}

/// `keygate status`: each configured token's state, or what is wrong with it; one broken token
/// does not hide the others (the exit status says whether any is broken).
pub fn status(slots: &[Slot], json: bool) -> Result<(), String> {
    let mut broken = Vec::new();
    for s in slots {
        let label = &s.label;
        let st = match s.backend.status() {
            Ok(st) => st,
            Err(e) => {
                if json {
                    println!("{{\"token\":{label:?},\"error\":{:?}}}", e.to_string());
                } else {
                    println!("{label}: error: {e}");
                }
                broken.push(label.clone());
                continue;
            }
        };
        // hsm-mode tokens do not count objects (that needs an HSM login).
        let count = keygate_pkcs11::token::provider::object_count(s).ok();
        let (count_json, count_text) = match count {
            Some(n) => (n.to_string(), format!("{n} token objects")),
            None => ("null".to_string(), "token objects not counted".to_string()),
        };
        if json {
            println!(
                "{{\"token\":{label:?},\"initialized\":{},\"user_pin_initialized\":{},\"user_pin_locked\":{},\"objects\":{count_json}}}",
                st.initialized,
                st.user_pin_initialized,
                st.user_locked()
            );
        } else {
            let state = if st.initialized {
                "initialised"
            } else {
                "not initialised"
            };
            let pin = if st.user_locked() {
                "locked"
            } else if st.user_pin_initialized {
                "set"
            } else {
                "not set"
            };
            println!("{label}: {state}, user PIN {pin}, {count_text}");
        }
    }
    match broken.len() {
        0 => Ok(()),
        _ => Err(format!(
            "{} of {} tokens cannot be read: {}",
            broken.len(),
            slots.len(),
            broken.join(", ")
        )),
    }
}

/// `keygate status --orphans`: root keys on the configured root HSM tokens that no configured
/// token uses. A key is in use when a store names it (as its root, or as the key a rotation
/// still has to retire), or when it is labelled for a configured token whose store is missing
/// (that store may yet be restored: its keys are not lost).
pub fn orphans(cfg: &keygate_pkcs11::config::Config, json: bool) -> Result<(), String> {
    use keygate_pkcs11::backend::local::LocalBackend;
    use keygate_pkcs11::config::Mode;
    let mut roots: Vec<(&keygate_pkcs11::config::RootConfig, Vec<&str>)> = Vec::new();
    for t in cfg.tokens.iter().filter(|t| t.mode == Mode::SelfManaged) {
        let Some(r) = &t.root else { continue };
        match roots
            .iter_mut()
            .find(|(o, _)| o.module == r.module && o.token == r.token)
        {
            Some((_, labels)) => labels.push(&t.label),
            None => roots.push((r, vec![&t.label])),
        }
    }
    let backend = |label: &str| {
        let t = cfg
            .tokens
            .iter()
            .find(|t| t.label == label)
            .expect("a configured token");
        LocalBackend::new(t.clone())
    };
    let mut found = 0;
    for (root, labels) in &roots {
        let where_ = format!("HSM token {:?} ({})", root.token, root.module.display());
        let keys = backend(labels[0])
            .root_keys_on_hsm()
            .map_err(|e| format!("cannot list the root keys on {where_}: {e}"))?;
        let mut used = Vec::new();
        let mut missing = Vec::new();
        for label in labels {
            let b = backend(label);
            let ids = b.root_ids_in_use().map_err(|e| format!("token {label:?}: {e}"))?;
            if ids.is_empty() {
                missing.push(format!("keygate-root {label}"));
            }
            used.extend(ids.into_iter().map(|id| id.to_vec()));
        }
        for (label, id) in keys {
            if used.contains(&id) || missing.contains(&label) {
                continue;
            }
            found += 1;
            if json {
                println!(
                    "{{\"root_token\":{:?},\"module\":{:?},\"label\":{label:?},\"id\":{:?}}}",
                    root.token,
                    root.module.display().to_string(),
                    hex::encode(&id)
                );
            } else {
                println!("orphan: {label:?}, CKA_ID {} on {where_}", hex::encode(&id));
            }
        }
    }
    if !json {
        match found {
            0 => println!("no orphaned root keys"),
            _ => println!(
                "no configured store uses these keys; destroying one makes every backup sealed under it unreadable, so check your backups first"
            ),
        }
    }
    Ok(())
}

/// `keygate fingerprint`: the keys with an identifier and the fingerprint to pin each by.
pub fn fingerprint(
    slot: &Slot,
    ident: (u64, Vec<u8>, String),
    pin_env: &Option<String>,
    json: bool,
) -> Result<(), String> {
    use keygate_pkcs11::token::pinning::of_attrs;
    let b = &slot.backend;
    let token = &slot.label;
    b.session_opened(ADMIN_SESSION, false)
        .map_err(|e| format!("cannot open {token:?}: {e}"))?;
    let logged_in = match pin_env {
        Some(_) => {
            let pin = crate::admin::Pins::new().get(pin_env, "user PIN")?;
            b.login(ADMIN_SESSION, UserType::User, &pin)
                .map_err(|e| format!("login to {token:?} failed: {e}"))?;
            true
        }
        None => false,
    };
    let (ty, value, name) = ident;
    let mut template = AttrMap::new();
    template.set(ty, value);
    let found = b.find(ADMIN_SESSION, &template, logged_in);
    let mut rows = Vec::new();
    for id in found.map_err(|e| format!("cannot search {token:?}: {e}"))? {
        let a = b
            .attributes(ADMIN_SESSION, &id)
            .map_err(|e| format!("cannot read a key: {e}"))?;
        let kind = match a.class() {
            Ok(class::PUBLIC_KEY) => "public key",
            Ok(class::PRIVATE_KEY) => "private key",
            Ok(class::SECRET_KEY) => "secret key",
            _ => continue,
        };
        let label = String::from_utf8_lossy(a.get(attr::LABEL).unwrap_or_default()).into_owned();
        let cka_id = hex::encode(a.get(attr::ID).unwrap_or_default());
        rows.push((kind, label, cka_id, of_attrs(&a)));
    }
    if logged_in {
        b.logout(ADMIN_SESSION);
    }
    b.session_closed(ADMIN_SESSION);
    if rows.is_empty() {
        return Err(format!(
            "no key with {name} on {token:?}{}",
            if logged_in {
                ""
            } else {
                " (private keys need --pin-env)"
            }
        ));
    }
    print_fingerprints(token, ty == attr::LABEL, rows, json);
    Ok(())
}

/// The lines of `keygate fingerprint`: each key, its fingerprint, and the pin to configure.
fn print_fingerprints(token: &str, by_label: bool, rows: Vec<(&str, String, String, Option<Fingerprint>)>, json: bool) {
    for (kind, label, cka_id, f) in rows {
        let (ident_key, ident_value) = if by_label {
            ("label", label.clone())
        } else {
            ("id", cka_id.clone())
        };
        if json {
            let mut o = serde_json::json!({"token": token, "class": kind, "label": label, "id": cka_id});
            if let Some(f) = &f {
                o["fingerprint"] = f.to_string().into();
                o["pin"] = serde_json::json!({ ident_key: ident_value, f.config_key(): f.hex() });
            }
            println!("{o}");
        } else {
            match f {
                Some(f) => println!(
                    "{kind} {label:?} (CKA_ID {cka_id}): {f}\n  pins = [{{ {ident_key} = {ident_value:?}, {} = \"{}\" }}]",
                    f.config_key(),
                    f.hex()
                ),
                None => println!(
                    "{kind} {label:?} (CKA_ID {cka_id}): pinned by its public key's fingerprint"
                ),
            }
        }
    }
}
