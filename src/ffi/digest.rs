//! Message digesting (PKCS#11 3.0 §5.10).

use pkcs11_sys::*;

use super::{entry, raw};
use crate::model::handles::{ObjectHandle, SessionHandle};
use crate::token::provider;

entry! {
    fn C_DigestInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR) {
        let p = provider()?;
        // SAFETY: caller-provided mechanism.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        p.digest_init(SessionHandle(hSession), &m)
    }

    fn C_Digest(
        hSession: CK_SESSION_HANDLE,
        pData: CK_BYTE_PTR,
        ulDataLen: CK_ULONG,
        pDigest: CK_BYTE_PTR,
        pulDigestLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let data = unsafe { raw::in_slice(pData, ulDataLen) }?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let cap = unsafe { raw::capacity(pDigest, pulDigestLen) }?;
        let o = p.digest(SessionHandle(hSession), data, cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pDigest, pulDigestLen, o) }
    }

    fn C_DigestUpdate(hSession: CK_SESSION_HANDLE, pPart: CK_BYTE_PTR, ulPartLen: CK_ULONG) {
        let p = provider()?;
        // SAFETY: caller-provided input.
        let data = unsafe { raw::in_slice(pPart, ulPartLen) }?;
        p.digest_update(SessionHandle(hSession), data)
    }

    fn C_DigestKey(hSession: CK_SESSION_HANDLE, hKey: CK_OBJECT_HANDLE) {
        provider()?.digest_key(SessionHandle(hSession), ObjectHandle(hKey))
    }

    fn C_DigestFinal(hSession: CK_SESSION_HANDLE, pDigest: CK_BYTE_PTR, pulDigestLen: CK_ULONG_PTR) {
        let p = provider()?;
        // SAFETY: caller-provided buffer per the two-call convention.
        let cap = unsafe { raw::capacity(pDigest, pulDigestLen) }?;
        let o = p.digest_final(SessionHandle(hSession), cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pDigest, pulDigestLen, o) }
    }
}
