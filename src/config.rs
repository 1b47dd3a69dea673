//! The TOML configuration (DESIGN.md §6).
//!
//! Found through `KEYGATE_CONF`, then `$XDG_CONFIG_HOME/keygate/keygate.toml` (or
//! `~/.config/...`), then `/etc/keygate/keygate.toml`. Refused when group- or world-writable;
//! unknown keys are errors. Never holds a PIN: the root token's PIN comes from an environment
//! variable or a 0600 file named here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    #[serde(default)]
    pub audit: Option<AuditConfig>,
}

/// One slot's token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token's label until `C_InitToken` gives it one; also how the CLI names it.
    pub label: String,
    pub mode: Mode,
    /// The sqlite store (self-managed mode).
    pub store: Option<PathBuf>,
    /// A second copy of the store, kept in step with every committed change, that the token
    /// serves from (read-only) when the store is missing or fails verification.
    pub mirror: Option<PathBuf>,
    /// Self-managed mode: check the store's header and every record's MAC when the module
    /// initialises (`C_Initialize`), not only the header at first use (default off).
    #[serde(default)]
    pub verify_on_open: bool,
    /// Where the root key lives (self-managed mode).
    pub root: Option<RootConfig>,
    /// The HSM token every operation is forwarded to (hsm mode).
    pub hsm: Option<HsmConfig>,
    /// Self-managed mode: keep a key's secret unsealed in this process from its first use until
    /// logout, instead of unsealing it for every operation (SECURITY.md; default off).
    #[serde(default)]
    pub key_cache: bool,
    /// Wrong PINs in a row before a PIN locks (default 10).
    #[serde(default = "default_max_failures")]
    pub max_pin_failures: u32,
    /// Argon2id cost for PINs of a newly initialised token.
    #[serde(default)]
    pub pin_kdf: KdfConfig,
    /// What the token may do above the built-in floor (`token/policy.rs`).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Identifiers tied to one key each (`token/pinning.rs`).
    #[serde(default)]
    pub pins: Vec<PinConfig>,
}

/// One pin: a label or `CKA_ID` (hex) and the fingerprint of the only key it may name, as
/// `keygate fingerprint` prints it: `sha256` for key pairs, `kcv` for secret keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    pub label: Option<String>,
    pub id: Option<String>,
    pub sha256: Option<String>,
    pub kcv: Option<String>,
}

/// A token's policy. It can only narrow what the built-in floor allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Mechanism names (`CKM_…`) the token offers; absent: all that pass the floor.
    pub allow: Option<Vec<String>>,
    /// Whether private and secret keys may be made readable (`CKA_SENSITIVE=FALSE`) or
    /// extractable (`CKA_EXTRACTABLE=TRUE`). Off by default.
    #[serde(default)]
    pub allow_export: bool,
    /// The smallest RSA modulus accepted, in bits (at least, and by default, 2048).
    #[serde(default = "default_min_rsa_bits")]
    pub min_rsa_bits: u32,
}

impl std::default::Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            allow: None,
            allow_export: false,
            min_rsa_bits: default_min_rsa_bits(),
        }
    }
}

fn default_min_rsa_bits() -> u32 {
    crate::model::mechanisms::RSA_FLOOR_BITS as u32
}

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    SelfManaged,
    Hsm,
}

/// The HSM token that holds a self-managed token's root key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    /// Path of the HSM's PKCS#11 module.
    pub module: PathBuf,
    /// Label of the token on the HSM.
    pub token: String,
    /// Name of the environment variable holding the HSM user PIN.
    pub pin_env: Option<String>,
    /// A file (mode 0600 or stricter) holding the HSM user PIN.
    pub pin_file: Option<PathBuf>,
}

/// An hsm-mode token: the HSM module and the token on it that keygate forwards to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the HSM's PKCS#11 module.
    pub module: PathBuf,
    /// Label of the token on the HSM.
    pub token: String,
    /// Who logs in to the HSM (default: the application, with its own PIN).
    #[serde(default)]
    pub login: LoginMode,
    /// With `login = "held"`: the environment variable holding the HSM user PIN.
    pub pin_env: Option<String>,
    /// With `login = "held"`: a file (mode 0600 or stricter) holding the HSM user PIN.
    pub pin_file: Option<PathBuf>,
}

/// How an hsm-mode token logs in to its HSM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginMode {
    /// `C_Login` of the application goes to the HSM with the application's PIN.
    #[default]
    PassThrough,
    /// keygate logs in with a credential of its own (`pin_env`/`pin_file`).
    Held,
}

