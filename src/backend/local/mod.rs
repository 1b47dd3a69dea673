//! The self-managed backend: keygate keeps the keys, sealed under a KEK that only the HSM plus
//! the PIN can re-create (DESIGN.md §3), in a sqlite store (§4), and does the crypto in-process.
//!
//! Layers: `store` (raw rows, no plaintext) ↔ `vault` (sealing and MACs, no I/O) ↔ this module
//! (records and login state) ↔ `token/` (PKCS#11 semantics). Secrets are unsealed per
//! operation and live in zeroising buffers.

pub mod admin;
pub mod anchor;
mod blocks;
pub mod codec;
mod commit;
pub mod header;
mod keys;
mod lock;
mod material;
mod members;
mod mirror;
mod objects;
mod ops;
mod pins;
mod restore;
pub mod root;
#[cfg(feature = "openssl")]
mod rsa;
pub mod store;
mod tx;
mod unlock;
pub mod vault;
mod view;

use crate::fastmap::FastMap;
use std::sync::Arc;

use crossbeam_utils::sync::ShardedLock;
use parking_lot::Mutex;

use self::commit::Change;
use self::header::{Credential, Header};
use self::root::Root;
use self::store::Store;
use self::unlock::{HeldDek, UnlockState, Unlocked};
use self::vault::{KdfParams, Key32, Purpose, Role};
use crate::backend::TokenStatus;
use crate::config::TokenConfig;
use crate::crypto;
use crate::error::{Error, Result};
use crate::model::mechanisms::{Pin, PIN_MAX, PIN_MIN};
use crate::sys::secret_page::HeldKey;

pub(super) const HEADER_DOMAIN: &[u8] = b"keygate/v1/header";

/// A session object: same shape as a stored record, kept in memory.
struct SessionObject {
    session: u64,
    opened: Arc<objects::Opened>,
}

/// One self-managed token.
pub struct LocalBackend {
    cfg: TokenConfig,
    /// This backend among every one this process made (`view.rs`).
    id: u64,
    /// The store once opened, read without a lock or a shared reference count; `opening`
    /// serialises opening it.
    store: arc_swap::ArcSwapOption<Store>,
    opening: Mutex<()>,
    root: Mutex<Option<Arc<Root>>>,
    unlocked: UnlockState,
    /// Read when a thread has no current copy of a session object (`view.rs`); written when
    /// one is made, changed or destroyed, which moves its generation.
    session_objects: view::Watched<FastMap<crate::backend::ObjectId, SessionObject>>,
    /// Seals the secrets of public session objects (`objects.rs`, `public_session`): random,
    /// made at first need, never stored.
    session_key: std::sync::OnceLock<HeldKey>,
    opened: Mutex<objects::OpenedCache>,
    /// Moves whenever something is taken out of `opened` or the store is replaced (`view.rs`).
    opened_generation: std::sync::atomic::AtomicU64,
    /// The slots holding secrets unsealed under `key_cache`, emptied at logout wherever copies
    /// of their objects are.
    cached_secrets: Mutex<Vec<std::sync::Weak<Mutex<Option<ops::Secret>>>>>,
    /// The records this process has checked against the header's member digest (`members.rs`).
    members: Mutex<Option<Arc<members::MemberSet>>>,
    /// Held by every commit and by every comparison with the HSM anchor (`lock.rs`).
    write_lock: lock::FileLock,
    /// Held across a PIN check (`lock.rs`).
    login_lock: lock::FileLock,
    /// Whether `keygate verify` judges the store against the HSM anchor (not for a backup).
    judged: bool,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("label", &self.cfg.label)
            .finish_non_exhaustive()
    }
}

