//! `keygate`: token administration (DESIGN.md §7). Errors are one sentence on standard error
//! and exit code 1; listings have `--json`.

use std::io::BufRead;
use std::process::ExitCode;

mod admin;
mod bench;
mod cli;
mod show;

use clap::Parser;
use cli::{BenchArgs, Cli, Command, RotateArgs};
use keygate_pkcs11::model::mechanisms::Pin;
use keygate_pkcs11::token::provider::slots_from;

/// `keygate fingerprint`: the keys with an identifier and the fingerprint to pin each by.
fn fingerprint(
    slot: &keygate_pkcs11::token::provider::Slot,
    ident: (u64, Vec<u8>, String),
    pin_env: &Option<String>,
    json: bool,
) -> Result<(), String> {
    use keygate_pkcs11::backend::{UserType, ADMIN_SESSION};
    use keygate_pkcs11::model::attributes::{attr, class, AttrMap};
    use keygate_pkcs11::token::pinning::of_attrs;
    let b = &slot.backend;
    let token = &slot.label;
    b.session_opened(ADMIN_SESSION, false)
        .map_err(|e| format!("cannot open {token:?}: {e}"))?;
    let logged_in = match pin_env {
        Some(_) => {
            let pin = read_pin(pin_env, &mut std::iter::empty(), "user PIN")?;
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
    for (kind, label, cka_id, f) in rows {
        let (ident_key, ident_value) = if ty == attr::LABEL {
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
    Ok(())
}

fn read_pin(
    env: &Option<String>,
    stdin: &mut impl Iterator<Item = std::io::Result<String>>,
    what: &str,
) -> Result<Pin, String> {
    if let Some(var) = env {
        let v = std::env::var(var).map_err(|_| format!("environment variable {var} ({what}) is not set"))?;
        return Ok(Pin::new(v.as_bytes()));
    }
    let line = stdin
        .next()
        .ok_or_else(|| format!("no {what} on standard input"))?
        .map_err(|e| format!("cannot read the {what}: {e}"))?;
    Ok(Pin::new(line.trim_end_matches(['\r', '\n']).as_bytes()))
}

fn run_bench(a: BenchArgs) -> Result<(), String> {
    if a.list {
        for w in bench::WORKLOADS {
            println!("{w}");
        }
        return Ok(());
    }
    let BenchArgs {
        module,
        token,
        pin_env,
        seconds,
        threads,
        workloads,
        json,
        ..
    } = a;
    let (token, pin_env) = (token.unwrap_or_default(), pin_env.unwrap_or_default());
    let module = match module {
        Some(m) => m,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program: {e}"))?
            .with_file_name("libkeygate_pkcs11.so"),
    };
    let pin = std::env::var(&pin_env).map_err(|_| format!("environment variable {pin_env} (user PIN) is not set"))?;
    if seconds.is_nan() || seconds <= 0.0 || threads == 0 {
        return Err("--seconds and --threads must be positive".into());
    }
    let workloads = if workloads.is_empty() {
        bench::WORKLOADS.iter().map(|w| w.to_string()).collect()
    } else {
        workloads
    };
    let o = bench::Options {
        module,
        token,
        pin,
        seconds,
        threads,
        workloads,
    };
    if !json {
        println!(
            "{:<16} {:>7} {:>12} {:>10} {:>10} {:>10}",
            "workload", "threads", "ops/s", "p50 us", "p99 us", "MB/s"
        );
    }
    let mut incomplete = Vec::new();
    bench::run(&o, |w, r| match r {
        Ok(r) if json => println!("{}", r.json()),
        Ok(r) => println!(
            "{:<16} {:>7} {:>12.0} {:>10.1} {:>10.1} {:>10}",
            r.workload,
            r.threads,
            r.ops_per_s(),
            r.p50_us,
            r.p99_us,
            r.mb_per_s().map_or("-".to_string(), |m| format!("{m:.1}"))
        ),
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"workload": w, "error": e}));
            } else {
                println!("{w:<16} not run: {e}");
            }
            incomplete.push(w.to_string());
        }
    })?;
    if incomplete.is_empty() {
        Ok(())
    } else {
        Err(format!("not every workload ran: {}", incomplete.join(", ")))
    }
}

