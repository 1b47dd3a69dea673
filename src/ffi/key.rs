//! Key management (PKCS#11 3.0 §5.14).

use pkcs11_sys::*;

use super::{entry, raw};
use crate::error::Error;
use crate::model::handles::{ObjectHandle, SessionHandle};
use crate::token::provider;

entry! {
    fn C_GenerateKey(
        hSession: CK_SESSION_HANDLE,
        pMechanism: CK_MECHANISM_PTR,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulCount: CK_ULONG,
        phKey: CK_OBJECT_HANDLE_PTR,
    ) {
        let p = provider()?;
        if phKey.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided mechanism and template.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        // SAFETY: caller-provided mechanism and template.
        let t = unsafe { raw::template_in(pTemplate, ulCount) }?;
        let h = p.generate_key(SessionHandle(hSession), &m, t)?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phKey, h.0) }
    }

    fn C_GenerateKeyPair(
        hSession: CK_SESSION_HANDLE,
        pMechanism: CK_MECHANISM_PTR,
        pPublicKeyTemplate: CK_ATTRIBUTE_PTR,
        ulPublicKeyAttributeCount: CK_ULONG,
        pPrivateKeyTemplate: CK_ATTRIBUTE_PTR,
        ulPrivateKeyAttributeCount: CK_ULONG,
        phPublicKey: CK_OBJECT_HANDLE_PTR,
        phPrivateKey: CK_OBJECT_HANDLE_PTR,
    ) {
        let p = provider()?;
        if phPublicKey.is_null() || phPrivateKey.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided mechanism.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        // SAFETY: caller-provided templates.
        let pu = unsafe { raw::template_in(pPublicKeyTemplate, ulPublicKeyAttributeCount) }?;
        // SAFETY: as above.
        let pr = unsafe { raw::template_in(pPrivateKeyTemplate, ulPrivateKeyAttributeCount) }?;
        let (a, b) = p.generate_key_pair(SessionHandle(hSession), &m, pu, pr)?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phPublicKey, a.0) }?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phPrivateKey, b.0) }
    }

    fn C_WrapKey(
        hSession: CK_SESSION_HANDLE,
        pMechanism: CK_MECHANISM_PTR,
        hWrappingKey: CK_OBJECT_HANDLE,
        hKey: CK_OBJECT_HANDLE,
        pWrappedKey: CK_BYTE_PTR,
        pulWrappedKeyLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided mechanism and output buffer.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        // SAFETY: caller-provided mechanism and output buffer.
        let cap = unsafe { raw::capacity(pWrappedKey, pulWrappedKeyLen) }?;
        let o = p.wrap_key(SessionHandle(hSession), &m, ObjectHandle(hWrappingKey), ObjectHandle(hKey), cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pWrappedKey, pulWrappedKeyLen, o) }
    }

    fn C_UnwrapKey(
        hSession: CK_SESSION_HANDLE,
        pMechanism: CK_MECHANISM_PTR,
        hUnwrappingKey: CK_OBJECT_HANDLE,
        pWrappedKey: CK_BYTE_PTR,
        ulWrappedKeyLen: CK_ULONG,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulAttributeCount: CK_ULONG,
        phKey: CK_OBJECT_HANDLE_PTR,
    ) {
        let p = provider()?;
        if phKey.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided mechanism, wrapped key and template.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        // SAFETY: caller-provided mechanism, wrapped key and template.
        let w = unsafe { raw::in_slice(pWrappedKey, ulWrappedKeyLen) }?;
        // SAFETY: caller-provided mechanism, wrapped key and template.
        let t = unsafe { raw::template_in(pTemplate, ulAttributeCount) }?;
        let h = p.unwrap_key(SessionHandle(hSession), &m, ObjectHandle(hUnwrappingKey), w, t)?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phKey, h.0) }
    }

    fn C_DeriveKey(
        hSession: CK_SESSION_HANDLE,
        pMechanism: CK_MECHANISM_PTR,
        hBaseKey: CK_OBJECT_HANDLE,
        pTemplate: CK_ATTRIBUTE_PTR,
        ulAttributeCount: CK_ULONG,
        phKey: CK_OBJECT_HANDLE_PTR,
    ) {
        let p = provider()?;
        if phKey.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: caller-provided mechanism and template.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        // SAFETY: caller-provided mechanism and template.
        let t = unsafe { raw::template_in(pTemplate, ulAttributeCount) }?;
        let h = p.derive_key(SessionHandle(hSession), &m, ObjectHandle(hBaseKey), t)?;
        // SAFETY: checked non-null.
        unsafe { raw::out(phKey, h.0) }
    }
}
