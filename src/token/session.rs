//! A session: its slot, read/write flag, and typed operation slots. An operation slot holds a
//! running operation or, after a length query or a too-short buffer, the finished result
//! waiting for the caller's second call (so an operation never runs twice).

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
