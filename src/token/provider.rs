//! The module's one global state: slots (one token each, from the configuration), the session
//! table and object handles. Created by `C_Initialize`, dropped by `C_Finalize`. After `fork()`
//! the child sees `CKR_CRYPTOKI_NOT_INITIALIZED` until it initialises again (process id check).
//!
//! Locking: every call reads the provider through an `ArcSwapOption` (no lock, no shared
//! reference count) and its session from a sharded table; each session has its own mutex; no
//! shared lock is held across Argon2 or an HSM round trip.

use crate::model::handles::SessionHandle;
use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::handles::Handles;

use super::pinning::Pins;
use super::policy::Policy;
use super::session::{state, Session, SessionTable};
use crate::backend::local::LocalBackend;
use crate::backend::{Backend, Lifetime, ObjectId, TokenStatus, UserType};
use crate::config::{Config, Mode, TokenConfig};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, AttrMap};
use crate::model::mechanisms::{Mechanism, MechanismInfo, Pin};

/// Who is logged in to a slot's token (PKCS#11 login is per application, not per session).
#[derive(Debug, Default)]
pub struct LoginState(std::sync::atomic::AtomicU8);

impl LoginState {
    const NOBODY: u8 = 0;

    fn code(u: Option<UserType>) -> u8 {
        match u {
            None => Self::NOBODY,
            Some(UserType::So) => 1,
            Some(UserType::User) => 2,
            Some(UserType::ContextSpecific) => 3,
        }
    }
    fn user(code: u8) -> Option<UserType> {
        match code {
            1 => Some(UserType::So),
            2 => Some(UserType::User),
            3 => Some(UserType::ContextSpecific),
            _ => None,
        }
    }
    pub fn get(&self) -> Option<UserType> {
        Self::user(self.0.load(std::sync::atomic::Ordering::Acquire))
    }
    pub fn set(&self, u: Option<UserType>) {
        self.0.store(Self::code(u), std::sync::atomic::Ordering::Release);
    }
    /// Logs out whoever was logged in, saying who.
    pub fn take(&self) -> Option<UserType> {
        Self::user(self.0.swap(Self::NOBODY, std::sync::atomic::Ordering::AcqRel))
    }
}

/// One slot and its token.
#[derive(Debug)]
pub struct Slot {
    pub label: String,
    pub backend: Arc<dyn Backend>,
    /// Who is logged in: read by every operation (private objects), so an atomic rather than
    /// a lock whose word every thread would write.
    pub login: LoginState,
    /// Held by a `C_Login` from its check of [`Slot::login`] to setting it, the PIN check in
    /// between: two concurrent logins cannot both find nobody logged in.
    login_gate: Mutex<()>,
    pub policy: Policy,
    pub pins: Pins,
    /// What the token offers under its policy; filled once the backend can say.
    offered: std::sync::OnceLock<Vec<(u64, MechanismInfo)>>,
}

impl Slot {
    fn new(t: &TokenConfig, backend: Arc<dyn Backend>) -> Slot {
        Slot {
            label: t.label.clone(),
            backend,
            login: LoginState::default(),
            login_gate: Mutex::new(()),
            policy: Policy::new(&t.label, &t.policy),
            pins: Pins::new(&t.label, &t.pins),
            offered: std::sync::OnceLock::new(),
        }
    }

    /// The mechanisms this token offers: its backend's, less what the policy refuses.
    pub fn mechanisms(&self) -> &[(u64, MechanismInfo)] {
        if let Some(m) = self.offered.get() {
            return m;
        }
        let from_backend = self.backend.mechanisms();
        if from_backend.is_empty() {
            // An HSM not reachable yet: ask again next time.
            return &[];
        }
        self.offered.get_or_init(|| self.policy.mechanisms(from_backend))
    }

    /// Checks that the token offers `mech` for `function` (a `CKF_*` flag) with parameters
    /// its policy accepts.
    pub fn check(&self, mech: &Mechanism, function: u64) -> Result<()> {
        if let Err(e) = mech.check(self.mechanisms(), function) {
            self.policy.explain_refusal(mech.ty());
            return Err(e);
        }
        self.policy.check_params(mech)
    }
}

