//! Administration of a self-managed token, for the `keygate` CLI: verification of every record,
//! backup and restore, and rotation of the DEK and of the HSM root key (DESIGN.md §3, §4, §7).
//!
//! Each change is one store transaction, so an interrupted run (kill -9, power loss) leaves the
//! old state or the new one. Rotation refuses a store that does not verify: re-sealing or
//! re-MACing a tampered or smuggled-in record would launder it.

use std::path::Path;

use super::anchor::{State, Step, Verdict};
use super::header::{Header, Retiring};
use super::members::{check_membership, membership};
use super::store::{Row, Store};
use super::vault::{self, Key32, Purpose, Role};
use super::{crypto, Change, LocalBackend, HEADER_DOMAIN};
use crate::backend::ObjectId;
use crate::error::{Error, Result};
use crate::token::mechanisms::Pin;

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

/// What restoring `copy` over `current` (both of token `h`) changes: keys destroyed since the
/// copy was made come back, revocations are undone, and keys made since are gone.
fn returned_keys(k: &Key32, h: &Header, current: &[Row], copy: &[Row]) -> Result<Vec<String>> {
    use crate::token::attributes::attr;
    let open = |rows: &[Row]| -> std::collections::BTreeMap<ObjectId, (String, bool)> {
        rows.iter()
            .filter_map(|row| LocalBackend::check_row(k, &h.uuid, row).ok())
            .map(|r| {
                let label = r
                    .attrs
                    .get(attr::LABEL)
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .unwrap_or_default();
                let revoked = r.attrs.get(attr::KEYGATE_REVOKED).is_some();
                (r.uid, (label, revoked))
            })
            .collect()
    };
    let now = open(current);
    let then = open(copy);
    let mut out = Vec::new();
    for (uid, (label, _)) in &now {
        if !then.contains_key(uid) {
            out.push(format!(
                "{label:?} ({}) was made since the copy; it is gone",
                hex::encode(uid)
            ));
        }
    }
    for (uid, (label, revoked)) in then {
        match now.get(&uid) {
            None => out.push(format!(
                "{label:?} ({}) was destroyed since the copy; it comes back",
                hex::encode(uid)
            )),
            Some((_, true)) if !revoked => out.push(format!(
                "{label:?} ({}) was revoked since the copy; the revocation is undone",
                hex::encode(uid)
            )),
            Some(_) => {}
        }
    }
    Ok(out)
}

/// Deletes a database file and its -wal and -shm files; absent is fine.
fn remove_db(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let f = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Store(format!("cannot delete {}: {e}", f.display()))),
        }
    }
    Ok(())
}

