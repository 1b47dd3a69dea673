//! C-ABI abuse: every function of the 3.0 function list called with NULL pointers, NULL
//! outputs, zero and huge lengths, random and stale handles, in every state — before
//! C_Initialize, with no or a closed session, in an open session, after C_Finalize. The process
//! must survive every call and get the code the specification gives; the token must still work
//! afterwards.

#[macro_use]
mod common;

use common::raw::*;
use common::*;
use pkcs11_sys::*;
use std::ptr::null_mut;

/// Arguments of one sweep: the session and slot to name, an object handle, and the length
/// to pass with NULL buffers.
#[derive(Clone, Copy)]
struct Args {
    h: CK_SESSION_HANDLE,
    slot: CK_SLOT_ID,
    obj: CK_OBJECT_HANDLE,
    n: CK_ULONG,
}

/// Whether a function takes a session (else a slot, or nothing).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Takes {
    Session,
    Slot,
    Nothing,
}

/// Calls every function except C_Initialize, C_Finalize, C_GetFunctionList, C_GetInterface* and
/// C_CloseAllSessions (the state changes the sweep itself is about) with `a`; NULL for every
/// pointer. Returns each function's name, what it takes, and its answer.
fn sweep(f: &CK_FUNCTION_LIST_3_0, a: Args) -> Vec<(&'static str, Takes, CK_RV)> {
    let Args { h, slot, obj, n } = a;
    let (np, nu) = (null_mut::<u8>(), null_mut::<CK_ULONG>());
    let nm = null_mut::<CK_MECHANISM>();
    let nt = null_mut::<CK_ATTRIBUTE>();
    let nv = null_mut::<std::ffi::c_void>();
    let mut out = Vec::new();
    macro_rules! c {
        ($takes:expr, $name:ident($($arg:expr),*)) => {{
            // SAFETY: every pointer passed is NULL; the module must refuse, not dereference.
            let rv = unsafe { (f.$name.unwrap())($($arg),*) };
            out.push((stringify!($name), $takes, rv));
        }};
    }
    use Takes::*;
    c!(Nothing, C_GetInfo(null_mut()));
    c!(Nothing, C_GetSlotList(0, null_mut(), nu));
    c!(Slot, C_GetSlotInfo(slot, null_mut()));
    c!(Slot, C_GetTokenInfo(slot, null_mut()));
    c!(Slot, C_GetMechanismList(slot, null_mut(), nu));
    c!(Slot, C_GetMechanismInfo(slot, CKM_AES_GCM, null_mut()));
    c!(Slot, C_InitToken(slot, np, n, np));
    c!(Session, C_InitPIN(h, np, n));
    c!(Session, C_SetPIN(h, np, n, np, n));
    c!(Slot, C_OpenSession(slot, CKF_SERIAL_SESSION, nv, None, null_mut()));
    c!(Session, C_GetSessionInfo(h, null_mut()));
    c!(Session, C_GetOperationState(h, np, nu));
    c!(Session, C_SetOperationState(h, np, n, 0, 0));
    c!(Session, C_Login(h, CKU_USER, np, n));
    c!(Session, C_LoginUser(h, CKU_USER, np, n, np, n));
    c!(Session, C_CreateObject(h, nt, n, null_mut()));
    c!(Session, C_CopyObject(h, obj, nt, n, null_mut()));
    c!(Session, C_DestroyObject(h, obj));
    c!(Session, C_GetObjectSize(h, obj, nu));
    c!(Session, C_GetAttributeValue(h, obj, nt, n));
    c!(Session, C_SetAttributeValue(h, obj, nt, n));
    c!(Session, C_FindObjectsInit(h, nt, n));
    c!(Session, C_FindObjects(h, null_mut(), n, nu));
    c!(Session, C_FindObjectsFinal(h));
    c!(Session, C_EncryptInit(h, nm, obj));
    c!(Session, C_Encrypt(h, np, n, np, nu));
    c!(Session, C_EncryptUpdate(h, np, n, np, nu));
    c!(Session, C_EncryptFinal(h, np, nu));
    c!(Session, C_DecryptInit(h, nm, obj));
    c!(Session, C_Decrypt(h, np, n, np, nu));
    c!(Session, C_DecryptUpdate(h, np, n, np, nu));
    c!(Session, C_DecryptFinal(h, np, nu));
    c!(Session, C_DigestInit(h, nm));
    c!(Session, C_Digest(h, np, n, np, nu));
    c!(Session, C_DigestUpdate(h, np, n));
    c!(Session, C_DigestKey(h, obj));
    c!(Session, C_DigestFinal(h, np, nu));
    c!(Session, C_SignInit(h, nm, obj));
    c!(Session, C_Sign(h, np, n, np, nu));
    c!(Session, C_SignUpdate(h, np, n));
    c!(Session, C_SignFinal(h, np, nu));
    c!(Session, C_SignRecoverInit(h, nm, obj));
    c!(Session, C_SignRecover(h, np, n, np, nu));
    c!(Session, C_VerifyInit(h, nm, obj));
    c!(Session, C_Verify(h, np, n, np, n));
    c!(Session, C_VerifyUpdate(h, np, n));
    c!(Session, C_VerifyFinal(h, np, n));
    c!(Session, C_VerifyRecoverInit(h, nm, obj));
    c!(Session, C_VerifyRecover(h, np, n, np, nu));
    c!(Session, C_DigestEncryptUpdate(h, np, n, np, nu));
    c!(Session, C_DecryptDigestUpdate(h, np, n, np, nu));
    c!(Session, C_SignEncryptUpdate(h, np, n, np, nu));
    c!(Session, C_DecryptVerifyUpdate(h, np, n, np, nu));
    c!(Session, C_GenerateKey(h, nm, nt, n, null_mut()));
    c!(Session, C_GenerateKeyPair(h, nm, nt, n, nt, n, null_mut(), null_mut()));
    c!(Session, C_WrapKey(h, nm, obj, obj, np, nu));
    c!(Session, C_UnwrapKey(h, nm, obj, np, n, nt, n, null_mut()));
    c!(Session, C_DeriveKey(h, nm, obj, nt, n, null_mut()));
    c!(Session, C_SeedRandom(h, np, n));
    c!(Session, C_GenerateRandom(h, np, n));
    c!(Session, C_GetFunctionStatus(h));
    c!(Session, C_CancelFunction(h));
    c!(Nothing, C_WaitForSlotEvent(CKF_DONT_BLOCK, null_mut(), nv));
    c!(Session, C_SessionCancel(h, CKF_ENCRYPT | CKF_SIGN));
    c!(Session, C_MessageEncryptInit(h, nm, obj));
    c!(Session, C_EncryptMessage(h, nv, n, np, n, np, n, np, nu));
    c!(Session, C_EncryptMessageBegin(h, nv, n, np, n));
    c!(Session, C_EncryptMessageNext(h, nv, n, np, n, np, nu, 0));
    c!(Session, C_MessageEncryptFinal(h));
    c!(Session, C_MessageDecryptInit(h, nm, obj));
    c!(Session, C_DecryptMessage(h, nv, n, np, n, np, n, np, nu));
    c!(Session, C_DecryptMessageBegin(h, nv, n, np, n));
    c!(Session, C_DecryptMessageNext(h, nv, n, np, n, np, nu, 0));
    c!(Session, C_MessageDecryptFinal(h));
    c!(Session, C_MessageSignInit(h, nm, obj));
    c!(Session, C_SignMessage(h, nv, n, np, n, np, nu));
    c!(Session, C_SignMessageBegin(h, nv, n));
    c!(Session, C_SignMessageNext(h, nv, n, np, n, np, nu));
    c!(Session, C_MessageSignFinal(h));
    c!(Session, C_MessageVerifyInit(h, nm, obj));
    c!(Session, C_VerifyMessage(h, nv, n, np, n, np, n));
    c!(Session, C_VerifyMessageBegin(h, nv, n));
    c!(Session, C_VerifyMessageNext(h, nv, n, np, n, np, n));
    c!(Session, C_MessageVerifyFinal(h));
    out
}

