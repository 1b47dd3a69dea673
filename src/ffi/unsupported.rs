//! Functions of the 2.40 and 3.0 tables that keygate does not implement: each exists and
//! returns `CKR_FUNCTION_NOT_SUPPORTED` (generated from pkcs11-sys's `CK_C_*` types, so the
//! signatures cannot drift).

use pkcs11_sys::*;

use crate::error::Error;

macro_rules! unsupported {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`: not supported.")]
            pub(crate) unsafe extern "C" fn $name($($arg: $ty),*) -> CK_RV {
                $(let _ = $arg;)*
                super::guard(stringify!($name), || -> crate::error::Result<()> { Err(Error::FunctionNotSupported) })
            }
        )*
    };
}

unsupported! {
    C_GetOperationState(hSession: CK_SESSION_HANDLE, pOperationState: CK_BYTE_PTR, pulOperationStateLen: CK_ULONG_PTR);
    C_SetOperationState(hSession: CK_SESSION_HANDLE, pOperationState: CK_BYTE_PTR, ulOperationStateLen: CK_ULONG, hEncryptionKey: CK_OBJECT_HANDLE, hAuthenticationKey: CK_OBJECT_HANDLE);
    C_SignRecoverInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE);
    C_SignRecover(hSession: CK_SESSION_HANDLE, pData: CK_BYTE_PTR, ulDataLen: CK_ULONG, pSignature: CK_BYTE_PTR, pulSignatureLen: CK_ULONG_PTR);
    C_VerifyRecoverInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE);
    C_VerifyRecover(hSession: CK_SESSION_HANDLE, pSignature: CK_BYTE_PTR, ulSignatureLen: CK_ULONG, pData: CK_BYTE_PTR, pulDataLen: CK_ULONG_PTR);
    C_DigestEncryptUpdate(hSession: CK_SESSION_HANDLE, pPart: CK_BYTE_PTR, ulPartLen: CK_ULONG, pEncryptedPart: CK_BYTE_PTR, pulEncryptedPartLen: CK_ULONG_PTR);
    C_DecryptDigestUpdate(hSession: CK_SESSION_HANDLE, pEncryptedPart: CK_BYTE_PTR, ulEncryptedPartLen: CK_ULONG, pPart: CK_BYTE_PTR, pulPartLen: CK_ULONG_PTR);
    C_SignEncryptUpdate(hSession: CK_SESSION_HANDLE, pPart: CK_BYTE_PTR, ulPartLen: CK_ULONG, pEncryptedPart: CK_BYTE_PTR, pulEncryptedPartLen: CK_ULONG_PTR);
    C_DecryptVerifyUpdate(hSession: CK_SESSION_HANDLE, pEncryptedPart: CK_BYTE_PTR, ulEncryptedPartLen: CK_ULONG, pPart: CK_BYTE_PTR, pulPartLen: CK_ULONG_PTR);
    C_LoginUser(hSession: CK_SESSION_HANDLE, userType: CK_USER_TYPE, pPin: CK_UTF8CHAR_PTR, ulPinLen: CK_ULONG, pUsername: CK_UTF8CHAR_PTR, ulUsernameLen: CK_ULONG);
    C_MessageEncryptInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE);
    C_EncryptMessage(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pAssociatedData: CK_BYTE_PTR, ulAssociatedDataLen: CK_ULONG, pPlaintext: CK_BYTE_PTR, ulPlaintextLen: CK_ULONG, pCiphertext: CK_BYTE_PTR, pulCiphertextLen: CK_ULONG_PTR);
    C_EncryptMessageBegin(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pAssociatedData: CK_BYTE_PTR, ulAssociatedDataLen: CK_ULONG);
    C_EncryptMessageNext(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pPlaintextPart: CK_BYTE_PTR, ulPlaintextPartLen: CK_ULONG, pCiphertextPart: CK_BYTE_PTR, pulCiphertextPartLen: CK_ULONG_PTR, flags: CK_FLAGS);
    C_MessageEncryptFinal(hSession: CK_SESSION_HANDLE);
    C_MessageDecryptInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE);
    C_DecryptMessage(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pAssociatedData: CK_BYTE_PTR, ulAssociatedDataLen: CK_ULONG, pCiphertext: CK_BYTE_PTR, ulCiphertextLen: CK_ULONG, pPlaintext: CK_BYTE_PTR, pulPlaintextLen: CK_ULONG_PTR);
    C_DecryptMessageBegin(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pAssociatedData: CK_BYTE_PTR, ulAssociatedDataLen: CK_ULONG);
    C_DecryptMessageNext(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pCiphertextPart: CK_BYTE_PTR, ulCiphertextPartLen: CK_ULONG, pPlaintextPart: CK_BYTE_PTR, pulPlaintextPartLen: CK_ULONG_PTR, flags: CK_FLAGS);
    C_MessageDecryptFinal(hSession: CK_SESSION_HANDLE);
    C_MessageSignInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE);
    C_SignMessage(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pData: CK_BYTE_PTR, ulDataLen: CK_ULONG, pSignature: CK_BYTE_PTR, pulSignatureLen: CK_ULONG_PTR);
    C_SignMessageBegin(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG);
    C_SignMessageNext(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pData: CK_BYTE_PTR, ulDataLen: CK_ULONG, pSignature: CK_BYTE_PTR, pulSignatureLen: CK_ULONG_PTR);
    C_MessageSignFinal(hSession: CK_SESSION_HANDLE);
    C_MessageVerifyInit(hSession: CK_SESSION_HANDLE, pMechanism: CK_MECHANISM_PTR, hKey: CK_OBJECT_HANDLE);
    C_VerifyMessage(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pData: CK_BYTE_PTR, ulDataLen: CK_ULONG, pSignature: CK_BYTE_PTR, ulSignatureLen: CK_ULONG);
    C_VerifyMessageBegin(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG);
    C_VerifyMessageNext(hSession: CK_SESSION_HANDLE, pParameter: CK_VOID_PTR, ulParameterLen: CK_ULONG, pData: CK_BYTE_PTR, ulDataLen: CK_ULONG, pSignature: CK_BYTE_PTR, ulSignatureLen: CK_ULONG);
    C_MessageVerifyFinal(hSession: CK_SESSION_HANDLE);
}