/// Moves a damaged database aside (`*.damaged-PID`, kept for whoever investigates) with its
/// WAL files removed, so a fresh copy can take its name.
fn set_aside(path: &Path, label: &str) -> Result<()> {
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
    fn beside(&self, store: &Path) -> LocalBackend {
        let mut cfg = self.cfg.clone();
        cfg.store = Some(store.to_path_buf());
        cfg.mirror = None;
        cfg.verify_on_open = false;
        let mut b = LocalBackend::new(cfg);
        b.judged = false;
        b
    }

    /// Replaces the store with the backup `from`, or without one with the token's mirror,
    /// after checking that the copy verifies under this HSM root. A copy older than the token's
    /// HSM anchor (it would bring back destroyed keys, old PINs, undone revocations) is restored
    /// only with the SO PIN (`so_pin`, checked against the copy's own SO credential), and the
    /// report lists what it brings back. The copy is staged beside the store with its epoch
    /// moved above the anchor, then installed as one anchored commit under the token's write
    /// lock: a store that still opens is overwritten in place, in one transaction (SQLite's
    /// backup API), so that processes using the token see the restored objects; a store that
    /// is missing or damaged is replaced by a fresh copy. From the mirror, when the store
    /// itself verifies, nothing is overwritten: a damaged mirror is moved aside and made again
    /// from the store.
    pub fn restore(&self, from: Option<&Path>, so_pin: Option<&Pin>) -> Result<VerifyReport> {
        let path = self.store_path()?.to_path_buf();
        let from = match from {
            Some(f) => f.to_path_buf(),
            None => self.cfg.mirror.clone().ok_or_else(|| {
                Error::Config("the token has no mirror: name the backup to restore with --from".into())
            })?,
        };
        if !from.exists() {
            return Err(Error::Store(format!("{} does not exist", from.display())));
        }
        let from_mirror = self.cfg.mirror.as_deref() == Some(from.as_path());
        if from_mirror && self.sound(&path) {
            if !self.sound(&from) {
                set_aside(&from, &self.cfg.label)?;
            }
            *self.store.lock() = None;
            self.store()?;
            log::info!(
                "token {:?}: the store verifies, so nothing was restored; the mirror is in step with it",
                self.cfg.label
            );
            return self.verify(None);
        }
        let source = self.beside(&from);
        let rep = source.verify(None).map_err(|e| {
            Error::Store(format!(
                "{} cannot be checked under this token's HSM root ({e}); it was not made from this token, or the root key is gone",
                from.display()
            ))
        })?;
        if !rep.ok() {
            return Err(Error::Integrity(format!(
                "{} does not verify; nothing restored",
                from.display()
            )));
        }
        let theirs = source.header()?;
        let current = Store::open(&path, false)
            .ok()
            .filter(|s| s.structural_problems().is_ok_and(|p| p.is_empty()));
        let mine = current.as_ref().and_then(|s| self.verified_header_of(s));
        // A backup of another token that shares the HSM root token verifies too; it must not
        // replace this token's keys by mistake.
        if let Some((mine, _)) = &mine {
            if mine.uuid != theirs.uuid {
                return Err(Error::Store(format!(
                    "{} is a backup of another token (serial {}), not of this one (serial {})",
                    from.display(),
                    hex::encode(&theirs.uuid[..8]),
                    hex::encode(&mine.uuid[..8])
                )));
            }
        }
        let src = source.store()?;
        let (src_body, _) = src.header()?.ok_or(Error::UserPinNotInitialized)?;
        let anchor = self.root()?.read_anchor(&theirs.uuid)?;
        let named = match &anchor {
            None => theirs.epoch == 0,
            Some(a) => a.judge(&State::of(&theirs, &src_body)) == Verdict::Named,
        };
        let anchored = anchor.as_ref().map_or(0, |a| a.epoch());
        let returned = match (&mine, named) {
            (_, true) => Vec::new(),
            (Some((h, rows)), false) => returned_keys(&self.k_int(h)?, h, rows, &src.snapshot()?.rows)?,
            (None, false) => vec!["the current store cannot be read, so what the copy brings back is unknown".into()],
        };
        if !named {
            let pin = so_pin.ok_or_else(|| {
                Error::Integrity(format!(
                    "{} is at epoch {}, older than epoch {anchored} that the token's HSM anchor names: restoring it undoes every change since ({}); give the SO PIN to restore it deliberately",
                    from.display(),
                    theirs.epoch,
                    if returned.is_empty() { "no key changes".to_string() } else { returned.join("; ") }
                ))
            })?;
            source.evaluate_pin(&theirs, Role::So, pin).inspect_err(|_| {
                log::warn!("token {:?}: restore refused: wrong SO PIN for the copy", self.cfg.label)
            })?;
        }
        // The copy, staged beside the store with its header above the anchor.
        let staged = std::path::PathBuf::from(format!("{}.restoring", path.display()));
        remove_db(&staged)?;
        src.copy_to(&staged)?;
        let staged_store = Store::open(&staged, false)?;
        let mut h = theirs.clone();
        h.epoch = anchored.max(theirs.epoch).saturating_add(1);
        let body = h.encode();
        let mac = vault::mac(&self.k_int(&h)?, HEADER_DOMAIN, &[&body])?;
        staged_store.write(|tx| {
            tx.forget_generation()?;
            tx.set_header(&body, &mac)
        })?;
        // The primary itself, even while this process serves from the mirror.
        *self.store.lock() = None;
        {
            let _lock = self.write_lock.lock()?;
            let step = Step {
                uuid: h.uuid,
                from: mine.as_ref().and(current.as_ref()).and_then(|s| {
                    let (b, _) = s.header().ok()??;
                    Header::decode(&b).ok().map(|cur| State::of(&cur, &b))
                }),
                to: State::of(&h, &body),
            };
            let prepared = self.anchor_prepare(&step, true)?;
            match &current {
                Some(t) => staged_store.copy_into(t)?,
                None => {
                    set_aside(&path, &self.cfg.label)?;
                    staged_store.copy_to(&path)?;
                }
            }
            self.anchor_commit(&prepared)?;
        }
        drop(staged_store);
        remove_db(&staged)?;
        self.opened.lock().clear();
        log::warn!(
            "token {:?}: restored from {} (epoch {} -> {}){}",
            self.cfg.label,
            from.display(),
            theirs.epoch,
            h.epoch,
            if returned.is_empty() {
                String::new()
            } else {
                format!("; brought back: {}", returned.join("; "))
            }
        );
        // Opening the restored store brings the mirror into step with it.
        self.store()?;
        let mut rep = self.verify(None)?;
        rep.returned = returned;
        Ok(rep)
    }

    /// The header of `store` if it verifies under this token's root, with its records.
    fn verified_header_of(&self, store: &Store) -> Option<(Header, Vec<Row>)> {
        let (body, mac) = store.header().ok()??;
        let h = Header::decode(&body).ok()?;
        let k = self.k_int(&h).ok()?;
        vault::verify_mac(&k, HEADER_DOMAIN, &[&body], &mac).ok()?;
        Some((h, store.snapshot().ok()?.rows))
    }

    /// Whether the database at `path` passes every check of `verify` (without a PIN).
    fn sound(&self, path: &Path) -> bool {
        Store::open(path, false)
            .and_then(|s| self.verify_store(&s, None))
            .is_ok_and(|r| r.store_ok())
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
        self.opened.lock().clear();
        log::warn!(
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
        root.create_key(&next.root_id)?;
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
                let total = rows.len() as u64;
                log::info!(
                    "token {:?}: re-MACing {total} records under a new root key, in one transaction",
                    self.cfg.label
                );
                let mut remaced = Vec::with_capacity(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    let r = Self::check_row(&k_old, &cur.uuid, row)?;
                    let new_row = Self::row_of(&k_new, &cur.uuid, &r)?;
                    tx.replace(&Self::index_of(&r), &new_row)?;
                    remaced.push(new_row);
                    progress(i as u64 + 1, total);
                }
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
        self.opened.lock().clear();
        if let Err(e) = self.finish_retirement() {
            log::warn!(
                "token {:?}: root rotated, but the old root key ({}) could not be destroyed yet ({e}); the next rotate-root or verify destroys it",
                self.cfg.label,
                hex::encode(h.root_id)
            );
        }
        log::warn!("token {:?}: root key rotated", self.cfg.label);
        Ok(())
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
        log::warn!(
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
        log::warn!(
            "token {:?}: root key {} destroyed; every copy of the store is now unreadable",
            self.cfg.label,
            hex::encode(h.root_id)
        );
        *self.store.lock() = None;
        self.opened.lock().clear();
        let mut paths = vec![self.store_path()?.to_path_buf()];
        paths.extend(self.cfg.mirror.clone());
        for p in paths {
            remove_db(&p)?;
            for suffix in [".lock", ".login-lock"] {
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