/// Whether a file can be made in `dir` (made and removed again).
fn tempfile_probe(dir: &std::path::Path) -> bool {
    let probe = dir.join(format!(".keygate-probe-{}", std::process::id()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    if made {
        let _ = std::fs::remove_file(&probe);
    }
    made
}

pub(super) fn check_pin_len(pin: &Pin) -> Result<()> {
    if (PIN_MIN..=PIN_MAX).contains(&pin.bytes().len()) {
        Ok(())
    } else {
        Err(Error::PinLenRange)
    }
}

impl LocalBackend {
    pub fn new(cfg: TokenConfig) -> LocalBackend {
        let beside = |suffix: &str| {
            [&cfg.store, &cfg.mirror]
                .into_iter()
                .flatten()
                .map(|p| std::path::PathBuf::from(format!("{}{suffix}", p.display())))
                .collect()
        };
        let (write_lock, login_lock) = (
            lock::FileLock::new(beside(".lock")),
            lock::FileLock::new(beside(".login-lock")),
        );
        LocalBackend {
            write_lock,
            login_lock,
            judged: true,
            cfg,
            id: view::new_backend_id(),
            store: arc_swap::ArcSwapOption::empty(),
            opening: Mutex::new(()),
            root: Mutex::new(None),
            unlocked: UnlockState(ShardedLock::new(Unlocked::default())),
            session_objects: view::Watched::new(FastMap::default()),
            session_key: std::sync::OnceLock::new(),
            opened: Mutex::new(objects::OpenedCache::default()),
            opened_generation: std::sync::atomic::AtomicU64::new(0),
            cached_secrets: Mutex::new(Vec::new()),
            members: Mutex::new(None),
        }
    }

    fn store_path(&self) -> Result<&std::path::Path> {
        self.cfg
            .store
            .as_deref()
            .ok_or_else(|| Error::Config("no store path".into()))
    }

    /// The store, opened on first use; `None` if the token was never initialised.
    fn store_opt(&self) -> Result<Option<Arc<Store>>> {
        if let Some(s) = self.store.load_full() {
            return Ok(Some(s));
        }
        let guard = self.opening.lock();
        if let Some(s) = self.store.load_full() {
            return Ok(Some(s));
        }
        let Some(s) = self.open_store()? else {
            return Ok(None);
        };
        let s = Arc::new(s);
        self.set_store(Some(s.clone()));
        drop(guard);
        self.anchor_if_new(&s);
        Ok(Some(s))
    }

    /// Puts `s` in place of the store this backend had (`None`: opened again at next use).
    fn set_store(&self, s: Option<Arc<Store>>) {
        self.store.store(s);
        self.bump_opened();
    }

    /// A store written before anchors (epoch 0) whose token has no anchor yet is anchored at
    /// its first open: one commit that advances the epoch names it in the HSM.
    fn anchor_if_new(&self, s: &Store) {
        let unanchored = self.judged
            && s.header()
                .ok()
                .flatten()
                .and_then(|(body, _)| Header::decode(&body).ok())
                .is_some_and(|h| h.epoch == 0);
        if !unanchored {
            return;
        }
        match self.anchor_v1_store() {
            Ok(()) => log::info!("token {:?}: anchored in the HSM root token", self.cfg.label),
            Err(e) => log::warn!(
                "token {:?}: could not anchor the store in the HSM yet ({e}); a rollback of it is not detected until it is",
                self.cfg.label
            ),
        }
    }

    /// Opens the store and checks it: its header's MAC and, with `verify_on_open`, every
    /// record. With a mirror, a store that is missing, does not open or fails the check is
    /// replaced by the mirror, read-only for objects, and that is logged as an error.
    fn open_store(&self) -> Result<Option<Store>> {
        let path = self.store_path()?;
        let primary = if path.exists() {
            Store::open(path, false).and_then(|s| self.check_on_open(&s).map(|()| Some(s)))
        } else {
            Ok(None)
        };
        let Some(mirror) = self.cfg.mirror.as_deref() else {
            return primary;
        };
        // Asked only when the store holds no token (not at every start-up). A mirror that cannot
        // be read counts as holding one: falling back to it fails loudly below instead of the
        // token passing for uninitialised.
        let mirror_holds_token = || {
            mirror.exists()
                && Store::open(mirror, false)
                    .and_then(|s| s.header())
                    .map_or(true, |h| h.is_some())
        };
        let (why, failure) = match primary {
            Ok(Some(s)) if s.header()?.is_some() || !mirror_holds_token() => {
                return Ok(Some(s.mirrored(mirror)?));
            }
            Ok(Some(_)) => ("holds no token".to_string(), None),
            Ok(None) if !mirror_holds_token() => return Ok(None),
            Ok(None) => ("is missing".to_string(), None),
            Err(e) => (format!("cannot be used ({e})"), Some(e)),
        };
        let fallback = Store::fallback(mirror).and_then(|s| {
            if s.header()?.is_none() {
                return Err(Error::Store("it holds no token".into()));
            }
            self.check_on_open(&s).map(|()| s)
        });
        match fallback {
            Ok(s) => {
                log::error!(
                    "token {:?}: the store {} {why}; serving from the mirror {}, read-only, until `keygate restore --token {}` rebuilds the store",
                    self.cfg.label,
                    path.display(),
                    mirror.display(),
                    self.cfg.label
                );
                Ok(Some(s))
            }
            Err(e) => {
                log::error!(
                    "token {:?}: the store {} {why}, and its mirror {} cannot serve either: {e}",
                    self.cfg.label,
                    path.display(),
                    mirror.display()
                );
                // The store's own failure says best what is wrong (a missing HSM fails both).
                Err(failure.unwrap_or(e))
            }
        }
    }

    /// `verify_on_open`: opens and checks the store now (`C_Initialize`) rather than at first
    /// use. A store that fails is refused (or replaced by the mirror); either is logged.
    pub fn open_now(&self) {
        match self.store_opt() {
            Ok(Some(s)) => log::info!(
                "token {:?}: {} verified at initialisation",
                self.cfg.label,
                s.path().display()
            ),
            Ok(None) => {}
            Err(e) => log::error!("token {:?}: refused at initialisation: {e}", self.cfg.label),
        }
    }

    /// The check a store passes before the token serves from it: its header's MAC, the HSM
    /// anchor naming that header, and with `verify_on_open` every record.
    fn check_on_open(&self, s: &Store) -> Result<()> {
        let Some((body, mac)) = s.header()? else {
            return Ok(());
        };
        self.verify_header(&body, &mac)?;
        if !self.judged {
            return Ok(());
        }
        if let Some(why) = self.anchor_problem(s)? {
            log::error!("token {:?}: refused: {why}", self.cfg.label);
            return Err(Error::Integrity(why));
        }
        // With a mirror, the record set is checked now, so that a store failing it is replaced
        // by the mirror. Without one the store still opens (so that `keygate verify` can count a
        // PIN and report on it), and every read of its records is refused.
        if self.cfg.mirror.is_some() {
            self.check_member_set(s)?;
        }
        if self.cfg.verify_on_open {
            let rep = self.verify_store(s, None)?;
            if !rep.ok() {
                return Err(Error::Integrity(format!(
                    "{} fails verification ({})",
                    s.path().display(),
                    rep.summary()
                )));
            }
        }
        Ok(())
    }

    fn store(&self) -> Result<Arc<Store>> {
        self.store_opt()?.ok_or(Error::UserPinNotInitialized)
    }

    fn root(&self) -> Result<Arc<Root>> {
        let mut guard = self.root.lock();
        if let Some(r) = &*guard {
            return Ok(r.clone());
        }
        let cfg = self.cfg.root.as_ref().ok_or_else(|| Error::Config("no root".into()))?;
        // Not logged here: the error travels to the caller, and the C boundary logs it once.
        let r = Arc::new(Root::open(cfg)?);
        *guard = Some(r.clone());
        Ok(r)
    }

    fn hw(&self, h: &Header, purpose: Purpose) -> Result<Key32> {
        self.root()?.hmac(&h.root_id, &vault::hw_input(&h.uuid, purpose))
    }

    /// K_int for the token `h` describes, cached per token identity. A new root key (`keygate
    /// rotate-root`) gives a new K_int and keeps the DEK; another token (re-initialised) drops
    /// the DEK too.
    fn k_int(&self, h: &Header) -> Result<Key32> {
        let ident = (h.uuid, h.root_id);
        {
            let u = self.unlocked.read();
            if u.ident == Some(ident) {
                if let Some(k) = &u.k_int {
                    return Ok(k.key());
                }
            }
        }
        let k = vault::integrity_key(&*self.hw(h, Purpose::Integrity)?);
        let mut u = self.unlocked.write();
        if u.ident.map(|(uuid, _)| uuid) != Some(h.uuid) {
            *u = Unlocked::default();
        }
        u.ident = Some(ident);
        u.k_int = Some(HeldKey::new(&k));
        Ok(k)
    }

    fn verify_header(&self, body: &[u8], mac: &[u8]) -> Result<Header> {
        let h = Header::decode(body)?;
        let k = self.k_int(&h)?;
        vault::verify_mac(&k, HEADER_DOMAIN, &[body], mac).inspect_err(|_| {
            log::error!(
                "token {:?}: the token header fails its MAC; refusing the token",
                self.cfg.label
            )
        })?;
        self.note_epoch(&h);
        Ok(h)
    }

    /// The newest epoch this process has seen of its token, taken before a read: a header read
    /// after it must be at least as new ([`check_floor`](Self::check_floor)). (A read already
    /// under way may return an older state than another thread's commit that ends meanwhile, so
    /// the floor is the one known when the read began.)
    fn epoch_floor(&self) -> Option<([u8; 16], u64)> {
        let u = self.unlocked.read();
        u.ident.map(|(uuid, _)| (uuid, u.epoch))
    }

    /// Refuses a header of token `uuid` at `at` older than `floor`: the store was put back while
    /// this process used it.
    fn check_floor(&self, uuid: &[u8; 16], at: u64, floor: Option<([u8; 16], u64)>) -> Result<()> {
        match floor {
            Some((known, epoch)) if known == *uuid && at < epoch => {
                log::error!(
                    "token {:?}: the store went back from epoch {epoch} to {at} while this process used it; refusing it",
                    self.cfg.label
                );
                Err(Error::Integrity(format!(
                    "the store went back from epoch {epoch} to {at} while in use (rolled back behind keygate's back)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Remembers the newest epoch seen of the token.
    fn note_epoch(&self, h: &Header) {
        let mut u = self.unlocked.write();
        if u.ident.map(|(uuid, _)| uuid) == Some(h.uuid) {
            u.epoch = u.epoch.max(h.epoch);
        }
    }

    /// The verified header; `None` if the token is not initialised.
    fn header_opt(&self) -> Result<Option<Header>> {
        let Some(store) = self.store_opt()? else {
            return Ok(None);
        };
        let floor = self.epoch_floor();
        match store.header()? {
            None => Ok(None),
            Some((body, mac)) => {
                let h = self.verify_header(&body, &mac)?;
                self.check_floor(&h.uuid, h.epoch, floor)?;
                Ok(Some(h))
            }
        }
    }

    fn header(&self) -> Result<Header> {
        self.header_opt()?.ok_or(Error::UserPinNotInitialized)
    }

    /// Refuses to write records sealed under a DEK that is no longer the token's (another
    /// process ran `keygate rotate-dek` since this one logged in): such records could never
    /// be opened again. This process's login ends; the application has to log in again.
    fn check_dek_current(&self, h: &Header, dek: &Key32) -> Result<()> {
        if vault::dek_check(dek)? == h.dek_check {
            return Ok(());
        }
        log::error!(
            "token {:?}: the token's data key was rotated since this process logged in; log in again",
            self.cfg.label
        );
        self.unlocked.write().dek = None;
        Err(Error::UserNotLoggedIn)
    }

    fn dek(&self) -> Result<Key32> {
        self.unlocked
            .read()
            .dek
            .as_ref()
            .map(HeldDek::key)
            .ok_or(Error::UserNotLoggedIn)
    }

    /// See [`LocalBackend::session_key`].
    fn session_key(&self) -> Result<Key32> {
        if let Some(k) = self.session_key.get() {
            return Ok(k.key());
        }
        let mut k = Key32::new([0u8; 32]);
        crypto::random(&mut k[..])?;
        Ok(self.session_key.get_or_init(|| HeldKey::new(&k)).key())
    }

    /// Before `C_InitToken` makes anything in the HSM: the store's directory exists and can be
    /// written (and so can the mirror's).
    fn check_store_place(&self) -> Result<()> {
        for file in [Some(self.store_path()?), self.cfg.mirror.as_deref()]
            .into_iter()
            .flatten()
        {
            let dir = match file.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            let writable = std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) && tempfile_probe(dir);
            if !writable {
                log::error!(
                    "token {:?}: cannot initialise: the directory {} of {} does not exist or cannot be written; nothing was made in the HSM",
                    self.cfg.label,
                    dir.display(),
                    file.display()
                );
                return Err(Error::Store(format!(
                    "{} does not exist or cannot be written",
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    fn create_token(&self, so_pin: &Pin, label: &str) -> Result<Header> {
        let root = self.root()?;
        let mut uuid = [0u8; 16];
        let mut root_id = [0u8; 16];
        crypto::random(&mut uuid)?;
        crypto::random(&mut root_id)?;
        root.create_key(&root_id, &self.cfg.label)?;
        let kdf = KdfParams::from(self.cfg.pin_kdf);
        let dek = vault::new_dek()?;
        let mut h = Header {
            uuid,
            label: label.to_string(),
            root_id,
            so: Credential {
                salt: [0; 16],
                kdf,
                wrapped_dek: Vec::new(),
            },
            user: None,
            so_failures: 0,
            user_failures: 0,
            objects: 0,
            members: [0; 32],
            dek_check: vault::dek_check(&dek)?,
            retiring: None,
            epoch: 1,
        };
        h.so = self.new_credential(&h, so_pin, &dek, Role::So, kdf)?;
        Ok(h)
    }
}

impl LocalBackend {
    /// A token with no store whose root key the HSM still holds: its store went missing (a
    /// deleted file, a disk not mounted), which must not look like a new token that a client
    /// may initialise over. The error says so and what to do.
    fn missing_store(&self) -> Result<()> {
        let root = match self.root() {
            Ok(r) => r,
            Err(e) => {
                log::warn!(
                    "token {:?}: it has no store, and the root HSM cannot say whether it had one: {e}",
                    self.cfg.label
                );
                return Ok(());
            }
        };
        if !root.holds_key_of(&self.cfg.label)? {
            return Ok(());
        }
        let store = self.store_path()?.display().to_string();
        let label = &self.cfg.label;
        let e = Error::TokenNotPresent(format!(
            "the store {store} is missing, but the HSM holds this token's root key: its keys are not lost. Restore the store (keygate restore --token {label} --from BACKUP); to give the label to a new token instead, delete the HSM key labelled \"keygate-root {label}\" first"
        ));
        log::error!("token {label:?}: {e}");
        Err(e)
    }

    pub(crate) fn status_impl(&self) -> Result<TokenStatus> {
        let max = self.cfg.max_pin_failures;
        let header = self.header_opt()?;
        if header.is_none() {
            self.missing_store()?;
        }
        Ok(match header {
            None => TokenStatus {
                label: self.cfg.label.clone(),
                max_failures: max,
                protected_path: false,
                model: "self-managed",
                ..TokenStatus::default()
            },
            Some(h) => TokenStatus {
                initialized: true,
                user_pin_initialized: h.user.is_some(),
                label: h.label.clone(),
                serial: h.uuid[..8].iter().map(|b| format!("{b:02x}")).collect(),
                user_failures: h.user_failures,
                so_failures: h.so_failures,
                max_failures: max,
                protected_path: false,
                model: "self-managed",
                write_protected: self.store_opt()?.is_some_and(|s| s.is_fallback()),
            },
        })
    }

    pub(crate) fn init_token_impl(&self, so_pin: &Pin, label: &str) -> Result<()> {
        check_pin_len(so_pin)?;
        self.writable()?;
        let old = self.header_opt()?;
        match old {
            Some(_) => drop(self.check_pin(Role::So, so_pin)?),
            None => self.missing_store()?,
        }
        self.check_store_place()?;
        let new = self.create_token(so_pin, label)?;
        let (uuid, new_root) = (new.uuid, new.root_id);
        // Anything that fails from here takes the new root key (and anchor) back out of the HSM.
        let written = (|| {
            let k = self.k_int(&new)?;
            let store = match self.store_opt()? {
                Some(s) => s,
                None => {
                    let mut s = Store::open(self.store_path()?, true)?;
                    if let Some(m) = &self.cfg.mirror {
                        s = s.mirrored(m)?;
                    }
                    let s = Arc::new(s);
                    self.set_store(Some(s.clone()));
                    s
                }
            };
            self.commit(&store, false, |tx| {
                tx.clear()?;
                Ok((
                    (),
                    Some(Change {
                        before: None,
                        after: new,
                        k,
                        members_set: true,
                    }),
                ))
            })
        })();
        if let Err(e) = written {
            let _ = self.root().and_then(|r| {
                r.destroy_anchor(&uuid)?;
                r.destroy_key(&new_root)
            });
            return Err(e);
        }
        self.session_objects.write().clear();
        self.forget_opened();
        if let Some(old) = old {
            if let Err(e) = self
                .root()
                .and_then(|r| r.destroy_anchor(&old.uuid).and_then(|()| r.destroy_key(&old.root_id)))
            {
                log::warn!(
                    "token {:?}: could not destroy the previous root key: {e}",
                    self.cfg.label
                );
            }
        }
        log::info!("token {:?}: initialised", self.cfg.label);
        Ok(())
    }

    /// Objects in the store (for `keygate status`).
    pub(crate) fn object_count_impl(&self) -> Result<u64> {
        Ok(match self.store_opt()? {
            Some(s) => s.count()?,
            None => 0,
        })
    }
}
