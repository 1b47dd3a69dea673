//! A session: its slot, read/write flag, and typed operation slots. An operation slot holds a
//! running operation or, after a length query or a too-short buffer, the finished result
//! waiting for the caller's second call (so an operation never runs twice).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::backend::{CipherOp, DigestOp, ObjectId, SignOp, VerifyOp};

/// A running operation, or its finished output waiting to be fetched.
pub enum Active<T> {
    Running(T),
    Done(Zeroizing<Vec<u8>>),
}

/// An active `C_FindObjects` search: the matches not yet returned.
pub struct Find {
    pub remaining: Vec<ObjectId>,
}

pub struct Session {
    /// This session's own handle.
    pub h: u64,
    pub slot: usize,
    pub rw: bool,
    pub find: Option<Find>,
    pub sign: Option<Active<Box<dyn SignOp>>>,
    pub verify: Option<Box<dyn VerifyOp>>,
    pub encrypt: Option<Active<Box<dyn CipherOp>>>,
    pub decrypt: Option<Active<Box<dyn CipherOp>>>,
    pub digest: Option<Active<Box<dyn DigestOp>>>,
    /// A key wrapped by a `C_WrapKey` that only asked for the length (or gave too small a
    /// buffer), returned by the next call with the same mechanism and keys instead of being
    /// wrapped again.
    pub wrapped: Option<KeptWrap>,
    /// Operations started with a `CKA_ALWAYS_AUTHENTICATE` key that wait for their
    /// `C_Login(CKU_CONTEXT_SPECIFIC)`.
    pub awaiting_login: AwaitingLogin,
}

/// See [`Session::awaiting_login`]. Each context-specific login authorises the operations
/// waiting at that moment, once.
#[derive(Default, Clone, Copy)]
pub struct AwaitingLogin {
    pub sign: bool,
    pub decrypt: bool,
}

impl AwaitingLogin {
    pub fn any(self) -> bool {
        self.sign || self.decrypt
    }
}

/// See [`Session::wrapped`].
pub struct KeptWrap {
    pub mech: crate::model::mechanisms::Mechanism,
    pub wrapping: u64,
    pub key: u64,
    pub out: Vec<u8>,
}

impl Session {
    /// Ends every operation (their keys, and in hsm mode their HSM operations, go now): a closed
    /// session may still be held, emptied, by a thread that looked it up last (`SessionTable`).
    pub fn end_operations(&mut self) {
        self.find = None;
        self.sign = None;
        self.verify = None;
        self.encrypt = None;
        self.decrypt = None;
        self.digest = None;
        self.wrapped = None;
        self.awaiting_login = AwaitingLogin::default();
    }

    pub fn new(h: u64, slot: usize, rw: bool) -> Session {
        Session {
            h,
            slot,
            rw,
            find: None,
            sign: None,
            verify: None,
            encrypt: None,
            decrypt: None,
            digest: None,
            wrapped: None,
            awaiting_login: AwaitingLogin::default(),
        }
    }
}

/// `CKS_*` session states.
pub mod state {
    use pkcs11_sys as ck;
    pub const RO_PUBLIC: u64 = ck::CKS_RO_PUBLIC_SESSION;
    pub const RO_USER: u64 = ck::CKS_RO_USER_FUNCTIONS;
    pub const RW_PUBLIC: u64 = ck::CKS_RW_PUBLIC_SESSION;
    pub const RW_USER: u64 = ck::CKS_RW_USER_FUNCTIONS;
    pub const RW_SO: u64 = ck::CKS_RW_SO_FUNCTIONS;
}

/// The open sessions, by handle, in shards each on its own cache line: every call looks its
/// session up, and one shared lock word (even a reader's) would bounce between the cores of
/// threads that use different sessions. Handles are consecutive, so sessions opened one after
/// another land in different shards.
///
/// Each thread also remembers the session it looked up last, and uses it again without the
/// shard's lock while no session of the table has been removed since (one load of a counter
/// only `C_CloseSession` writes): an application calls with one session over and over, and
/// the shard's read lock was two of the few atomic writes of a call. A session closed
/// meanwhile is found missing at once; the closing thread ends its operations, so a thread that
/// still remembers it holds an empty session until its next look-up.
pub struct SessionTable {
    shards: [Shard; SHARDS],
    /// This table among the process's tables: a module initialised again has a new one, whose
    /// handles start again at 1.
    id: u64,
    removals: crossbeam_utils::CachePadded<AtomicU64>,
}

static TABLES: AtomicU64 = AtomicU64::new(1);

/// The session this thread looked up last: table, handle, the table's removal count then.
struct Remembered {
    table: u64,
    h: u64,
    removals: u64,
    session: SharedSession,
}

thread_local! {
    static LAST: RefCell<Option<Remembered>> = const { RefCell::new(None) };
}

const SHARDS: usize = 16;

// 128 bytes: x86 cores fetch cache lines in adjacent pairs, so 64-byte neighbours still share.
#[repr(align(128))]
#[derive(Default)]
struct Shard(parking_lot::RwLock<crate::fastmap::FastMap<u64, SharedSession>>);

/// A session as the table hands it out, on cache lines of its own: sessions opened one after
/// another are allocated side by side, and one thread's operation state written beside another
/// thread's session lock would make both threads' cores trade the line on every call.
pub type SharedSession = std::sync::Arc<crossbeam_utils::CachePadded<parking_lot::Mutex<Session>>>;

/// A new session's table entry.
pub fn shared(s: Session) -> SharedSession {
    std::sync::Arc::new(crossbeam_utils::CachePadded::new(parking_lot::Mutex::new(s)))
}

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable {
            shards: std::array::from_fn(|_| Shard::default()),
            id: TABLES.fetch_add(1, Ordering::Relaxed),
            removals: Default::default(),
        }
    }
}

/// `C_Finalize`: every session's operations end with the table, wherever a thread still
/// remembers one of its sessions.
impl Drop for SessionTable {
    fn drop(&mut self) {
        for shard in &self.shards {
            for s in shard.0.read().values() {
                s.lock().end_operations();
            }
        }
    }
}

impl SessionTable {
    fn shard(&self, h: u64) -> &parking_lot::RwLock<crate::fastmap::FastMap<u64, SharedSession>> {
        &self.shards[(h % SHARDS as u64) as usize].0
    }
    pub fn get(&self, h: u64) -> Option<SharedSession> {
        let removals = self.removals.load(Ordering::Acquire);
        let known = LAST.with_borrow(|last| {
            last.as_ref()
                .filter(|r| r.table == self.id && r.h == h && r.removals == removals)
                .map(|r| r.session.clone())
        });
        if known.is_some() {
            return known;
        }
        let session = self.shard(h).read().get(&h).cloned()?;
        LAST.set(Some(Remembered {
            table: self.id,
            h,
            removals,
            session: session.clone(),
        }));
        Some(session)
    }
    pub fn insert(&self, h: u64, s: SharedSession) {
        self.shard(h).write().insert(h, s);
    }
    pub fn remove(&self, h: u64) -> Option<SharedSession> {
        let removed = self.shard(h).write().remove(&h);
        // After the removal: a thread that reads the new count looks the handle up afresh.
        self.removals.fetch_add(1, Ordering::AcqRel);
        removed
    }
    /// Every open session, as it is now (for counting and closing them all).
    pub fn all(&self) -> Vec<(u64, SharedSession)> {
        self.shards
            .iter()
            .flat_map(|s| s.0.read().iter().map(|(h, x)| (*h, x.clone())).collect::<Vec<_>>())
            .collect()
    }
}
