//! Commits: every change to a self-managed token's store goes through [`LocalBackend::commit`],
//! which seals the new header, advances the HSM anchor around the SQLite commit (`anchor.rs`),
//! and moves the header's member digest and this process's record set with the records written
//! (`members.rs`).

use super::anchor::{State, Step};
use super::header::Header;
use super::store::{self, Store};
use super::vault::{self, Key32};
use super::{members, LocalBackend, HEADER_DOMAIN};
use crate::error::{Error, Result};

/// A commit's new header: `after` (its epoch already advanced), sealed under `k`, replacing the
/// header in state `before` (`None`: no token yet, or a store `keygate restore` replaces).
pub(super) struct Change {
    pub before: Option<State>,
    pub after: Header,
    pub k: Key32,
    /// The change set the header's member count and digest itself; otherwise they are moved
    /// with the records the transaction wrote and deleted.
    pub members_set: bool,
}

impl LocalBackend {
    /// Runs `f` in one store transaction with the verified header and its K_int; the header,
    /// if `f` changed it, is sealed and written in the same transaction. Every change to the
    /// token's objects goes through here, so the header's member digest moves with them.
    /// A token serving from its mirror refuses with `CKR_TOKEN_WRITE_PROTECTED`.
    pub(super) fn transact<T>(&self, f: impl FnOnce(&store::Tx<'_>, &mut Header, &Key32) -> Result<T>) -> Result<T> {
        self.writable()?;
        self.transact_any(f)
    }

    /// Refuses changes while the token serves from its mirror: a key made there would be lost
    /// if the primary came back and were served again.
    pub(super) fn writable(&self) -> Result<()> {
        match self.store_opt()? {
            Some(s) if s.is_fallback() => Err(Error::TokenWriteProtected),
            _ => Ok(()),
        }
    }

    /// [`transact`](Self::transact), also while serving from the mirror.
    pub(super) fn transact_any<T>(
        &self,
        f: impl FnOnce(&store::Tx<'_>, &mut Header, &Key32) -> Result<T>,
    ) -> Result<T> {
        self.commit(&*self.store()?, false, |tx| {
            let (body, mac) = tx.header()?.ok_or(Error::UserPinNotInitialized)?;
            let mut h = self.verify_header(&body, &mac)?;
            let before = State::of(&h, &body);
            let k = self.k_int(&h)?;
            let out = f(tx, &mut h, &k)?;
            if !tx.wrote() && h.encode() == body {
                return Ok((out, None));
            }
            h.epoch = before.epoch.saturating_add(1);
            Ok((
                out,
                Some(Change {
                    before: Some(before),
                    after: h,
                    k,
                    members_set: false,
                }),
            ))
        })
    }

    /// The one way a change reaches a store (DESIGN.md §4 "Freshness"). Under the token's write
    /// lock, `f` runs in one SQLite transaction and returns the new header, if it changed
    /// anything; the header is sealed and written, the HSM anchor names it as pending, the
    /// transaction commits, and the anchor names it alone. Only then is the change acknowledged.
    /// `authorised` (an SO-authorised restore) lets the change replace a store whose header the
    /// anchor does not name.
    pub(super) fn commit<T>(
        &self,
        store: &Store,
        authorised: bool,
        f: impl FnOnce(&store::Tx<'_>) -> Result<(T, Option<Change>)>,
    ) -> Result<T> {
        let _lock = self.write_lock.lock()?;
        let floor = self.epoch_floor();
        let (out, prepared) = store.write(|tx| {
            let (out, change) = f(tx)?;
            let Some(mut c) = change else {
                return Ok((out, None));
            };
            if let Some(before) = &c.before {
                self.check_floor(&c.after.uuid, before.epoch, floor)?;
            }
            let changes = tx.member_changes();
            if !c.members_set {
                if c.before.is_some_and(|b| b.epoch == 0) {
                    return Err(Error::Integrity(
                        "the store was written before anchors and could not be anchored at open; see the log".into(),
                    ));
                }
                members::apply_changes(&c.k, &mut c.after, &changes)?;
            }
            let body = c.after.encode();
            tx.set_header(&body, &vault::mac(&c.k, HEADER_DOMAIN, &[&body])?)?;
            let step = Step {
                uuid: c.after.uuid,
                from: c.before,
                to: State::of(&c.after, &body),
            };
            let anchor = self.anchor_prepare(&step, authorised)?;
            Ok((out, Some((anchor, c.before.map(|b| b.epoch), c.after, changes))))
        })?;
        if let Some((anchor, before, h, changes)) = prepared {
            self.anchor_commit(&anchor)?;
            self.note_epoch(&h);
            self.members_follow(before, &h, &changes);
        }
        Ok(out)
    }

    /// Changes the header atomically against other processes.
    pub(super) fn change_header<T>(&self, f: impl FnOnce(&mut Header) -> Result<T>) -> Result<T> {
        self.transact(|_, h, _| f(h))
    }
}
