//! The HSM sessions behind each keygate session, and logging in on them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cryptoki::error::Error as CkError;
use cryptoki::session::{Session as CkSession, UserType as CkUser};
use parking_lot::Mutex;

use super::ops::Kind;
use super::{convert, fwd, HsmBackend, Shared};
use crate::backend::module::raw_pin;
use crate::backend::UserType;
use crate::config::LoginMode;
use crate::error::{Error, Result};
use crate::model::mechanisms::Pin;

/// The HSM sessions of one keygate session: `main` for objects and searches (the HSM destroys
/// a session's objects with the session that made them), and one per kind of operation, opened
/// at its first use. PKCS#11 lets a session run a search and one operation of each kind at once;
/// an HSM may run one of anything per session (SoftHSM2 does), so a signature started with
/// C_SignInit must not make the application's next C_FindObjectsInit fail.
pub(super) struct HsmSession {
    main: Shared,
    rw: bool,
    ops: Mutex<[Option<Shared>; Kind::COUNT]>,
}

/// The operation session this thread used last (a thread calls with one session and one kind
/// of operation over and over): found again without the session map's lock and the sessions'
/// mutex, while no keygate session of the backend has closed since. An operation session is
/// opened once per keygate session and kind, and goes only when that session closes. Held
/// weakly: remembering an HSM session does not keep it (or the HSM library) open after its
/// keygate session closes or the module is finalised.
struct RememberedOp {
    backend: u64,
    session: u64,
    kind: Kind,
    closed: u64,
    hsm: std::sync::Weak<Mutex<CkSession>>,
}

thread_local! {
    static LAST_OP: std::cell::RefCell<Option<RememberedOp>> = const { std::cell::RefCell::new(None) };
}

static BACKENDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(super) fn new_backend_id() -> u64 {
    BACKENDS.fetch_add(1, Ordering::Relaxed)
}

impl HsmBackend {
    pub(super) fn session(&self, s: u64) -> Result<Shared> {
        self.sessions
            .read()
            .get(&s)
            .map(|x| x.main.clone())
            .ok_or(Error::SessionHandleInvalid)
    }

    /// The HSM session of keygate session `s` for operations of `kind` (see [`HsmSession`]).
    pub(super) fn op_session(&self, s: u64, kind: Kind) -> Result<Shared> {
        let closed = self.closed.load(Ordering::Acquire);
        let known = LAST_OP.with_borrow(|last| {
            last.as_ref()
                .filter(|r| r.backend == self.id && r.session == s && r.kind == kind && r.closed == closed)
                .and_then(|r| r.hsm.upgrade())
        });
        if let Some(x) = known {
            return Ok(x);
        }
        let x = self.op_session_looked_up(s, kind)?;
        LAST_OP.set(Some(RememberedOp {
            backend: self.id,
            session: s,
            kind,
            closed,
            hsm: Arc::downgrade(&x),
        }));
        Ok(x)
    }

