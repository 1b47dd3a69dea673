//! The audit trail (DESIGN.md §6 `[audit]`): one JSON line per security-relevant event — logins
//! and logouts, key generation, object creation, copy and destruction, wrapping, unwrapping and
//! derivation, and every operation initialised with a key — with its result.
//!
//! A line holds the time, the process, the token, the session, the operation, the mechanism,
//! the key's label and `CKA_ID` (hex) and the result; never a PIN, a credential or key bytes.
//! Each line goes to the file in one `write(2)` on a descriptor opened with `O_APPEND`, so lines
//! from several processes sharing the file never interleave. When a line cannot be written, the
//! failure is logged; with `required = true`, key operations then fail closed: nothing is done
//! that the trail cannot record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::AuditConfig;
use crate::error::{Error, Result};

/// The key an event concerns: what identifies it, never what it is.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KeyRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `sha256:…` (a key pair's public key) or `kcv:…` (a secret key), as pins name keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// One audit line.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub time: String,
    pub pid: u32,
    pub token: &'a str,
    pub session: u64,
    pub op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyRef>,
    /// What else the operation was told (a revocation's reason); never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub result: String,
}

/// The audit trail of a configuration.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    required: bool,
    file: Mutex<Option<File>>,
}

impl Audit {
    pub fn new(cfg: &AuditConfig) -> Audit {
        Audit {
            path: cfg.path.clone(),
            required: cfg.required,
            file: Mutex::new(None),
        }
    }

    /// Whether key operations must stop when the trail cannot be written.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Opens the file if it is not open yet.
    /// The trail's file, opened again when the one held is no longer at the path (rotated
    /// away by logrotate, or removed). A new file is `0600` in a directory made `0700`: the
    /// trail names keys and who used them.
    fn open<'g>(&self, slot: &'g mut Option<File>) -> std::io::Result<&'g mut File> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
        let moved = |f: &File| match (std::fs::metadata(&self.path), f.metadata()) {
            (Ok(at_path), Ok(held)) => (at_path.dev(), at_path.ino()) != (held.dev(), held.ino()),
            _ => true,
        };
        if slot.as_ref().is_some_and(moved) {
            log::info!(
                "audit: {} was rotated or removed; writing to a new file there",
                self.path.display()
            );
            *slot = None;
        }
        if slot.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            *slot = Some(f);
        }
        Ok(slot.as_mut().expect("just opened"))
    }

    /// Before a key operation: with `required`, refuses when the trail cannot be opened.
    pub fn ready(&self) -> Result<()> {
        if !self.required {
            return Ok(());
        }
        let mut g = self.file.lock();
        self.open(&mut g).map(|_| ()).map_err(|e| self.failed(&e))
    }

    /// Appends one line. An error means the line is not in the trail (already logged).
    pub fn write(&self, event: &Event<'_>) -> Result<()> {
        let mut line = serde_json::to_vec(event).map_err(|e| Error::General(format!("audit line: {e}")))?;
        line.push(b'\n');
        let mut g = self.file.lock();
        let r = self.open(&mut g).and_then(|f| f.write_all(&line));
        if let Err(e) = r {
            // Reopen next time: the file may have been rotated away or the disk freed.
            *g = None;
            return Err(self.failed(&e));
        }
        Ok(())
    }

    fn failed(&self, e: &std::io::Error) -> Error {
        let consequence = if self.required {
            "audit.required is set: key operations are refused until it can be written"
        } else {
            "the event is not recorded"
        };
        log::error!("audit trail {}: cannot write: {e}; {consequence}", self.path.display());
        Error::General(format!("audit trail {} cannot be written", self.path.display()))
    }
}

/// The current time as RFC 3339 UTC with milliseconds (`2026-11-22T17:45:10.583Z`).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The name of a result for the trail: `"ok"` or the `CKR_*` name (or number).
pub fn result_name<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => crate::error::rv_name(e.ck_rv()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc() {
        let t = now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }

    #[test]
    fn lines_are_appended_and_required_fails_closed() {
        let dir = tempfile_dir();
        let path = dir.join("audit.jsonl");
        let a = Audit::new(&AuditConfig {
            path: path.clone(),
            required: true,
        });
        a.ready().unwrap();
        let e = Event {
            time: now(),
            pid: 1,
            token: "t",
            session: 2,
            op: "C_SignInit",
            mechanism: Some("CKM_ECDSA".into()),
            keys: vec![KeyRef {
                label: Some("k".into()),
                id: None,
                fingerprint: None,
            }],
            detail: None,
            result: "ok".into(),
        };
        a.write(&e).unwrap();
        a.write(&e).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"time\":"), "{text}");
        let full = Audit::new(&AuditConfig {
            path: "/dev/full".into(),
            required: true,
        });
        assert!(full.write(&e).is_err());
        // A missing directory is made; one that cannot be (under a file) fails closed.
        let made = Audit::new(&AuditConfig {
            path: dir.join("no/such/dir/audit.jsonl"),
            required: true,
        });
        assert!(made.ready().is_ok());
        let impossible = Audit::new(&AuditConfig {
            path: path.join("under-a-file/audit.jsonl"),
            required: true,
        });
        assert!(impossible.ready().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("keygate-audit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
#[cfg(test)]
mod time_format {
    #[test]
    fn now_is_rfc3339_utc_with_milliseconds() {
        let t = super::now();
        let b = t.as_bytes();
        assert_eq!(b.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')] {
            assert_eq!(b[i], c, "{t}");
        }
        assert!(
            b.iter()
                .enumerate()
                .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit()),
            "{t}"
        );
    }
}
