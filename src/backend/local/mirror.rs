//! The mirror of a self-managed token (`mirror =`): a second database kept in step with every
//! change committed to the store (DESIGN.md §4), and the generation that tells whether it is.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::store::{apply, connect, header_row, member_ids, Op, INSERT_OBJECT};
use crate::error::{Error, Result};

/// The mirror's view of the primary: a random value that changes with every mirrored change,
/// the same in both databases when the mirror holds what the primary holds.
pub(super) type Generation = [u8; 16];

pub(super) fn generation(conn: &Connection) -> Result<Option<Generation>> {
    let g: Option<Vec<u8>> = conn
        .query_row("SELECT generation FROM sync WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    Ok(g.and_then(|g| g.try_into().ok()))
}

pub(super) fn set_generation(conn: &Connection, g: &Generation) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO sync (id, generation) VALUES (1, ?1)",
        params![&g[..]],
    )?;
    Ok(())
}

/// Makes `to` (in a transaction) hold exactly the rows of `from`.
pub(super) fn copy_rows(from: &Connection, to: &Connection) -> Result<u64> {
    to.execute_batch("DELETE FROM members; DELETE FROM objects; DELETE FROM header;")?;
    if let Some((body, mac)) = header_row(from)? {
        apply(to, &Op::Header { body, mac })?;
    }
    let mut n = 0;
    let mut read = from.prepare("SELECT CAST(uid AS BLOB), CAST(class AS INTEGER), CAST(label AS BLOB), CAST(ckid AS BLOB), CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects")?;
    let mut write = to.prepare(INSERT_OBJECT)?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let uid: Vec<u8> = r.get(0)?;
        let class: i64 = r.get(1)?;
        let label: Option<Vec<u8>> = r.get(2)?;
        let ckid: Option<Vec<u8>> = r.get(3)?;
        let body: Vec<u8> = r.get(4)?;
        let mac: Vec<u8> = r.get(5)?;
        write.execute(params![uid, class, label, ckid, body, mac])?;
        n += 1;
    }
    let mut member = to.prepare("INSERT INTO members (uid) VALUES (?1)")?;
    for uid in member_ids(from)? {
        member.execute(params![uid])?;
    }
    Ok(n)
}

/// The second database of a token with `mirror =`: every change to the primary is applied to
/// it in its own transaction, committed just before the primary's (DESIGN.md §4).
#[derive(Debug)]
pub(super) struct Mirror {
    path: PathBuf,
    /// The open mirror and the file it is (device, inode): a mirror file deleted or replaced
    /// is noticed and made again.
    conn: Mutex<Option<(Connection, (u64, u64))>>,
}

pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Mirror {
    /// The mirror at `path`, with its connection if it is already open.
    pub(super) fn new(path: &Path, opened: Option<(Connection, (u64, u64))>) -> Mirror {
        Mirror {
            path: path.to_path_buf(),
            conn: Mutex::new(opened),
        }
    }

    /// Brings the mirror to the primary's state as of the transaction `primary` is in: replays
    /// `ops` when the mirror held the primary's previous state (`prev`), else copies every row.
    /// A failure is logged and leaves the primary alone; the next change tries again.
    pub(super) fn follow(&self, primary: &Connection, prev: Option<Generation>, next: &Generation, ops: &[Op]) {
        let mut guard = self.conn.lock();
        let result = (|| -> Result<()> {
            let current = file_id(&self.path);
            if guard.as_ref().map(|(_, id)| Some(*id)) != Some(current) {
                let conn = connect(&self.path, true)?;
                let id = file_id(&self.path).ok_or_else(|| Error::Store("the mirror vanished".into()))?;
                *guard = Some((conn, id));
            }
            let Some((conn, _)) = guard.as_mut() else {
                unreachable!()
            };
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mirrored = generation(&tx)?;
            if prev.is_some() && mirrored == prev {
                for op in ops {
                    apply(&tx, op)?;
                }
            } else {
                let n = copy_rows(primary, &tx)?;
                if mirrored.is_none() {
                    log::info!("mirror {}: made, with all {n} records", self.path.display());
                } else {
                    log::warn!(
                        "mirror {}: was not in step with the store; copied all {n} records",
                        self.path.display()
                    );
                }
            }
            set_generation(&tx, next)?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            *guard = None;
            log::error!(
                "mirror {}: not updated ({e}); the primary has the change, and the mirror is brought into step at the next one",
                self.path.display()
            );
        }
    }

    pub(super) fn checkpoint(&self) {
        if let Some((conn, _)) = &*self.conn.lock() {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
        }
    }
}