pub struct Provider {
    pub slots: Vec<Slot>,
    pub(super) sessions: SessionTable,
    pub handles: Handles,
    pub(super) next_session: AtomicU64,
    pub(super) pid: u32,
    /// The audit trail, when the configuration has one.
    pub(super) audit: Option<crate::audit::Audit>,
}

/// The initialised provider. Read by every call through [`provider`], lock-free; replaced only
/// by `C_Initialize` and `C_Finalize`, which [`LIFECYCLE`] serialises.
static PROVIDER: arc_swap::ArcSwapOption<Provider> = arc_swap::ArcSwapOption::const_empty();
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// The provider as one call holds it: it stays alive for the call even if another thread
/// finalises meanwhile, as an `Arc` would, without touching a reference count other threads
/// share (arc-swap's per-thread debts).
pub struct ProviderRef(arc_swap::Guard<Option<Arc<Provider>>>);

impl std::ops::Deref for ProviderRef {
    type Target = Provider;
    fn deref(&self) -> &Provider {
        // Checked not empty when the reference was made (`provider`).
        self.0.as_deref().expect("a ProviderRef holds a provider")
    }
}

/// The initialised provider, or `CKR_CRYPTOKI_NOT_INITIALIZED` (also in a forked child).
pub fn provider() -> Result<ProviderRef> {
    let g = PROVIDER.load();
    match &*g {
        Some(p) if p.pid == crate::sys::process::id() => Ok(ProviderRef(g)),
        _ => Err(Error::CryptokiNotInitialized),
    }
}

/// The state a forked child inherited from its parent (see [`initialize`]).
static FORKED_FROM: Mutex<Vec<Arc<Provider>>> = Mutex::new(Vec::new());

/// `C_Initialize`, with the configuration at `config` if the application named one (else where
/// [`Config::locate`] finds it). A missing or broken configuration is logged and gives a module
/// with no slots.
pub fn initialize(config: Option<&std::path::Path>) -> Result<()> {
    let _lifecycle = LIFECYCLE.lock();
    if let Some(p) = &*PROVIDER.load() {
        if p.pid == crate::sys::process::id() {
            return Err(Error::CryptokiAlreadyInitialized);
        }
        // A forked child: the parent's state (its sqlite connections, its HSM sessions) belongs
        // to the parent. Closing it here could finalise the parent's HSM library state or
        // checkpoint the parent's database from the wrong process, so it is kept, untouched
        // and never dropped, for the life of this process.
        if let Some(inherited) = PROVIDER.swap(None) {
            FORKED_FROM.lock().push(inherited);
        }
    }
    let (slots, audit) = match super::load_config(config) {
        Ok(cfg) => (slots_from(&cfg), cfg.audit.as_ref().map(crate::audit::Audit::new)),
        Err(e) => {
            log::error!("keygate: {e}; the module has no slots");
            (Vec::new(), None)
        }
    };
    PROVIDER.store(Some(Arc::new(Provider {
        slots,
        sessions: SessionTable::default(),
        handles: Handles::default(),
        next_session: AtomicU64::new(0),
        pid: crate::sys::process::id(),
        audit,
    })));
    Ok(())
}

/// Builds the slots of a configuration.
pub fn slots_from(cfg: &Config) -> Vec<Slot> {
    cfg.tokens
        .iter()
        .filter_map(|t| match t.mode {
            Mode::SelfManaged => {
                let b = LocalBackend::new(t.clone());
                if t.verify_on_open {
                    b.open_now();
                }
                Some(Slot::new(t, Arc::new(b)))
            }
            Mode::Hsm => match crate::backend::hsm::HsmBackend::new(t.clone()) {
                Ok(b) => Some(Slot::new(t, Arc::new(b))),
                Err(e) => {
                    log::error!("token {:?}: {e}", t.label);
                    None
                }
            },
        })
        .collect()
}

