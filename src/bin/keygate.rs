//! `keygate`: token administration. This version has `init` and `status`; the full CLI is a
//! later issue.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keygate_pkcs11::config::Config;
use keygate_pkcs11::token::mechanisms::Pin;
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

fn run(cli: Cli) -> Result<(), String> {
    let cfg = match &cli.config {
        Some(p) => Config::load_from(p),
        None => Config::load(),
    }
    .map_err(|e| e.to_string())?;
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
            let b = &slot.backend;
            let admin = keygate_pkcs11::backend::ADMIN_SESSION;
            b.init_token(&so, &token)
                .map_err(|e| format!("cannot initialise {token:?}: {e}"))?;
            b.session_opened(admin, true)
                .map_err(|e| format!("cannot open {token:?}: {e}"))?;
            b.login(admin, keygate_pkcs11::backend::UserType::So, &so)
                .map_err(|e| format!("SO login failed: {e}"))?;
            b.init_pin(admin, &user)
                .map_err(|e| format!("cannot set the user PIN: {e}"))?;
            b.logout(admin);
            b.session_closed(admin);
            println!("token {token:?} initialised");
            Ok(())
        }
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
    keygate_pkcs11::logging::init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::FAILURE
        }
    }
}
