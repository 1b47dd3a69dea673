//! `keygate restore`: a backup (or the mirror) put back in place of the store, under this
//! token's HSM root, as one anchored commit. A copy older than the token's anchor undoes changes,
//! so it is restored only with the SO PIN, and what it brings back is said.

use std::path::Path;

use super::admin::{set_aside, VerifyReport};
use super::anchor::{State, Step, Verdict};
use super::header::Header;
use super::store::{Row, Store};
use super::vault::{self, Key32, Role};
use super::{LocalBackend, HEADER_DOMAIN};
use crate::backend::ObjectId;
use crate::error::{Error, Result};
use crate::model::mechanisms::Pin;

/// What restoring `copy` over `current` (both of token `h`) changes: keys destroyed since the
/// copy was made come back, revocations are undone, and keys made since are gone.
fn returned_keys(k: &Key32, h: &Header, current: &[Row], copy: &[Row]) -> Result<Vec<String>> {
    use crate::model::attributes::attr;
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
pub(super) fn remove_db(path: &Path) -> Result<()> {
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

impl LocalBackend {
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
        let from = self.restore_source(from)?;
        let from_mirror = self.cfg.mirror.as_deref() == Some(from.as_path());
        if from_mirror && self.sound(&path) {
            if !self.sound(&from) {
                set_aside(&from, &self.cfg.label)?;
            }
            self.set_store(None);
            self.store()?;
            log::info!(
                "token {:?}: the store verifies, so nothing was restored; the mirror is in step with it",
                self.cfg.label
            );
            return self.verify(None);
        }
        let (source, theirs) = self.checked_copy(&from)?;
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
        let (anchored, returned) = self.authorise(&from, &source, &src, &theirs, mine.as_ref(), so_pin)?;
        let mine_state = mine.as_ref().and(current.as_ref()).and_then(|s| {
            let (b, _) = s.header().ok()??;
            Header::decode(&b).ok().map(|cur| State::of(&cur, &b))
        });
        let h = self.install(&path, &src, &theirs, anchored, mine_state, current.as_ref())?;
        self.forget_opened();
        log::info!(
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

    /// The copy to restore: the file named, else the token's mirror.
    fn restore_source(&self, from: Option<&Path>) -> Result<std::path::PathBuf> {
        let from = match from {
            Some(f) => f.to_path_buf(),
            None => self.cfg.mirror.clone().ok_or_else(|| {
                Error::Config("the token has no mirror: name the backup to restore with --from".into())
            })?,
        };
        if !from.exists() {
            return Err(Error::Store(format!("{} does not exist", from.display())));
        }
        Ok(from)
    }

    /// The copy opened beside this token and verified under its HSM root, with its header.
    fn checked_copy(&self, from: &Path) -> Result<(LocalBackend, Header)> {
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
        let theirs = source.header()?;
        Ok((source, theirs))
    }

    /// Whether the copy may replace the store: one the HSM anchor names may; an older one only
    /// with the SO PIN (checked against the copy). The anchor's epoch, and what an older copy
    /// brings back (keys since destroyed or changed).
    fn authorise(
        &self,
        from: &Path,
        source: &LocalBackend,
        src: &Store,
        theirs: &Header,
        mine: Option<&(Header, Vec<Row>)>,
        so_pin: Option<&Pin>,
    ) -> Result<(u64, Vec<String>)> {
        let (src_body, _) = src.header()?.ok_or(Error::UserPinNotInitialized)?;
        let anchor = self.root()?.read_anchor(&theirs.uuid)?;
        let named = match &anchor {
            None => theirs.epoch == 0,
            Some(a) => matches!(
                a.judge(&State::of(theirs, &src_body)),
                Verdict::Named | Verdict::Ahead { .. }
            ),
        };
        let anchored = anchor.as_ref().map_or(0, |a| a.epoch());
        let returned = match (mine, named) {
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
            source.evaluate_pin(theirs, Role::So, pin).inspect_err(|_| {
                log::warn!("token {:?}: restore refused: wrong SO PIN for the copy", self.cfg.label)
            })?;
        }
        Ok((anchored, returned))
    }

    /// Puts the copy in place of the store at `path`: staged beside it with its header above
    /// the anchor, then copied in under the write lock while the anchor moves to it. Returns
    /// the header the token now has.
    fn install(
        &self,
        path: &Path,
        src: &Store,
        theirs: &Header,
        anchored: u64,
        from_state: Option<State>,
        current: Option<&Store>,
    ) -> Result<Header> {
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
        self.set_store(None);
        {
            let _lock = self.write_lock.lock()?;
            let step = Step {
                uuid: h.uuid,
                from: from_state,
                to: State::of(&h, &body),
            };
            let prepared = self.anchor_prepare(&step, true)?;
            match current {
                Some(t) => staged_store.copy_into(t)?,
                None => {
                    set_aside(path, &self.cfg.label)?;
                    staged_store.copy_to(path)?;
                }
            }
            self.anchor_commit(&prepared)?;
        }
        drop(staged_store);
        remove_db(&staged)?;
        Ok(h)
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
}
