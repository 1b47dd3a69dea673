//! The seam between PKCS#11 semantics (`token/`) and where keys live.
//!
//! A [`Backend`] is one token's key store: the self-managed store (`local/`) or, later, an HSM
//! reached through cryptoki. `token/` applies the attribute and usage policy for both, then
//! asks the backend to store, find, generate and operate. Backends see decoded Rust values only;
//! an operation is an object whose final call consumes it.

pub mod hsm;
pub mod local;
pub mod module;

use std::fmt::Debug;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::attributes::AttrMap;
use crate::model::mechanisms::{Mechanism, MechanismInfo, Pin};

/// What [`Backend::key_attributes`] returns at least.
pub const KEY_USE: &[u64] = {
    use crate::model::attributes::attr::*;
    &[
        CLASS,
        KEY_TYPE,
        PRIVATE,
        TOKEN,
        LABEL,
        ID,
        SIGN,
        VERIFY,
        ENCRYPT,
        DECRYPT,
        WRAP,
        UNWRAP,
        DERIVE,
        VALUE_LEN,
        MODULUS,
        MODULUS_BITS,
        PUBLIC_EXPONENT,
        EC_PARAMS,
        EC_POINT,
        CHECK_VALUE,
        SENSITIVE,
        EXTRACTABLE,
        ALLOWED_MECHANISMS,
        WRAP_WITH_TRUSTED,
        TRUSTED,
        ALWAYS_AUTHENTICATE,
        ALWAYS_SENSITIVE,
        LOCAL,
        START_DATE,
        END_DATE,
        KEYGATE_REVOKED,
        WRAP_TEMPLATE,
        UNWRAP_TEMPLATE,
        DESTROYABLE,
    ]
};

/// The session number the CLI uses for administrative work; PKCS#11 session handles start at 1.
pub const ADMIN_SESSION: u64 = 0;

/// A backend's stable identity for an object (random, never reused).
pub type ObjectId = [u8; 16];

/// Who is logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    So,
    User,
    ContextSpecific,
}

impl UserType {
    /// The name used in log lines.
    pub fn name(self) -> &'static str {
        match self {
            UserType::So => "SO",
            UserType::User => "user",
            UserType::ContextSpecific => "context-specific user",
        }
    }
}

/// What `C_GetTokenInfo` needs from the backend.
#[derive(Debug, Clone, Default)]
pub struct TokenStatus {
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub label: String,
    pub serial: String,
    pub user_failures: u32,
    pub so_failures: u32,
    pub max_failures: u32,
    /// The user authenticates by other means than a PIN from the application
    /// (`CKF_PROTECTED_AUTHENTICATION_PATH`): an hsm token with a held credential.
    pub protected_path: bool,
    /// `CK_TOKEN_INFO.model`: which kind of keygate token.
    pub model: &'static str,
    /// The token takes no changes (`CKF_WRITE_PROTECTED`): a self-managed token serving from
    /// its mirror.
    pub write_protected: bool,
}

impl TokenStatus {
    pub fn user_locked(&self) -> bool {
        self.user_failures >= self.max_failures
    }
    pub fn so_locked(&self) -> bool {
        self.so_failures >= self.max_failures
    }
}

/// Where a new object goes: the token (persistent) or a session (gone when it closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    Token,
    Session(u64),
}

/// One token's key store and crypto. Implementations are shared between threads.
pub trait Backend: Send + Sync + Debug {
    /// Token state for `C_GetTokenInfo`; re-read each time so other processes' changes show.
    fn status(&self) -> Result<TokenStatus>;
    /// The mechanisms this backend implements.
    fn mechanisms(&self) -> &[(u64, MechanismInfo)];

    /// `C_InitToken`: (re)creates the token; every object is destroyed.
    fn init_token(&self, so_pin: &Pin, label: &str) -> Result<()>;
    /// Checks a PIN and unlocks the token's key material for the session's application.
    fn login(&self, session: u64, user: UserType, pin: &Pin) -> Result<()>;
    /// Forgets the key material unlocked at login.
    fn logout(&self, session: u64);
    /// `C_InitPIN` (the SO is logged in).
    fn init_pin(&self, session: u64, pin: &Pin) -> Result<()>;
    /// `C_SetPIN` for the logged-in user (or SO).
    fn set_pin(&self, session: u64, user: UserType, old: &Pin, new: &Pin) -> Result<()>;

    /// Stores an object whose template `token/` has already completed and checked. Secret
    /// material (`CKA_VALUE` of a key) is inside `attrs` and is sealed by the backend.
    fn create(&self, session: u64, lifetime: Lifetime, attrs: AttrMap) -> Result<ObjectId>;
    /// Objects whose clear attributes match `template`; private ones only if `private_visible`.
    fn find(&self, session: u64, template: &AttrMap, private_visible: bool) -> Result<Vec<ObjectId>>;
    /// The clear attributes of an object (never its secret material).
    fn attributes(&self, session: u64, id: &ObjectId) -> Result<AttrMap>;
    /// The attributes a key operation checks before it starts (class, type, visibility, usage,
    /// size, identity, protection; [`KEY_USE`]); a backend may read these faster than all of
    /// them. An attribute the object lacks is absent.
    fn key_attributes(&self, session: u64, id: &ObjectId) -> Result<std::sync::Arc<AttrMap>> {
        self.attributes(session, id).map(std::sync::Arc::new)
    }
    /// What deciding whether a session may destroy an object needs: at least `CKA_TOKEN`,
    /// `CKA_PRIVATE` and `CKA_DESTROYABLE` (an attribute the object lacks is absent). `None`
    /// when the device behind the backend decides that itself (an HSM refuses a private object
    /// without a login, a token object in a read-only session and a non-destroyable object, as
    /// keygate does), so that destroying costs no attribute read there.
    fn access_attributes(&self, session: u64, id: &ObjectId) -> Result<Option<std::sync::Arc<AttrMap>>> {
        self.key_attributes(session, id).map(Some)
    }
    /// The lifetime of an object.
    fn lifetime(&self, session: u64, id: &ObjectId) -> Result<Lifetime>;
    /// The secret material (`CKA_VALUE`) of a key, for an extractable, non-sensitive key only;
    /// `token/` has checked that.
    fn secret_value(&self, session: u64, id: &ObjectId, ty: u64) -> Result<Zeroizing<Vec<u8>>>;
    /// Replaces the clear attributes of an object (secret material unchanged).
    fn update(&self, session: u64, id: &ObjectId, attrs: AttrMap) -> Result<()>;
    /// Copies an object, secret material included, under new clear attributes.
    fn copy(&self, session: u64, id: &ObjectId, lifetime: Lifetime, attrs: AttrMap) -> Result<ObjectId>;
    fn destroy(&self, session: u64, id: &ObjectId) -> Result<()>;
    /// A session opened (read/write or not); the hsm backend opens its HSM session here.
    fn session_opened(&self, session: u64, rw: bool) -> Result<()>;
    /// A session closed: its session objects are destroyed.
    fn session_closed(&self, session: u64);