/// Argon2id parameters; bounded when read back from a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl std::default::Default for KdfConfig {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        KdfConfig {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The audit trail (`audit.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSON-lines file events are appended to.
    pub path: PathBuf,
    /// When set, key operations fail (closed) while the trail cannot be written.
    #[serde(default)]
    pub required: bool,
}

fn default_max_failures() -> u32 {
    10
}

/// A TOML error in one line: where (line, column, and the path of the key whose value it is,
/// `token[1].policy.min_rsa_bits`), then what.
fn located(text: &str, path: &serde_path_to_error::Path, e: &toml::de::Error) -> String {
    let path = path.to_string();
    let key = match path.as_str() {
        "" | "." => String::new(),
        p => format!(", `{p}`"),
    };
    let Some(span) = e.span() else {
        return format!("{}{key}", e.message());
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("line {line}, column {column}{key}: {}", e.message())
}

impl Config {
    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| Error::Config(located(text, e.path(), e.inner())))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        for (i, t) in self.tokens.iter().enumerate() {
            if t.label.is_empty() || t.label.len() > 32 {
                return Err(Error::Config(format!("token {i}: label must be 1 to 32 bytes")));
            }
            if self.tokens[..i].iter().any(|o| o.label == t.label) {
                return Err(Error::Config(format!("token label {:?} used twice", t.label)));
            }
            match t.mode {
                Mode::SelfManaged => {
                    if t.store.is_none() || t.root.is_none() {
                        return Err(Error::Config(format!(
                            "token {:?}: self-managed mode needs `store` and `root`",
                            t.label
                        )));
                    }
                    if t.mirror.is_some() && t.mirror == t.store {
                        return Err(Error::Config(format!(
                            "token {:?}: `mirror` must be another file than `store`",
                            t.label
                        )));
                    }
                }
                Mode::Hsm => {
                    let Some(h) = &t.hsm else {
                        return Err(Error::Config(format!("token {:?}: hsm mode needs `hsm`", t.label)));
                    };
                    if t.store.is_some() || t.root.is_some() || t.mirror.is_some() || t.verify_on_open {
                        return Err(Error::Config(format!(
                            "token {:?}: `store`, `root`, `mirror` and `verify_on_open` belong to self-managed tokens",
                            t.label
                        )));
                    }
                    let held = h.login == LoginMode::Held;
                    let sources = usize::from(h.pin_env.is_some()) + usize::from(h.pin_file.is_some());
                    if held && sources != 1 {
                        return Err(Error::Config(format!(
                            "token {:?}: login = \"held\" needs exactly one of `pin_env` or `pin_file`",
                            t.label
                        )));
                    }
                    if !held && sources != 0 {
                        return Err(Error::Config(format!(
                            "token {:?}: `pin_env`/`pin_file` are only for login = \"held\"",
                            t.label
                        )));
                    }
                }
            }
            if t.mode == Mode::SelfManaged && t.hsm.is_some() {
                return Err(Error::Config(format!(
                    "token {:?}: `hsm` belongs to hsm-mode tokens",
                    t.label
                )));
            }
            if !(1..=1000).contains(&t.max_pin_failures) {
                return Err(Error::Config(format!(
                    "token {:?}: max_pin_failures must be 1..=1000",
                    t.label
                )));
            }
            if let Some(r) = &t.root {
                if r.pin_env.is_some() == r.pin_file.is_some() {
                    return Err(Error::Config(format!(
                        "token {:?}: root needs exactly one of `pin_env` or `pin_file`",
                        t.label
                    )));
                }
            }
        }
        Ok(())
    }

    /// Finds, permission-checks, reads and parses the configuration.
    pub fn load() -> Result<Config> {
        let path = Self::locate()?;
        Self::load_from(&path)
    }

    /// Reads and parses the configuration at `path`.
    pub fn load_from(path: &Path) -> Result<Config> {
        check_trusted(path, false)?;
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The configuration file to use.
    pub fn locate() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("KEYGATE_CONF") {
            return Ok(PathBuf::from(p));
        }
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(dir) = xdg {
            let p = dir.join("keygate/keygate.toml");
            if p.exists() {
                return Ok(p);
            }
        }
        let etc = PathBuf::from("/etc/keygate/keygate.toml");
        if etc.exists() {
            return Ok(etc);
        }
        Err(Error::Config(
            "no configuration: set KEYGATE_CONF or create /etc/keygate/keygate.toml".into(),
        ))
    }
}

/// The effective user id of this process (Linux: the second field of `Uid:` in
/// `/proc/self/status`), read without calling into C.
fn effective_uid() -> Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| {
        Error::Config(format!(
            "cannot read /proc/self/status to learn who keygate runs as: {e}"
        ))
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| Error::Config("no effective uid in /proc/self/status".into()))
}

