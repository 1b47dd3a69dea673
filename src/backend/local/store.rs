//! The raw record layer of a self-managed token: one sqlite database per token.
//!
//! This layer stores opaque bodies and their MACs; it never sees a plaintext secret. WAL mode,
//! `synchronous=FULL`, `secure_delete=ON` (a destroyed key's bytes are overwritten), a busy
//! timeout so several processes share one token; every change is one transaction. Nothing is
//! cached, so other processes' changes are seen on the next read. Columns are read through
//! `CAST`, so that a value stored with another type (an edit with the `sqlite3` program) is one
//! record failing its MAC, not every read of the table failing.

use std::cell::{Cell, RefCell};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::mirror::{file_id, generation, set_generation, Mirror};
use crate::backend::ObjectId;
use crate::error::{Error, Result};
use crate::sys::clock::coarse_millis;
use crate::sys::shared_counter::SharedCounter;

/// The header row: the header's body and its MAC.
pub type HeaderRow = (Vec<u8>, Vec<u8>);

/// An object's identifier and record MAC, as stored (checked by the caller).
pub type UidMac = (Vec<u8>, Vec<u8>);

/// A store as of one moment ([`Store::snapshot`]).
pub struct Snapshot {
    pub header: Option<HeaderRow>,
    pub rows: Vec<Row>,
    /// The identifiers the members table lists.
    pub members: Vec<Vec<u8>>,
}

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
    /// Connections for read transactions (`Store::read`: finds, `keygate verify`), opened at
    /// first need: SQLite in WAL mode runs readers side by side, where one connection behind
    /// one mutex made every concurrent search wait for the others (find-10k ran slower on two
    /// threads than on one).
    readers: [Mutex<Option<Connection>>; READERS],
    path: PathBuf,
    /// Tells this process cheaply whether another has changed the store ([`Store::version`]).
    freshness: Freshness,
    mirror: Option<Mirror>,
    /// This is a token's mirror serving in place of a primary that failed: read-only for
    /// objects until `keygate restore` rebuilds the primary.
    fallback: bool,
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
CREATE TABLE IF NOT EXISTS sync (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BLOB NOT NULL
);
";