    /// Generates a secret key; `template` is complete except for the key material.
    fn generate_key(&self, session: u64, mech: &Mechanism, lifetime: Lifetime, template: AttrMap) -> Result<ObjectId>;
    /// Generates a key pair; returns (public, private).
    fn generate_key_pair(
        &self,
        session: u64,
        mech: &Mechanism,
        lifetimes: (Lifetime, Lifetime),
        public: AttrMap,
        private: AttrMap,
    ) -> Result<(ObjectId, ObjectId)>;
    fn wrap_key(&self, session: u64, mech: &Mechanism, wrapping: &ObjectId, key: &ObjectId) -> Result<Vec<u8>>;
    fn unwrap_key(
        &self,
        session: u64,
        mech: &Mechanism,
        unwrapping: &ObjectId,
        wrapped: &[u8],
        lifetime: Lifetime,
        template: AttrMap,
    ) -> Result<ObjectId>;
    fn derive_key(
        &self,
        session: u64,
        mech: &Mechanism,
        base: &ObjectId,
        lifetime: Lifetime,
        template: AttrMap,
    ) -> Result<ObjectId>;

    fn sign(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn SignOp>>;
    fn verify(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn VerifyOp>>;
    fn encrypt(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn CipherOp>>;
    fn decrypt(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn CipherOp>>;
    fn digest(&self, session: u64, mech: &Mechanism) -> Result<Box<dyn DigestOp>>;
    /// The secret of a key fed to a running digest (`C_DigestKey`).
    fn digest_key(&self, session: u64, op: &mut dyn DigestOp, key: &ObjectId) -> Result<()>;
    fn random(&self, session: u64, out: &mut [u8]) -> Result<()>;
    /// `C_SeedRandom`: mixes `seed` into the token's generator (the HSM's; for a self-managed
    /// token, the operating system's).
    fn seed_random(&self, _session: u64, _seed: &[u8]) -> Result<()> {
        Err(crate::error::Error::RandomSeedNotSupported)
    }
    /// Token objects in the store (for administration).
    fn object_count(&self) -> Result<u64>;
}

/// A signature or MAC in progress.
pub trait SignOp: Send {
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<Vec<u8>>;
    /// The single-part form (`C_Sign`); a backend may do it in one step.
    fn once(mut self: Box<Self>, data: &[u8]) -> Result<Vec<u8>> {
        self.update(data)?;
        self.finish()
    }
}

/// A verification in progress.
pub trait VerifyOp: Send {
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()>;
    /// The single-part form (`C_Verify`).
    fn once(mut self: Box<Self>, data: &[u8], signature: &[u8]) -> Result<()> {
        self.update(data)?;
        self.finish(signature)
    }
}

/// An encryption or decryption in progress. Outputs are zeroising: a decryption's plaintext
/// may be key material.
pub trait CipherOp: Send {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
    fn finish(self: Box<Self>) -> Result<Zeroizing<Vec<u8>>>;
    /// The output length an `update` with `input_len` bytes will produce, answered without
    /// consuming input (a length query must not feed the cipher).
    fn update_len(&self, input_len: usize) -> usize;
    /// The single-part form (`C_Encrypt`/`C_Decrypt`).
    fn once(mut self: Box<Self>, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = self.update(data)?;
        out.extend_from_slice(&self.finish()?);
        Ok(out)
    }
    /// The exact length [`CipherOp::once`] produces from `input_len` bytes, when it is known
    /// without running the operation (so that a length query need not run it); else `None`.
    fn once_len(&self, _input_len: usize) -> Option<usize> {
        None
    }
    /// The single-part form writing its output into `out` (at least `once_len` bytes long):
    /// the length written. Only called when `once_len` answered.
    fn once_into(self: Box<Self>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        let v = self.once(data)?;
        out.get_mut(..v.len()).ok_or(Error::BufferTooSmall)?.copy_from_slice(&v);
        Ok(v.len())
    }
}

/// A digest in progress.
pub trait DigestOp: Send {
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<Vec<u8>>;
    /// The operation as its backend's own type, for `C_DigestKey` (the backend that made the
    /// digest feeds it the key its own way).
    fn as_any(&mut self) -> &mut dyn std::any::Any;
    /// The single-part form (`C_Digest`).
    fn once(mut self: Box<Self>, data: &[u8]) -> Result<Vec<u8>> {
        self.update(data)?;
        self.finish()
    }
}