    fn op_session_looked_up(&self, s: u64, kind: Kind) -> Result<Shared> {
        let hs = self
            .sessions
            .read()
            .get(&s)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)?;
        let mut ops = hs.ops.lock();
        if let Some(x) = &ops[kind as usize] {
            return Ok(x.clone());
        }
        let x = Arc::new(Mutex::new(self.open_hsm_session(hs.rw)?));
        ops[kind as usize] = Some(x.clone());
        Ok(x)
    }

    /// The operation sessions of `s` already open for `kinds`.
    fn open_op_sessions(&self, s: u64, kinds: &[Kind]) -> Vec<Shared> {
        let Some(hs) = self.sessions.read().get(&s).cloned() else {
            return Vec::new();
        };
        let ops = hs.ops.lock();
        kinds.iter().filter_map(|k| ops[*k as usize].clone()).collect()
    }

    fn open_hsm_session(&self, rw: bool) -> Result<CkSession> {
        let d = self.device()?;
        if rw {
            d.pkcs11.open_rw_session(d.slot)
        } else {
            d.pkcs11.open_ro_session(d.slot)
        }
        .map_err(fwd("C_OpenSession"))
    }

    /// Any open HSM session (logout and login state are per application on the HSM).
    pub(super) fn any_session(&self) -> Option<Shared> {
        self.sessions.read().values().next().map(|x| x.main.clone())
    }

    /// `login = "held"`: the application's `C_Login` (its PIN, if any, is not used) logs the
    /// HSM in with the credential keygate holds. A credential the HSM refuses is not presented
    /// again by this process: keygate never adds tries to the HSM's own failure counter.
    fn held_login(&self, s: &cryptoki::session::Session, user: CkUser) -> Result<()> {
        if self.held_refused.load(Ordering::Relaxed) {
            log::error!(
                "token {:?}: the held HSM credential was refused before; fix it and restart the application",
                self.cfg.label
            );
            return Err(Error::PinIncorrect);
        }
        let pin =
            crate::backend::module::credential(self.hsm.pin_env.as_ref(), self.hsm.pin_file.as_ref(), "HSM credential")
                .inspect_err(|e| log::error!("token {:?}: {e}", self.cfg.label))?;
        match s.login_with_raw(user, &raw_pin(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => {
                let e = fwd("C_Login")(e);
                if matches!(
                    e.ck_rv(),
                    pkcs11_sys::CKR_PIN_INCORRECT | pkcs11_sys::CKR_PIN_LOCKED | pkcs11_sys::CKR_PIN_EXPIRED
                ) {
                    self.held_refused.store(true, Ordering::Relaxed);
                }
                log::error!("token {:?}: the HSM refused the held credential: {e}", self.cfg.label);
                Err(e)
            }
        }
    }

    /// `C_Login(CKU_CONTEXT_SPECIFIC)` on the HSM sessions whose operation waits for it (a
    /// signature or a decryption: `token/` checked that one does). The first answer other than
    /// "no operation here" is the answer, so a wrong PIN counts once.
    fn context_login(&self, session: u64, pin: &Pin) -> Result<()> {
        let mut answer = Err(Error::OperationNotInitialized);
        for s in self.open_op_sessions(session, &[Kind::Sign, Kind::Decrypt]) {
            let s = s.lock();
            let r = if self.hsm.login == LoginMode::Held {
                self.held_login(&s, CkUser::ContextSpecific)
            } else {
                s.login_with_raw(CkUser::ContextSpecific, &raw_pin(pin))
                    .map_err(fwd("C_Login"))
            };
            match r {
                Err(e) if e.ck_rv() == pkcs11_sys::CKR_OPERATION_NOT_INITIALIZED => {}
                Ok(()) => answer = Ok(()),
                Err(e) => return Err(e),
            }
        }
        answer
    }

    /// `C_Login`: passed to the HSM (see [`HsmBackend::context_login`] and `held_login`).
    pub(super) fn log_in(&self, session: u64, user: UserType, pin: &Pin) -> Result<()> {
        if user == UserType::ContextSpecific {
            return self.context_login(session, pin);
        }
        let s = self.session(session)?;
        let s = s.lock();
        if self.hsm.login == LoginMode::Held && user != UserType::So {
            return self.held_login(&s, convert::user_of(user));
        }
        s.login_with_raw(convert::user_of(user), &raw_pin(pin))
            .map_err(fwd("C_Login"))
    }

    /// A keygate session opened: its main HSM session.
    pub(super) fn open_session(&self, session: u64, rw: bool) -> Result<()> {
        let main = Arc::new(Mutex::new(self.open_hsm_session(rw)?));
        let hs = HsmSession {
            main,
            rw,
            ops: Mutex::new(Default::default()),
        };
        self.sessions.write().insert(session, Arc::new(hs));
        Ok(())
    }
}
