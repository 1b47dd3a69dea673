//! The `keygate` program's actions on objects, through the same token layer as the C ABI: a
//! session, an audited login, the object resolved as the session may see it, and the change
//! checked by the same attribute rules (`CKA_DESTROYABLE`, `CKA_MODIFIABLE`, the one-way
//! revocation) before it reaches the backend; each action is one line in the audit trail.
//! Store maintenance that has no PKCS#11 form (verify, backup, restore, rotations, PIN
//! changes) stays with the self-managed backend's own API (`backend/local/admin.rs`), and the
//! program audits it.

use crate::model::handles::{ObjectHandle, SessionHandle};
use std::sync::atomic::AtomicU64;

use super::handles::Handles;
use super::provider::{slots_from, Provider};
use crate::backend::{ObjectId, UserType};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, revocation, AttrMap};
use crate::model::mechanisms::Pin;

impl Provider {
    /// A provider of the `keygate` program's own, with the configuration's slots and audit
    /// trail (never the module's process-wide one).
    pub fn for_program(cfg: &Config) -> Provider {
        Provider {
            slots: slots_from(cfg),
            sessions: super::session::SessionTable::default(),
            handles: Handles::default(),
            next_session: AtomicU64::new(0),
            pid: crate::sys::process::id(),
            audit: cfg.audit.as_ref().map(crate::audit::Audit::new),
        }
    }

    /// A read/write session on the token labelled `token` with the user logged in (the
    /// login audited as any `C_Login`).
    pub fn admin_session(&self, token: &str, pin: &Pin) -> Result<SessionHandle> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.label == token)
            .ok_or_else(|| Error::Config(format!("no token {token:?} in the configuration")))?;
        let h = self.open_session(slot as u64, true, true)?;
        if let Err(e) = self.login(h, UserType::User, pin) {
            let _ = self.close_session(h);
            return Err(e);
        }
        Ok(h)
    }

    /// Logs out and closes a session of [`Provider::admin_session`].
    pub fn end_admin_session(&self, h: SessionHandle) {
        let _ = self.logout(h);
        let _ = self.close_session(h);
    }

    /// The handle of the object with record identifier `uid` (as `keygate list` prints it),
    /// and its attributes, as the session may see it.
    pub fn object_by_uid(&self, h: SessionHandle, uid: &ObjectId) -> Result<(ObjectHandle, AttrMap)> {
        let h = h.0;
        let s = self.session(h)?;
        let g = s.lock();
        let handle = self.handles.handle_for(g.slot, *uid);
        let (_, attrs) = self.object(&g, handle, Error::ObjectHandleInvalid)?;
        Ok((ObjectHandle(handle), attrs))
    }

    /// `keygate revoke`: the key is marked revoked for `reason` (an RFC 5280 code), through
    /// `C_SetAttributeValue`'s rules (a key that is not modifiable, or already revoked, is
    /// refused); audited as "keygate revoke".
    pub fn revoke_key(&self, h: SessionHandle, handle: ObjectHandle, reason: u64) -> Result<()> {
        let h = h.0;
        let handle = handle.0;
        let (keys, r) = {
            let key = self.key_ref(h, handle).0;
            let r = (|| {
                let s = self.session(h)?;
                let attrs = self.object(&s.lock(), handle, Error::ObjectHandleInvalid)?.1;
                if !matches!(
                    attrs.class()?,
                    class::PRIVATE_KEY | class::SECRET_KEY | class::PUBLIC_KEY
                ) {
                    return Err(Error::KeyHandleInvalid);
                }
                let mut change = AttrMap::new();
                change.set_ulong(attr::KEYGATE_REVOKED, reason);
                self.set_attribute_values(SessionHandle(h), ObjectHandle(handle), change)
            })();
            (vec![key], r)
        };
        let detail = format!("reason: {}", revocation::name(reason).unwrap_or("unknown"));
        self.record_detail(h, "keygate revoke", keys, Some(detail), &r)?;
        r
    }

    /// `keygate destroy KEY`: `C_DestroyObject`'s rules (`CKA_DESTROYABLE`, visibility);
    /// audited as "keygate destroy".
    pub fn destroy_by_program(&self, h: SessionHandle, handle: ObjectHandle) -> Result<()> {
        let h = h.0;
        let handle = handle.0;
        let key = self.key_ref(h, handle).0;
        let r = self.destroy_object_unaudited(h, handle);
        self.record_detail(h, "keygate destroy", vec![key], None, &r)?;
        r
    }

    /// `keygate import`: the objects a file held (a private key and its public key, or one
    /// object), made by `C_CreateObject`'s rules in order; all or none, audited as one
    /// "keygate import" line.
    pub fn import_objects(&self, h: SessionHandle, templates: Vec<AttrMap>) -> Result<Vec<ObjectHandle>> {
        let h = h.0;
        let run = || {
            let mut made = Vec::new();
            for t in templates {
                match self.create_object_unaudited(h, t) {
                    Ok(k) => made.push(k),
                    Err(e) => {
                        self.unmake(h, &made);
                        return Err(e);
                    }
                }
            }
            Ok(made)
        };
        let undo = |made: &Vec<u64>| self.unmake(h, made);
        self.audited(h, ("keygate import", None, &[]), run, |made| made.clone(), undo)
            .map(|made| made.into_iter().map(ObjectHandle).collect())
    }
}
