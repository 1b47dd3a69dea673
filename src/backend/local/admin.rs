//! Administration of a self-managed token, for the `keygate` CLI: verification of every record,
//! backup and restore, and rotation of the DEK and of the HSM root key (DESIGN.md §3, §4, §7).
//!
//! Each change is one store transaction, so an interrupted run (kill -9, power loss) leaves the
//! old state or the new one. Rotation refuses a store that does not verify: re-sealing or
//! re-MACing a tampered or smuggled-in record would launder it.

use std::collections::BTreeSet;
use std::path::Path;

use super::header::Header;
use super::store::Row;
use super::vault::{self, Key32, Purpose, Role};
use super::{crypto, LocalBackend, HEADER_DOMAIN};
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
}

/// One record that failed, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub id: String,
    pub reason: String,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.store_problems.is_empty()
            && self.header_problem.is_none()
            && self.failed.is_empty()
            && self.missing.is_empty()
            && self.unlisted.is_empty()
            && self.membership_problem.is_none()
    }
}

/// Progress of long work: (done, total).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// The object set of a store as the members table and the records show it.
struct Membership {
    /// What the header's digest and count should be for the listed identifiers.
    digest: [u8; 32],
    count: u64,
    /// Listed, with no record.
    missing: Vec<ObjectId>,
    /// Recorded, not listed.
    unlisted: Vec<ObjectId>,
}

fn membership(k: &Key32, uuid: &[u8; 16], rows: &[Row], members: &[Vec<u8>]) -> Result<Membership> {
    let recorded: BTreeSet<ObjectId> = rows.iter().map(|r| r.uid).collect();
    let mut listed = BTreeSet::new();
    let mut digest = [0u8; 32];
    for m in members {
        let uid: ObjectId = m
            .as_slice()
            .try_into()
            .map_err(|_| Error::Integrity("a member identifier is not 16 bytes".into()))?;
        vault::xor_into(&mut digest, &vault::member_tag(k, uuid, &uid)?);
        listed.insert(uid);
    }
    Ok(Membership {
        digest,
        count: listed.len() as u64,
        missing: listed.difference(&recorded).copied().collect(),
        unlisted: recorded.difference(&listed).copied().collect(),
    })
}

/// Refuses to rotate a store whose object set is not exactly the one the header vouches for.
fn check_membership(k: &Key32, h: &Header, rows: &[Row], members: &[Vec<u8>]) -> Result<()> {
    let m = membership(k, &h.uuid, rows, members)?;
    if m.digest != h.members || m.count != h.objects || !m.missing.is_empty() || !m.unlisted.is_empty() {
        return Err(Error::Integrity(
            "the store's objects are not the ones its header vouches for; run `keygate verify`".into(),
        ));
    }
    Ok(())
}

