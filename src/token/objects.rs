//! Objects on a session: creating, copying and destroying them, their attributes and size,
//! and searching (`C_CreateObject` … `C_FindObjectsFinal`).

use super::object::{self, Origin, Readable};
use super::provider::Provider;
use super::session::Session;
use crate::backend::ObjectId;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, AttrMap};
use crate::model::handles::{ObjectHandle, SessionHandle};

impl Provider {
    fn check_writable(&self, s: &Session, attrs: &AttrMap) -> Result<()> {
        if attrs.flag(attr::TOKEN) && !s.rw {
            return Err(Error::SessionReadOnly);
        }
        Ok(())
    }

    pub(super) fn create_object_unaudited(&self, h: u64, template: AttrMap) -> Result<u64> {
        let s = self.session(h)?;
        let s = s.lock();
        let attrs = object::complete(template, Origin::Create, self.is_so(s.slot))?;
        object::check_aes_value(&attrs)?;
        let policy = &self.slot_of(&s).policy;
        policy.check_protection(&attrs)?;
        policy.check_key_size(&attrs)?;
        let lifetime = self.lifetime_for(h, &s, &attrs)?;
        let id = self.slot_of(&s).backend.create(h, lifetime, attrs)?;
        Ok(self.handles.handle_for(s.slot, id))
    }

    pub(super) fn copy_object_unaudited(&self, h: u64, handle: u64, template: AttrMap) -> Result<u64> {
        let s = self.session(h)?;
        let s = s.lock();
        let (id, attrs) = self.object(&s, handle, Error::ObjectHandleInvalid)?;
        if !attrs.flag(attr::COPYABLE) {
            return Err(Error::ActionProhibited);
        }
        let mut new = object::apply_changes(&attrs, &template, true, self.is_so(s.slot))?;
        new.remove(attr::UNIQUE_ID);
        self.slot_of(&s).policy.check_protection(&new)?;
        let lifetime = self.lifetime_for(h, &s, &new)?;
        let id = self.slot_of(&s).backend.copy(h, &id, lifetime, new)?;
        Ok(self.handles.handle_for(s.slot, id))
    }

    pub(super) fn destroy_object_unaudited(&self, h: u64, handle: u64) -> Result<()> {
        let s = self.session(h)?;
        let s = s.lock();
        let (slot, id) = self.handles.resolve(handle).ok_or(Error::ObjectHandleInvalid)?;
        if slot != s.slot {
            return Err(Error::ObjectHandleInvalid);
        }
        let backend = &self.slot_of(&s).backend;
        // Only what destroying checks; nothing where the HSM checks it itself.
        let access = match backend.access_attributes(h, &id) {
            Err(Error::ObjectHandleInvalid) => return Err(Error::ObjectHandleInvalid),
            other => other?,
        };
        if let Some(attrs) = access {
            if attrs.flag(attr::PRIVATE) && !self.user_logged_in(slot) {
                return Err(Error::ObjectHandleInvalid);
            }
            self.check_writable(&s, &attrs)?;
            // Absent (an HSM from before PKCS#11 3.0): TRUE, the specification's default.
            if attrs.get(attr::DESTROYABLE).is_some() && !attrs.flag(attr::DESTROYABLE) {
                return Err(Error::ActionProhibited);
            }
        }
        backend.destroy(h, &id)?;
        self.handles.forget(handle);
        Ok(())
    }

    /// The size of an object: the length of its clear encoding (an estimate, as PKCS#11 allows).
    pub fn object_size(&self, h: SessionHandle, handle: ObjectHandle) -> Result<u64> {
        let h = h.0;
        let handle = handle.0;
        let s = self.session(h)?;
        let s = s.lock();
        let (_, attrs) = self.object(&s, handle, Error::ObjectHandleInvalid)?;
        Ok(attrs.iter().map(|(_, v)| 16 + v.len() as u64).sum())
    }

    /// `C_GetAttributeValue`: one answer per requested type, `Err` per attribute as the spec's
    /// per-attribute rules say (`ffi` writes `CK_UNAVAILABLE_INFORMATION` for those).
    pub fn attribute_values(
        &self,
        h: SessionHandle,
        handle: ObjectHandle,
        types: &[u64],
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let h = h.0;
        let handle = handle.0;
        let s = self.session(h)?;
        let s = s.lock();
        let (id, attrs) = self.object(&s, handle, Error::ObjectHandleInvalid)?;
        let backend = &self.slot_of(&s).backend;
        Ok(types
            .iter()
            .map(|t| match object::readable(&attrs, *t) {
                Readable::Value(v) => Ok(v.to_vec()),
                Readable::Sensitive => Err(Error::AttributeSensitive(*t)),
                Readable::Secret => backend.secret_value(h, &id, *t).map(|v| v.to_vec()),
                Readable::Invalid => Err(Error::AttributeTypeInvalid(*t)),
            })
            .collect())
    }

    pub fn set_attribute_values(&self, h: SessionHandle, handle: ObjectHandle, changes: AttrMap) -> Result<()> {
        let h = h.0;
        let handle = handle.0;
        let s = self.session(h)?;
        let s = s.lock();
        let (id, attrs) = self.object(&s, handle, Error::ObjectHandleInvalid)?;
        self.check_writable(&s, &attrs)?;
        let new = object::apply_changes(&attrs, &changes, false, self.is_so(s.slot))?;
        self.slot_of(&s).backend.update(h, &id, new)
    }

    pub fn find_init(&self, h: SessionHandle, template: AttrMap) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        if s.find.is_some() {
            return Err(Error::OperationActive);
        }
        let found = self
            .slot_of(&s)
            .backend
            .find(h, &template, self.user_logged_in(s.slot))?;
        s.find = Some(super::session::Find { remaining: found });
        Ok(())
    }

    pub fn find_next(&self, h: SessionHandle, max: usize) -> Result<Vec<ObjectHandle>> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        let slot = s.slot;
        let f = s.find.as_mut().ok_or(Error::OperationNotInitialized)?;
        let n = max.min(f.remaining.len());
        let ids: Vec<ObjectId> = f.remaining.drain(..n).collect();
        Ok(ids
            .into_iter()
            .map(|id| ObjectHandle(self.handles.handle_for(slot, id)))
            .collect())
    }

    pub fn find_final(&self, h: SessionHandle) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        s.find.take().map(|_| ()).ok_or(Error::OperationNotInitialized)
    }
}
