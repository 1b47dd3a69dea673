//! One write transaction of a self-managed store ([`super::store::Store::write`]): the rows it
//! puts and deletes, kept for the mirror and for the header's member digest.

use std::cell::{Cell, RefCell};

use rusqlite::{params, OptionalExtension};

use super::store::{all_rows, apply, header_row, member_ids, row_by_uid, HeaderRow, IndexColumns, Op, Row};
use crate::backend::ObjectId;
use crate::error::{Error, Result};

/// How a transaction changed a token object's record, for the header's member digest and the
/// verified member sets of processes (`objects.rs`): its record MAC before (`None`: new) and
/// after (`None`: deleted).
pub struct MemberChange {
    pub uid: ObjectId,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
}

/// The writes of one transaction ([`Store::write`]).
pub struct Tx<'a> {
    pub(super) tx: &'a rusqlite::Transaction<'a>,
    /// What was applied, kept for the mirror (only when there is one).
    pub(super) ops: Option<RefCell<Vec<Op>>>,
    /// Whether anything was applied.
    pub(super) wrote: Cell<bool>,
    /// Every record written or deleted, in order.
    pub(super) changes: RefCell<Vec<MemberChange>>,
}

impl Tx<'_> {
    fn run(&self, op: Op) -> Result<usize> {
        let n = apply(self.tx, &op)?;
        self.wrote.set(true);
        if let Some(ops) = &self.ops {
            ops.borrow_mut().push(op);
        }
        Ok(n)
    }

    pub fn header(&self) -> Result<Option<HeaderRow>> {
        header_row(self.tx)
    }

    pub fn set_header(&self, body: &[u8], mac: &[u8]) -> Result<()> {
        self.run(Op::Header {
            body: body.to_vec(),
            mac: mac.to_vec(),
        })?;
        Ok(())
    }

    fn mac_of(&self, uid: &ObjectId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tx
            .query_row(
                "SELECT CAST(mac AS BLOB) FROM objects WHERE uid = ?1",
                params![&uid[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn changed(&self, uid: ObjectId, old: Option<Vec<u8>>, new: Option<Vec<u8>>) {
        self.changes.borrow_mut().push(MemberChange { uid, old, new });
    }

    /// The records this transaction wrote and deleted.
    pub fn member_changes(&self) -> Vec<MemberChange> {
        std::mem::take(&mut *self.changes.borrow_mut())
    }

    fn put(&self, new: bool, ix: &IndexColumns<'_>, row: &Row) -> Result<usize> {
        let old = if new { None } else { self.mac_of(&row.uid)? };
        let n = self.put_row(new, ix, row)?;
        if n > 0 {
            self.changed(row.uid, old, Some(row.mac.clone()));
        }
        Ok(n)
    }

    fn put_row(&self, new: bool, ix: &IndexColumns<'_>, row: &Row) -> Result<usize> {
        self.run(Op::Put {
            new,
            class: ix.class,
            label: ix.label.map(<[u8]>::to_vec),
            ckid: ix.ckid.map(<[u8]>::to_vec),
            uid: row.uid,
            body: row.body.clone(),
            mac: row.mac.clone(),
        })
    }

    /// Inserts a new object and lists it among the token's members.
    pub fn insert(&self, ix: &IndexColumns<'_>, row: &Row) -> Result<()> {
        self.put(true, ix, row)?;
        Ok(())
    }

    /// Rewrites an existing object; `ObjectHandleInvalid` if it is not there.
    pub fn replace(&self, ix: &IndexColumns<'_>, row: &Row) -> Result<()> {
        if self.put(false, ix, row)? == 0 {
            return Err(Error::ObjectHandleInvalid);
        }
        Ok(())
    }

    pub fn get(&self, uid: &ObjectId) -> Result<Option<Row>> {
        row_by_uid(self.tx, uid)
    }

    /// Whether this transaction has written anything yet.
    pub fn wrote(&self) -> bool {
        self.wrote.get()
    }

    /// Forgets which mirror state this database holds (a restored copy: its mirror is then
    /// copied whole at the next open).
    pub fn forget_generation(&self) -> Result<()> {
        self.tx.execute("DELETE FROM sync", [])?;
        Ok(())
    }

    /// Deletes every object and member (`C_InitToken`).
    pub fn clear(&self) -> Result<()> {
        self.run(Op::Clear)?;
        Ok(())
    }

    /// Deletes an object and its membership; false if it was not there.
    pub fn delete(&self, uid: &ObjectId) -> Result<bool> {
        let old = self.mac_of(uid)?;
        let deleted = self.run(Op::Delete(*uid))? > 0;
        if deleted {
            self.changed(*uid, old, None);
        }
        Ok(deleted)
    }

    /// Every object row (rotation re-seals them all in one transaction).
    pub fn all(&self) -> Result<Vec<Row>> {
        all_rows(self.tx)
    }

    /// The identifiers the members table lists.
    pub fn members(&self) -> Result<Vec<Vec<u8>>> {
        member_ids(self.tx)
    }
}
