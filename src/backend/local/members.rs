//! The token's object set: what the header's member digest vouches for, and the set this
//! process has checked against it.
//!
//! The header holds the number of token objects and the XOR over them of
//! `vault::member_tag(uid, record MAC)`, so it vouches for each record's current version, not
//! only for its identifier. Each commit moves the digest with the records it writes and deletes
//! (`Tx::member_changes`, applied in `LocalBackend::commit`).
//!
//! A record's MAC proves that keygate wrote it, not that it is the record's current version or
//! that the token still holds it: a record put back after its destruction, or replaced by an
//! older version of itself (a key's `CKA_SENSITIVE` still FALSE), carries a valid MAC. So every
//! record this process reads must be in its verified set: the identifiers and record MACs of the
//! store, checked once against the header's digest and kept for the header's epoch. The process's
//! own commits move the set along; another process's commit (a new epoch) makes it read the set
//! again (one pass over the identifiers and MACs, no record bodies).

use std::collections::BTreeSet;

use super::header::Header;
use std::sync::Arc;

use super::store::{row_by_uid, uid_macs, MemberChange, Row, Store, UidMac};
use super::vault::{self, Key32};
use super::LocalBackend;
use crate::backend::ObjectId;
use crate::error::{Error, Result};
use crate::fastmap::FastMap;

/// The object set of a store as the members table and the records show it.
pub(super) struct Membership {
    /// What the header's digest and count should be for the listed identifiers.
    pub digest: [u8; 32],
    pub count: u64,
    /// Listed, with no record.
    pub missing: Vec<ObjectId>,
    /// Recorded, not listed.
    pub unlisted: Vec<ObjectId>,
}

fn uid_of(bytes: &[u8]) -> Result<ObjectId> {
    bytes
        .try_into()
        .map_err(|_| Error::Integrity("an object identifier is not 16 bytes".into()))
}

/// The membership of `rows` and the members table `members` of token `uuid`; `v1`: as a header
/// written before anchors (epoch 0) counted it, by identifier alone.
pub(super) fn membership(
    k: &Key32,
    uuid: &[u8; 16],
    rows: &[Row],
    members: &[Vec<u8>],
    v1: bool,
) -> Result<Membership> {
    let recorded: FastMap<ObjectId, &[u8]> = rows.iter().map(|r| (r.uid, r.mac.as_slice())).collect();
    let mut listed = BTreeSet::new();
    let mut digest = [0u8; 32];
    for m in members {
        let uid = uid_of(m)?;
        let tag = match (v1, recorded.get(&uid)) {
            (true, _) => vault::member_tag_v1(k, uuid, &uid)?,
            (false, Some(mac)) => vault::member_tag(k, uuid, &uid, mac)?,
            (false, None) => [0; 32],
        };
        vault::xor_into(&mut digest, &tag);
        listed.insert(uid);
    }
    let recorded: BTreeSet<ObjectId> = recorded.keys().copied().collect();
    Ok(Membership {
        digest,
        count: listed.len() as u64,
        missing: listed.difference(&recorded).copied().collect(),
        unlisted: recorded.difference(&listed).copied().collect(),
    })
}

/// Refuses to go on with a store whose object set is not exactly the one the header vouches for.
pub(super) fn check_membership(k: &Key32, h: &Header, rows: &[Row], members: &[Vec<u8>]) -> Result<()> {
    let m = membership(k, &h.uuid, rows, members, h.epoch == 0)?;
    if m.digest != h.members || m.count != h.objects || !m.missing.is_empty() || !m.unlisted.is_empty() {
        return Err(Error::Integrity(
            "the store's objects are not the ones its header vouches for; run `keygate verify`".into(),
        ));
    }
    Ok(())
}

/// Moves the header's count and digest with what a transaction wrote and deleted.
pub(super) fn apply_changes(k: &Key32, h: &mut Header, changes: &[MemberChange]) -> Result<()> {
    for c in changes {
        if let Some(old) = &c.old {
            h.remove_member(&vault::member_tag(k, &h.uuid, &c.uid, old)?);
        }
        if let Some(new) = &c.new {
            h.add_member(&vault::member_tag(k, &h.uuid, &c.uid, new)?);
        }
    }
    Ok(())
}

/// The identifiers and record MACs of a store, checked against its header of `epoch`.
#[derive(Clone)]
pub(super) struct MemberSet {
    uuid: [u8; 16],
    epoch: u64,
    macs: FastMap<ObjectId, Vec<u8>>,
}

/// Whether a record read is one the header vouches for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Vouched {
    Yes,
    /// Not one of the token's objects (destroyed, or never made by this token).
    Absent,
    /// One of the token's objects, but not its current version (put back from earlier).
    Stale,
}

/// The record set of the very state a read saw (`None` for a store written before anchors,
/// checked by record MAC alone until it is anchored).
pub(super) struct Vouching {
    set: Option<Arc<MemberSet>>,
}

impl Vouching {
    /// Whether `row`, read in the same read, is the version of its record the header vouches for.
    pub fn vouch(&self, row: &Row) -> Vouched {
        let Some(set) = &self.set else {
            return Vouched::Yes;
        };
        match set.macs.get(&row.uid) {
            Some(m) if *m == row.mac => Vouched::Yes,
            Some(_) => Vouched::Stale,
            None => Vouched::Absent,
        }
    }
}