/// Refuses a file keygate is to trust (the configuration, a credential file) unless nobody but
/// root and the user keygate runs as could have changed it or what it points to, as sshd's
/// StrictModes does: the file, and every directory and symbolic link on the way to it — as
/// named, and after links are followed — belong to root or to that user, and no directory or
/// file is writable by group or others. A world-writable directory with the sticky bit (`/tmp`)
/// is allowed: there others cannot remove or rename what root or the user put in it, and that
/// entry must itself belong to root or the user. `private`: the file must also be unreadable by
/// group and others (a credential).
pub fn check_trusted(path: &Path, private: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let euid = effective_uid()?;
    let refuse = |what: &Path, why: String| {
        Err(Error::Config(format!(
            "{}: {} {why}; refusing it (the file and every directory and link on the way to it must belong to root or uid {euid} and be writable by nobody else)",
            path.display(),
            what.display()
        )))
    };
    let absolute =
        std::path::absolute(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let canonical =
        std::fs::canonicalize(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    // The path as named (links themselves, with lstat) and the path links lead to (stat).
    for (chain, follow) in [(&absolute, false), (&canonical, true)] {
        for p in chain.ancestors().collect::<Vec<_>>().into_iter().rev() {
            let meta = if follow {
                std::fs::metadata(p)
            } else {
                std::fs::symlink_metadata(p)
            }
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))?;
            if meta.uid() != 0 && meta.uid() != euid {
                return refuse(p, format!("belongs to uid {}", meta.uid()));
            }
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.mode() & 0o7777;
            let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
            if mode & 0o022 != 0 && !sticky_dir {
                return refuse(p, format!("is writable by group or others (mode {mode:04o})"));
            }
        }
    }
    let mode = std::fs::metadata(&canonical)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?
        .mode();
    if private && mode & 0o077 != 0 {
        return refuse(
            &canonical,
            format!("is readable by group or others (mode {:04o})", mode & 0o7777),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[token]]
label = "app"
mode = "self-managed"
store = "/tmp/x.db"
root = { module = "/usr/lib/softhsm/libsofthsm2.so", token = "root", pin_env = "P" }
"#;

    #[test]
    fn parses_good() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.tokens[0].max_pin_failures, 10);
        assert_eq!(c.tokens[0].mode, Mode::SelfManaged);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let bad = GOOD.replace("mode =", "colour = \"red\"\nmode =");
        assert!(matches!(Config::parse(&bad), Err(Error::Config(_))));
    }

    #[test]
    fn self_managed_needs_root() {
        let bad = GOOD.replace("root = {", "#root = {");
        assert!(matches!(Config::parse(&bad), Err(Error::Config(_))));
    }

    const HSM: &str = r#"
[[token]]
label = "prod"
mode = "hsm"
hsm = { module = "/usr/lib/softhsm/libsofthsm2.so", token = "prod" }
"#;

    #[test]
    fn hsm_tokens() {
        let c = Config::parse(HSM).unwrap();
        assert_eq!(c.tokens[0].hsm.as_ref().unwrap().login, LoginMode::PassThrough);
        let held = HSM.replace(
            "token = \"prod\" }",
            "token = \"prod\", login = \"held\", pin_env = \"P\" }",
        );
        assert_eq!(
            Config::parse(&held).unwrap().tokens[0].hsm.as_ref().unwrap().login,
            LoginMode::Held
        );
        let held_without_pin = HSM.replace("token = \"prod\" }", "token = \"prod\", login = \"held\" }");
        assert!(Config::parse(&held_without_pin).is_err());
        let pin_without_held = HSM.replace("token = \"prod\" }", "token = \"prod\", pin_env = \"P\" }");
        assert!(Config::parse(&pin_without_held).is_err());
        assert!(Config::parse(&HSM.replace("hsm = {", "#hsm = {")).is_err());
        assert!(Config::parse(&format!("{HSM}{GOOD}")).is_ok(), "both modes in one file");
    }

    #[test]
    fn a_wrong_value_is_named_by_line_column_and_key() {
        let bad = GOOD.replace("store =", "policy = { min_rsa_bits = \"10\" }\nstore =");
        let e = Config::parse(&bad).unwrap_err().to_string();
        let line = bad.lines().position(|l| l.contains("min_rsa_bits")).unwrap() + 1;
        assert!(e.contains(&format!("line {line}, column ")), "{e}");
        assert!(
            e.contains("`token[0].policy.min_rsa_bits`") && e.contains("expected u32"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn both_pin_sources_refused() {
        let bad = GOOD.replace("pin_env = \"P\"", "pin_env = \"P\", pin_file = \"/x\"");
        assert!(Config::parse(&bad).is_err());
    }
}
