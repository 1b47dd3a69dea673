//! The audited entry points of the provider: each runs its unaudited counterpart and records
//! the event and its result in the audit trail (`audit.rs`), when one is configured.
//!
//! With `audit.required = true` a key operation whose line cannot be written fails closed: an
//! operation initialised is ended again, objects just made are destroyed, and the caller gets
//! `CKR_GENERAL_ERROR`. Nothing here holds a session lock while it writes.

use super::operations::Out;
use super::pinning::of_attrs;
use super::policy;
use super::provider::Provider;
use crate::audit::{self, Event, KeyRef};
use crate::backend::{ObjectId, UserType};
use crate::error::Result;
use crate::model::attributes::{attr, AttrMap};
use crate::model::handles::{ObjectHandle, SessionHandle};
use crate::model::mechanisms::{mflag, Mechanism, Pin};

impl Provider {
    /// The label, `CKA_ID` and fingerprint of the key behind `handle`, as far as the session
    /// can see it, and where it is (to ask the pins again after the call). Read with the
    /// attributes a key operation reads anyway ([`crate::backend::KEY_USE`]: in hsm mode kept
    /// for a moment, so the operation that follows does not ask the HSM again). An EC or
    /// Edwards private key has a fingerprint here once a pin proved it.
    pub(super) fn key_ref(&self, h: u64, handle: u64) -> (KeyRef, Option<(usize, ObjectId)>) {
        let Ok(s) = self.session(h) else {
            return (KeyRef::default(), None);
        };
        let (id, attrs, slot) = {
            let g = s.lock();
            match self.key_object(&g, handle, crate::error::Error::KeyHandleInvalid) {
                Ok((id, a)) => (id, a, g.slot),
                Err(_) => return (KeyRef::default(), None),
            }
        };
        let text = |t| attrs.get(t).filter(|v| !v.is_empty());
        let r = KeyRef {
            label: text(attr::LABEL).map(|v| String::from_utf8_lossy(v).into_owned()),
            id: text(attr::ID).map(hex::encode),
            fingerprint: of_attrs(&attrs)
                .or_else(|| self.slots[slot].pins.proven_fingerprint(&id))
                .map(|f| f.to_string()),
        };
        (r, Some((slot, id)))
    }

    fn token_of(&self, h: u64) -> String {
        self.session(h)
            .map(|s| self.slots[s.lock().slot].label.clone())
            .unwrap_or_default()
    }

    /// Writes one line; `Ok` when there is no trail.
    fn record<T>(&self, h: u64, op: &str, mech: Option<u64>, keys: Vec<KeyRef>, r: &Result<T>) -> Result<()> {
        self.write_line(h, op, mech, keys, None, r)
    }

    /// A line with a detail (the `keygate` program's actions: `token/admin.rs`).
    pub(super) fn record_detail<T>(
        &self,
        h: u64,
        op: &str,
        keys: Vec<KeyRef>,
        detail: Option<String>,
        r: &Result<T>,
    ) -> Result<()> {
        self.write_line(h, op, None, keys, detail, r)
    }

    fn write_line<T>(
        &self,
        h: u64,
        op: &str,
        mech: Option<u64>,
        keys: Vec<KeyRef>,
        detail: Option<String>,
        r: &Result<T>,
    ) -> Result<()> {
        let Some(a) = &self.audit else { return Ok(()) };
        a.write(&Event {
            time: audit::now(),
            pid: std::process::id(),
            token: &self.token_of(h),
            session: h,
            op,
            mechanism: mech.map(policy::name),
            keys,
            detail,
            result: audit::result_name(r),
        })
    }

