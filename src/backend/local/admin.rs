//! Administration of a self-managed token, for the `keygate` CLI: verification of every record,
//! backup and restore, and rotation of the DEK and of the HSM root key (DESIGN.md §3, §4, §7).
//!
//! Each change is one store transaction, so an interrupted run (kill -9, power loss) leaves the
//! old state or the new one. Rotation refuses a store that does not verify: re-sealing or
//! re-MACing a tampered or smuggled-in record would launder it.

use std::path::Path;

use super::anchor::State;
use super::header::{Header, Retiring};
use super::members::{check_membership, membership};
use super::restore::remove_db;
use super::store::{Row, Store, Tx};
use super::vault::{self, Key32, Purpose, Role};
use super::{Change, LocalBackend, HEADER_DOMAIN};
use crate::crypto;
use crate::error::{Error, Result};
use crate::model::mechanisms::Pin;

/// What `keygate verify` found. Identifiers are hex.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// SQLite's structural check (`PRAGMA quick_check`); empty when sound.
    pub store_problems: Vec<String>,
    /// Why the header failed, if it did.
    pub header_problem: Option<String>,
    /// Records read.
    pub objects: u64,
    /// Sealed secrets opened (only with a PIN).
    pub secrets_opened: u64,
    /// Records that fail their MAC, decoding or sealing.
    pub failed: Vec<Failure>,
    /// Objects the header vouches for whose record is gone.
    pub missing: Vec<String>,
    /// Records the header does not vouch for (added, or brought back, behind keygate's back).
    pub unlisted: Vec<String>,
    /// Why the header's object count and digest disagree with the store, if they do.
    pub membership_problem: Option<String>,
    /// Why the HSM anchor refuses the store (older than it, or not a state it names).
    pub anchor_problem: Option<String>,
    /// After `keygate restore` of an older copy: the keys it brought back (destroyed since the
    /// copy was made) and the revocations it undid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<String>,
    /// The same checks on the token's mirror, when it has one.
    pub mirror: Option<Box<MirrorReport>>,
}

/// What `keygate verify` found in a token's mirror.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorReport {
    pub path: String,
    /// Why the mirror could not be checked at all (missing, not a database).
    pub problem: Option<String>,
    #[serde(flatten)]
    pub report: VerifyReport,
}

/// One record that failed, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub id: String,
    pub reason: String,
}

impl VerifyReport {
    /// Whether the store (and its mirror, if it has one) passed every check.
    pub fn ok(&self) -> bool {
        self.store_ok()
            && self
                .mirror
                .as_ref()
                .is_none_or(|m| m.problem.is_none() && m.report.ok())
    }

    /// Whether this one database passed every check.
    pub fn store_ok(&self) -> bool {
        self.store_problems.is_empty()
            && self.header_problem.is_none()
            && self.failed.is_empty()
            && self.missing.is_empty()
            && self.unlisted.is_empty()
            && self.membership_problem.is_none()
            && self.anchor_problem.is_none()
    }

