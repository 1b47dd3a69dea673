//! PKCS#11 semantics with no C types: slots and tokens, sessions and login state, object
//! handles, the attribute and usage policy, and operations. Guards both backends alike.

pub mod admin;
mod audited;
pub mod handles;
mod keys;
pub mod object;
mod objects;
pub mod operations;
pub mod pinning;
pub mod policy;
pub mod provider;
pub mod session;

pub use provider::{provider, Provider};

use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};

/// Loads the configuration at `path` (else where [`Config::locate`] finds it) and checks what
/// only the layers below know: the policy against the floor, the key pins, the PIN KDF bounds.
/// Both the module (`C_Initialize`) and the `keygate` program load it this way.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let cfg = match path {
        Some(p) => Config::load_from(p)?,
        None => Config::load()?,
    };
    check_config(&cfg).map_err(
        |e| match (e, path.map(Path::to_path_buf).or_else(|| Config::locate().ok())) {
            (Error::Config(m), Some(p)) => Error::Config(format!("{}: {m}", p.display())),
            (other, _) => other,
        },
    )?;
    Ok(cfg)
}

/// The checks of [`load_config`] on a parsed configuration.
pub fn check_config(cfg: &Config) -> Result<()> {
    for t in &cfg.tokens {
        crate::backend::local::vault::KdfParams::from(t.pin_kdf).check()?;
        policy::Policy::check_config(&t.label, &t.policy).map_err(Error::Config)?;
        pinning::Pins::check_config(&t.label, &t.pins).map_err(Error::Config)?;
    }
    Ok(())
}
