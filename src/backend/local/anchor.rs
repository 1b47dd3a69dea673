//! The freshness anchor of a self-managed token (DESIGN.md §4, docs/threat-model.md).
//!
//! A MAC proves that keygate wrote a header, not that it is the latest one: a file writer can
//! put back an older store (a PIN failure counter before the failures, a key before its
//! destruction) and every MAC still holds. So the HSM root token keeps, per token, which header
//! the store must hold: its epoch (the header counts its commits) and a digest of its body.
//! Nobody without the root token's PIN can change it.
//!
//! Every commit to the store moves the anchor in two steps around the SQLite commit:
//! `prepare` names the new header as pending beside the current one, the store commits, then
//! `commit` names the new header alone. A process killed anywhere leaves a store whose header
//! the anchor names (the current or the pending one), so the token opens; a store older than
//! what the anchor names is refused. A change is acknowledged only after `commit`, so no
//! acknowledged change can be undone by putting back an older store.
//!
//! The anchor is kept in two HSM objects written in turn (the one not holding the latest
//! state), so that an HSM that rewrites an object file in place (SoftHSM2 truncates, then
//! writes) and is killed in between loses at most the state being written, never the one
//! before it. Writers hold the token's write lock (`<store>.lock`) across both steps.

use sha2::{Digest, Sha256};

use super::codec::{Reader, Writer};
use super::header::Header;
use super::store::Store;
use super::LocalBackend;
use crate::error::{Error, Result};

const DIGEST_DOMAIN: &[u8] = b"keygate/v1/anchor";
const ANCHOR_VERSION: u8 = 1;

/// A header as the anchor names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub epoch: u64,
    pub digest: [u8; 32],
}

impl State {
    /// The state of a header whose encoded body is `body`.
    pub fn of(h: &Header, body: &[u8]) -> State {
        let mut d = Sha256::new();
        d.update(DIGEST_DOMAIN);
        d.update(body);
        State {
            epoch: h.epoch,
            digest: d.finalize().into(),
        }
    }
}

/// What the HSM holds for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Counts the anchor's own writes; the object written is `seq % 2`.
    pub seq: u64,
    pub uuid: [u8; 16],
    /// The header the store holds after the last acknowledged commit.
    pub committed: Option<State>,
    /// The header of a commit under way (or killed): the store may hold it instead.
    pub pending: Option<State>,
}

/// How a store's header compares with its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The anchor names this header.
    Named,
    /// Older than what the anchor names: rolled back, or committed changes lost.
    Older { anchored: u64 },
    /// Newer than every header the anchor names. Only keygate writes headers (they are MACed),
    /// so this is the anchor lagging the store, not a rollback: an HSM that lost its last
    /// writes (SoftHSM2 does not sync its object files, and a power loss can undo them).
    Ahead { anchored: u64 },
    /// Not older, not newer, yet not a header the anchor names.
    Unknown { anchored: u64 },
}

fn put_state(w: &mut Writer, s: &Option<State>) {
    match s {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.u64(s.epoch);
            w.bytes(&s.digest);
        }
    }
}

fn get_state(r: &mut Reader<'_>) -> Result<Option<State>> {
    Ok(match r.u8()? {
        0 => None,
        1 => Some(State {
            epoch: r.u64()?,
            digest: r.fixed::<32>()?,
        }),
        _ => return Err(Error::Integrity("bad anchor state tag".into())),
    })
}

impl Anchor {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(ANCHOR_VERSION);
        w.u64(self.seq);
        w.bytes(&self.uuid);
        put_state(&mut w, &self.committed);
        put_state(&mut w, &self.pending);
        w.0
    }

    pub fn decode(buf: &[u8]) -> Result<Anchor> {
        let mut r = Reader::new(buf);
        if r.u8()? != ANCHOR_VERSION {
            return Err(Error::Integrity("unknown anchor version".into()));
        }
        let a = Anchor {
            seq: r.u64()?,
            uuid: r.fixed::<16>()?,
            committed: get_state(&mut r)?,
            pending: get_state(&mut r)?,
        };
        r.finish()?;
        Ok(a)
    }

    /// The highest epoch the anchor names.
    pub fn epoch(&self) -> u64 {
        [self.committed, self.pending]
            .iter()
            .flatten()
            .map(|s| s.epoch)
            .max()
            .unwrap_or(0)
    }

    pub fn judge(&self, s: &State) -> Verdict {
        if self.committed == Some(*s) || self.pending == Some(*s) {
            return Verdict::Named;
        }
        let committed = self.committed.map_or(0, |c| c.epoch);
        // Older than the last acknowledged commit. (Older than a pending one only is not: that
        // commit may have been killed before the store had it.)
        if s.epoch < committed {
            Verdict::Older { anchored: self.epoch() }
        } else if s.epoch > self.epoch() {
            Verdict::Ahead { anchored: self.epoch() }
        } else {
            Verdict::Unknown { anchored: self.epoch() }
        }
    }
}

/// A commit as the anchor sees it: the header the store holds now (`None`: no token yet, or a
/// store replaced by `keygate restore`) and the one the commit writes.
pub(super) struct Step {
    pub uuid: [u8; 16],
    pub from: Option<State>,
    pub to: State,
}

