//! Signing, MACing and verification (PKCS#11 3.0 §5.11–5.12).

use pkcs11_sys::*;

use super::{entry, raw};
use crate::model::handles::{ObjectHandle, SessionHandle};
use crate::token::provider;

entry! {
    fn C_SignInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE) {
        let p = provider()?;
        // SAFETY: caller-provided mechanism.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        p.sign_init(SessionHandle(hSession), &m, ObjectHandle(hKey))
    }

    fn C_Sign(
        hSession: CK_SESSION_HANDLE,
        pData: CK_BYTE_PTR,
        ulDataLen: CK_ULONG,
        pSignature: CK_BYTE_PTR,
        pulSignatureLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let data = unsafe { raw::in_slice(pData, ulDataLen) }?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let cap = unsafe { raw::capacity(pSignature, pulSignatureLen) }?;
        let o = p.sign(SessionHandle(hSession), data, cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pSignature, pulSignatureLen, o) }
    }

    fn C_SignUpdate(hSession: CK_SESSION_HANDLE, pPart: CK_BYTE_PTR, ulPartLen: CK_ULONG) {
        let p = provider()?;
        // SAFETY: caller-provided input.
        let data = unsafe { raw::in_slice(pPart, ulPartLen) }?;
        p.sign_update(SessionHandle(hSession), data)
    }

    fn C_SignFinal(hSession: CK_SESSION_HANDLE, pSignature: CK_BYTE_PTR, pulSignatureLen: CK_ULONG_PTR) {
        let p = provider()?;
        // SAFETY: caller-provided buffer per the two-call convention.
        let cap = unsafe { raw::capacity(pSignature, pulSignatureLen) }?;
        let o = p.sign_final(SessionHandle(hSession), cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pSignature, pulSignatureLen, o) }
    }

    fn C_VerifyInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE) {
        let p = provider()?;
        // SAFETY: caller-provided mechanism.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        p.verify_init(SessionHandle(hSession), &m, ObjectHandle(hKey))
    }

    fn C_Verify(
        hSession: CK_SESSION_HANDLE,
        pData: CK_BYTE_PTR,
        ulDataLen: CK_ULONG,
        pSignature: CK_BYTE_PTR,
        ulSignatureLen: CK_ULONG,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided inputs.
        let data = unsafe { raw::in_slice(pData, ulDataLen) }?;
        // SAFETY: caller-provided inputs.
        let sig = unsafe { raw::in_slice(pSignature, ulSignatureLen) }?;
        p.verify(SessionHandle(hSession), data, sig)
    }

    fn C_VerifyUpdate(hSession: CK_SESSION_HANDLE, pPart: CK_BYTE_PTR, ulPartLen: CK_ULONG) {
        let p = provider()?;
        // SAFETY: caller-provided input.
        let data = unsafe { raw::in_slice(pPart, ulPartLen) }?;
        p.verify_update(SessionHandle(hSession), data)
    }

    fn C_VerifyFinal(hSession: CK_SESSION_HANDLE, pSignature: CK_BYTE_PTR, ulSignatureLen: CK_ULONG) {
        let p = provider()?;
        // SAFETY: caller-provided input.
        let sig = unsafe { raw::in_slice(pSignature, ulSignatureLen) }?;
        p.verify_final(SessionHandle(hSession), sig)
    }
}
