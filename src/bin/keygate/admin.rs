//! The token-administration subcommands: init, verify, backup, restore, change-pin, rotate-dek,
//! rotate-root, revoke, destroy. Each returns one clear sentence as its error; `main` prints it
//! and exits 1. Each that changes a token writes a line to the audit trail.

use std::path::Path;

use keygate_pkcs11::audit::{self, Audit, Event, KeyRef};
use keygate_pkcs11::backend::local::LocalBackend;
use keygate_pkcs11::backend::{Backend, ObjectId, UserType, ADMIN_SESSION};
use keygate_pkcs11::config::{Config, Mode};
use keygate_pkcs11::model::attributes::{attr, class, revocation, AttrMap};
use keygate_pkcs11::model::handles::{ObjectHandle, SessionHandle};
use keygate_pkcs11::model::mechanisms::Pin;
use keygate_pkcs11::token::provider::{Provider, Slot};

use crate::show::report;

/// Where PINs come from: the environment variable named; else, on a terminal, a prompt with
/// echo off (asked twice for a PIN being set); else standard input, one per line in the order
/// the command asks for them (scripts).
pub struct Pins {
    stdin: std::io::Lines<std::io::StdinLock<'static>>,
    terminal: bool,
}

impl Pins {
    pub fn new() -> Pins {
        use std::io::{BufRead, IsTerminal};
        Pins {
            stdin: std::io::stdin().lock().lines(),
            terminal: std::io::stdin().is_terminal(),
        }
    }

    /// A PIN the command checks (a login).
    pub fn get(&mut self, env: &Option<String>, what: &str) -> Result<Pin, String> {
        self.read(env, what, false)
    }

    /// A PIN the command sets: on a terminal it is asked for twice and must match.
    pub fn new_pin(&mut self, env: &Option<String>, what: &str) -> Result<Pin, String> {
        self.read(env, what, true)
    }