/// `C_Finalize`.
pub fn finalize() -> Result<()> {
    let lifecycle = LIFECYCLE.lock();
    let current = PROVIDER.load_full();
    match current {
        Some(p) if p.pid == crate::sys::process::id() => {
            PROVIDER.store(None);
            drop(lifecycle);
            // Releases every blocking C_WaitForSlotEvent.
            *FINALIZED.0.lock() += 1;
            FINALIZED.1.notify_all();
            Ok(())
        }
        _ => Err(Error::CryptokiNotInitialized),
    }
}

/// Counts `C_Finalize` calls; a blocking `C_WaitForSlotEvent` waits for the next one.
static FINALIZED: (Mutex<u64>, parking_lot::Condvar) = (Mutex::new(0), parking_lot::Condvar::new());

/// `C_WaitForSlotEvent`. keygate's slots are its configured tokens, present for the life of
/// the module: there is never an event. Without blocking that is `CKR_NO_EVENT`; a blocking
/// wait lasts until `C_Finalize` (from another thread), and then, as the specification says,
/// returns `CKR_CRYPTOKI_NOT_INITIALIZED`.
pub fn wait_for_slot_event(block: bool) -> Result<u64> {
    let mut finalized = FINALIZED.0.lock();
    provider()?;
    if !block {
        return Err(Error::NoEvent);
    }
    let seen = *finalized;
    while *finalized == seen {
        FINALIZED.1.wait(&mut finalized);
    }
    Err(Error::CryptokiNotInitialized)
}

/// Information about one session for `C_GetSessionInfo`.
pub struct SessionInfo {
    pub slot: u64,
    pub state: u64,
    pub rw: bool,
}

impl Provider {
    pub fn slot(&self, id: u64) -> Result<&Slot> {
        self.slots.get(id as usize).ok_or(Error::SlotIdInvalid)
    }

    pub fn token_status(&self, id: u64) -> Result<TokenStatus> {
        self.slot(id)?.backend.status()
    }

    pub fn mechanisms(&self, id: u64) -> Result<&[(u64, MechanismInfo)]> {
        Ok(self.slot(id)?.mechanisms())
    }

    /// (sessions, rw sessions) open on a slot.
    pub fn session_counts(&self, slot: u64) -> (u64, u64) {
        let mut all = 0;
        let mut rw = 0;
        for (_, sess) in self.sessions.all() {
            let g = sess.lock();
            if g.slot as u64 == slot {
                all += 1;
                rw += g.rw as u64;
            }
        }
        (all, rw)
    }

    pub(super) fn session(&self, h: u64) -> Result<super::session::SharedSession> {
        self.sessions.get(h).ok_or(Error::SessionHandleInvalid)
    }

    pub(super) fn slot_of(&self, s: &Session) -> &Slot {
        &self.slots[s.slot]
    }

    pub fn open_session(&self, slot: u64, serial: bool, rw: bool) -> Result<SessionHandle> {
        let sl = self.slot(slot)?;
        if !serial {
            return Err(Error::SessionParallelNotSupported);
        }
        if !rw && sl.login.get() == Some(UserType::So) {
            return Err(Error::SessionReadWriteSoExists);
        }
        let h = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
        sl.backend.session_opened(h, rw)?;
        self.sessions
            .insert(h, super::session::shared(Session::new(h, slot as usize, rw)));
        Ok(SessionHandle(h))
    }

    pub fn close_session(&self, h: SessionHandle) -> Result<()> {
        let h = h.0;
        let s = self.sessions.remove(h).ok_or(Error::SessionHandleInvalid)?;
        let slot = s.lock().slot;
        self.slots[slot].backend.session_closed(h);
        s.lock().end_operations();
        if self.session_counts(slot as u64).0 == 0 {
            // The last session of an application closed: its login ends.
            let sl = &self.slots[slot];
            if sl.login.take().is_some() {
                sl.backend.logout(h);
            }
        }
        Ok(())
    }

