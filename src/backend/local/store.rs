//! The raw record layer of a self-managed token: one sqlite database per token.
//!
//! This layer stores opaque bodies and their MACs; it never sees a plaintext secret. WAL mode,
//! `synchronous=FULL`, `secure_delete=ON` (a destroyed key's bytes are overwritten), a busy
//! timeout so several processes share one token; every change is one transaction. Nothing is
//! cached, so other processes' changes are seen on the next read.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::backend::ObjectId;
use crate::error::{Error, Result};

/// A row of the objects table.
pub struct Row {
    pub uid: ObjectId,
    pub body: Vec<u8>,
    pub mac: Vec<u8>,
}

/// Columns kept beside a record so that finding by class, label or id uses an index. They are
/// hints only: the matched record's MAC-checked body is what counts.
pub struct IndexColumns<'a> {
    pub class: u64,
    pub label: Option<&'a [u8]>,
    pub ckid: Option<&'a [u8]>,
}

#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS header (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    body  BLOB NOT NULL,
    mac   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    uid    BLOB PRIMARY KEY,
    class  INTEGER NOT NULL,
    label  BLOB,
    ckid   BLOB,
    body   BLOB NOT NULL,
    mac    BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_label ON objects(label);
CREATE INDEX IF NOT EXISTS objects_ckid ON objects(ckid);
CREATE INDEX IF NOT EXISTS objects_class ON objects(class);
CREATE TABLE IF NOT EXISTS members (
    uid    BLOB PRIMARY KEY
) WITHOUT ROWID;
";

/// The writes of one transaction ([`Store::write`]).
pub struct Tx<'a>(&'a rusqlite::Transaction<'a>);

impl Tx<'_> {
    pub fn header(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        header_row(self.0)
    }

    pub fn set_header(&self, body: &[u8], mac: &[u8]) -> Result<()> {
        self.0.execute(
            "INSERT OR REPLACE INTO header (id, body, mac) VALUES (1, ?1, ?2)",
            params![body, mac],
        )?;
        Ok(())
    }

    /// Inserts a new object and lists it among the token's members.
    pub fn insert(&self, ix: &IndexColumns<'_>, row: &Row) -> Result<()> {
        self.0.execute(
            "INSERT INTO objects (uid, class, label, ckid, body, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![&row.uid[..], ix.class as i64, ix.label, ix.ckid, row.body, row.mac],
        )?;
        self.0
            .execute("INSERT INTO members (uid) VALUES (?1)", params![&row.uid[..]])?;
        Ok(())
    }

    /// Rewrites an existing object; `ObjectHandleInvalid` if it is not there.
    pub fn replace(&self, ix: &IndexColumns<'_>, row: &Row) -> Result<()> {
        let n = self.0.execute(
            "UPDATE objects SET class = ?2, label = ?3, ckid = ?4, body = ?5, mac = ?6 WHERE uid = ?1",
            params![&row.uid[..], ix.class as i64, ix.label, ix.ckid, row.body, row.mac],
        )?;
        if n == 0 {
            return Err(Error::ObjectHandleInvalid);
        }
        Ok(())
    }

    pub fn get(&self, uid: &ObjectId) -> Result<Option<Row>> {
        Ok(self
            .0
            .query_row("SELECT body, mac FROM objects WHERE uid = ?1", params![&uid[..]], |r| {
                Ok(Row {
                    uid: *uid,
                    body: r.get(0)?,
                    mac: r.get(1)?,
                })
            })
            .optional()?)
    }

    /// Deletes an object and its membership; false if it was not there.
    pub fn delete(&self, uid: &ObjectId) -> Result<bool> {
        let n = self
            .0
            .execute("DELETE FROM objects WHERE uid = ?1", params![&uid[..]])?;
        self.0
            .execute("DELETE FROM members WHERE uid = ?1", params![&uid[..]])?;
        Ok(n > 0)
    }

    /// Every object row (rotation re-seals them all in one transaction).
    pub fn all(&self) -> Result<Vec<Row>> {
        all_rows(self.0)
    }

    /// The identifiers the members table lists.
    pub fn members(&self) -> Result<Vec<Vec<u8>>> {
        member_ids(self.0)
    }
}

fn member_ids(conn: &Connection) -> Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare("SELECT uid FROM members")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

fn header_row(conn: &Connection) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    Ok(conn
        .query_row("SELECT body, mac FROM header WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

fn all_rows(conn: &Connection) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare("SELECT uid, body, mac FROM objects")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(uid, body, mac)| {
            let uid = uid
                .try_into()
                .map_err(|_| Error::Integrity("an object identifier is not 16 bytes".into()))?;
            Ok(Row { uid, body, mac })
        })
        .collect()
}