    fn read(&mut self, env: &Option<String>, what: &str, confirm: bool) -> Result<Pin, String> {
        if let Some(var) = env {
            let v = zeroize::Zeroizing::new(
                std::env::var(var).map_err(|_| format!("environment variable {var} ({what}) is not set"))?,
            );
            return Ok(Pin::new(v.as_bytes()));
        }
        if !self.terminal {
            let line = zeroize::Zeroizing::new(
                self.stdin
                    .next()
                    .ok_or_else(|| format!("no {what} on standard input"))?
                    .map_err(|e| format!("cannot read the {what}: {e}"))?,
            );
            return Ok(Pin::new(line.trim_end_matches(['\r', '\n']).as_bytes()));
        }
        let prompt = |p: String| {
            rpassword::prompt_password(p)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| format!("cannot read the {what} from the terminal: {e}"))
        };
        let first = prompt(format!("{}: ", capitalised(what)))?;
        if confirm && *prompt(format!("{} again: ", capitalised(what)))? != *first {
            return Err(format!("the two {what}s differ; nothing was changed"));
        }
        Ok(Pin::new(first.as_bytes()))
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// The user PIN from the environment variable named, if one is named (listings and verify work
/// without a PIN, on public records).
pub fn user_pin_if_named(env: &Option<String>) -> Result<Option<Pin>, String> {
    env.as_ref().map(|_| Pins::new().get(env, "user PIN")).transpose()
}

/// The self-managed token `label` of the configuration, for commands that work on its store.
pub fn local(cfg: &Config, label: &str) -> Result<LocalBackend, String> {
    let t = cfg
        .tokens
        .iter()
        .find(|t| t.label == label)
        .ok_or(format!("no token {label:?} in the configuration"))?;
    if t.mode != Mode::SelfManaged {
        return Err(format!(
            "token {label:?} is in hsm mode: its keys live in the HSM, which has its own tools for this"
        ));
    }
    Ok(LocalBackend::new(t.clone()))
}

/// What a rotation needs: the token, the SO PIN and, when the token has one, the user PIN.
fn rotation(
    cfg: &Config,
    token: &str,
    so_pin_env: &Option<String>,
    pin_env: &Option<String>,
) -> Result<(LocalBackend, Pin, Option<Pin>), String> {
    let b = local(cfg, token)?;
    let mut pins = Pins::new();
    let so = pins.get(so_pin_env, "SO PIN")?;
    let user = b
        .status()
        .map_err(|e| format!("cannot open {token:?}: {e}"))?
        .user_pin_initialized
        .then(|| pins.get(pin_env, "user PIN"))
        .transpose()?;
    Ok((b, so, user))
}

/// Which key `keygate rotate-*` replaces.
#[derive(Clone, Copy)]
pub enum Rotate {
    Dek,
    Root,
}

/// `keygate rotate-dek` and `keygate rotate-root`, audited.
pub fn rotate(
    cfg: &Config,
    token: &str,
    which: Rotate,
    so_pin_env: &Option<String>,
    pin_env: &Option<String>,
) -> Result<(), String> {
    let (b, so, user) = rotation(cfg, token, so_pin_env, pin_env)?;
    let (op, r) = match which {
        Rotate::Dek => (
            "keygate rotate-dek",
            b.rotate_dek(&so, user.as_ref(), &progress("re-sealing"))
                .map(|n| format!("{n} secrets re-sealed")),
        ),
        Rotate::Root => (
            "keygate rotate-root",
            b.rotate_root(&so, user.as_ref(), &progress("re-MACing"))
                .map(|()| "root key replaced".to_string()),
        ),
    };
    audited(
        cfg,
        token,
        op,
        Vec::new(),
        r.as_ref().ok().cloned(),
        &audit::result_name(&r),
    )?;
    match (which, r) {
        (Rotate::Dek, Ok(done)) => println!("data key of {token:?} rotated: {done}"),
        (Rotate::Root, Ok(_)) => println!("root key of {token:?} rotated"),
        (Rotate::Dek, Err(e)) => return Err(format!("cannot rotate the data key of {token:?}: {e}")),
        (Rotate::Root, Err(e)) => return Err(format!("cannot rotate the root key of {token:?}: {e}")),
    }
    Ok(())
}

/// `keygate change-pin`, audited (never the PINs).
pub fn change_pin(
    cfg: &Config,
    token: &str,
    so: bool,
    old_pin_env: &Option<String>,
    new_pin_env: &Option<String>,
) -> Result<(), String> {
    let b = local(cfg, token)?;
    let mut pins = Pins::new();
    let who = if so { "SO PIN" } else { "user PIN" };
    let old = pins.get(old_pin_env, &format!("current {who}"))?;
    let new = pins.new_pin(new_pin_env, &format!("new {who}"))?;
    let r = b.change_pin(so, &old, &new);
    audited(
        cfg,
        token,
        "keygate change-pin",
        Vec::new(),
        Some(who.into()),
        &audit::result_name(&r),
    )?;
    r.map_err(|e| format!("cannot change the {who} of {token:?}: {e}"))?;
    println!("{who} of {token:?} changed");
    Ok(())
}

/// `keygate init`: a new token (any mode's backend), the SO and user PINs set; audited.
pub fn init(cfg: &Config, slot: &Slot, so: &Pin, user: &Pin) -> Result<(), String> {
    let (b, token) = (&slot.backend, slot.label.as_str());
    let r = (|| {
        b.init_token(so, token)
            .map_err(|e| (format!("cannot initialise {token:?}: {e}"), e))?;
        b.session_opened(ADMIN_SESSION, true)
            .map_err(|e| (format!("cannot open {token:?}: {e}"), e))?;
        let set = b
            .login(ADMIN_SESSION, UserType::So, so)
            .map_err(|e| (format!("SO login failed: {e}"), e))
            .and_then(|()| {
                b.init_pin(ADMIN_SESSION, user)
                    .map_err(|e| (format!("cannot set the user PIN: {e}"), e))
            });
        b.logout(ADMIN_SESSION);
        b.session_closed(ADMIN_SESSION);
        set
    })();
    let result = r
        .as_ref()
        .map_or_else(|(_, e)| keygate_pkcs11::error::rv_name(e.ck_rv()), |_| "ok".into());
    audited(cfg, token, "keygate init", Vec::new(), None, &result)?;
    r.map_err(|(m, _)| m)?;
    println!("token {token:?} initialised");
    Ok(())
}

/// A bar on standard error while `total` items are worked through, when standard error is a
/// terminal; nothing on a pipe.
pub fn progress(what: &str) -> impl Fn(u64, u64) {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if done == total {
            bar.finish_and_clear();
        }
    }
}

