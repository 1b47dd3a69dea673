//! Object management (PKCS#11 3.0 §5.7).

use pkcs11_sys::*;

use super::{entry, raw};
use crate::error::Error;
use crate::model::handles::{ObjectHandle, SessionHandle};
use crate::token::provider;

entry! {
    fn C_CreateObject(
        hSession: CK_SESSION_HANDLE,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulCount: CK_ULONG,
        phObject: CK_OBJECT_HANDLE_PTR,
    ) {
        let p = provider()?;
        if phObject.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided template.
        let t = unsafe { raw::template_in(pTemplate, ulCount) }?;
        let h = p.create_object(SessionHandle(hSession), t)?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phObject, h.0) }
    }

    fn C_CopyObject(
        hSession: CK_SESSION_HANDLE,
        hObject: CK_OBJECT_HANDLE,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulCount: CK_ULONG,
        phNewObject: CK_OBJECT_HANDLE_PTR,
    ) {
        let p = provider()?;
        if phNewObject.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided template.
        let t = unsafe { raw::template_in(pTemplate, ulCount) }?;
        let h = p.copy_object(SessionHandle(hSession), ObjectHandle(hObject), t)?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phNewObject, h.0) }
    }

    fn C_DestroyObject(hSession: CK_SESSION_HANDLE, hObject: CK_OBJECT_HANDLE) {
        provider()?.destroy_object(SessionHandle(hSession), ObjectHandle(hObject))
    }

    fn C_GetObjectSize(hSession: CK_SESSION_HANDLE, hObject: CK_OBJECT_HANDLE, pulSize: CK_ULONG_PTR) {
        let p = provider()?;
        if pulSize.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let n = p.object_size(SessionHandle(hSession), ObjectHandle(hObject))?;
        // SAFETY: checked non-null.
        unsafe { raw::out(pulSize, n) }
    }

    fn C_GetAttributeValue(
        hSession: CK_SESSION_HANDLE,
        hObject: CK_OBJECT_HANDLE,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulCount: CK_ULONG,
    ) {
        let p = provider()?;
        if pTemplate.is_null() && ulCount > 0 {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided template (types only).
        let types = unsafe { raw::template_types(pTemplate, ulCount) }?;
        let answers = p.attribute_values(SessionHandle(hSession), ObjectHandle(hObject), &types)?;
        if ulCount == 0 {
            return Ok(());
        }
        // SAFETY: caller-provided template with writable value buffers.
        unsafe { raw::template_out(pTemplate, ulCount, answers) }
    }

    fn C_SetAttributeValue(
        hSession: CK_SESSION_HANDLE,
        hObject: CK_OBJECT_HANDLE,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulCount: CK_ULONG,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided template.
        let t = unsafe { raw::template_in(pTemplate, ulCount) }?;
        p.set_attribute_values(SessionHandle(hSession), ObjectHandle(hObject), t)
    }

    fn C_FindObjectsInit(hSession: CK_SESSION_HANDLE, pTemplate: CK_ATTRIBUTE_PTR, ulCount: CK_ULONG) {
        let p = provider()?;
        // SAFETY: caller-provided template.
        let t = unsafe { raw::template_in(pTemplate, ulCount) }?;
        p.find_init(SessionHandle(hSession), t)
    }

    fn C_FindObjects(
        hSession: CK_SESSION_HANDLE,
        phObject: CK_OBJECT_HANDLE_PTR,
        ulMaxObjectCount: CK_ULONG,
        pulObjectCount: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        if pulObjectCount.is_null() || (phObject.is_null() && ulMaxObjectCount > 0) {
            return Err(Error::ArgumentsBad);
        }
        let found: Vec<CK_OBJECT_HANDLE> = p
            .find_next(SessionHandle(hSession), ulMaxObjectCount as usize)?
            .into_iter()
            .map(|o| o.0)
            .collect();
        if !found.is_empty() {
            // SAFETY: the caller's array holds `ulMaxObjectCount >= found.len()` handles.
            unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), phObject, found.len()) };
        }
        // SAFETY: checked non-null.
        unsafe { raw::out(pulObjectCount, found.len() as CK_ULONG) }
    }

    fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) {
        provider()?.find_final(SessionHandle(hSession))
    }
}