    /// Runs a key operation (`op` with `mech` on the keys `inputs`) under the trail. `inputs` are the keys it uses (identified before it
    /// runs: it may destroy them), `outputs` the objects it made, `undo` takes its effect back
    /// when the trail is required and cannot take the line.
    pub(super) fn audited<T>(
        &self,
        h: u64,
        (op, mech, inputs): (&str, Option<&Mechanism>, &[u64]),
        run: impl FnOnce() -> Result<T>,
        outputs: impl Fn(&T) -> Vec<u64>,
        undo: impl FnOnce(&T),
    ) -> Result<T> {
        let Some(a) = &self.audit else { return run() };
        a.ready()?;
        // Named before the call (a destroyed key is gone after it); a private key's fingerprint
        // may only be known after it (a pin proved it).
        let seen: Vec<_> = inputs.iter().map(|k| self.key_ref(h, *k)).collect();
        let r = run();
        // What the call proved (a pin, for a private key) is asked of the pins, not the key.
        let mut keys: Vec<KeyRef> = seen
            .into_iter()
            .map(|(mut k, at)| {
                if let (None, Some((slot, id))) = (&k.fingerprint, at) {
                    k.fingerprint = self.slots[slot].pins.proven_fingerprint(&id).map(|f| f.to_string());
                }
                k
            })
            .collect();
        if let Ok(v) = &r {
            keys.extend(outputs(v).into_iter().map(|k| self.key_ref(h, k).0));
        }
        let written = self.record(h, op, mech.map(Mechanism::ty), keys, &r);
        match (written, r) {
            (Err(e), Ok(v)) if a.required() => {
                undo(&v);
                Err(e)
            }
            (_, r) => r,
        }
    }

    pub fn login(&self, h: SessionHandle, user: UserType, pin: &Pin) -> Result<()> {
        let h = h.0;
        let r = self.login_unaudited(h, user, pin);
        let op = match user {
            UserType::So => "C_Login(SO)",
            UserType::User => "C_Login(user)",
            UserType::ContextSpecific => "C_Login(context-specific)",
        };
        let _ = self.record(h, op, None, Vec::new(), &r);
        r
    }

    pub fn logout(&self, h: SessionHandle) -> Result<()> {
        let h = h.0;
        let r = self.logout_unaudited(h);
        let _ = self.record(h, "C_Logout", None, Vec::new(), &r);
        r
    }

    pub fn sign_init(&self, h: SessionHandle, mech: &Mechanism, key: ObjectHandle) -> Result<()> {
        let h = h.0;
        let key = key.0;
        let cancel = |_: &()| drop(self.session_cancel(SessionHandle(h), mflag::SIGN));
        let run = || self.sign_init_unaudited(h, mech, key);
        self.audited(h, ("C_SignInit", Some(mech), &[key]), run, |_| Vec::new(), cancel)
    }

    pub fn verify_init(&self, h: SessionHandle, mech: &Mechanism, key: ObjectHandle) -> Result<()> {
        let h = h.0;
        let key = key.0;
        let cancel = |_: &()| drop(self.session_cancel(SessionHandle(h), mflag::VERIFY));
        let run = || self.verify_init_unaudited(h, mech, key);
        self.audited(h, ("C_VerifyInit", Some(mech), &[key]), run, |_| Vec::new(), cancel)
    }

    pub fn crypt_init(&self, h: SessionHandle, mech: &Mechanism, key: ObjectHandle, encrypt: bool) -> Result<()> {
        let h = h.0;
        let key = key.0;
        let (op, flag) = if encrypt {
            ("C_EncryptInit", mflag::ENCRYPT)
        } else {
            ("C_DecryptInit", mflag::DECRYPT)
        };
        let cancel = |_: &()| drop(self.session_cancel(SessionHandle(h), flag));
        let run = || self.crypt_init_unaudited(h, mech, key, encrypt);
        self.audited(h, (op, Some(mech), &[key]), run, |_| Vec::new(), cancel)
    }

    /// Destroys objects made by an operation the trail could not record.
    pub(super) fn unmake(&self, h: u64, handles: &[u64]) {
        for k in handles {
            if let Err(e) = self.destroy_object_unaudited(h, *k) {
                log::error!("audit: could not take back an unrecorded object: {e}");
            }
        }
    }

    pub fn generate_key(&self, h: SessionHandle, mech: &Mechanism, template: AttrMap) -> Result<ObjectHandle> {
        let h = h.0;
        let run = || self.generate_key_unaudited(h, mech, template);
        let undo = |k: &u64| self.unmake(h, &[*k]);
        self.audited(h, ("C_GenerateKey", Some(mech), &[]), run, |k| vec![*k], undo)
            .map(ObjectHandle)
    }