fn data_version(conn: &Connection) -> Result<i64> {
    let mut stmt = conn.prepare_cached("PRAGMA data_version")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

/// Opens a database with the store's settings, or creates it (mode 0600) when `create` is set.
pub(super) fn connect(path: &Path, create: bool) -> Result<Connection> {
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
    Ok(conn)
}

/// One change to the store's rows. [`Store::write`] applies each to the primary and, when the
/// token has a mirror, replays the same list on the mirror.
pub(super) enum Op {
    Header {
        body: Vec<u8>,
        mac: Vec<u8>,
    },
    /// Insert (`new`) or rewrite an object.
    Put {
        new: bool,
        class: u64,
        label: Option<Vec<u8>>,
        ckid: Option<Vec<u8>>,
        uid: ObjectId,
        body: Vec<u8>,
        mac: Vec<u8>,
    },
    Delete(ObjectId),
    /// Every object and member gone (`C_InitToken`).
    Clear,
}

pub(super) const INSERT_OBJECT: &str =
    "INSERT INTO objects (uid, class, label, ckid, body, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const UPDATE_OBJECT: &str = "UPDATE objects SET class = ?2, label = ?3, ckid = ?4, body = ?5, mac = ?6 WHERE uid = ?1";

/// Applies `op` to the database `conn` is in a transaction on; how many object rows it touched.
pub(super) fn apply(conn: &Connection, op: &Op) -> Result<usize> {
    Ok(match op {
        Op::Header { body, mac } => conn.execute(
            "INSERT OR REPLACE INTO header (id, body, mac) VALUES (1, ?1, ?2)",
            params![body, mac],
        )?,
        Op::Put {
            new,
            class,
            label,
            ckid,
            uid,
            body,
            mac,
        } => {
            let sql = if *new { INSERT_OBJECT } else { UPDATE_OBJECT };
            let n = conn.execute(sql, params![&uid[..], *class as i64, label, ckid, body, mac])?;
            if *new {
                conn.execute("INSERT INTO members (uid) VALUES (?1)", params![&uid[..]])?;
            }
            n
        }
        Op::Delete(uid) => {
            let n = conn.execute("DELETE FROM objects WHERE uid = ?1", params![&uid[..]])?;
            conn.execute("DELETE FROM members WHERE uid = ?1", params![&uid[..]])?;
            n
        }
        Op::Clear => {
            conn.execute("DELETE FROM members", [])?;
            conn.execute("DELETE FROM objects", [])?
        }
    })
}

pub use super::tx::{MemberChange, Tx};

pub(super) fn member_ids(conn: &Connection) -> Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare("SELECT CAST(uid AS BLOB) FROM members")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

/// Candidate rows for a search, narrowed by whichever indexed column the search names.
pub fn candidate_rows(
    conn: &Connection,
    class: Option<u64>,
    label: Option<&[u8]>,
    ckid: Option<&[u8]>,
) -> Result<Vec<Row>> {
    let (sql, arg): (&str, Option<rusqlite::types::Value>) = if let Some(l) = label {
        (
            "SELECT CAST(uid AS BLOB), CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects WHERE label = ?1",
            Some(l.to_vec().into()),
        )
    } else if let Some(i) = ckid {
        (
            "SELECT CAST(uid AS BLOB), CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects WHERE ckid = ?1",
            Some(i.to_vec().into()),
        )
    } else if let Some(c) = class {
        (
            "SELECT CAST(uid AS BLOB), CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects WHERE class = ?1",
            Some((c as i64).into()),
        )
    } else {
        (
            "SELECT CAST(uid AS BLOB), CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects",
            None,
        )
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

/// Every record's identifier and MAC.
pub fn uid_macs(conn: &Connection) -> Result<Vec<UidMac>> {
    Ok(conn
        .prepare_cached("SELECT CAST(uid AS BLOB), CAST(mac AS BLOB) FROM objects")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn row_by_uid(conn: &Connection, uid: &ObjectId) -> Result<Option<Row>> {
    Ok(conn
        .prepare_cached("SELECT CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects WHERE uid = ?1")?
        .query_row(params![&uid[..]], |r| {
            Ok(Row {
                uid: *uid,
                body: r.get(0)?,
                mac: r.get(1)?,
            })
        })
        .optional()?)
}

pub(super) fn header_row(conn: &Connection) -> Result<Option<HeaderRow>> {
    Ok(conn
        .prepare_cached("SELECT CAST(body AS BLOB), CAST(mac AS BLOB) FROM header WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(super) fn all_rows(conn: &Connection) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare("SELECT CAST(uid AS BLOB), CAST(body AS BLOB), CAST(mac AS BLOB) FROM objects")?;
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

/// How many read connections a store opens at most.
const READERS: usize = 4;

/// What [`Store::version`] returns: equal values mean no other connection has committed a
/// change in between (to within [`BACKSTOP`] for a writer that did not bump the counter).
pub type Version = (u64, u64);

/// At most this long passes between two of a process's `PRAGMA data_version` checks when the
/// store has a change counter: the backstop for a change the counter missed (a process that
/// died between its commit and the bump, or a writer that is not keygate).
pub const BACKSTOP: Duration = Duration::from_millis(250);

/// The store's change counter and the state of its backstop check.
#[derive(Debug)]
struct Freshness {
    /// `<store>.changes`, bumped after every commit by every keygate process; `None` where the
    /// file cannot be made (then every check asks SQLite).
    counter: Option<SharedCounter>,
    /// When SQLite was last asked (`sys::clock` milliseconds), what it answered, and how many
    /// times its answer changed.
    checked_ms: AtomicU64,
    data_version: AtomicI64,
    seen: AtomicU64,
}

impl Store {
    /// Opens an existing store, or creates it (mode 0600) when `create` is set.
    pub fn open(path: &Path, create: bool) -> Result<Store> {
        let conn = connect(path, create)?;
        let counter_path = PathBuf::from(format!("{}.changes", path.display()));
        let counter = SharedCounter::open(&counter_path)
            .inspect_err(|e| {
                // A link or another user's file where the counter belongs is someone's doing.
                let planted = e.raw_os_error() == Some(libc::ELOOP) || e.kind() == std::io::ErrorKind::Other;
                let line = format!(
                    "no change counter {} ({e}); SQLite is asked on every operation",
                    counter_path.display()
                );
                if planted {
                    log::warn!("{line}");
                } else {
                    log::debug!("{line}");
                }
            })
            .ok();
        let data_version = data_version(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            readers: Default::default(),
            freshness: Freshness {
                counter,
                checked_ms: AtomicU64::new(coarse_millis()),
                data_version: AtomicI64::new(data_version),
                seen: AtomicU64::new(0),
            },
            path: path.to_path_buf(),
            mirror: None,
            fallback: false,
        })
    }

    /// Keeps `mirror` in step with this store from now on, and brings it into step now if it
    /// is not (a new mirror, or one a failure left behind). A mirror that cannot be written is
    /// logged and never fails the store.
    pub fn mirrored(mut self, mirror: &Path) -> Result<Store> {
        // The connection that reads the mirror's generation is the one its changes go through.
        let opened = connect(mirror, false)
            .ok()
            .and_then(|c| file_id(mirror).map(|id| (c, id)));
        let mirrored = opened.as_ref().and_then(|(c, _)| generation(c).ok().flatten());
        self.mirror = Some(Mirror::new(mirror, opened));
        if mirrored.is_none() || mirrored != generation(&self.conn.lock())? {
            self.write(|_| Ok(()))?;
        }
        Ok(self)
    }

    /// Opens a token's mirror to serve in place of its failed primary (read-only for objects).
    pub fn fallback(mirror: &Path) -> Result<Store> {
        let mut s = Store::open(mirror, false)?;
        s.fallback = true;
        Ok(s)
    }

    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header's body and MAC, if the token was initialised.
    pub fn header(&self) -> Result<Option<HeaderRow>> {
        header_row(&self.conn.lock())
    }

    /// Runs `f` in one immediate transaction: everything it writes is committed together, or
    /// nothing is (an error from `f` rolls back). Writers from other processes wait. With a
    /// mirror, the same changes are committed to it first, while this store's write lock keeps
    /// every process's changes in one order.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let t = Tx {
            tx: &tx,
            ops: self.mirror.as_ref().map(|_| RefCell::new(Vec::new())),
            wrote: Cell::new(false),
            changes: RefCell::new(Vec::new()),
        };
        let out = f(&t)?;
        if let (Some(m), Some(ops)) = (&self.mirror, t.ops) {
            let prev = generation(&tx)?;
            let mut next = [0u8; 16];
            crate::crypto::random(&mut next)?;
            set_generation(&tx, &next)?;
            m.follow(&tx, prev, &next, &ops.into_inner());
        }
        tx.commit()?;
        self.bump();
        Ok(out)
    }

    /// Tells other processes (and this one's other connections) that the store changed.
    fn bump(&self) {
        if let Some(c) = &self.freshness.counter {
            c.bump();
        }
    }

    /// Runs `f` in one read transaction, after the header: what they read is as of one moment,
    /// whatever other connections commit meanwhile.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection, Option<&HeaderRow>) -> Result<T>,
    ) -> Result<(Option<HeaderRow>, T)> {
        // A free read connection (opened now if it never was), else the main one.
        for slot in &self.readers {
            let Some(mut reader) = slot.try_lock() else { continue };
            if reader.is_none() {
                match Connection::open(&self.path).and_then(|c| c.busy_timeout(Duration::from_secs(30)).map(|()| c)) {
                    Ok(c) => *reader = Some(c),
                    Err(e) => {
                        log::debug!(
                            "no read connection to {} ({e}); reading on the main one",
                            self.path.display()
                        );
                        break;
                    }
                }
            }
            if let Some(c) = reader.as_mut() {
                return Self::read_on(c, f);
            }
        }
        Self::read_on(&mut self.conn.lock(), f)
    }

    fn read_on<T>(
        conn: &mut Connection,
        f: impl FnOnce(&Connection, Option<&HeaderRow>) -> Result<T>,
    ) -> Result<(Option<HeaderRow>, T)> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let header = header_row(&tx)?;
        let out = f(&tx, header.as_ref())?;
        tx.commit()?;
        Ok((header, out))
    }

    /// Copies the write-ahead log into the database and empties it (`wal_checkpoint(TRUNCATE)`),
    /// so that bytes `secure_delete` overwrote in the database are gone from the log too.
    /// False when a reader in another process kept part of the log alive (it is emptied at a
    /// later checkpoint).
    pub fn checkpoint(&self) -> Result<bool> {
        let conn = self.conn.lock();
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if let Some(m) = &self.mirror {
            m.checkpoint();
        }
        Ok(busy == 0)
    }

    /// A number that changes whenever another connection (another process, or the CLI) has
    /// committed a change to the database since this connection last looked (SQLite's
    /// `PRAGMA data_version`); this connection's own commits leave it unchanged.
    pub fn data_version(&self) -> Result<i64> {
        data_version(&self.conn.lock())
    }

    /// A value that changes when the store changes: read on every operation with a token
    /// object, so without a lock or a system call. It is the change counter every keygate
    /// commit bumps, beside how often SQLite's `data_version` (asked at most every
    /// [`BACKSTOP`]) changed behind the counter's back. Without a counter, SQLite's answer.
    pub fn version(&self) -> Result<Version> {
        let f = &self.freshness;
        let Some(counter) = &f.counter else {
            return Ok((0, self.data_version()? as u64));
        };
        let now = coarse_millis();
        let last = f.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= BACKSTOP.as_millis() as u64
            && f.checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let v = self.data_version()?;
            if f.data_version.swap(v, Ordering::Relaxed) != v {
                f.seen.fetch_add(1, Ordering::Release);
            }
        }
        Ok((counter.get(), f.seen.load(Ordering::Acquire)))
    }

    /// The header, every object row, and the identifiers the members table lists, read in one
    /// transaction (`keygate verify`).
    pub fn snapshot(&self) -> Result<Snapshot> {
        let (header, (rows, members)) = self.read(|c, _| Ok((all_rows(c)?, member_ids(c)?)))?;
        Ok(Snapshot { header, rows, members })
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
                rusqlite::backup::StepResult::Done => {
                    dst.bump();
                    return Ok(());
                }
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
        a.read(|c, _| candidate_rows(c, Some(1), None, None)).unwrap();
        a.read(|c, _| row_by_uid(c, &[0; 16])).unwrap();
        a.read(|c, _| uid_macs(c)).unwrap();
        a.read(|c, _| candidate_rows(c, None, Some(b"x"), None)).unwrap();
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
