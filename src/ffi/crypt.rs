//! Encryption and decryption (PKCS#11 3.0 §5.8–5.9).

use pkcs11_sys::*;

use super::{entry, raw};
use crate::model::handles::{ObjectHandle, SessionHandle};
use crate::token::provider;

entry! {
    fn C_EncryptInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE) {
        let p = provider()?;
        // SAFETY: caller-provided mechanism.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        p.crypt_init(SessionHandle(hSession), &m, ObjectHandle(hKey), true)
    }

    fn C_Encrypt(
        hSession: CK_SESSION_HANDLE,
        pData: CK_BYTE_PTR,
        ulDataLen: CK_ULONG,
        pEncryptedData: CK_BYTE_PTR,
        pulEncryptedDataLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let data = unsafe { raw::in_slice(pData, ulDataLen) }?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let cap = unsafe { raw::capacity(pEncryptedData, pulEncryptedDataLen) }?;
        // SAFETY: as above; the slice is used by `crypt` alone, and ends with it.
        let direct = unsafe { raw::out_slice(pEncryptedData, pulEncryptedDataLen, data) }?;
        let o = p.crypt(SessionHandle(hSession), true, data, cap, direct)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pEncryptedData, pulEncryptedDataLen, o) }
    }

    fn C_EncryptUpdate(
        hSession: CK_SESSION_HANDLE,
        pPart: CK_BYTE_PTR,
        ulPartLen: CK_ULONG,
        pEncryptedPart: CK_BYTE_PTR,
        pulEncryptedPartLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let data = unsafe { raw::in_slice(pPart, ulPartLen) }?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let cap = unsafe { raw::capacity(pEncryptedPart, pulEncryptedPartLen) }?;
        let o = p.crypt_update(SessionHandle(hSession), true, data, cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pEncryptedPart, pulEncryptedPartLen, o) }
    }

    fn C_EncryptFinal(hSession: CK_SESSION_HANDLE, pLastEncryptedPart: CK_BYTE_PTR, pulLastEncryptedPartLen: CK_ULONG_PTR) {
        let p = provider()?;
        // SAFETY: caller-provided buffer per the two-call convention.
        let cap = unsafe { raw::capacity(pLastEncryptedPart, pulLastEncryptedPartLen) }?;
        let o = p.crypt_final(SessionHandle(hSession), true, cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pLastEncryptedPart, pulLastEncryptedPartLen, o) }
    }

    fn C_DecryptInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE) {
        let p = provider()?;
        // SAFETY: caller-provided mechanism.
        let m = unsafe { raw::mechanism_in(pMechanism) }?;
        p.crypt_init(SessionHandle(hSession), &m, ObjectHandle(hKey), false)
    }

    fn C_Decrypt(
        hSession: CK_SESSION_HANDLE,
        pEncryptedData: CK_BYTE_PTR,
        ulEncryptedDataLen: CK_ULONG,
        pData: CK_BYTE_PTR,
        pulDataLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let data = unsafe { raw::in_slice(pEncryptedData, ulEncryptedDataLen) }?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let cap = unsafe { raw::capacity(pData, pulDataLen) }?;
        let o = p.crypt(SessionHandle(hSession), false, data, cap, None)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pData, pulDataLen, o) }
    }

    fn C_DecryptUpdate(
        hSession: CK_SESSION_HANDLE,
        pEncryptedPart: CK_BYTE_PTR,
        ulEncryptedPartLen: CK_ULONG,
        pPart: CK_BYTE_PTR,
        pulPartLen: CK_ULONG_PTR,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let data = unsafe { raw::in_slice(pEncryptedPart, ulEncryptedPartLen) }?;
        // SAFETY: caller-provided buffers per the two-call convention.
        let cap = unsafe { raw::capacity(pPart, pulPartLen) }?;
        let o = p.crypt_update(SessionHandle(hSession), false, data, cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pPart, pulPartLen, o) }
    }

    fn C_DecryptFinal(hSession: CK_SESSION_HANDLE, pLastPart: CK_BYTE_PTR, pulLastPartLen: CK_ULONG_PTR) {
        let p = provider()?;
        // SAFETY: caller-provided buffer per the two-call convention.
        let cap = unsafe { raw::capacity(pLastPart, pulLastPartLen) }?;
        let o = p.crypt_final(SessionHandle(hSession), false, cap)?;
        // SAFETY: as above.
        unsafe { raw::out_buf(pLastPart, pulLastPartLen, o) }
    }
}