impl LocalBackend {
    /// The record set of the header `h`, from the store's (uid, MAC) `pairs` read with it; kept
    /// as this process's set unless a newer one is kept already.
    fn member_set_of(&self, h: &Header, pairs: Vec<UidMac>) -> Result<Arc<MemberSet>> {
        let k = self.k_int(h)?;
        let mut digest = [0u8; 32];
        let mut macs = FastMap::default();
        for (uid, m) in pairs {
            let uid = uid_of(&uid)?;
            vault::xor_into(&mut digest, &vault::member_tag(&k, &h.uuid, &uid, &m)?);
            macs.insert(uid, m);
        }
        if digest != h.members || macs.len() as u64 != h.objects {
            log::error!(
                "token {:?}: the store's records are not the set its header vouches for; refusing them",
                self.cfg.label
            );
            return Err(Error::Integrity(
                "the store's records are not the set its header vouches for (a record added, removed or put back behind keygate's back); run `keygate verify`".into(),
            ));
        }
        let set = Arc::new(MemberSet {
            uuid: h.uuid,
            epoch: h.epoch,
            macs,
        });
        let mut kept = self.members.lock();
        if !kept.as_ref().is_some_and(|s| s.uuid == h.uuid && s.epoch > h.epoch) {
            *kept = Some(set.clone());
        }
        Ok(set)
    }

    /// Runs `what` in one read transaction with the header and, when this process's record set
    /// is not the one of that header, the store's (uid, MAC) pairs: the records read are judged
    /// against the set of the very state they were read from, however fast other processes
    /// commit. A header older than one this process knew before the read began is refused (the
    /// store was put back). `None` if the token is not initialised.
    pub(super) fn read_vouched<T>(
        &self,
        store: &Store,
        what: impl FnOnce(&rusqlite::Connection) -> Result<T>,
    ) -> Result<Option<(Vouching, T)>> {
        let floor = self.epoch_floor();
        let have = self.members.lock().clone();
        let (header, (out, pairs)) = store.read(|c, header| {
            let out = what(c)?;
            let current = header
                .and_then(|(body, _)| Header::decode(body).ok())
                .is_none_or(|h| h.epoch == 0 || have.as_ref().is_some_and(|s| (s.uuid, s.epoch) == (h.uuid, h.epoch)));
            Ok((out, if current { None } else { Some(uid_macs(c)?) }))
        })?;
        let Some((body, mac)) = header else {
            return Ok(None);
        };
        let h = self.verify_header(&body, &mac)?;
        self.check_floor(&h.uuid, h.epoch, floor)?;
        let set = match pairs {
            _ if h.epoch == 0 => None,
            None => have,
            Some(pairs) => Some(self.member_set_of(&h, pairs)?),
        };
        Ok(Some((Vouching { set }, out)))
    }

    /// Reads and checks the store's record set (at open), keeping it for later reads.
    pub(super) fn check_member_set(&self, store: &Store) -> Result<()> {
        self.read_vouched(store, |_| Ok(())).map(drop)
    }

    /// After this process's commit from epoch `before` to `after`: the set follows the change,
    /// if it was the set of `before`; otherwise it is read again when next needed.
    pub(super) fn members_follow(&self, before: Option<u64>, after: &Header, changes: &[MemberChange]) {
        let mut set = self.members.lock();
        match set.as_mut() {
            Some(s) if s.uuid == after.uuid && Some(s.epoch) == before => {
                let s = Arc::make_mut(s);
                for c in changes {
                    match &c.new {
                        Some(m) => s.macs.insert(c.uid, m.clone()),
                        None => s.macs.remove(&c.uid),
                    };
                }
                s.epoch = after.epoch;
            }
            _ => *set = None,
        }
    }

    /// Anchors a store written before anchors (epoch 0): checks its object set as that header
    /// counted it (by identifier), counts it again by record version, and commits epoch 1, which
    /// names it in the HSM.
    pub(super) fn anchor_v1_store(&self) -> Result<()> {
        let store = self.store()?;
        self.commit(&store, false, |tx| {
            let (body, mac) = tx.header()?.ok_or(Error::UserPinNotInitialized)?;
            let mut h = self.verify_header(&body, &mac)?;
            if h.epoch != 0 {
                return Ok(((), None));
            }
            let before = super::anchor::State::of(&h, &body);
            let k = self.k_int(&h)?;
            let rows = tx.all()?;
            let members = tx.members()?;
            check_membership(&k, &h, &rows, &members)?;
            h.members = membership(&k, &h.uuid, &rows, &members, false)?.digest;
            h.epoch = 1;
            Ok((
                (),
                Some(super::Change {
                    before: Some(before),
                    after: h,
                    k,
                    members_set: true,
                }),
            ))
        })
    }

    /// The record `id` as the header vouches for it, read with the header as of one moment
    /// (its MAC is checked when it is opened).
    pub(super) fn vouched_row(&self, store: &Store, id: &ObjectId) -> Result<Row> {
        let (v, row) = self
            .read_vouched(store, |c| row_by_uid(c, id))?
            .ok_or(Error::UserPinNotInitialized)?;
        let row = row.ok_or(Error::ObjectHandleInvalid)?;
        match v.vouch(&row) {
            Vouched::Yes => Ok(row),
            refused => Err(self.refuse(&row, refused)),
        }
    }

    /// Logs a record the header does not vouch for, and the error its use gets.
    pub(super) fn refuse(&self, row: &Row, why: Vouched) -> Error {
        let what = match why {
            Vouched::Stale => "an earlier version of the object, put back behind keygate's back",
            _ => "not one of the token's objects (destroyed, or added behind keygate's back)",
        };
        log::error!(
            "token {:?}: record {} refused: {what}",
            self.cfg.label,
            hex::encode(row.uid)
        );
        match why {
            Vouched::Stale => Error::Integrity(format!("record {} is {what}", hex::encode(row.uid))),
            _ => Error::ObjectHandleInvalid,
        }
    }
}