    pub fn close_all_sessions(&self, slot: u64) -> Result<()> {
        self.slot(slot)?;
        let handles: Vec<u64> = {
            self.sessions
                .all()
                .into_iter()
                .filter(|(_, v)| v.lock().slot as u64 == slot)
                .map(|(k, _)| k)
                .collect()
        };
        for h in handles {
            let _ = self.close_session(SessionHandle(h));
        }
        Ok(())
    }

    pub fn session_info(&self, h: SessionHandle) -> Result<SessionInfo> {
        let h = h.0;
        let s = self.session(h)?;
        let s = s.lock();
        let login = self.slot_of(&s).login.get();
        let st = match (s.rw, login) {
            (false, None) => state::RO_PUBLIC,
            (false, Some(_)) => state::RO_USER,
            (true, None) => state::RW_PUBLIC,
            (true, Some(UserType::So)) => state::RW_SO,
            (true, Some(_)) => state::RW_USER,
        };
        Ok(SessionInfo {
            slot: s.slot as u64,
            state: st,
            rw: s.rw,
        })
    }

    pub fn init_token(&self, slot: u64, so_pin: &Pin, label: &str) -> Result<()> {
        let sl = self.slot(slot)?;
        if self.session_counts(slot).0 > 0 {
            return Err(Error::SessionExists);
        }
        // The configuration names the token: a token renamed by C_InitToken alone would no longer
        // be found under the label clients, the keygate program and the configuration use.
        if label != sl.label {
            log::error!(
                "token {:?}: C_InitToken with the label {label:?} refused: a keygate token's label is the one its configuration gives it (`label = {:?}`); initialise it under that label, or change the configuration first",
                sl.label,
                sl.label
            );
            return Err(Error::ArgumentsBad);
        }
        sl.backend.init_token(so_pin, label)?;
        // Handles of destroyed objects stay invalid: the backend's ids are gone.
        Ok(())
    }

    pub(super) fn login_unaudited(&self, h: u64, user: UserType, pin: &Pin) -> Result<()> {
        let (slot_ix, _) = {
            let s = self.session(h)?;
            let s = s.lock();
            (s.slot, s.rw)
        };
        let sl = &self.slots[slot_ix];
        let _gate = sl.login_gate.lock();
        let current = sl.login.get();
        match (user, current) {
            (UserType::ContextSpecific, _) => return self.context_login(h, current, pin),
            (u, Some(c)) if u == c => return Err(Error::UserAlreadyLoggedIn),
            (_, Some(_)) => return Err(Error::UserAnotherAlreadyLoggedIn),
            (_, None) => {}
        }
        if user == UserType::So
            && self.sessions.all().iter().any(|(_, x)| {
                let x = x.lock();
                x.slot == slot_ix && !x.rw
            })
        {
            return Err(Error::SessionReadOnlyExists);
        }
        // An uninitialised token answers CKR_USER_PIN_NOT_INITIALIZED from the backend (the
        // store has no header; the HSM says so itself), without a token-info read per login.
        sl.backend.login(h, user, pin)?;
        sl.login.set(Some(user));
        log::info!("token {:?}: {} logged in", sl.label, user.name());
        Ok(())
    }

    /// `C_Login(CKU_CONTEXT_SPECIFIC)`: the user's PIN again, for the operations of this session
    /// that wait for it (started with a `CKA_ALWAYS_AUTHENTICATE` key). The backend checks the
    /// PIN (an HSM, for the operation it runs); a wrong one leaves the operations waiting.
    fn context_login(&self, h: u64, current: Option<UserType>, pin: &Pin) -> Result<()> {
        let s = self.session(h)?;
        let mut s = s.lock();
        if !s.awaiting_login.any() {
            return Err(Error::OperationNotInitialized);
        }
        if current != Some(UserType::User) {
            return Err(Error::UserNotLoggedIn);
        }
        self.slot_of(&s).backend.login(h, UserType::ContextSpecific, pin)?;
        s.awaiting_login = Default::default();
        Ok(())
    }

