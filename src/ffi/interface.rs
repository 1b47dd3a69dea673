//! The function tables and the only three exported symbols: `C_GetFunctionList` (2.40),
//! `C_GetInterfaceList` and `C_GetInterface` (3.0). Exporting nothing else means a loaded HSM
//! library can never bind to keygate's `C_*` by symbol interposition. Every slot of both tables
//! is filled; what keygate does not implement answers `CKR_FUNCTION_NOT_SUPPORTED`.

use pkcs11_sys::*;

use super::{crypt, digest, general, key, object, random, session, sign, unsupported};
use crate::error::Error;

/// Both function tables from one list: the 2.40 functions, then what 3.0 adds. Every slot is
/// filled; what keygate does not implement answers `CKR_FUNCTION_NOT_SUPPORTED`.
macro_rules! function_tables {
    (2.40: { $($f:ident: $impl:expr,)* } 3.0: { $($g:ident: $impl3:expr,)* }) => {
        pub(crate) static FUNCTION_LIST_2_40: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
            version: CK_VERSION { major: 2, minor: 40 },
            $($f: Some($impl),)*
        };

        pub(crate) static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = CK_FUNCTION_LIST_3_0 {
            version: CK_VERSION { major: 3, minor: 0 },
            $($f: Some($impl),)*
            $($g: Some($impl3),)*
        };
    };
}

function_tables! {
    2.40: {
        C_Initialize: general::C_Initialize,
        C_Finalize: general::C_Finalize,
        C_GetInfo: general::C_GetInfo,
        C_GetFunctionList: C_GetFunctionList,
        C_GetSlotList: general::C_GetSlotList,
        C_GetSlotInfo: general::C_GetSlotInfo,
        C_GetTokenInfo: general::C_GetTokenInfo,
        C_GetMechanismList: general::C_GetMechanismList,
        C_GetMechanismInfo: general::C_GetMechanismInfo,
        C_InitToken: general::C_InitToken,
        C_InitPIN: general::C_InitPIN,
        C_SetPIN: general::C_SetPIN,
        C_OpenSession: session::C_OpenSession,
        C_CloseSession: session::C_CloseSession,
        C_CloseAllSessions: session::C_CloseAllSessions,
        C_GetSessionInfo: session::C_GetSessionInfo,
        C_GetOperationState: unsupported::C_GetOperationState,
        C_SetOperationState: unsupported::C_SetOperationState,
        C_Login: session::C_Login,
        C_Logout: session::C_Logout,
        C_CreateObject: object::C_CreateObject,
        C_CopyObject: object::C_CopyObject,
        C_DestroyObject: object::C_DestroyObject,
        C_GetObjectSize: object::C_GetObjectSize,
        C_GetAttributeValue: object::C_GetAttributeValue,
        C_SetAttributeValue: object::C_SetAttributeValue,
        C_FindObjectsInit: object::C_FindObjectsInit,
        C_FindObjects: object::C_FindObjects,
        C_FindObjectsFinal: object::C_FindObjectsFinal,
        C_EncryptInit: crypt::C_EncryptInit,
        C_Encrypt: crypt::C_Encrypt,
        C_EncryptUpdate: crypt::C_EncryptUpdate,
        C_EncryptFinal: crypt::C_EncryptFinal,
        C_DecryptInit: crypt::C_DecryptInit,
        C_Decrypt: crypt::C_Decrypt,
        C_DecryptUpdate: crypt::C_DecryptUpdate,
        C_DecryptFinal: crypt::C_DecryptFinal,
        C_DigestInit: digest::C_DigestInit,
        C_Digest: digest::C_Digest,
        C_DigestUpdate: digest::C_DigestUpdate,
        C_DigestKey: digest::C_DigestKey,
        C_DigestFinal: digest::C_DigestFinal,
        C_SignInit: sign::C_SignInit,
        C_Sign: sign::C_Sign,
        C_SignUpdate: sign::C_SignUpdate,
        C_SignFinal: sign::C_SignFinal,
        C_SignRecoverInit: unsupported::C_SignRecoverInit,
        C_SignRecover: unsupported::C_SignRecover,
        C_VerifyInit: sign::C_VerifyInit,
        C_Verify: sign::C_Verify,
        C_VerifyUpdate: sign::C_VerifyUpdate,
        C_VerifyFinal: sign::C_VerifyFinal,
        C_VerifyRecoverInit: unsupported::C_VerifyRecoverInit,
        C_VerifyRecover: unsupported::C_VerifyRecover,
        C_DigestEncryptUpdate: unsupported::C_DigestEncryptUpdate,
        C_DecryptDigestUpdate: unsupported::C_DecryptDigestUpdate,
        C_SignEncryptUpdate: unsupported::C_SignEncryptUpdate,
        C_DecryptVerifyUpdate: unsupported::C_DecryptVerifyUpdate,
        C_GenerateKey: key::C_GenerateKey,
        C_GenerateKeyPair: key::C_GenerateKeyPair,
        C_WrapKey: key::C_WrapKey,
        C_UnwrapKey: key::C_UnwrapKey,
        C_DeriveKey: key::C_DeriveKey,
        C_SeedRandom: random::C_SeedRandom,
        C_GenerateRandom: random::C_GenerateRandom,
        C_GetFunctionStatus: general::C_GetFunctionStatus,
        C_CancelFunction: general::C_CancelFunction,
        C_WaitForSlotEvent: general::C_WaitForSlotEvent,
    }
    3.0: {
        C_GetInterfaceList: C_GetInterfaceList,
        C_GetInterface: C_GetInterface,
        C_LoginUser: unsupported::C_LoginUser,
        C_SessionCancel: session::C_SessionCancel,
        C_MessageEncryptInit: unsupported::C_MessageEncryptInit,
        C_EncryptMessage: unsupported::C_EncryptMessage,
        C_EncryptMessageBegin: unsupported::C_EncryptMessageBegin,
        C_EncryptMessageNext: unsupported::C_EncryptMessageNext,
        C_MessageEncryptFinal: unsupported::C_MessageEncryptFinal,
        C_MessageDecryptInit: unsupported::C_MessageDecryptInit,
        C_DecryptMessage: unsupported::C_DecryptMessage,
        C_DecryptMessageBegin: unsupported::C_DecryptMessageBegin,
        C_DecryptMessageNext: unsupported::C_DecryptMessageNext,
        C_MessageDecryptFinal: unsupported::C_MessageDecryptFinal,
        C_MessageSignInit: unsupported::C_MessageSignInit,
        C_SignMessage: unsupported::C_SignMessage,
        C_SignMessageBegin: unsupported::C_SignMessageBegin,
        C_SignMessageNext: unsupported::C_SignMessageNext,
        C_MessageSignFinal: unsupported::C_MessageSignFinal,
        C_MessageVerifyInit: unsupported::C_MessageVerifyInit,
        C_VerifyMessage: unsupported::C_VerifyMessage,
        C_VerifyMessageBegin: unsupported::C_VerifyMessageBegin,
        C_VerifyMessageNext: unsupported::C_VerifyMessageNext,
        C_MessageVerifyFinal: unsupported::C_MessageVerifyFinal,
    }
}