const HUGE: CK_ULONG = CK_ULONG::MAX;

fn variants(h: CK_SESSION_HANDLE, slot: CK_SLOT_ID) -> Vec<Args> {
    let mut v = Vec::new();
    for obj in [0, 0xdead_beef, CK_OBJECT_HANDLE::MAX] {
        for n in [0, 1, HUGE] {
            v.push(Args { h, slot, obj, n });
        }
    }
    v
}

/// What keygate does not implement (src/ffi/unsupported.rs): CKR_FUNCTION_NOT_SUPPORTED in
/// every state, as the specification allows for a function a library does not support.
const UNSUPPORTED: &[&str] = &[
    "C_GetOperationState",
    "C_SetOperationState",
    "C_LoginUser",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_MessageEncryptInit",
    "C_EncryptMessage",
    "C_EncryptMessageBegin",
    "C_EncryptMessageNext",
    "C_MessageEncryptFinal",
    "C_MessageDecryptInit",
    "C_DecryptMessage",
    "C_DecryptMessageBegin",
    "C_DecryptMessageNext",
    "C_MessageDecryptFinal",
    "C_MessageSignInit",
    "C_SignMessage",
    "C_SignMessageBegin",
    "C_SignMessageNext",
    "C_MessageSignFinal",
    "C_MessageVerifyInit",
    "C_VerifyMessage",
    "C_VerifyMessageBegin",
    "C_VerifyMessageNext",
    "C_MessageVerifyFinal",
];

