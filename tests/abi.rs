//! Bad input through the raw C ABI (libloading + pkcs11-sys, as a C client calls it): each call
//! gets the specification's code and the process survives.

#[macro_use]
mod common;

use common::raw::*;
use common::*;
use pkcs11_sys::*;
use std::ptr::{null, null_mut};

#[test]
fn calls_before_initialize_and_initialize_arguments() {
    let _env = Env::new();
    let r = raw();
    let mut n: CK_ULONG = 0;
    assert_eq!(
        call!(r, C_GetSlotList(0, null_mut(), &mut n)),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    assert_eq!(
        call!(r, C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut n)),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: 1 as CK_VOID_PTR,
    };
    assert_eq!(
        call!(r, C_Initialize(&mut args as *mut _ as CK_VOID_PTR)),
        CKR_ARGUMENTS_BAD
    );
    args.pReserved = null_mut();
    assert_eq!(call!(r, C_Initialize(&mut args as *mut _ as CK_VOID_PTR)), CKR_OK);
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    assert_eq!(call!(r, C_GetSlotList(0, null_mut(), null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(call!(r, C_GetInfo(null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_CRYPTOKI_NOT_INITIALIZED);
}

#[test]
fn two_call_convention_short_buffers_and_wrong_handles() {
    let _env = Env::new();
    let r = raw();
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    let h = session(&r, true);
    login(&r, h);
    // A P-256 session key pair.
    let mut mech = CK_MECHANISM {
        mechanism: CKM_EC_KEY_PAIR_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let oid = P256_OID;
    let pub_t = [CK_ATTRIBUTE {
        type_: CKA_EC_PARAMS,
        pValue: oid.as_ptr() as CK_VOID_PTR,
        ulValueLen: oid.len() as CK_ULONG,
    }];
    let t: CK_BBOOL = 1;
    let priv_t = [attr(CKA_SIGN, &t)];
    let (mut pu, mut pr) = (0, 0);
    assert_eq!(
        call!(
            r,
            C_GenerateKeyPair(
                h,
                &mut mech,
                pub_t.as_ptr() as *mut _,
                1,
                priv_t.as_ptr() as *mut _,
                1,
                &mut pu,
                &mut pr
            )
        ),
        CKR_OK
    );
    // Sign: length query, short buffer (operation stays active), then the signature.
    let mut ecdsa = CK_MECHANISM {
        mechanism: CKM_ECDSA,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(call!(r, C_SignInit(h, &mut ecdsa, pr)), CKR_OK);
    assert_eq!(call!(r, C_SignInit(h, &mut ecdsa, pr)), CKR_OPERATION_ACTIVE);
    let digest = [9u8; 32];
    let mut len: CK_ULONG = 0;
    assert_eq!(
        call!(r, C_Sign(h, digest.as_ptr() as *mut u8, 32, null_mut(), &mut len)),
        CKR_OK
    );
    assert_eq!(len, 64);
    let mut sig = [0u8; 64];
    len = 10;
    assert_eq!(
        call!(r, C_Sign(h, digest.as_ptr() as *mut u8, 32, sig.as_mut_ptr(), &mut len)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(len, 64);
    len = 64;
    assert_eq!(
        call!(r, C_Sign(h, digest.as_ptr() as *mut u8, 32, sig.as_mut_ptr(), &mut len)),
        CKR_OK
    );
    assert_eq!(
        call!(r, C_Sign(h, digest.as_ptr() as *mut u8, 32, sig.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // NULL mechanism, NULL output handle, wrong handles.
    assert_eq!(call!(r, C_SignInit(h, null_mut(), pr)), CKR_ARGUMENTS_BAD);
    assert_eq!(call!(r, C_SignInit(h, &mut ecdsa, 999_999)), CKR_KEY_HANDLE_INVALID);
    assert_eq!(
        call!(r, C_SignInit(999_999, &mut ecdsa, pr)),
        CKR_SESSION_HANDLE_INVALID
    );
    assert_eq!(call!(r, C_DestroyObject(h, 999_999)), CKR_OBJECT_HANDLE_INVALID);
    assert_eq!(
        call!(
            r,
            C_GenerateKeyPair(
                h,
                &mut mech,
                pub_t.as_ptr() as *mut _,
                1,
                priv_t.as_ptr() as *mut _,
                1,
                null_mut(),
                &mut pr
            )
        ),
        CKR_ARGUMENTS_BAD
    );
    // A public key cannot sign: not a private key's function.
    assert_eq!(call!(r, C_SignInit(h, &mut ecdsa, pu)), CKR_KEY_FUNCTION_NOT_PERMITTED);
    // C_GetAttributeValue: per-attribute answers.
    let mut value = [0u8; 64];
    let mut point = [0u8; 2];
    let mut q = [
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: value.as_mut_ptr() as CK_VOID_PTR,
            ulValueLen: 64,
        },
        CK_ATTRIBUTE {
            type_: CKA_EC_PARAMS,
            pValue: null_mut(),
            ulValueLen: 0,
        },
    ];
    assert_eq!(
        call!(r, C_GetAttributeValue(h, pr, q.as_mut_ptr(), 2)),
        CKR_ATTRIBUTE_SENSITIVE
    );
    assert_eq!(q[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(q[1].ulValueLen, P256_OID.len() as CK_ULONG);
    let mut q = [CK_ATTRIBUTE {
        type_: CKA_EC_POINT,
        pValue: point.as_mut_ptr() as CK_VOID_PTR,
        ulValueLen: 2,
    }];
    assert_eq!(
        call!(r, C_GetAttributeValue(h, pu, q.as_mut_ptr(), 1)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(q[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    let mut q = [CK_ATTRIBUTE {
        type_: CKA_SIGN,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    assert_eq!(
        call!(r, C_GetAttributeValue(h, pu, q.as_mut_ptr(), 1)),
        CKR_ATTRIBUTE_TYPE_INVALID
    );
    // Read-only and contradictory templates.
    let class = CKO_SECRET_KEY;
    let set = [attr(CKA_CLASS, &class)];
    assert_eq!(
        call!(r, C_SetAttributeValue(h, pu, set.as_ptr() as *mut _, 1)),
        CKR_ATTRIBUTE_READ_ONLY
    );
    let bad_bool: u32 = 1;
    let bad = [attr(CKA_TOKEN, &bad_bool)];
    let mut aes = CK_MECHANISM {
        mechanism: CKM_AES_KEY_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut k = 0;
    assert_eq!(
        call!(r, C_GenerateKey(h, &mut aes, bad.as_ptr() as *mut _, 1, &mut k)),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    let len32: CK_ULONG = 32;
    let wrong_class = CKO_PUBLIC_KEY;
    let contra = [attr(CKA_VALUE_LEN, &len32), attr(CKA_CLASS, &wrong_class)];
    assert_eq!(
        call!(r, C_GenerateKey(h, &mut aes, contra.as_ptr() as *mut _, 2, &mut k)),
        CKR_TEMPLATE_INCONSISTENT
    );
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
}

#[test]
fn read_only_sessions_and_private_objects() {
    let _env = Env::new();
    let r = raw();
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    let ro = session(&r, false);
    login(&r, ro);
    let t: CK_BBOOL = 1;
    let len: CK_ULONG = 16;
    let tmpl = [attr(CKA_TOKEN, &t), attr(CKA_VALUE_LEN, &len)];
    let mut aes = CK_MECHANISM {
        mechanism: CKM_AES_KEY_GEN,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut k = 0;
    assert_eq!(
        call!(r, C_GenerateKey(ro, &mut aes, tmpl.as_ptr() as *mut _, 2, &mut k)),
        CKR_SESSION_READ_ONLY
    );
    let rw = session(&r, true);
    assert_eq!(
        call!(r, C_GenerateKey(rw, &mut aes, tmpl.as_ptr() as *mut _, 2, &mut k)),
        CKR_OK
    );
    assert_eq!(call!(r, C_Logout(rw)), CKR_OK);
    assert_eq!(call!(r, C_Logout(rw)), CKR_USER_NOT_LOGGED_IN);
    // After logout the private key is invisible: not found, and its handle is refused.
    let class = CKO_SECRET_KEY;
    let find = [attr(CKA_CLASS, &class)];
    assert_eq!(call!(r, C_FindObjectsInit(rw, find.as_ptr() as *mut _, 1)), CKR_OK);
    let (mut found, mut n) = ([0 as CK_OBJECT_HANDLE; 4], 0);
    assert_eq!(call!(r, C_FindObjects(rw, found.as_mut_ptr(), 4, &mut n)), CKR_OK);
    assert_eq!(n, 0);
    assert_eq!(call!(r, C_FindObjectsFinal(rw)), CKR_OK);
    assert_eq!(call!(r, C_DestroyObject(rw, k)), CKR_OBJECT_HANDLE_INVALID);
    let wrong = b"wrong-pin-0000";
    assert_eq!(
        call!(
            r,
            C_Login(rw, CKU_USER, wrong.as_ptr() as *mut u8, wrong.len() as CK_ULONG)
        ),
        CKR_PIN_INCORRECT
    );
    assert_eq!(
        call!(r, C_Login(rw, 77, wrong.as_ptr() as *mut u8, 4)),
        CKR_USER_TYPE_INVALID
    );
    let _ = null::<u8>();
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
}
