//! Loading an HSM's PKCS#11 module once per process.
//!
//! A self-managed root and an hsm-mode token may sit on the same HSM library, and the host may
//! have loaded it too. The library is initialised with `CKF_OS_LOCKING_OK` (SoftHSM2 turns its
//! own locking off when given NULL arguments); "already initialised" is accepted, since the
//! library's state is per process. keygate never finalises it: another user in the process may
//! still need it.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;

use crate::error::{Error, Result};
use crate::model::mechanisms::Pin;

/// The module at `path`, loaded and initialised, and the slot of its token labelled `label`.
///
/// SoftHSM2 reads its tokens once, at `C_Initialize`, and leaves out for the life of the
/// process a token whose file it read while another process was rewriting it (it rewrites the
/// token file on every `C_Login`: several processes starting at once, tests/concurrency.rs).
/// So when keygate has just initialised the library itself — nobody in the process has a
/// session on it yet — and the token is missing, it finalises and initialises again, a few
/// times, before it concludes that there is no such token.
pub fn open_token(path: &Path, label: &str) -> Result<(Pkcs11, Option<Slot>)> {
    let (mut pkcs11, mut fresh) = open(path)?;
    for attempt in 1..=5u64 {
        if !fresh || scan(&pkcs11, label)?.is_some() {
            break;
        }
        log::debug!(
            "no token labelled {label:?} after C_Initialize; initialising {} again",
            path.display()
        );
        let _ = pkcs11.finalize();
        INITIALISED.lock().remove(path);
        std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
        (pkcs11, fresh) = open(path)?;
    }
    let slot = find_token(&pkcs11, label)?;
    Ok((pkcs11, slot))
}

/// The module at `path`, loaded and initialised; true if keygate initialised it just now.
fn open(path: &Path) -> Result<(Pkcs11, bool)> {
    if !path.exists() {
        return Err(Error::HsmUnavailable(format!(
            "HSM module {} not found",
            path.display()
        )));
    }
    let load = || Pkcs11::new(path).map_err(|e| Error::HsmUnavailable(format!("cannot load {}: {e}", path.display())));
    let init = |p: &Pkcs11| p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let failed = |e: CkError| Error::HsmUnavailable(format!("C_Initialize of {}: {e}", path.display()));
    let pkcs11 = load()?;
    let pid = std::process::id();
    let mut ours = INITIALISED.lock();
    match init(&pkcs11) {
        Ok(()) => {}
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            // keygate initialised it in the process this one was forked from: its state (the
            // parent's sessions and login) is a copy that is not this process's. A library
            // that does not notice fork itself is reset, as PKCS#11 asks of a child.
            if ours.get(path).is_some_and(|p| *p != pid) {
                log::info!(
                    "{}: initialised before fork; finalising and initialising it again in this process",
                    path.display()
                );
                pkcs11.finalize().map_err(failed)?;
                let again = load()?;
                init(&again).map_err(failed)?;
                ours.insert(path.to_path_buf(), pid);
                return Ok((again, true));
            }
            ours.entry(path.to_path_buf()).or_insert(pid);
            return Ok((pkcs11, false));
        }
        Err(e) => return Err(failed(e)),
    }
    ours.insert(path.to_path_buf(), pid);
    Ok((pkcs11, true))
}

/// The libraries keygate initialised, with the process that did it (see [`open`]).
static INITIALISED: std::sync::LazyLock<parking_lot::Mutex<std::collections::HashMap<PathBuf, u32>>> =
    std::sync::LazyLock::new(Default::default);

/// An HSM PIN keygate holds itself (a self-managed root's, or an hsm token's with
/// `login = "held"`): from the environment variable or the private file the configuration
/// names. `what` names it in error messages; the value never appears in one.
pub fn credential(env: Option<&String>, file: Option<&PathBuf>, what: &str) -> Result<Pin> {
    if let Some(var) = env {
        let v = zeroize::Zeroizing::new(
            std::env::var(var)
                .map_err(|_| Error::HsmUnavailable(format!("environment variable {var} ({what}) is not set")))?,
        );
        return Ok(Pin::new(v.as_bytes()));
    }
    if let Some(file) = file {
        crate::config::check_trusted(file, true)?;
        let v = zeroize::Zeroizing::new(
            std::fs::read(file).map_err(|e| Error::HsmUnavailable(format!("cannot read {}: {e}", file.display())))?,
        );
        let end = v.iter().rposition(|b| !matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1);
        return Ok(Pin::new(&v[..end]));
    }
    Err(Error::Config(format!("{what}: no `pin_env` or `pin_file`")))
}

/// A PIN as cryptoki takes it (a zeroising box).
pub fn raw_pin(p: &Pin) -> cryptoki::types::RawAuthPin {
    cryptoki::types::RawAuthPin::new(Box::new(p.bytes().to_vec()))
}

/// The slot whose token carries `label`.
///
/// Asked a few times over about half a second before the answer is "none": a file-backed HSM
/// such as SoftHSM2 can miss a token for a moment while another process rewrites the token's
/// file (seen with several processes logging in at once, tests/concurrency.rs).
fn find_token(pkcs11: &Pkcs11, label: &str) -> Result<Option<Slot>> {
    for attempt in 0..8u64 {
        if attempt > 0 {
            log::debug!("no token labelled {label:?} yet; asking the HSM again");
            std::thread::sleep(std::time::Duration::from_millis(15 * attempt));
        }
        if let Some(found) = scan(pkcs11, label)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The slot whose token carries `label`, asked once.
fn scan(pkcs11: &Pkcs11, label: &str) -> Result<Option<Slot>> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| Error::HsmUnavailable(format!("C_GetSlotList: {e}")))?;
    Ok(slots.into_iter().find(|s| {
        pkcs11
            .get_token_info(*s)
            .map(|i| i.label().trim_end() == label)
            .unwrap_or(false)
    }))
}

/// The numeric `CK_RV` of a cryptoki error code (cryptoki keeps only the enum).
pub fn rv_code(e: RvError) -> u64 {
    use cryptoki::error::Rv;
    static CODES: std::sync::LazyLock<Vec<(RvError, u64)>> = std::sync::LazyLock::new(|| {
        (0..0x300u64)
            .filter_map(|c| match Rv::from(c) {
                Rv::Error(RvError::UnknownErrorCode(_)) | Rv::Ok => None,
                Rv::Error(e) => Some((e, c)),
            })
            .collect()
    });
    if let RvError::UnknownErrorCode(c) = e {
        return c;
    }
    CODES
        .iter()
        .find(|(k, _)| *k == e)
        .map_or(pkcs11_sys::CKR_GENERAL_ERROR, |(_, c)| *c)
}