pub fn verify(b: &LocalBackend, token: &str, pin: Option<Pin>, json: bool) -> Result<(), String> {
    // A root key an interrupted rotate-root left in the HSM is destroyed now (logged). A store
    // too damaged for that is what the report below is about.
    if let Err(e) = b.finish_retirement() {
        log::debug!("token {token:?}: no interrupted root rotation finished: {e}");
    }
    let rep = b
        .verify(pin.as_ref())
        .map_err(|e| format!("cannot verify {token:?}: {e}"))?;
    report("verify", token, &rep, json)
}

pub fn backup(b: &LocalBackend, token: &str, to: &Path, json: bool) -> Result<(), String> {
    let rep = b
        .backup(to)
        .map_err(|e| format!("cannot back {token:?} up to {}: {e}", to.display()))?;
    report("backup", token, &rep, json)
}

/// `keygate restore`: an older copy needs the SO PIN, and is audited with what it brings back.
pub fn restore(
    cfg: &Config,
    token: &str,
    from: Option<&Path>,
    so_pin_env: &Option<String>,
    json: bool,
) -> Result<(), String> {
    let b = local(cfg, token)?;
    let source = from.map_or("its mirror".to_string(), |f| f.display().to_string());
    let so_pin = so_pin_env
        .as_ref()
        .map(|_| Pins::new().get(so_pin_env, "SO PIN"))
        .transpose()?;
    let result = b.restore(from, so_pin.as_ref());
    let detail = match &result {
        Ok(rep) if rep.returned.is_empty() => format!("from {source}"),
        Ok(rep) => format!("from {source}; brought back: {}", rep.returned.join("; ")),
        Err(e) => format!("from {source}: {e}"),
    };
    audited(
        cfg,
        token,
        "keygate restore",
        Vec::new(),
        Some(detail),
        &audit::result_name(&result),
    )?;
    let rep = result.map_err(|e| format!("cannot restore {token:?} from {source}: {e}"))?;
    report("restore", token, &rep, json)
}

/// Asks for confirmation of an irreversible command on a terminal; without one, `--yes` must
/// have been given.
pub fn confirm(yes: bool, what: &str, token: &str) -> Result<(), String> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{what} cannot be undone: pass --yes to confirm it (standard input is not a terminal to ask on)"
        ));
    }
    eprint!("{what} cannot be undone. Type the token label ({token}) to confirm: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the confirmation: {e}"))?;
    if line.trim_end() == token {
        Ok(())
    } else {
        Err("not confirmed; nothing was done".into())
    }
}

/// One line in the configuration's audit trail, if it has one, for an administrative act.
fn audited(
    cfg: &Config,
    token: &str,
    op: &str,
    keys: Vec<KeyRef>,
    detail: Option<String>,
    result: &str,
) -> Result<(), String> {
    let Some(a) = &cfg.audit else { return Ok(()) };
    Audit::new(a)
        .write(&Event {
            time: audit::now(),
            pid: std::process::id(),
            token,
            session: ADMIN_SESSION,
            op,
            mechanism: None,
            keys,
            detail,
            result: result.into(),
        })
        .map_err(|e| format!("{e}"))
}

