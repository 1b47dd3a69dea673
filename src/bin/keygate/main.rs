//! `keygate`: token administration (DESIGN.md §7). Errors are one sentence on standard error
//! and exit code 1; listings have `--json`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

mod admin;
mod bench;

use clap::{Parser, Subcommand};
use keygate_pkcs11::model::mechanisms::Pin;
use keygate_pkcs11::token::provider::slots_from;

#[derive(Parser)]
#[command(name = "keygate", version, about = "Administer keygate tokens")]
struct Cli {
    /// Configuration file (default: KEYGATE_CONF, then XDG, then /etc/keygate/keygate.toml).
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create (or re-create, destroying every object) a token: root key in the HSM, store,
    /// SO PIN and user PIN. PINs are read from the environment variables named, or from
    /// standard input (SO PIN on the first line, user PIN on the second).
    Init {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// Environment variable holding the SO PIN.
        #[arg(long)]
        so_pin_env: Option<String>,
        /// Environment variable holding the user PIN.
        #[arg(long)]
        pin_env: Option<String>,
    },
    /// Show each token: initialised or not, PIN state, object count.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the token's objects: identifier, class, key type, label, CKA_ID and flags. Without
    /// a PIN, public objects only.
    List {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// Environment variable holding the user PIN, to see private objects too.
        #[arg(long)]
        pin_env: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check a self-managed token's store: the file's structure, the header's MAC, every
    /// record's MAC, and that the objects are exactly those the header vouches for; with the
    /// user PIN, also that every sealed secret opens. Exit code 0 only if everything passes.
    Verify {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// Environment variable holding the user PIN (a wrong one counts as a wrong PIN).
        #[arg(long)]
        pin_env: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of a self-managed token's store while the token stays in use, and
    /// verify it. The copy is as sealed as the store: useless without the HSM root and a PIN.
    Backup {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The file to create (must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Replace a self-managed token's store with a backup, or without --from rebuild it from
    /// the token's mirror, after checking that the copy verifies under this token's HSM root.
    /// When the store verifies, rebuilding from the mirror changes nothing in the store and
    /// brings the mirror into step with it.
    Restore {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The backup file; without it, the token's mirror.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Environment variable holding the SO PIN: a copy older than the token's HSM anchor
        /// (one that undoes later changes) is restored only with it.
        #[arg(long)]
        so_pin_env: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Change the user PIN (or with --so the SO PIN). Only the data key is re-wrapped. PINs come
    /// from the variables named, else from standard input: old PIN first, new PIN second.
    ChangePin {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// Change the SO PIN instead of the user PIN.
        #[arg(long)]
        so: bool,
        /// Environment variable holding the current PIN.
        #[arg(long)]
        old_pin_env: Option<String>,
        /// Environment variable holding the new PIN.
        #[arg(long)]
        new_pin_env: Option<String>,
    },
    /// Re-seal every secret of a self-managed token under a new data key, in one transaction.
    /// Needs both PINs (the data key is wrapped for each): SO PIN first, user PIN second on
    /// standard input, or the variables named. Processes logged in with the old key must log in
    /// again.
    RotateDek(RotateArgs),
    /// Create a new root key in the HSM, move the self-managed token onto it (every record
    /// re-MACed, the data key re-wrapped, in one transaction) and destroy the old root key.
    /// Backups made before stay tied to the old root key, and so become unusable. PINs as for
    /// rotate-dek.
    RotateRoot(RotateArgs),
    /// Revoke a key of a self-managed token, for good: it no longer signs, encrypts, wraps or
    /// derives, but still verifies and decrypts what was made before. Recorded in the audit
    /// trail; survives backup and restore.
    Revoke {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The key's identifier, as `keygate list` prints it.
        key: String,
        /// Why: compromised, superseded, cessation, affiliation-changed or unspecified.
        #[arg(long)]
        reason: String,
        /// Environment variable holding the user PIN (else read from standard input).
        #[arg(long)]
        pin_env: Option<String>,
    },
    /// Destroy one object of a self-managed token (its record is deleted and overwritten in the
    /// store and its mirror), or with --all the whole token: the HSM root key first, which makes
    /// the store, the mirror and every backup unreadable for good, then the files. Asks for
    /// confirmation on a terminal; --yes confirms in scripts.
    Destroy {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The object's identifier, as `keygate list` prints it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        key: Option<String>,
        /// Destroy the whole token, root key included (needs the SO PIN).
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Environment variable holding the user PIN (one object) or the SO PIN (--all); else
        /// read from standard input.
        #[arg(long)]
        pin_env: Option<String>,
    },
    /// Show the audit trail the configuration names (`[audit] path`): one line per event, oldest
    /// first, optionally only one token's and only the last N.
    Audit {
        /// Only this token's events.
        #[arg(long)]
        token: Option<String>,
        /// Only the last N events (after the token filter).
        #[arg(long)]
        last: Option<usize>,
        /// The trail's own JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Measure a PKCS#11 module (keygate by default, or any other: SoftHSM2, your HSM) on named
    /// workloads. Each workload is checked for correctness first (signatures verify, ciphertexts
    /// decrypt, outside keygate), then timed with one session per thread. Prints ops/s, p50/p99
    /// latency and MB/s. It creates objects on the token (find-10k leaves 10,000 data objects):
    /// use a token made for measuring.
    Bench(BenchArgs),
    /// One run of `keygate bench`'s open-login-10k workload, in a process of its own: prints
    /// the microseconds before C_Login and of C_Login. The PIN comes from KEYGATE_BENCH_PIN.
    #[command(hide = true)]
    BenchOpen {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        token: String,
    },
    /// Write the manual pages, generated from these definitions: keygate.1 and one
    /// keygate-SUBCOMMAND.1 per subcommand (install them under /usr/share/man/man1).
    Man {
        /// The directory to write them into (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the fingerprint of each key with a label or CKA_ID, and the `pins` entry that ties
    /// the identifier to it: SHA-256 of the public key (DER SubjectPublicKeyInfo) for key pairs,
    /// the key check value for secret keys.
    Fingerprint {
        /// Label of the token in the configuration.
        #[arg(long)]
        token: String,
        /// The keys' CKA_LABEL.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        label: Option<String>,
        /// The keys' CKA_ID, in hex.
        #[arg(long)]
        id: Option<String>,
        /// Environment variable holding the user PIN (the HSM's, for an hsm-mode token with
        /// pass-through login), to see private objects too.
        #[arg(long)]
        pin_env: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

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

/// What both rotations take: the token and both PINs.
#[derive(clap::Args)]
struct RotateArgs {
    /// Label of the token in the configuration.
    #[arg(long)]
    token: String,
    /// Environment variable holding the SO PIN.
    #[arg(long)]
    so_pin_env: Option<String>,
    /// Environment variable holding the user PIN.
    #[arg(long)]
    pin_env: Option<String>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The PKCS#11 module (default: libkeygate_pkcs11.so beside this program).
    #[arg(long)]
    module: Option<std::path::PathBuf>,
    /// Label of the token to measure.
    #[arg(long, required_unless_present = "list")]
    token: Option<String>,
    /// Environment variable holding the token's user PIN.
    #[arg(long, required_unless_present = "list")]
    pin_env: Option<String>,
    /// Seconds each workload is timed for.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Threads (one session each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A workload to run (repeatable; default: all; `--list` names them).
    #[arg(long = "workload")]
    workloads: Vec<String>,
    /// Print the workloads' names and stop.
    #[arg(long)]
    list: bool,
    /// Machine-readable output, one JSON object per workload.
    #[arg(long)]
    json: bool,
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
    for sub in top.get_subcommands() {
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
    match cli.command {
        Command::Init {
            token,
            so_pin_env,
            pin_env,
        } => {
            let slot = slots
                .iter()
                .find(|s| s.label == token)
                .ok_or(format!("no token {token:?} in the configuration"))?;
            let mut stdin = std::io::stdin().lock().lines();
            let so = read_pin(&so_pin_env, &mut stdin, "SO PIN")?;
            let user = read_pin(&pin_env, &mut stdin, "user PIN")?;
            admin::init(&cfg, slot, &so, &user)
        }
        Command::Fingerprint {
            token,
            label,
            id,
            pin_env,
            json,
        } => {
            let slot = slots
                .iter()
                .find(|s| s.label == token)
                .ok_or(format!("no token {token:?} in the configuration"))?;
            let ident = match (label, id) {
                (Some(l), _) => (
                    keygate_pkcs11::model::attributes::attr::LABEL,
                    l.as_bytes().to_vec(),
                    format!("label {l:?}"),
                ),
                (None, Some(i)) => {
                    let v = hex::decode(i.replace(':', "")).map_err(|_| format!("--id {i:?} is not hex"))?;
                    (keygate_pkcs11::model::attributes::attr::ID, v, format!("CKA_ID {i}"))
                }
                (None, None) => return Err("give --label or --id".into()),
            };
            fingerprint(slot, ident, &pin_env, json)
        }
        Command::Bench(_) | Command::Man { .. } | Command::BenchOpen { .. } => unreachable!("handled above"),
        Command::Audit { token, last, json } => admin::audit_trail(&cfg, token.as_deref(), last, json),
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
        } => {
            let what = if all {
                "Destroying the whole token"
            } else {
                "Destroying an object"
            };
            admin::confirm(yes, what, &token)?;
            match key {
                Some(key) => admin::destroy(&cfg, &token, &key, &admin::Pins::new().get(&pin_env, "user PIN")?),
                None => admin::destroy_all(&cfg, &token, &admin::Pins::new().get(&pin_env, "SO PIN")?),
            }
        }
        Command::List { token, pin_env, json } => {
            let slot = slots
                .iter()
                .find(|s| s.label == token)
                .ok_or(format!("no token {token:?} in the configuration"))?;
            let pin = admin::user_pin_if_named(&pin_env)?;
            admin::list(slot, pin, json)
        }
        Command::Verify { token, pin_env, json } => {
            let b = admin::local(&cfg, &token)?;
            let pin = admin::user_pin_if_named(&pin_env)?;
            admin::verify(&b, &token, pin, json)
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
        Command::Status { json } => {
            let mut rows = Vec::new();
            for s in &slots {
                let st = s.backend.status().map_err(|e| format!("token {:?}: {e}", s.label))?;
                // hsm-mode tokens do not count objects (that needs an HSM login).
                let count = keygate_pkcs11::token::provider::object_count(s).ok();
                rows.push((s.label.clone(), st, count));
            }
            for (label, st, count) in rows {
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
                    println!(
                        "{label}: {}, user PIN {}, {count_text}",
                        if st.initialized {
                            "initialised"
                        } else {
                            "not initialised"
                        },
                        if st.user_locked() {
                            "locked"
                        } else if st.user_pin_initialized {
                            "set"
                        } else {
                            "not set"
                        }
                    );
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    keygate_pkcs11::sys::process::default_sigpipe();
    keygate_pkcs11::logging::init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}