/// `keygate man`: the manual pages, from the clap definitions, so they never drift from `--help`.
fn man_pages(dir: &std::path::Path) -> Result<(), String> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let top = Cli::command();
    let write = |name: &str, cmd: clap::Command| -> Result<(), String> {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(|e| format!("cannot render {name}.1: {e}"))?;
        std::fs::write(&path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("{}", path.display());
        Ok(())
    };
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("keygate-{}", sub.get_name());
        write(&name, sub.clone().name(name.clone()))?;
    }
    write("keygate", top)
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        // Any module, keygate's configuration or not.
        Command::Bench(a) => return run_bench(a),
        Command::Man { dir } => return man_pages(&dir),
        Command::BenchOpen { module, token } => {
            let pin = std::env::var("KEYGATE_BENCH_PIN").map_err(|_| "KEYGATE_BENCH_PIN is not set".to_string())?;
            let (open, login) = bench::open_once(&module, &token, &pin)?;
            println!("{open:.1} {login:.1}");
            return Ok(());
        }
        _ => {}
    }
    let cfg = keygate_pkcs11::token::load_config(cli.config.as_deref()).map_err(|e| e.to_string())?;
    let slots = slots_from(&cfg);
    let slot = |token: &str| {
        slots
            .iter()
            .find(|s| s.label == token)
            .ok_or(format!("no token {token:?} in the configuration"))
    };
    match cli.command {
        Command::Init {
            token,
            so_pin_env,
            pin_env,
        } => {
            let mut stdin = std::io::stdin().lock().lines();
            let so = read_pin(&so_pin_env, &mut stdin, "SO PIN")?;
            let user = read_pin(&pin_env, &mut stdin, "user PIN")?;
            admin::init(&cfg, slot(&token)?, &so, &user)
        }
        Command::Fingerprint {
            token,
            label,
            id,
            pin_env,
            json,
        } => fingerprint(slot(&token)?, identifier(label, id)?, &pin_env, json),
        Command::Bench(_) | Command::Man { .. } | Command::BenchOpen { .. } => unreachable!("handled above"),
        Command::Audit { token, last, json } => show::audit_trail(&cfg, token.as_deref(), last, json),
        Command::Revoke {
            token,
            key,
            reason,
            pin_env,
        } => {
            let pin = admin::Pins::new().get(&pin_env, "user PIN")?;
            admin::revoke(&cfg, &token, &key, &reason, &pin)
        }
        Command::Destroy {
            token,
            key,
            all,
            yes,
            pin_env,
        } => admin::destroy_command(&cfg, &token, key.as_deref(), all, yes, &pin_env),
        Command::List { token, pin_env, json } => show::list(slot(&token)?, admin::user_pin_if_named(&pin_env)?, json),
        Command::Verify { token, pin_env, json } => {
            let b = admin::local(&cfg, &token)?;
            admin::verify(&b, &token, admin::user_pin_if_named(&pin_env)?, json)
        }
        Command::Backup { token, to, json } => admin::backup(&admin::local(&cfg, &token)?, &token, &to, json),
        Command::Restore {
            token,
            from,
            so_pin_env,
            json,
        } => admin::restore(&cfg, &token, from.as_deref(), &so_pin_env, json),
        Command::ChangePin {
            token,
            so,
            old_pin_env,
            new_pin_env,
        } => admin::change_pin(&cfg, &token, so, &old_pin_env, &new_pin_env),
        Command::RotateDek(RotateArgs {
            token,
            so_pin_env,
            pin_env,
        }) => admin::rotate(&cfg, &token, admin::Rotate::Dek, &so_pin_env, &pin_env),
        Command::RotateRoot(RotateArgs {
            token,
            so_pin_env,
            pin_env,
        }) => admin::rotate(&cfg, &token, admin::Rotate::Root, &so_pin_env, &pin_env),
        Command::Status { json } => show::status(&slots, json),
    }
}

/// The identifier `keygate fingerprint` looks keys up by: (attribute, value, how to name it).
fn identifier(label: Option<String>, id: Option<String>) -> Result<(u64, Vec<u8>, String), String> {
    use keygate_pkcs11::model::attributes::attr;
    match (label, id) {
        (Some(l), _) => Ok((attr::LABEL, l.as_bytes().to_vec(), format!("label {l:?}"))),
        (None, Some(i)) => {
            let v = hex::decode(i.replace(':', "")).map_err(|_| format!("--id {i:?} is not hex"))?;
            Ok((attr::ID, v, format!("CKA_ID {i}")))
        }
        (None, None) => Err("give --label or --id".into()),
    }
}

fn main() -> ExitCode {
    keygate_pkcs11::sys::process::default_sigpipe();
    keygate_pkcs11::logging::init();
    // A usage error exits 1 like every other error (the README's promise); --help and
    // --version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}