impl LocalBackend {
    /// Checks the store: SQLite's structure, the header's MAC, every record's MAC and encoding,
    /// the object set against the header; with the user PIN, that every sealed secret opens
    /// under its binding. A wrong PIN counts as one, as at `C_Login`.
    pub fn verify(&self, pin: Option<&Pin>) -> Result<VerifyReport> {
        let store = self.store_opt()?.ok_or_else(|| {
            Error::Store(format!(
                "{} does not exist (token not initialised?)",
                self.store_path().map(|p| p.display().to_string()).unwrap_or_default()
            ))
        })?;
        let mut rep = VerifyReport {
            store_problems: store.structural_problems()?,
            ..VerifyReport::default()
        };
        let (body, mac) = store.header()?.ok_or(Error::UserPinNotInitialized)?;
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
        let dek = match pin {
            Some(p) => {
                let dek = self.check_pin(Role::User, p)?;
                if vault::dek_check(&dek)? != h.dek_check {
                    rep.header_problem = Some("the header names another data key than the user PIN opens".into());
                }
                Some(dek)
            }
            None => None,
        };
        let (rows, members) = store.snapshot()?;
        for row in &rows {
            rep.objects += 1;
            let checked = Self::check_row(&k, &h.uuid, row).and_then(|r| match (&dek, &r.sealed) {
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
        let m = membership(&k, &h.uuid, &rows, &members)?;
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
        if !rep.ok() {
            log::error!("token {:?}: verification failed", self.cfg.label);
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
        LocalBackend::new(cfg)
    }

    /// Replaces the store with the backup `from`, after checking that the backup verifies under
    /// this HSM root. A store that still opens is overwritten in place, in one transaction (SQLite's
    /// backup API), so that processes using the token see the restored objects; a store that is
    /// missing or damaged is replaced by a fresh copy.
    pub fn restore(&self, from: &Path) -> Result<VerifyReport> {
        if !from.exists() {
            return Err(Error::Store(format!("{} does not exist", from.display())));
        }
        let source = self.beside(from);
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
        // A backup of another token that shares the HSM root token verifies too; it must not
        // replace this token's keys by mistake.
        if let (Ok(Some(mine)), Ok(theirs)) = (self.header_opt(), source.header()) {
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
        let path = self.store_path()?.to_path_buf();
        let in_place = match self.store_opt() {
            Ok(Some(s)) => s.structural_problems().map(|p| p.is_empty()).unwrap_or(false),
            _ => false,
        };
        if in_place {
            src.copy_into(&*self.store()?)?;
        } else {
            // The damaged file is kept beside, for whoever investigates.
            *self.store.lock() = None;
            if path.exists() {
                let aside = path.with_extension(format!("damaged-{}", std::process::id()));
                std::fs::rename(&path, &aside)
                    .map_err(|e| Error::Store(format!("cannot move {} aside: {e}", path.display())))?;
                log::warn!(
                    "token {:?}: the damaged store is kept as {}",
                    self.cfg.label,
                    aside.display()
                );
            }
            for suffix in ["-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
            src.copy_to(&path)?;
        }
        self.opened.lock().clear();
        log::warn!("token {:?}: restored from {}", self.cfg.label, from.display());
        self.verify(None)
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
    /// the old root key. Interrupted before the commit, the token keeps the old root (the new key
    /// is left unused in the HSM); after it, the new one (the old key may be left behind).
    pub fn rotate_root(&self, so_pin: &Pin, user_pin: Option<&Pin>, progress: Progress<'_>) -> Result<()> {
        let h = self.header()?;
        let dek = self.both_pins(&h, so_pin, user_pin)?;
        let root = self.root()?;
        let mut next = h.clone();
        crypto::random(&mut next.root_id)?;
        root.create_key(&next.root_id)?;
        let done = (|| {
            let k_new = vault::integrity_key(&*self.hw(&next, Purpose::Integrity)?);
            let (so, user) = self.credentials(&next, &dek, so_pin, user_pin)?;
            self.store()?.write(|tx| {
                let (body, mac) = tx.header()?.ok_or(Error::UserPinNotInitialized)?;
                let cur = self.verify_header(&body, &mac)?;
                if (cur.uuid, cur.root_id, cur.dek_check) != (h.uuid, h.root_id, h.dek_check) {
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
                for (i, row) in rows.iter().enumerate() {
                    let r = Self::check_row(&k_old, &cur.uuid, row)?;
                    tx.replace(&Self::index_of(&r), &Self::row_of(&k_new, &cur.uuid, &r)?)?;
                    progress(i as u64 + 1, total);
                }
                let mut new = cur.clone();
                new.root_id = next.root_id;
                new.so = so;
                if user.is_some() {
                    new.user = user;
                }
                new.members = membership(&k_new, &cur.uuid, &rows, &members)?.digest;
                let body = new.encode();
                tx.set_header(&body, &vault::mac(&k_new, HEADER_DOMAIN, &[&body])?)
            })
        })();
        if let Err(e) = done {
            if let Err(d) = root.destroy_key(&next.root_id) {
                log::warn!(
                    "token {:?}: the unused new root key stays in the HSM: {d}",
                    self.cfg.label
                );
            }
            return Err(e);
        }
        self.opened.lock().clear();
        if let Err(e) = root.destroy_key(&h.root_id) {
            log::warn!(
                "token {:?}: root rotated, but the old root key ({}) could not be destroyed: {e}",
                self.cfg.label,
                hex::encode(h.root_id)
            );
        }
        log::warn!("token {:?}: root key rotated", self.cfg.label);
        Ok(())
    }

    /// `keygate destroy --all`: crypto-shredding. After the SO PIN is checked, destroys the
    /// root key in the HSM, which makes this store, its mirror and every backup of them
    /// unreadable for good, then deletes the store's files.
    pub fn destroy_token(&self, so_pin: &Pin) -> Result<()> {
        let h = self.header()?;
        self.login_impl(crate::backend::UserType::So, so_pin)?;
        self.logout_impl();
        self.root()?.destroy_key(&h.root_id)?;
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
            for suffix in ["", "-wal", "-shm"] {
                let f = std::path::PathBuf::from(format!("{}{suffix}", p.display()));
                match std::fs::remove_file(&f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Store(format!("cannot delete {}: {e}", f.display()))),
                }
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