    pub(super) fn logout_unaudited(&self, h: u64) -> Result<()> {
        let slot = self.session(h)?.lock().slot;
        let sl = &self.slots[slot];
        if sl.login.take().is_none() {
            return Err(Error::UserNotLoggedIn);
        }
        sl.backend.logout(h);
        Ok(())
    }

    pub fn init_pin(&self, h: SessionHandle, pin: &Pin) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let (slot, rw) = {
            let s = s.lock();
            (s.slot, s.rw)
        };
        if !rw || self.slots[slot].login.get() != Some(UserType::So) {
            return Err(Error::UserNotLoggedIn);
        }
        self.slots[slot].backend.init_pin(h, pin)
    }

    pub fn set_pin(&self, h: SessionHandle, old: &Pin, new: &Pin) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let (slot, rw) = {
            let s = s.lock();
            (s.slot, s.rw)
        };
        if !rw {
            return Err(Error::SessionReadOnly);
        }
        let who = match self.slots[slot].login.get() {
            Some(UserType::So) => UserType::So,
            _ => UserType::User,
        };
        self.slots[slot].backend.set_pin(h, who, old, new)
    }

    /// Whether private objects are visible to sessions of this slot.
    pub(super) fn user_logged_in(&self, slot: usize) -> bool {
        self.slots[slot].login.get() == Some(UserType::User)
    }

    pub(super) fn is_so(&self, slot: usize) -> bool {
        self.slots[slot].login.get() == Some(UserType::So)
    }

    /// Resolves an object handle for a session: the object must be on the session's slot and
    /// visible to it. Returns its id and attributes.
    pub(super) fn object(&self, s: &Session, handle: u64, invalid: Error) -> Result<(ObjectId, AttrMap)> {
        self.object_with(s, handle, invalid, |b, h, id| b.attributes(h, id))
    }

    /// As [`Provider::object`], with only the attributes a key operation checks
    /// ([`crate::backend::KEY_USE`]).
    pub(super) fn key_object(
        &self,
        s: &Session,
        handle: u64,
        invalid: Error,
    ) -> Result<(ObjectId, std::sync::Arc<AttrMap>)> {
        self.object_with(s, handle, invalid, |b, h, id| b.key_attributes(h, id))
    }

    fn object_with<A: Borrow<AttrMap>>(
        &self,
        s: &Session,
        handle: u64,
        invalid: Error,
        read: impl Fn(&dyn Backend, u64, &ObjectId) -> Result<A>,
    ) -> Result<(ObjectId, A)> {
        let (slot, id) = self.handles.resolve(handle).ok_or_else(|| invalid.clone())?;
        if slot != s.slot {
            return Err(invalid);
        }
        let attrs = match read(&*self.slots[slot].backend, s.h, &id) {
            Err(Error::ObjectHandleInvalid) => return Err(invalid),
            other => other?,
        };
        if attrs.borrow().flag(attr::PRIVATE) && !self.user_logged_in(slot) {
            return Err(invalid);
        }
        Ok((id, attrs))
    }

    /// Where a new object with these attributes goes, checking the session may put it there.
    pub(super) fn lifetime_for(&self, h: u64, s: &Session, attrs: &AttrMap) -> Result<Lifetime> {
        if attrs.flag(attr::PRIVATE) && !self.user_logged_in(s.slot) {
            return Err(Error::UserNotLoggedIn);
        }
        if attrs.flag(attr::TOKEN) {
            if !s.rw {
                return Err(Error::SessionReadOnly);
            }
            Ok(Lifetime::Token)
        } else {
            Ok(Lifetime::Session(h))
        }
    }

    pub fn seed_random(&self, h: SessionHandle, seed: &[u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let slot = s.lock().slot;
        self.slots[slot].backend.seed_random(h, seed)
    }

    pub fn random(&self, h: SessionHandle, out: &mut [u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let slot = s.lock().slot;
        self.slots[slot].backend.random(h, out)
    }
}

/// Token objects in a slot's store (for `keygate status`).
pub fn object_count(slot: &Slot) -> Result<u64> {
    slot.backend.object_count()
}