/// The interface name of both tables.
static INTERFACE_NAME: &[u8] = b"PKCS 11\0";

/// `CK_INTERFACE` holds raw pointers, so it is not `Sync` by itself; these point to immutable
/// statics and are never written through.
struct Interfaces([CK_INTERFACE; 2]);
// SAFETY: the pointers refer to immutable 'static data.
unsafe impl Sync for Interfaces {}

static INTERFACES: Interfaces = Interfaces([
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
        pFunctionList: &FUNCTION_LIST_3_0 as *const CK_FUNCTION_LIST_3_0 as CK_VOID_PTR,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
        pFunctionList: &FUNCTION_LIST_2_40 as *const CK_FUNCTION_LIST as CK_VOID_PTR,
        flags: 0,
    },
]);

/// PKCS#11 `C_GetFunctionList`: the 2.40 table.
///
/// # Safety
/// `ppFunctionList` must be writable, or NULL.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    super::guard("C_GetFunctionList", || {
        let list = &FUNCTION_LIST_2_40 as *const CK_FUNCTION_LIST as CK_FUNCTION_LIST_PTR;
        // SAFETY: caller-provided out-parameter; `out` checks NULL.
        unsafe { super::raw::out(ppFunctionList, list) }
    })
}

/// PKCS#11 `C_GetInterfaceList`: both interfaces, 3.0 first.
///
/// # Safety
/// `pInterfacesList` writable for `*pulCount` interfaces or NULL; `pulCount` readable/writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterfaceList(pInterfacesList: CK_INTERFACE_PTR, pulCount: CK_ULONG_PTR) -> CK_RV {
    super::guard("C_GetInterfaceList", || {
        if pulCount.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let n = INTERFACES.0.len();
        if !pInterfacesList.is_null() {
            // SAFETY: non-null and readable per the caller's contract.
            if (unsafe { pulCount.read() } as usize) < n {
                // SAFETY: as above, writable.
                unsafe { pulCount.write(n as CK_ULONG) };
                return Err(Error::BufferTooSmall);
            }
            // SAFETY: the caller's array holds at least `n` interfaces.
            unsafe { std::ptr::copy_nonoverlapping(INTERFACES.0.as_ptr(), pInterfacesList, n) };
        }
        // SAFETY: non-null and writable per the caller's contract.
        unsafe { pulCount.write(n as CK_ULONG) };
        Ok(())
    })
}

/// PKCS#11 `C_GetInterface`: by name (NULL: the default, 3.0), version and flags.
///
/// # Safety
/// `pInterfaceName` a NUL-terminated string or NULL; `pVersion` readable or NULL;
/// `ppInterface` writable.
#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    pInterfaceName: CK_UTF8CHAR_PTR,
    pVersion: CK_VERSION_PTR,
    ppInterface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CK_RV {
    super::guard("C_GetInterface", || {
        if ppInterface.is_null() {
            return Err(Error::ArgumentsBad);
        }
        if !pInterfaceName.is_null() {
            // SAFETY: the caller promises a NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(pInterfaceName as *const std::ffi::c_char) };
            if name.to_bytes() != b"PKCS 11" {
                return Err(Error::ArgumentsBad);
            }
        }
        let wanted = if pVersion.is_null() {
            None
        } else {
            // SAFETY: non-null and readable per the caller's contract.
            Some(unsafe { pVersion.read_unaligned() })
        };
        let found = INTERFACES.0.iter().find(|i| {
            // SAFETY: every interface's list begins with a CK_VERSION.
            let v = unsafe { (i.pFunctionList as *const CK_VERSION).read() };
            let version_ok = wanted.is_none_or(|w| w.major == v.major && w.minor == v.minor);
            version_ok && flags & !i.flags == 0
        });
        let i = found.ok_or(Error::ArgumentsBad)?;
        // SAFETY: caller-provided out-parameter, checked non-null.
        unsafe { super::raw::out(ppInterface, i as *const CK_INTERFACE as CK_INTERFACE_PTR) }
    })
}