/// Fails with every call whose answer is not in `allowed` (the unsupported functions answer
/// CKR_FUNCTION_NOT_SUPPORTED, and only that).
fn check(phase: &str, got: Vec<(&'static str, Takes, CK_RV)>, allowed: impl Fn(&str, Takes) -> Vec<CK_RV>) {
    let wrong: Vec<String> = got
        .iter()
        .filter(|(name, takes, rv)| match UNSUPPORTED.contains(name) {
            true => *rv != CKR_FUNCTION_NOT_SUPPORTED,
            false => !allowed(name, *takes).contains(rv),
        })
        .map(|(name, _, rv)| format!("{name} -> {rv:#x}"))
        .collect();
    assert!(wrong.is_empty(), "{phase}: {wrong:?}");
}

#[test]
fn every_function_survives_null_pointers_bad_handles_and_every_state() {
    let _env = Env::new();
    abuse();
}

#[test]
fn every_function_survives_abuse_in_hsm_mode_too() {
    let _env = Env::hsm();
    abuse();
}

fn abuse() {
    let r = raw();
    let f = list_3_0(&r);

    // Before C_Initialize and after C_Finalize: nothing but CKR_CRYPTOKI_NOT_INITIALIZED.
    let not_init = |_: &str, _| vec![CKR_CRYPTOKI_NOT_INITIALIZED];
    for a in variants(1, 0) {
        check("before C_Initialize", sweep(f, a), not_init);
    }

    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    // No such session or slot: the handle is refused (or the NULL argument first, which the
    // specification leaves in either order).
    let no_such = |name: &str, takes| match takes {
        // Legacy functions: CKR_FUNCTION_NOT_PARALLEL is their answer whatever the session.
        _ if matches!(name, "C_GetFunctionStatus" | "C_CancelFunction") => vec![CKR_FUNCTION_NOT_PARALLEL],
        Takes::Session => vec![CKR_SESSION_HANDLE_INVALID, CKR_ARGUMENTS_BAD],
        Takes::Slot => vec![CKR_SLOT_ID_INVALID, CKR_ARGUMENTS_BAD],
        Takes::Nothing => vec![CKR_ARGUMENTS_BAD],
    };
    for a in variants(0xdead_beef, 77) {
        check("no such session or slot", sweep(f, a), no_such);
    }
    // A stale session: opened, then closed.
    let stale = session(&r, true);
    assert_eq!(call!(r, C_CloseSession(stale)), CKR_OK);
    for a in variants(stale, 77) {
        check("closed session", sweep(f, a), no_such);
    }

    // An open session, public and then logged in: every call answers with a PKCS#11 code that
    // is neither success for a NULL output nor CKR_GENERAL_ERROR (a panic caught at the border
    // or an unhandled case).
    let h = session(&r, true);
    for logged_in in [false, true] {
        if logged_in {
            login(&r, h);
        }
        for a in variants(h, 0) {
            for (name, _, rv) in sweep(f, a) {
                if UNSUPPORTED.contains(&name) {
                    assert_eq!(rv, CKR_FUNCTION_NOT_SUPPORTED, "{name}");
                }
                assert_ne!(rv, CKR_GENERAL_ERROR, "{name} in an open session (n = {:#x})", a.n);
                assert!(
                    rv == CKR_OK || !keygate_pkcs11::error::rv_name(rv).starts_with("0x"),
                    "{name}: {rv:#x} is no CKR_ code"
                );
                // Nothing with a NULL out-pointer and a non-empty request may claim success.
                let must_fail = [
                    "C_GetInfo",
                    "C_GetSlotInfo",
                    "C_GetTokenInfo",
                    "C_GetMechanismInfo",
                    "C_InitToken",
                    "C_OpenSession",
                    "C_GetSessionInfo",
                    "C_CreateObject",
                    "C_GetObjectSize",
                    "C_GenerateKey",
                    "C_GenerateKeyPair",
                    "C_UnwrapKey",
                    "C_DeriveKey",
                    "C_SignInit",
                    "C_EncryptInit",
                ];
                if must_fail.contains(&name) {
                    assert_ne!(rv, CKR_OK, "{name} with NULL pointers");
                }
                if name == "C_GenerateRandom" && a.n != 0 {
                    assert_eq!(rv, CKR_ARGUMENTS_BAD, "C_GenerateRandom into NULL");
                }
            }
        }
    }

    // The token still works: the session, a random draw, a key and a signature.
    let mut out = [0u8; 32];
    assert_eq!(call!(r, C_GenerateRandom(h, out.as_mut_ptr(), 32)), CKR_OK);
    assert_ne!(out, [0u8; 32]);
    let mut info = CK_TOKEN_INFO::default();
    assert_eq!(call!(r, C_GetTokenInfo(0, &mut info)), CKR_OK);
    // C_CloseAllSessions on a bad slot, then the real one.
    assert_eq!(call!(r, C_CloseAllSessions(77)), CKR_SLOT_ID_INVALID);
    assert_eq!(call!(r, C_CloseAllSessions(0)), CKR_OK);
    let mut si = CK_SESSION_INFO::default();
    assert_eq!(call!(r, C_GetSessionInfo(h, &mut si)), CKR_SESSION_HANDLE_INVALID);

    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
    for a in variants(h, 0) {
        check("after C_Finalize", sweep(f, a), not_init);
    }
    assert_eq!(call!(r, C_CloseAllSessions(0)), CKR_CRYPTOKI_NOT_INITIALIZED);
}