    pub fn generate_key_pair(
        &self,
        h: SessionHandle,
        mech: &Mechanism,
        public: AttrMap,
        private: AttrMap,
    ) -> Result<(ObjectHandle, ObjectHandle)> {
        let h = h.0;
        let run = || self.generate_key_pair_unaudited(h, mech, public, private);
        let undo = |k: &(u64, u64)| self.unmake(h, &[k.0, k.1]);
        self.audited(h, ("C_GenerateKeyPair", Some(mech), &[]), run, |k| vec![k.0, k.1], undo)
            .map(|(public, private)| (ObjectHandle(public), ObjectHandle(private)))
    }

    pub fn create_object(&self, h: SessionHandle, template: AttrMap) -> Result<ObjectHandle> {
        let h = h.0;
        let run = || self.create_object_unaudited(h, template);
        let undo = |k: &u64| self.unmake(h, &[*k]);
        self.audited(h, ("C_CreateObject", None, &[]), run, |k| vec![*k], undo)
            .map(ObjectHandle)
    }

    pub fn copy_object(&self, h: SessionHandle, handle: ObjectHandle, template: AttrMap) -> Result<ObjectHandle> {
        let h = h.0;
        let handle = handle.0;
        let run = || self.copy_object_unaudited(h, handle, template);
        let undo = |k: &u64| self.unmake(h, &[*k]);
        self.audited(h, ("C_CopyObject", None, &[handle]), run, |k| vec![*k], undo)
            .map(ObjectHandle)
    }

    /// Destruction cannot be taken back: with a required trail that cannot be opened it is
    /// refused beforehand; a line that fails after it is logged.
    pub fn destroy_object(&self, h: SessionHandle, handle: ObjectHandle) -> Result<()> {
        let h = h.0;
        let handle = handle.0;
        let run = || self.destroy_object_unaudited(h, handle);
        self.audited(h, ("C_DestroyObject", None, &[handle]), run, |_| Vec::new(), |_| ())
    }

    pub fn wrap_key(
        &self,
        h: SessionHandle,
        mech: &Mechanism,
        wrapping: ObjectHandle,
        key: ObjectHandle,
        cap: Option<usize>,
    ) -> Result<Out> {
        let h = h.0;
        let key = key.0;
        let wrapping = wrapping.0;
        // Length queries are not events: the line is written when the wrapped key is handed out.
        let run = || self.wrap_key_unaudited(h, mech, wrapping, key, cap);
        let Some(a) = &self.audit else { return run() };
        a.ready()?;
        match run() {
            Ok(out @ (Out::Len(_) | Out::TooSmall(_))) => Ok(out),
            r => {
                let keys = vec![self.key_ref(h, wrapping).0, self.key_ref(h, key).0];
                let written = self.record(h, "C_WrapKey", Some(mech.ty()), keys, &r);
                match written {
                    Err(e) if r.is_ok() && a.required() => Err(e),
                    _ => r,
                }
            }
        }
    }

    pub fn unwrap_key(
        &self,
        h: SessionHandle,
        mech: &Mechanism,
        unwrapping: ObjectHandle,
        wrapped: &[u8],
        template: AttrMap,
    ) -> Result<ObjectHandle> {
        let h = h.0;
        let unwrapping = unwrapping.0;
        let run = || self.unwrap_key_unaudited(h, mech, unwrapping, wrapped, template);
        let undo = |k: &u64| self.unmake(h, &[*k]);
        self.audited(h, ("C_UnwrapKey", Some(mech), &[unwrapping]), run, |k| vec![*k], undo)
            .map(ObjectHandle)
    }

    pub fn derive_key(
        &self,
        h: SessionHandle,
        mech: &Mechanism,
        base: ObjectHandle,
        template: AttrMap,
    ) -> Result<ObjectHandle> {
        let h = h.0;
        let base = base.0;
        let run = || self.derive_key_unaudited(h, mech, base, template);
        let undo = |k: &u64| self.unmake(h, &[*k]);
        self.audited(h, ("C_DeriveKey", Some(mech), &[base]), run, |k| vec![*k], undo)
            .map(ObjectHandle)
    }
}