/// Runs `f` in a session of the token layer (as the C ABI's) on `token`, logged in as the
/// user, with the handle and attributes of the object `key` names (its identifier as
/// `keygate list` prints it).
fn with_object<T>(
    cfg: &Config,
    token: &str,
    key: &str,
    pin: &Pin,
    f: impl FnOnce(&Provider, SessionHandle, ObjectHandle, &AttrMap) -> Result<T, String>,
) -> Result<T, String> {
    let id: ObjectId = hex::decode(key).ok().and_then(|v| v.try_into().ok()).ok_or(format!(
        "{key:?} is not an object identifier (32 hex digits, as keygate list prints them)"
    ))?;
    let p = Provider::for_program(cfg);
    let h = p
        .admin_session(token, pin)
        .map_err(|e| format!("login to {token:?} failed: {e}"))?;
    let out = (|| {
        let (handle, attrs) = p
            .object_by_uid(h, &id)
            .map_err(|_| format!("token {token:?} has no object {key}"))?;
        f(&p, h, handle, &attrs)
    })();
    p.end_admin_session(h);
    out
}

/// `keygate revoke`: the key stops signing, encrypting, wrapping and deriving for good.
pub fn revoke(cfg: &Config, token: &str, key: &str, reason: &str, pin: &Pin) -> Result<(), String> {
    let code = revocation::by_name(reason).ok_or(format!(
        "unknown reason {reason:?}: one of {}",
        revocation::NAMES.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
    ))?;
    with_object(cfg, token, key, pin, |p, h, handle, a| {
        if !matches!(
            a.class(),
            Ok(class::PRIVATE_KEY | class::SECRET_KEY | class::PUBLIC_KEY)
        ) {
            return Err(format!("object {key} is not a key"));
        }
        if let Ok(Some(r)) = a.ulong(attr::KEYGATE_REVOKED) {
            return Err(format!(
                "key {key} is already revoked ({})",
                revocation::name(r).unwrap_or("unknown reason")
            ));
        }
        p.revoke_key(h, handle, code)
            .map_err(|e| format!("cannot revoke {key}: {e}"))?;
        println!("key {key} revoked ({reason}): it no longer signs, encrypts, wraps or derives");
        Ok(())
    })
}

/// `keygate destroy KEY`: the object's record is deleted and its bytes overwritten, if
/// `C_DestroyObject` would allow it (`CKA_DESTROYABLE`).
pub fn destroy(cfg: &Config, token: &str, key: &str, pin: &Pin) -> Result<(), String> {
    with_object(cfg, token, key, pin, |p, h, handle, _| {
        p.destroy_by_program(h, handle)
            .map_err(|e| format!("cannot destroy {key}: {e}"))?;
        println!("object {key} destroyed");
        Ok(())
    })
}

/// `keygate destroy --all`: the HSM root key and the store go; no backup can be opened again.
pub fn destroy_all(cfg: &Config, token: &str, so_pin: &Pin) -> Result<(), String> {
    let b = local(cfg, token)?;
    let r = b.destroy_token(so_pin);
    let result = audit::result_name(&r);
    audited(cfg, token, "keygate destroy --all", vec![], None, &result)?;
    r.map_err(|e| format!("cannot destroy {token:?}: {e}"))?;
    println!("token {token:?} destroyed: its root key is gone from the HSM, and with it every copy of its keys");
    Ok(())
}

/// `keygate destroy`: one object (user PIN) or, with `--all`, the whole token (SO PIN), after
/// confirmation.
pub fn destroy_command(
    cfg: &Config,
    token: &str,
    key: Option<&str>,
    all: bool,
    yes: bool,
    pin_env: &Option<String>,
) -> Result<(), String> {
    let what = if all {
        "Destroying the whole token"
    } else {
        "Destroying an object"
    };
    confirm(yes, what, token)?;
    match key {
        Some(key) => destroy(cfg, token, key, &Pins::new().get(pin_env, "user PIN")?),
        None => destroy_all(cfg, token, &Pins::new().get(pin_env, "SO PIN")?),
    }
}