    /// One line naming the first things that failed, for logs.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.store_problems.first().map(|p| format!("file damaged: {p}")));
        parts.extend(self.header_problem.as_ref().map(|p| format!("header: {p}")));
        parts.extend(self.failed.first().map(|f| format!("object {}: {}", f.id, f.reason)));
        parts.extend(self.missing.first().map(|m| format!("object {m} missing")));
        parts.extend(self.unlisted.first().map(|u| format!("object {u} not vouched for")));
        parts.extend(self.membership_problem.clone());
        parts.extend(self.anchor_problem.clone());
        if parts.is_empty() {
            "ok".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Progress of long work: (done, total).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// Moves a damaged database aside (`*.damaged-PID`, kept for whoever investigates) with its
/// WAL files removed, so a fresh copy can take its name.
pub(super) fn set_aside(path: &Path, label: &str) -> Result<()> {
    if path.exists() {
        let aside = path.with_extension(format!("damaged-{}", std::process::id()));
        std::fs::rename(path, &aside)
            .map_err(|e| Error::Store(format!("cannot move {} aside: {e}", path.display())))?;
        log::warn!(
            "token {label:?}: the damaged {} is kept as {}",
            path.display(),
            aside.display()
        );
    }
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

impl LocalBackend {
    /// Checks the store and, when the token has one, its mirror: SQLite's structure, the
    /// header's MAC, every record's MAC and encoding, the object set against the header; with
    /// the user PIN, that every sealed secret opens under its binding. A wrong PIN counts as
    /// one, as at `C_Login`. The primary store is checked even while the token serves from
    /// its mirror.
    pub fn verify(&self, pin: Option<&Pin>) -> Result<VerifyReport> {
        let path = self.store_path()?;
        if !path.exists() && self.cfg.mirror.as_deref().is_none_or(|m| !m.exists()) {
            return Err(Error::Store(format!(
                "{} does not exist (token not initialised?)",
                path.display()
            )));
        }
        let dek = match pin {
            Some(p) => Some(self.check_pin(Role::User, p)?),
            None => None,
        };
        let mut rep = match Store::open(path, false) {
            Ok(s) => self.verify_store(&s, dek.as_ref())?,
            Err(e) => VerifyReport {
                store_problems: vec![e.to_string()],
                ..VerifyReport::default()
            },
        };
        if let Some(m) = &self.cfg.mirror {
            let mut mirror = MirrorReport {
                path: m.display().to_string(),
                problem: None,
                report: VerifyReport::default(),
            };
            match Store::open(m, false).and_then(|s| self.verify_store(&s, dek.as_ref())) {
                Ok(r) => mirror.report = r,
                Err(e) => mirror.problem = Some(e.to_string()),
            }
            rep.mirror = Some(Box::new(mirror));
        }
        if !rep.ok() {
            log::error!("token {:?}: verification failed: {}", self.cfg.label, rep.summary());
        }
        Ok(rep)
    }

    /// The checks of [`verify`](Self::verify) on one database; `dek`, when given, must open
    /// every sealed secret.
    pub(super) fn verify_store(&self, store: &Store, dek: Option<&Key32>) -> Result<VerifyReport> {
        let mut rep = VerifyReport {
            store_problems: store.structural_problems()?,
            ..VerifyReport::default()
        };
        // One read transaction: the header and the records it vouches for as of one moment,
        // while other processes go on committing.
        let super::store::Snapshot { header, rows, members } = store.snapshot()?;
        let Some((body, mac)) = header else {
            rep.header_problem = Some("there is no header: the file holds no token".into());
            return Ok(rep);
        };
        let h = match Header::decode(&body) {
            Ok(h) => h,
            Err(e) => {
                // Without a readable header there is no token identity to check records under.
                rep.header_problem = Some(e.to_string());
                return Ok(rep);
            }
        };
        let k = self.k_int(&h)?;
        if let Err(e) = vault::verify_mac(&k, HEADER_DOMAIN, &[&body], &mac) {
            rep.header_problem = Some(e.to_string());
        }
        if let Some(dek) = dek {
            if vault::dek_check(dek)? != h.dek_check {
                rep.header_problem = Some("the header names another data key than the user PIN opens".into());
            }
        }
        // A backup is older than the anchor by nature: only the token's own files are judged.
        if self.judged {
            rep.anchor_problem = self.anchor_problem(store)?;
        }
        for row in &rows {
            rep.objects += 1;
            let checked = Self::check_row(&k, &h.uuid, row).and_then(|r| match (dek, &r.sealed) {
                (Some(dek), Some(blob)) => {
                    vault::unseal(dek, &vault::aad(&h.uuid, &r.uid, &r.attrs), blob)?;
                    Ok(true)
                }
                _ => Ok(false),
            });
            match checked {
                Ok(opened) => rep.secrets_opened += opened as u64,
                Err(e) => rep.failed.push(Failure {
                    id: hex::encode(row.uid),
                    reason: e.to_string(),
                }),
            }
        }
        let m = membership(&k, &h.uuid, &rows, &members, h.epoch == 0)?;
        rep.missing = m.missing.iter().map(hex::encode).collect();
        rep.unlisted = m.unlisted.iter().map(hex::encode).collect();
        if m.count != h.objects || m.digest != h.members {
            rep.membership_problem = Some(format!(
                "the header vouches for {} objects; the store lists {}{}",
                h.objects,
                m.count,
                if m.count == h.objects {
                    ", but not the same ones"
                } else {
                    ""
                }
            ));
        }
        Ok(rep)
    }

    /// Writes a consistent copy of the store to `to` while the token stays in use, then
    /// verifies the copy (without a PIN). The copy is sealed exactly like the store: useless
    /// without this HSM root key and a PIN.
    pub fn backup(&self, to: &Path) -> Result<VerifyReport> {
        let store = self.store()?;
        store.copy_to(to)?;
        log::info!("token {:?}: backed up to {}", self.cfg.label, to.display());
        self.beside(to).verify(None)
    }

    /// The same token read from another file (a backup, a mirror).
    pub(super) fn beside(&self, store: &Path) -> LocalBackend {
        let mut cfg = self.cfg.clone();
        cfg.store = Some(store.to_path_buf());
        cfg.mirror = None;
        cfg.verify_on_open = false;
        let mut b = LocalBackend::new(cfg);
        b.judged = false;
        b
    }

    /// The SO's DEK, and the user's PIN checked to open the same DEK (rotation re-wraps it for
    /// both roles, so both PINs are needed).
    fn both_pins(&self, h: &Header, so_pin: &Pin, user_pin: Option<&Pin>) -> Result<Key32> {
        let dek = self.check_pin(Role::So, so_pin)?;
        match (&h.user, user_pin) {
            (Some(_), Some(p)) => {
                let user = self.check_pin(Role::User, p)?;
                if *user != *dek {
                    return Err(Error::Integrity("the SO and user PINs open different data keys".into()));
                }
            }
            (Some(_), None) => {
                return Err(Error::Config(
                    "the token has a user PIN: give it too (the data key is wrapped for both)".into(),
                ))
            }
            (None, _) => {}
        }
        Ok(dek)
    }

    /// New credentials for both roles wrapping `dek`, under the root key `h` names.
    fn credentials(
        &self,
        h: &Header,
        dek: &Key32,
        so_pin: &Pin,
        user_pin: Option<&Pin>,
    ) -> Result<(super::header::Credential, Option<super::header::Credential>)> {
        let so = self.new_credential(h, so_pin, dek, Role::So, h.so.kdf)?;
        let user = match (&h.user, user_pin) {
            (Some(c), Some(p)) => Some(self.new_credential(h, p, dek, Role::User, c.kdf)?),
            _ => None,
        };
        Ok((so, user))
    }

    /// Re-seals every secret under a new DEK and re-wraps it for both roles, in one
    /// transaction. Processes logged in with the old DEK are refused their next write and must
    /// log in again. Returns how many secrets were re-sealed.
    pub fn rotate_dek(&self, so_pin: &Pin, user_pin: Option<&Pin>, progress: Progress<'_>) -> Result<u64> {
        let h = self.header()?;
        let old = self.both_pins(&h, so_pin, user_pin)?;
        let new = vault::new_dek()?;
        // Argon2id and the HSM run before the transaction, so other writers wait only for the
        // re-sealing itself.
        let (so, user) = self.credentials(&h, &new, so_pin, user_pin)?;
        let resealed = self.transact(|tx, cur, k| {
            if (cur.uuid, cur.root_id, cur.dek_check) != (h.uuid, h.root_id, h.dek_check) {
                return Err(Error::Integrity(
                    "the token changed during rotation; run it again".into(),
                ));
            }
            let rows = tx.all()?;
            check_membership(k, cur, &rows, &tx.members()?)?;
            let total = rows.len() as u64;
            log::info!(
                "token {:?}: re-sealing {total} records under a new data key, in one transaction",
                self.cfg.label
            );
            let mut resealed = 0;
            for (i, row) in rows.iter().enumerate() {
                let mut r = Self::check_row(k, &cur.uuid, row)?;
                if let Some(blob) = &r.sealed {
                    let aad = vault::aad(&cur.uuid, &r.uid, &r.attrs);
                    let secret = vault::unseal(&old, &aad, blob)?;
                    r.sealed = Some(vault::seal(&new, &aad, &secret)?);
                    tx.replace(&Self::index_of(&r), &Self::row_of(k, &cur.uuid, &r)?)?;
                    resealed += 1;
                }
                progress(i as u64 + 1, total);
            }
            cur.so = so;
            if user.is_some() {
                cur.user = user;
            }
            cur.dek_check = vault::dek_check(&new)?;
            Ok(resealed)
        })?;
        self.forget_opened();
        log::info!(
            "token {:?}: data key rotated; {resealed} secrets re-sealed",
            self.cfg.label
        );
        Ok(resealed)
    }

    /// Creates a new root key in the HSM, re-MACs every record and the header under the integrity
    /// key it gives and re-wraps the DEK under the new KEKs, in one transaction; then destroys
    /// the old root key. The header names the key to destroy (`retiring`) before the new key
    /// exists and until the old one is gone, so that a run interrupted anywhere leaves no root key
    /// behind for long: the next `rotate-root` or `verify` destroys it
    /// ([`finish_retirement`](Self::finish_retirement)).
    /// Every record checked under the old integrity key and written again under the new one,
    /// within the caller's transaction; the new rows.
    fn remac(
        &self,
        tx: &Tx<'_>,
        rows: &[Row],
        (k_old, k_new): (&Key32, &Key32),
        uuid: &[u8; 16],
        progress: Progress<'_>,
    ) -> Result<Vec<Row>> {
        let total = rows.len() as u64;
        log::info!(
            "token {:?}: re-MACing {total} records under a new root key, in one transaction",
            self.cfg.label
        );
        let mut remaced = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let r = Self::check_row(k_old, uuid, row)?;
            let new_row = Self::row_of(k_new, uuid, &r)?;
            tx.replace(&Self::index_of(&r), &new_row)?;
            remaced.push(new_row);
            progress(i as u64 + 1, total);
        }
        Ok(remaced)
    }

    pub fn rotate_root(&self, so_pin: &Pin, user_pin: Option<&Pin>, progress: Progress<'_>) -> Result<()> {
        self.finish_retirement()?;
        let h = self.header()?;
        let dek = self.both_pins(&h, so_pin, user_pin)?;
        let root = self.root()?;
        let mut next = h.clone();
        crypto::random(&mut next.root_id)?;
        self.change_header(|cur| {
            if (cur.uuid, cur.root_id) != (h.uuid, h.root_id) {
                return Err(Error::Integrity(
                    "the token changed during rotation; run it again".into(),
                ));
            }
            cur.retiring = Some(Retiring::Unused(next.root_id));
            Ok(())
        })?;
        root.create_key(&next.root_id, &self.cfg.label)?;
        let done = (|| {
            let k_new = vault::integrity_key(&*self.hw(&next, Purpose::Integrity)?);
            let (so, user) = self.credentials(&next, &dek, so_pin, user_pin)?;
            self.commit(&*self.store()?, false, |tx| {
                let (body, mac) = tx.header()?.ok_or(Error::UserPinNotInitialized)?;
                let cur = self.verify_header(&body, &mac)?;
                // `retiring` still naming the new key means nobody finished this rotation as an
                // interrupted one (and destroyed the new key) meanwhile.
                if (cur.uuid, cur.root_id, cur.dek_check, cur.retiring)
                    != (h.uuid, h.root_id, h.dek_check, Some(Retiring::Unused(next.root_id)))
                {
                    return Err(Error::Integrity(
                        "the token changed during rotation; run it again".into(),
                    ));
                }
                let k_old = self.k_int(&cur)?;
                let rows = tx.all()?;
                let members = tx.members()?;
                check_membership(&k_old, &cur, &rows, &members)?;
                let remaced = self.remac(tx, &rows, (&k_old, &k_new), &cur.uuid, progress)?;
                let mut new = cur.clone();
                new.root_id = next.root_id;
                new.retiring = Some(Retiring::Previous(h.root_id));
                new.so = so;
                if user.is_some() {
                    new.user = user;
                }
                new.members = membership(&k_new, &cur.uuid, &remaced, &members, false)?.digest;
                new.epoch = cur.epoch.saturating_add(1);
                Ok((
                    (),
                    Some(Change {
                        before: Some(State::of(&cur, &body)),
                        after: new,
                        k: k_new,
                        // Counted here, under the new key; the re-MACed records follow.
                        members_set: true,
                    }),
                ))
            })
        })();
        if let Err(e) = done {
            // The new key was never used: the header still names it as the one to destroy.
            if let Err(d) = self.finish_retirement() {
                log::warn!(
                    "token {:?}: the unused new root key stays in the HSM until the next rotate-root or verify: {d}",
                    self.cfg.label
                );
            }
            return Err(e);
        }
        self.forget_opened();
        if let Err(e) = self.finish_retirement() {
            log::warn!(
                "token {:?}: root rotated, but the old root key ({}) could not be destroyed yet ({e}); the next rotate-root or verify destroys it",
                self.cfg.label,
                hex::encode(h.root_id)
            );
        }
        log::info!("token {:?}: root key rotated", self.cfg.label);
        Ok(())
    }

    /// The root keys this token's store names: its root key and, while a rotation is
    /// unfinished, the key to retire. None when the store is missing or not initialised.
    pub fn root_ids_in_use(&self) -> Result<Vec<[u8; 16]>> {
        let Some(h) = self.header_opt()? else {
            return Ok(Vec::new());
        };
        Ok(std::iter::once(h.root_id).chain(h.retiring.map(|r| r.id())).collect())
    }

    /// Every keygate root key on this token's root HSM token, as (label, CKA_ID).
    pub fn root_keys_on_hsm(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.root()?.keygate_keys()
    }

    /// Destroys the root key the header names as retiring, if any, and forgets it: the old key
    /// of a rotation that committed (destroyed first, so a run killed in between leaves it named,
    /// to be destroyed next time), or the new key of one that did not (forgotten first, in a
    /// transaction that succeeds only while the header still names it, so that a rotation
    /// running in another process either committed before, and this changes nothing, or sees
    /// the change and gives up: the token's root key is never destroyed). True if a key was
    /// retired.
    pub fn finish_retirement(&self) -> Result<bool> {
        let Some(h) = self.header_opt()? else {
            return Ok(false);
        };
        let Some(retiring) = h.retiring else {
            return Ok(false);
        };
        let id = retiring.id();
        let forget = || {
            self.change_header(|cur| {
                if cur.retiring != Some(retiring) {
                    return Ok(false);
                }
                cur.retiring = None;
                Ok(true)
            })
        };
        match retiring {
            _ if id == h.root_id => {
                log::error!(
                    "token {:?}: the header names the token's own root key as retiring; it is kept",
                    self.cfg.label
                );
                forget()?;
                return Ok(false);
            }
            Retiring::Previous(_) => {
                self.root()?.destroy_key(&id)?;
                forget()?;
            }
            Retiring::Unused(_) => {
                if !forget()? {
                    return Ok(false);
                }
                self.root()?.destroy_key(&id)?;
            }
        }
        log::info!(
            "token {:?}: root key {} retired (destroyed in the HSM)",
            self.cfg.label,
            hex::encode(id)
        );
        Ok(true)
    }

    /// `keygate destroy --all`: crypto-shredding. After the SO PIN is checked, destroys the
    /// root key in the HSM, which makes this store, its mirror and every backup of them
    /// unreadable for good, then deletes the store's files.
    pub fn destroy_token(&self, so_pin: &Pin) -> Result<()> {
        let h = self.header()?;
        self.login_impl(crate::backend::UserType::So, so_pin)?;
        self.logout_impl();
        let root = self.root()?;
        // A key an interrupted rotation left behind could still open older backups.
        if let Some(retiring) = h.retiring.map(|r| r.id()).filter(|r| *r != h.root_id) {
            root.destroy_key(&retiring)?;
        }
        root.destroy_key(&h.root_id)?;
        root.destroy_anchor(&h.uuid)?;
        log::info!(
            "token {:?}: root key {} destroyed; every copy of the store is now unreadable",
            self.cfg.label,
            hex::encode(h.root_id)
        );
        self.set_store(None);
        self.forget_opened();
        let mut paths = vec![self.store_path()?.to_path_buf()];
        paths.extend(self.cfg.mirror.clone());
        for p in paths {
            remove_db(&p)?;
            for suffix in [".lock", ".login-lock", ".changes"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
        Ok(())
    }

    /// `keygate change-pin`: as `C_SetPIN`, re-wraps only the DEK.
    pub fn change_pin(&self, so: bool, old: &Pin, new: &Pin) -> Result<()> {
        let user = if so {
            crate::backend::UserType::So
        } else {
            crate::backend::UserType::User
        };
        self.set_pin_impl(user, old, new)
    }
}