impl Store {
    /// Opens an existing store, or creates it (mode 0600) when `create` is set.
    pub fn open(path: &Path, create: bool) -> Result<Store> {
        if !path.exists() {
            if !create {
                return Err(Error::Store(format!("{} does not exist", path.display())));
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::Store(format!("cannot create {}: {e}", path.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header's body and MAC, if the token was initialised.
    pub fn header(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        header_row(&self.conn.lock())
    }

    /// Runs `f` in one immediate transaction: everything it writes is committed together, or
    /// nothing is (an error from `f` rolls back). Writers from other processes wait.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Tx(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    /// Replaces the header and deletes every object, in one transaction (`C_InitToken`).
    pub fn reinitialise(&self, body: &[u8], mac: &[u8]) -> Result<()> {
        self.write(|tx| {
            tx.0.execute("DELETE FROM objects", [])?;
            tx.0.execute("DELETE FROM members", [])?;
            tx.set_header(body, mac)
        })
    }

    pub fn get(&self, uid: &ObjectId) -> Result<Option<Row>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT body, mac FROM objects WHERE uid = ?1")?;
        let row = stmt
            .query_row(params![&uid[..]], |r| {
                Ok(Row {
                    uid: *uid,
                    body: r.get(0)?,
                    mac: r.get(1)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Copies the write-ahead log into the database and empties it (`wal_checkpoint(TRUNCATE)`),
    /// so that bytes `secure_delete` overwrote in the database are gone from the log too.
    /// False when a reader in another process kept part of the log alive (it is emptied at a
    /// later checkpoint).
    pub fn checkpoint(&self) -> Result<bool> {
        let conn = self.conn.lock();
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// A number that changes whenever another connection (another process, or the CLI) has
    /// committed a change to the database since this connection last looked (SQLite's
    /// `PRAGMA data_version`); this connection's own commits leave it unchanged.
    pub fn data_version(&self) -> Result<i64> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("PRAGMA data_version")?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// Candidate rows for a search, narrowed by whichever indexed column the search names.
    pub fn candidates(&self, class: Option<u64>, label: Option<&[u8]>, ckid: Option<&[u8]>) -> Result<Vec<Row>> {
        let conn = self.conn.lock();
        let (sql, arg): (&str, Option<rusqlite::types::Value>) = if let Some(l) = label {
            (
                "SELECT uid, body, mac FROM objects WHERE label = ?1",
                Some(l.to_vec().into()),
            )
        } else if let Some(i) = ckid {
            (
                "SELECT uid, body, mac FROM objects WHERE ckid = ?1",
                Some(i.to_vec().into()),
            )
        } else if let Some(c) = class {
            (
                "SELECT uid, body, mac FROM objects WHERE class = ?1",
                Some((c as i64).into()),
            )
        } else {
            ("SELECT uid, body, mac FROM objects", None)
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        };
        let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = match arg {
            Some(a) => stmt.query_map([a], map)?.collect::<rusqlite::Result<_>>()?,
            None => stmt.query_map([], map)?.collect::<rusqlite::Result<_>>()?,
        };
        Ok(rows
            .into_iter()
            .filter_map(|(uid, body, mac)| {
                Some(Row {
                    uid: uid.try_into().ok()?,
                    body,
                    mac,
                })
            })
            .collect())
    }

    /// Every object row, and the identifiers the members table lists, read in one
    /// transaction (`keygate verify`).
    pub fn snapshot(&self) -> Result<(Vec<Row>, Vec<Vec<u8>>)> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let rows = all_rows(&tx)?;
        let members = member_ids(&tx)?;
        tx.commit()?;
        Ok((rows, members))
    }

    /// SQLite's own structural check of the file (`PRAGMA quick_check`): empty when sound, else
    /// what it found.
    pub fn structural_problems(&self) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("PRAGMA quick_check")?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }

    /// Writes a consistent copy of the database to `to` (which must not exist), as of one
    /// moment, while other connections go on reading and writing (`VACUUM INTO` reads inside
    /// one transaction). The copy is created mode 0600, synced, and only then given its name.
    pub fn copy_to(&self, to: &Path) -> Result<()> {
        if to.exists() {
            return Err(Error::Store(format!("{} already exists", to.display())));
        }
        let dir = to
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = to
            .file_name()
            .ok_or_else(|| Error::Store(format!("{} is not a file name", to.display())))?;
        let tmp = dir.join(format!(".{}.partial", name.to_string_lossy()));
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::Store(format!("cannot create {}: {e}", tmp.display())))?;
        let copied = (|| -> Result<()> {
            let target = tmp
                .to_str()
                .ok_or_else(|| Error::Store(format!("{} is not UTF-8", tmp.display())))?;
            self.conn.lock().execute("VACUUM INTO ?1", params![target])?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&tmp, to))
                .and_then(|()| std::fs::File::open(dir).and_then(|d| d.sync_all()))
                .map_err(|e| Error::Store(format!("cannot write {}: {e}", to.display())))
        })();
        if copied.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        copied
    }

    /// Copies this database into `dst` page by page (SQLite's online backup), as one change of
    /// `dst` that its other connections see as a commit.
    pub fn copy_into(&self, dst: &Store) -> Result<()> {
        let src = self.conn.lock();
        let mut d = dst.conn.lock();
        let b = rusqlite::backup::Backup::new(&src, &mut d)?;
        // All pages in one step (-1); a step another connection's lock holds off is tried
        // again, for up to the store's 30 s busy timeout.
        for _ in 0..3000 {
            match b.step(-1)? {
                rusqlite::backup::StepResult::Done => return Ok(()),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        Err(Error::Store("the store stayed busy; nothing restored".into()))
    }

    /// How many objects the token holds.
    pub fn count(&self) -> Result<u64> {
        let conn = self.conn.lock();
        Ok(conn.query_row("SELECT count(*) FROM objects", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_version_sees_another_connections_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = Store::open(&path, true).unwrap();
        let b = Store::open(&path, false).unwrap();
        a.write(|tx| tx.set_header(b"h0", b"m")).unwrap();
        a.candidates(Some(1), None, None).unwrap();
        a.candidates(None, Some(b"x"), None).unwrap();
        a.get(&[0; 16]).unwrap();
        a.header().unwrap();
        let before = a.data_version().unwrap();
        assert_eq!(a.data_version().unwrap(), before);
        b.write(|tx| tx.set_header(b"h", b"m")).unwrap();
        assert_ne!(a.data_version().unwrap(), before, "another connection committed");
        let seen = a.data_version().unwrap();
        a.write(|tx| tx.set_header(b"h2", b"m")).unwrap();
        assert_eq!(a.data_version().unwrap(), seen, "its own commits do not count");
    }
}