impl LocalBackend {
    /// Why the anchor refuses `store` (`None`: it does not, or the store holds no token). A
    /// store written before anchors (epoch 0) whose token has none yet is accepted; it is
    /// anchored at its first open. The header and the anchor are read under the token's write
    /// lock, as of one moment.
    pub(super) fn anchor_problem(&self, store: &Store) -> Result<Option<String>> {
        let _lock = self.write_lock.lock()?;
        let Some((body, _)) = store.header()? else {
            return Ok(None);
        };
        let h = Header::decode(&body)?;
        let path = store.path();
        let anchor = self.root()?.read_anchor(&h.uuid)?;
        let restore = format!(
            "restore the latest backup with `keygate restore --token {} --from FILE` (asks for the SO PIN)",
            self.cfg.label
        );
        Ok(match anchor {
            None if h.epoch == 0 => None,
            None => Some(format!(
                "the store {} is at epoch {}, but the HSM root token holds no anchor for this token (serial {}): the anchor was destroyed, or the root token is not the one the store was made with",
                path.display(),
                h.epoch,
                hex::encode(&h.uuid[..8])
            )),
            Some(a) => match a.judge(&State::of(&h, &body)) {
                Verdict::Named => None,
                Verdict::Ahead { anchored } => {
                    log::warn!(
                        "token {:?}: the store {} (epoch {}) is ahead of its anchor in the HSM (epoch {anchored}): the HSM lost its last writes (a power loss with SoftHSM2?); served, and anchored again at the next change",
                        self.cfg.label,
                        path.display(),
                        h.epoch
                    );
                    None
                }
                Verdict::Older { anchored } => Some(format!(
                    "the store {} is at epoch {}, older than epoch {anchored} that its anchor in the HSM names: it was rolled back to an earlier copy, or lost committed changes (a deleted write-ahead log?); {restore}",
                    path.display(),
                    h.epoch
                )),
                Verdict::Unknown { anchored } => Some(format!(
                    "the store {} holds a header (epoch {}) that its anchor in the HSM (epoch {anchored}) does not name: it was replaced behind keygate's back; {restore}",
                    path.display(),
                    h.epoch
                )),
            },
        })
    }

    /// Before a commit: checks that the anchor names `step.from` (unless `authorised`, for an
    /// SO-authorised restore), then names `step.to` as pending. Returns what was written, for
    /// [`anchor_commit`](Self::anchor_commit).
    pub(super) fn anchor_prepare(&self, step: &Step, authorised: bool) -> Result<Anchor> {
        let root = self.root()?;
        let current = root.read_anchor(&step.uuid)?;
        let from_named = match (&current, step.from) {
            (None, None) => true,
            (None, Some(f)) => f.epoch == 0,
            (Some(a), Some(f)) => matches!(a.judge(&f), Verdict::Named | Verdict::Ahead { .. }),
            (Some(_), None) => false,
        };
        if !from_named && !authorised {
            log::error!(
                "token {:?}: a change was refused: the store no longer holds the header its HSM anchor names",
                self.cfg.label
            );
            return Err(Error::Integrity(
                "the store does not hold the state its HSM anchor names (rolled back or replaced); run `keygate verify`".into(),
            ));
        }
        // A crash after this leaves the store at `from` or at `to`; both must open. When `from`
        // was not named (a restore over a damaged or rolled-back store), the old committed state
        // stays the other choice: a restore killed half-way leaves the token as refused as before.
        let committed = match (&current, from_named) {
            (_, true) => step.from,
            (Some(a), false) => a.committed,
            (None, false) => None,
        };
        let next = Anchor {
            seq: current.as_ref().map_or(0, |a| a.seq.wrapping_add(1)),
            uuid: step.uuid,
            committed,
            pending: Some(step.to),
        };
        root.write_anchor(&next)?;
        Ok(next)
    }

    /// After the commit: the anchor names the new header alone. Until this returns, the change
    /// is not acknowledged.
    pub(super) fn anchor_commit(&self, prepared: &Anchor) -> Result<()> {
        let done = Anchor {
            seq: prepared.seq.wrapping_add(1),
            uuid: prepared.uuid,
            committed: prepared.pending,
            pending: None,
        };
        self.root()?.write_anchor(&done).inspect_err(|e| {
            log::error!(
                "token {:?}: the change is in the store, but its HSM anchor could not be advanced ({e}); the next change advances it",
                self.cfg.label
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(epoch: u64, d: u8) -> State {
        State { epoch, digest: [d; 32] }
    }

    #[test]
    fn round_trip_and_strict() {
        let a = Anchor {
            seq: 7,
            uuid: [1; 16],
            committed: Some(st(3, 2)),
            pending: Some(st(4, 3)),
        };
        assert_eq!(Anchor::decode(&a.encode()).unwrap(), a);
        let b = Anchor {
            committed: None,
            pending: None,
            ..a.clone()
        };
        assert_eq!(Anchor::decode(&b.encode()).unwrap(), b);
        let mut longer = a.encode();
        longer.push(0);
        assert!(Anchor::decode(&longer).is_err());
        let enc = a.encode();
        assert!(Anchor::decode(&enc[..enc.len() - 1]).is_err());
    }

    #[test]
    fn judges_named_older_and_unknown() {
        let a = Anchor {
            seq: 1,
            uuid: [0; 16],
            committed: Some(st(5, 1)),
            pending: Some(st(6, 2)),
        };
        assert_eq!(a.judge(&st(5, 1)), Verdict::Named);
        assert_eq!(a.judge(&st(6, 2)), Verdict::Named);
        assert_eq!(a.judge(&st(4, 9)), Verdict::Older { anchored: 6 });
        assert_eq!(a.judge(&st(5, 9)), Verdict::Unknown { anchored: 6 });
        assert_eq!(a.judge(&st(6, 9)), Verdict::Unknown { anchored: 6 });
        assert_eq!(a.judge(&st(7, 9)), Verdict::Ahead { anchored: 6 });
        assert_eq!(a.epoch(), 6);
    }
}
