//! `keygate`: token administration (DESIGN.md §7). Errors are one sentence on standard error
//! and exit code 1; listings have `--json`.

use std::process::ExitCode;

mod admin;
mod bench;
mod bench_mechanisms;
mod bench_raw;
mod cli;
mod import;
mod log;
mod show;

use clap::Parser;
use cli::{BenchArgs, Cli, Command, RotateArgs};
use keygate_pkcs11::token::provider::slots_from;

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
        raw,
        ..
    } = a;
    let (token, pin_env) = (token.unwrap_or_default(), pin_env.unwrap_or_default());
    let module = match module {
        Some(m) => m,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program: {e}"))?
            .with_file_name("libkeygate_pkcs11.so"),
    };
    let pin = match raw {
        true => String::new(),
        false => {
            std::env::var(&pin_env).map_err(|_| format!("environment variable {pin_env} (user PIN) is not set"))?
        }
    };
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
    let report = |w: &str, r: Result<bench::Outcome, String>| match r {
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
    };
    if raw {
        bench::run_raw(&o, report);
    } else {
        bench::run(&o, report)?;
    }
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

/// The subcommands that need no configuration (any module, keygate's or not): their result,
/// or the command back for [`run`].
fn without_config(command: Command) -> Result<Command, Result<(), String>> {
    match command {
        Command::Bench(a) => Err(run_bench(a)),
        Command::Man { dir } => Err(man_pages(&dir)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "keygate", &mut std::io::stdout());
            Err(Ok(()))
        }
        Command::BenchOpen { module, token, sign } => Err((|| {
            let pin = std::env::var("KEYGATE_BENCH_PIN").map_err(|_| "KEYGATE_BENCH_PIN is not set".to_string())?;
            let (open, login, signed) = bench::open_once(&module, &token, &pin, sign.as_deref())?;
            println!("{open:.1} {login:.1} {signed:.1}");
            Ok(())
        })()),
        other => Ok(other),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let command = match without_config(cli.command) {
        Ok(c) => c,
        Err(done) => return done,
    };
    let cfg = keygate_pkcs11::token::load_config(cli.config.as_deref()).map_err(|e| e.to_string())?;
    let slots = slots_from(&cfg);
    let slot = |token: &str| {
        slots
            .iter()
            .find(|s| s.label == token)
            .ok_or(format!("no token {token:?} in the configuration"))
    };
    match command {
        Command::Init {
            token,
            so_pin_env,
            pin_env,
        } => {
            let mut pins = admin::Pins::new();
            let so = pins.new_pin(&so_pin_env, "SO PIN")?;
            let user = pins.new_pin(&pin_env, "user PIN")?;
            admin::init(&cfg, slot(&token)?, &so, &user)
        }
        Command::Fingerprint {
            token,
            label,
            id,
            pin_env,
            json,
        } => show::fingerprint(slot(&token)?, identifier(label, id)?, &pin_env, json),
        Command::Bench(_) | Command::Man { .. } | Command::BenchOpen { .. } | Command::Completions { .. } => {
            unreachable!("handled above")
        }
        Command::Audit { token, last, json } => show::audit_trail(&cfg, token.as_deref(), last, json),
        Command::Import(a) => import::run(&cfg, a),
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
        Command::List(a) => show::list(slot(&a.token)?, admin::user_pin_if_named(&a.pin_env)?, a.json),
        Command::Verify(a) => {
            let b = admin::local(&cfg, &a.token)?;
            admin::verify(&b, &a.token, admin::user_pin_if_named(&a.pin_env)?, a.json)
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
        Command::Status { json, orphans: false } => show::status(&slots, json),
        Command::Status { json, orphans: true } => show::orphans(&cfg, json),
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
    log::init();
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
    let result = run(cli);
    log::finish(result.is_ok());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}
