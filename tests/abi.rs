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
    let mut args = init_args(1 as CK_VOID_PTR);
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
    let h = logged_in(&r);
    // A P-256 session key pair.
    let keygen = mech(CKM_EC_KEY_PAIR_GEN);
    let oid = P256_OID;
    let pub_t = [CK_ATTRIBUTE {
        type_: CKA_EC_PARAMS,
        pValue: oid.as_ptr() as CK_VOID_PTR,
        ulValueLen: oid.len() as CK_ULONG,
    }];
    let t: CK_BBOOL = 1;
    let priv_t = [attr(CKA_SIGN, &t)];
    let keypair = |public: CK_OBJECT_HANDLE_PTR, private: CK_OBJECT_HANDLE_PTR| {
        let (pt, st) = (pub_t.as_ptr() as *mut _, priv_t.as_ptr() as *mut _);
        call!(
            r,
            C_GenerateKeyPair(h, &mut keygen.clone(), pt, 1, st, 1, public, private)
        )
    };
    let (mut pu, mut pr) = (0, 0);
    assert_eq!(keypair(&mut pu, &mut pr), CKR_OK);
    // Sign: length query, short buffer (operation stays active), then the signature.
    let mut ecdsa = mech(CKM_ECDSA);
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
    assert_eq!(keypair(null_mut(), &mut pr), CKR_ARGUMENTS_BAD);
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
    let mut aes = mech(CKM_AES_KEY_GEN);
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
    let mut aes = mech(CKM_AES_KEY_GEN);
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

/// A session AES key with the given value, usable for everything, made through the raw ABI.
/// An extractable session AES key of a known value, for encryption (`kek`: for key wrapping
/// only, as a key that wraps and unwraps may not also encrypt and decrypt).
fn raw_aes_for(r: &Raw, h: CK_SESSION_HANDLE, value: &[u8], kek: bool) -> CK_OBJECT_HANDLE {
    let (class, kt, yes, no): (CK_ULONG, CK_ULONG, CK_BBOOL, CK_BBOOL) = (CKO_SECRET_KEY, CKK_AES, 1, 0);
    let (data, keys) = if kek { (&no, &yes) } else { (&yes, &no) };
    let mut t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        attr(CKA_TOKEN, &no),
        attr(CKA_ENCRYPT, data),
        attr(CKA_WRAP, keys),
        attr(CKA_UNWRAP, keys),
        attr(CKA_SENSITIVE, &no),
        attr(CKA_EXTRACTABLE, &yes),
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: value.as_ptr() as CK_VOID_PTR,
            ulValueLen: value.len() as CK_ULONG,
        },
    ];
    let mut k = 0;
    assert_eq!(
        call!(r, C_CreateObject(h, t.as_mut_ptr(), t.len() as CK_ULONG, &mut k)),
        CKR_OK
    );
    k
}

fn raw_aes(r: &Raw, h: CK_SESSION_HANDLE, value: &[u8]) -> CK_OBJECT_HANDLE {
    raw_aes_for(r, h, value, false)
}

/// AES-GCM parameters: a 96-bit IV (`ulIvBits` as given), no AAD, a 128-bit tag.
fn gcm_params(iv: &mut [u8; 12], iv_bits: CK_ULONG) -> CK_GCM_PARAMS {
    CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: iv_bits,
        pAAD: null_mut(),
        ulAADLen: 0,
        ulTagBits: 128,
    }
}

/// `CKM_AES_GCM` with `params`.
fn gcm_mech(params: &mut CK_GCM_PARAMS) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: params as *mut _ as CK_VOID_PTR,
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    }
}

fn mech(m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: m,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

#[test]
fn object_size_close_all_sessions_and_logout_by_closing() {
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let k = raw_aes(&r, h, &[1u8; 32]);
    let mut size: CK_ULONG = 0;
    assert_eq!(call!(r, C_GetObjectSize(h, k, &mut size)), CKR_OK);
    assert!(
        size >= 32,
        "an object holding a 32-byte key has a size of at least 32, got {size}"
    );
    assert_eq!(call!(r, C_GetObjectSize(h, k, null_mut())), CKR_ARGUMENTS_BAD);
    assert_eq!(
        call!(r, C_GetObjectSize(h, k + 1000, &mut size)),
        CKR_OBJECT_HANDLE_INVALID
    );

    let other = session(&r, false);
    assert_eq!(call!(r, C_CloseAllSessions(7)), CKR_SLOT_ID_INVALID);
    assert_eq!(call!(r, C_CloseAllSessions(0)), CKR_OK);
    for gone in [h, other] {
        assert_eq!(
            call!(r, C_GetObjectSize(gone, k, &mut size)),
            CKR_SESSION_HANDLE_INVALID
        );
    }
    // Closing the last session logs the user out and destroys session objects.
    let fresh = session(&r, true);
    // SAFETY: CK_SESSION_INFO is plain data; all-zero is a valid value.
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(r, C_GetSessionInfo(fresh, &mut info)), CKR_OK);
    assert_eq!(info.state, CKS_RW_PUBLIC_SESSION);
    assert_eq!(info.flags & CKF_RW_SESSION, CKF_RW_SESSION);
    login(&r, fresh);
    assert_eq!(
        call!(r, C_GetObjectSize(fresh, k, &mut size)),
        CKR_OBJECT_HANDLE_INVALID
    );
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
}

#[test]
fn interface_list_and_interfaces_by_name_and_version() {
    let r = raw();
    // SAFETY: the exported symbol has this signature.
    let list: libloading::Symbol<GetInterfaceList> = unsafe { r._lib.get(b"C_GetInterfaceList") }.unwrap();
    let mut n: CK_ULONG = 0;
    // SAFETY: NULL list is the length query.
    let rv = unsafe { list(null_mut(), &mut n) };
    assert_eq!((rv, n), (CKR_OK, 2));
    // SAFETY: CK_INTERFACE is plain data; all-zero is a valid value.
    let mut items: [CK_INTERFACE; 2] = unsafe { std::mem::zeroed() };
    let mut short: CK_ULONG = 1;
    // SAFETY: a buffer of one entry, announced as such.
    let rv = unsafe { list(items.as_mut_ptr(), &mut short) };
    assert_eq!((rv, short), (CKR_BUFFER_TOO_SMALL, 2));
    // SAFETY: a buffer of two entries.
    let rv = unsafe { list(items.as_mut_ptr(), &mut n) };
    assert_eq!(rv, CKR_OK);
    // SAFETY: NULL count pointer is refused, not dereferenced.
    let rv = unsafe { list(items.as_mut_ptr(), null_mut()) };
    assert_eq!(rv, CKR_ARGUMENTS_BAD);
    let mut versions = Vec::new();
    for i in &items {
        // SAFETY: the module's interface names are NUL-terminated statics.
        let name = unsafe { std::ffi::CStr::from_ptr(i.pInterfaceName as *const std::ffi::c_char) };
        assert_eq!(name.to_bytes(), b"PKCS 11");
        versions.push(version_of(i));
    }
    versions.sort();
    assert_eq!(versions, [(2, 40), (3, 0)]);

    let default = get_interface(&r, None, None).unwrap();
    assert_eq!(version_of(&default), (3, 0), "the default interface is the newest");
    let old = get_interface(&r, Some(c"PKCS 11"), Some((2, 40))).unwrap();
    assert_eq!(version_of(&old), (2, 40));
    assert_eq!(
        get_interface(&r, Some(c"Vendor X"), None).unwrap_err(),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(get_interface(&r, None, Some((1, 0))).unwrap_err(), CKR_ARGUMENTS_BAD);
    // SAFETY: the exported symbol has this signature.
    let get: libloading::Symbol<GetInterface> = unsafe { r._lib.get(b"C_GetInterface") }.unwrap();
    // SAFETY: a NULL out-pointer is refused, not written.
    let rv = unsafe { get(null_mut(), null_mut(), null_mut(), 0) };
    assert_eq!(rv, CKR_ARGUMENTS_BAD);
    let f3 = list_3_0(&r);
    assert_eq!((f3.version.major, f3.version.minor), (3, 0));
    assert!(f3.C_SessionCancel.is_some() && f3.C_LoginUser.is_some() && f3.C_MessageEncryptInit.is_some());
}

#[test]
fn session_cancel_ends_only_the_named_operations() {
    let _env = Env::new();
    let r = raw();
    let f3 = list_3_0(&r);
    let h = logged_in(&r);
    let k = raw_aes(&r, h, &[2u8; 16]);
    let mut sha = mech(CKM_SHA256);
    let mut iv = [0u8; 12];
    let mut params = gcm_params(&mut iv, 96);
    let mut gcm = gcm_mech(&mut params);
    assert_eq!(call!(r, C_EncryptInit(h, &mut gcm, k)), CKR_OK);
    assert_eq!(call!(r, C_DigestInit(h, &mut sha)), CKR_OK);
    let cancel = f3.C_SessionCancel.unwrap();
    // SAFETY: the call takes no pointers.
    let rv = unsafe { cancel(h, CKF_ENCRYPT) };
    assert_eq!(rv, CKR_OK);
    assert_eq!(call!(r, C_EncryptInit(h, &mut gcm, k)), CKR_OK, "encrypt was cancelled");
    assert_eq!(
        call!(r, C_DigestInit(h, &mut sha)),
        CKR_OPERATION_ACTIVE,
        "digest was not"
    );
    // SAFETY: the call takes no pointers; an invalid handle is answered, not used.
    let rv = unsafe { cancel(h + 99, CKF_DIGEST) };
    assert_eq!(rv, CKR_SESSION_HANDLE_INVALID);
    // SAFETY: the call takes no pointers.
    let rv = unsafe { cancel(h, CKF_DIGEST | CKF_ENCRYPT) };
    assert_eq!(rv, CKR_OK);
    assert_eq!(call!(r, C_DigestInit(h, &mut sha)), CKR_OK);
}

#[test]
fn aes_key_wrap_kwp_matches_rfc5649() {
    let _env = Env::new();
    kwp_matches_rfc5649();
}

/// In hsm mode over SoftHSM2, CKM_AES_KEY_WRAP_KWP is SoftHSM2's RFC 5649 mechanism, which it
/// numbers CKM_AES_KEY_WRAP_PAD (tests/crypto.rs shows the PAD side).
#[test]
fn aes_key_wrap_kwp_in_hsm_mode_is_rfc5649() {
    let _env = Env::hsm();
    kwp_matches_rfc5649();
}

/// The two-call convention for C_WrapKey: the wrap a length query (or a short buffer) made is
/// kept for the next call, and only for the same mechanism and keys; every answer is checked
/// against RFC 3394 / RFC 5649 computed outside.
#[test]
fn a_measured_wrap_is_kept_only_for_the_same_mechanism_and_keys() {
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let kek = [0x17u8; 32];
    let wrapping = raw_aes_for(&r, h, &kek, true);
    let (a, b) = (raw_aes(&r, h, &[0xa1u8; 32]), raw_aes(&r, h, &[0xb2u8; 24]));
    let outside = aes_kw::KekAes256::from(kek);
    let wrap = |m: CK_MECHANISM_TYPE, key, buf: Option<usize>| {
        let mut m = mech(m);
        let mut out = vec![0u8; buf.unwrap_or(0)];
        let mut n = out.len() as CK_ULONG;
        let p = if buf.is_some() { out.as_mut_ptr() } else { null_mut() };
        let rv = call!(r, C_WrapKey(h, &mut m, wrapping, key, p, &mut n));
        out.truncate(n as usize);
        (rv, n, out)
    };
    // Measured for a, then a short buffer, then the right one: a's wrap each time.
    assert_eq!(wrap(CKM_AES_KEY_WRAP, a, None).1, 40);
    let (rv, n, _) = wrap(CKM_AES_KEY_WRAP, a, Some(8));
    assert_eq!((rv, n), (CKR_BUFFER_TOO_SMALL, 40));
    let (rv, _, out) = wrap(CKM_AES_KEY_WRAP, a, Some(40));
    assert_eq!((rv, out), (CKR_OK, outside.wrap_vec(&[0xa1u8; 32]).unwrap()));
    // Measured for a, then asked for b: b's wrap, not the kept one.
    wrap(CKM_AES_KEY_WRAP, a, None);
    let (rv, _, out) = wrap(CKM_AES_KEY_WRAP, b, Some(64));
    assert_eq!((rv, out), (CKR_OK, outside.wrap_vec(&[0xb2u8; 24]).unwrap()));
    // Measured with one mechanism, asked with another: the other's output.
    wrap(CKM_AES_KEY_WRAP, a, None);
    let (rv, _, out) = wrap(CKM_AES_KEY_WRAP_KWP, a, Some(64));
    assert_eq!(
        (rv, out),
        (CKR_OK, outside.wrap_with_padding_vec(&[0xa1u8; 32]).unwrap())
    );
    // A wrap that fits is not kept: the next call with a buffer wraps afresh (same bytes).
    let (rv, _, out) = wrap(CKM_AES_KEY_WRAP, a, Some(64));
    assert_eq!((rv, out), (CKR_OK, outside.wrap_vec(&[0xa1u8; 32]).unwrap()));
}

fn kwp_matches_rfc5649() {
    let r = raw();
    let h = logged_in(&r);
    let kek = [0x17u8; 32];
    let wrapping = raw_aes_for(&r, h, &kek, true);
    // KWP output carries the RFC 5649 alternative IV with the length; 20 bytes below also need padding.
    let target = raw_aes(&r, h, &[0x29u8; 24]);
    let mut m = mech(CKM_AES_KEY_WRAP_KWP);
    let mut n: CK_ULONG = 0;
    assert_eq!(
        call!(r, C_WrapKey(h, &mut m, wrapping, target, null_mut(), &mut n)),
        CKR_OK
    );
    let mut out = vec![0u8; n as usize];
    assert_eq!(
        call!(r, C_WrapKey(h, &mut m, wrapping, target, out.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    out.truncate(n as usize);
    let outside = aes_kw::KekAes256::from(kek);
    assert_eq!(
        out,
        outside.wrap_with_padding_vec(&[0x29u8; 24]).unwrap(),
        "RFC 5649 output"
    );

    // The reverse: unwrap what RustCrypto wrapped, then read the value back.
    let secret = [0x33u8; 20];
    let mut wrapped = outside.wrap_with_padding_vec(&secret).unwrap();
    let (class, kt, yes): (CK_ULONG, CK_ULONG, CK_BBOOL) = (CKO_SECRET_KEY, CKK_GENERIC_SECRET, 1);
    let no: CK_BBOOL = 0;
    let mut t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        attr(CKA_EXTRACTABLE, &yes),
        attr(CKA_SENSITIVE, &no),
    ];
    let mut k = 0;
    let mut unwrap = |wrapped: &mut [u8], k: &mut CK_OBJECT_HANDLE| {
        call!(
            r,
            C_UnwrapKey(
                h,
                &mut m,
                wrapping,
                wrapped.as_mut_ptr(),
                wrapped.len() as CK_ULONG,
                t.as_mut_ptr(),
                t.len() as CK_ULONG,
                k
            )
        )
    };
    assert_eq!(unwrap(&mut wrapped, &mut k), CKR_OK);
    let mut value = [0u8; 20];
    let mut a = [CK_ATTRIBUTE {
        type_: CKA_VALUE,
        pValue: value.as_mut_ptr() as CK_VOID_PTR,
        ulValueLen: 20,
    }];
    assert_eq!(call!(r, C_GetAttributeValue(h, k, a.as_mut_ptr(), 1)), CKR_OK);
    assert_eq!(value, secret);
    // A tampered wrapping is refused.
    wrapped[3] ^= 1;
    assert_eq!(unwrap(&mut wrapped, &mut k), CKR_WRAPPED_KEY_INVALID);
}

#[test]
fn a_panic_inside_the_module_becomes_general_error() {
    let _env = Env::new();
    let r = raw();
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    // SAFETY: CK_INFO is plain data.
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    // The debug-build hook makes C_GetInfo panic inside the module (see ffi::injected_panic).
    std::env::set_var("KEYGATE_TEST_PANIC_IN", "C_GetInfo");
    assert_eq!(call!(r, C_GetInfo(&mut info)), CKR_GENERAL_ERROR);
    std::env::remove_var("KEYGATE_TEST_PANIC_IN");
    // The process and the module carry on.
    assert_eq!(call!(r, C_GetInfo(&mut info)), CKR_OK);
    assert_eq!((info.cryptokiVersion.major, info.cryptokiVersion.minor), (3, 0));
    let h = session(&r, true);
    login(&r, h);
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
}

#[test]
fn a_forked_child_must_initialise_again_and_then_works() {
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    // SAFETY: the child only calls into the module and then _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut n: CK_ULONG = 0;
        let mut code = 0;
        if call!(r, C_GetSlotList(0, null_mut(), &mut n)) != CKR_CRYPTOKI_NOT_INITIALIZED {
            code |= 1;
        }
        let mut out = [0u8; 8];
        if call!(r, C_GenerateRandom(h, out.as_mut_ptr(), 8)) != CKR_CRYPTOKI_NOT_INITIALIZED {
            code |= 2;
        }
        if call!(r, C_Initialize(null_mut())) != CKR_OK {
            code |= 4;
        }
        let mut s = 0;
        let pin = USER_PIN.as_bytes();
        if call!(
            r,
            C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, null_mut(), None, &mut s)
        ) != CKR_OK
            || call!(r, C_Login(s, CKU_USER, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)) != CKR_OK
            || call!(r, C_GenerateRandom(s, out.as_mut_ptr(), 8)) != CKR_OK
        {
            code |= 8;
        }
        if call!(r, C_Finalize(null_mut())) != CKR_OK {
            code |= 16;
        }
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child crashed: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child failure bits");
    // The parent's session is untouched by the child.
    let mut out = [0u8; 8];
    assert_eq!(call!(r, C_GenerateRandom(h, out.as_mut_ptr(), 8)), CKR_OK);
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
}

/// A nested template as the C ABI carries it: an array of `CK_ATTRIBUTE` whose byte length is
/// the attribute's `ulValueLen`.
fn template_attr(ty: CK_ATTRIBUTE_TYPE, inner: &[CK_ATTRIBUTE]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: inner.as_ptr() as CK_VOID_PTR,
        ulValueLen: std::mem::size_of_val(inner) as CK_ULONG,
    }
}

fn generate_aes(r: &Raw, h: CK_SESSION_HANDLE, extra: &[CK_ATTRIBUTE]) -> CK_OBJECT_HANDLE {
    let len: CK_ULONG = 32;
    let mut t = vec![attr(CKA_VALUE_LEN, &len)];
    t.extend_from_slice(extra);
    let mut m = mech(CKM_AES_KEY_GEN);
    let mut k = 0;
    assert_eq!(
        call!(r, C_GenerateKey(h, &mut m, t.as_mut_ptr(), t.len() as CK_ULONG, &mut k)),
        CKR_OK
    );
    k
}

/// CKA_WRAP_TEMPLATE: only keys matching it leave under the wrapping key. CKA_UNWRAP_TEMPLATE:
/// what it fixes, an unwrapping template cannot contradict (the wrap-then-unwrap-weaker attack).
/// Both read back through C_GetAttributeValue's two-level convention.
#[test]
fn wrap_and_unwrap_templates_bind_what_crosses_the_boundary() {
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let (yes, no): (CK_BBOOL, CK_BBOOL) = (1, 0);
    let label = *b"exportable";
    let wrap_t = [CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: label.as_ptr() as CK_VOID_PTR,
        ulValueLen: label.len() as CK_ULONG,
    }];
    let unwrap_t = [attr(CKA_SENSITIVE, &yes), attr(CKA_EXTRACTABLE, &no)];
    let kek_t = [
        attr(CKA_WRAP, &yes),
        attr(CKA_UNWRAP, &yes),
        template_attr(CKA_WRAP_TEMPLATE, &wrap_t),
        template_attr(CKA_UNWRAP_TEMPLATE, &unwrap_t),
    ];
    if target() == Target::Hsm {
        // hsm mode does not carry nested templates to the HSM (cryptoki cannot): it says so
        // rather than making a key without them.
        let len: CK_ULONG = 32;
        let mut t = [&[attr(CKA_VALUE_LEN, &len)][..], &kek_t].concat();
        let (mut m, mut k) = (mech(CKM_AES_KEY_GEN), 0);
        assert_eq!(
            call!(r, C_GenerateKey(h, &mut m, t.as_mut_ptr(), t.len() as CK_ULONG, &mut k)),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        return;
    }
    let kek = generate_aes(&r, h, &kek_t);
    // A malformed nested template (a length that is not whole attributes) is refused.
    let mut bad = template_attr(CKA_WRAP_TEMPLATE, &wrap_t);
    bad.ulValueLen -= 1;
    let len: CK_ULONG = 32;
    let mut t = [attr(CKA_VALUE_LEN, &len), attr(CKA_WRAP, &yes), bad];
    let (mut m, mut k) = (mech(CKM_AES_KEY_GEN), 0);
    assert_eq!(
        call!(r, C_GenerateKey(h, &mut m, t.as_mut_ptr(), t.len() as CK_ULONG, &mut k)),
        CKR_ATTRIBUTE_VALUE_INVALID
    );

    // Read back: the array's size, then each element's length, then the values.
    let mut a = [CK_ATTRIBUTE {
        type_: CKA_UNWRAP_TEMPLATE,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    assert_eq!(call!(r, C_GetAttributeValue(h, kek, a.as_mut_ptr(), 1)), CKR_OK);
    assert_eq!(a[0].ulValueLen as usize, 2 * std::mem::size_of::<CK_ATTRIBUTE>());
    let mut inner = [CK_ATTRIBUTE {
        type_: 0,
        pValue: null_mut(),
        ulValueLen: 0,
    }; 2];
    a[0].pValue = inner.as_mut_ptr() as CK_VOID_PTR;
    assert_eq!(call!(r, C_GetAttributeValue(h, kek, a.as_mut_ptr(), 1)), CKR_OK);
    assert_eq!(
        inner.map(|i| (i.type_, i.ulValueLen)),
        [(CKA_SENSITIVE, 1), (CKA_EXTRACTABLE, 1)]
    );
    let mut values = [9u8; 2];
    inner[0].pValue = &mut values[0] as *mut u8 as CK_VOID_PTR;
    inner[1].pValue = &mut values[1] as *mut u8 as CK_VOID_PTR;
    a[0].pValue = inner.as_mut_ptr() as CK_VOID_PTR;
    assert_eq!(call!(r, C_GetAttributeValue(h, kek, a.as_mut_ptr(), 1)), CKR_OK);
    assert_eq!(values, [1, 0]);

    let named = |l: &[u8]| {
        generate_aes(
            &r,
            h,
            &[
                CK_ATTRIBUTE {
                    type_: CKA_LABEL,
                    pValue: l.as_ptr() as CK_VOID_PTR,
                    ulValueLen: l.len() as CK_ULONG,
                },
                attr(CKA_EXTRACTABLE, &yes),
            ],
        )
    };
    let other = named(b"internal");
    let exportable = named(&label);
    let mut m = mech(CKM_AES_KEY_WRAP);
    let mut out = [0u8; 40];
    let mut n = out.len() as CK_ULONG;
    assert_eq!(
        call!(r, C_WrapKey(h, &mut m, kek, other, out.as_mut_ptr(), &mut n)),
        CKR_KEY_NOT_WRAPPABLE
    );
    assert_eq!(
        call!(r, C_WrapKey(h, &mut m, kek, exportable, out.as_mut_ptr(), &mut n)),
        CKR_OK
    );

    let (class, kt): (CK_ULONG, CK_ULONG) = (CKO_SECRET_KEY, CKK_AES);
    let mut unwrap = |sensitive: Option<&CK_BBOOL>, k: &mut CK_OBJECT_HANDLE| {
        let mut t = vec![attr(CKA_CLASS, &class), attr(CKA_KEY_TYPE, &kt)];
        t.extend(sensitive.map(|s| attr(CKA_SENSITIVE, s)));
        let mut m = mech(CKM_AES_KEY_WRAP);
        call!(
            r,
            C_UnwrapKey(
                h,
                &mut m,
                kek,
                out.as_mut_ptr(),
                n,
                t.as_mut_ptr(),
                t.len() as CK_ULONG,
                k
            )
        )
    };
    let mut k = 0;
    assert_eq!(unwrap(Some(&no), &mut k), CKR_TEMPLATE_INCONSISTENT);
    assert_eq!(unwrap(None, &mut k), CKR_OK);
    let (mut sensitive, mut extractable): (CK_BBOOL, CK_BBOOL) = (0, 1);
    let out_bool = |ty, v: &mut CK_BBOOL| CK_ATTRIBUTE {
        type_: ty,
        pValue: v as *mut CK_BBOOL as CK_VOID_PTR,
        ulValueLen: 1,
    };
    let mut a = [
        out_bool(CKA_SENSITIVE, &mut sensitive),
        out_bool(CKA_EXTRACTABLE, &mut extractable),
    ];
    assert_eq!(call!(r, C_GetAttributeValue(h, k, a.as_mut_ptr(), 2)), CKR_OK);
    assert_eq!(
        (sensitive, extractable),
        (1, 0),
        "the unwrap template's values were applied"
    );
}

/// Issue 16 item 9: a GCM `ulIvBits` that contradicts `ulIvLen`, and a parameter given to a
/// mechanism that takes none, are `CKR_MECHANISM_PARAM_INVALID` (and start nothing).
#[test]
fn contradictory_or_unexpected_mechanism_parameters_are_refused() {
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let k = raw_aes(&r, h, &[7u8; 16]);
    let mut iv = [0u8; 12];
    for (bits, want) in [
        (64, CKR_MECHANISM_PARAM_INVALID),
        (95, CKR_MECHANISM_PARAM_INVALID),
        (96, CKR_OK),
        (0, CKR_OK),
    ] {
        let mut params = gcm_params(&mut iv, bits);
        let mut m = gcm_mech(&mut params);
        assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), want, "ulIvBits {bits}");
        if want == CKR_OK {
            let mut data = [1u8; 16];
            let mut out = [0u8; 64];
            let mut len = out.len() as CK_ULONG;
            assert_eq!(
                call!(r, C_Encrypt(h, data.as_mut_ptr(), 16, out.as_mut_ptr(), &mut len)),
                CKR_OK
            );
        }
    }
    let mut junk = [0u8; 64];
    let mut template = [CK_ATTRIBUTE {
        type_: CKA_VALUE_LEN,
        pValue: &mut (16 as CK_ULONG) as *mut _ as CK_VOID_PTR,
        ulValueLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
    }];
    let mut key = 0;
    for ty in [CKM_AES_KEY_GEN, CKM_SHA256] {
        let mut m = CK_MECHANISM {
            mechanism: ty,
            pParameter: junk.as_mut_ptr() as CK_VOID_PTR,
            ulParameterLen: 64,
        };
        let rv = if ty == CKM_AES_KEY_GEN {
            call!(r, C_GenerateKey(h, &mut m, template.as_mut_ptr(), 1, &mut key))
        } else {
            call!(r, C_DigestInit(h, &mut m))
        };
        assert_eq!(
            rv, CKR_MECHANISM_PARAM_INVALID,
            "mechanism {ty:#x} with a 64-byte parameter"
        );
    }
    // The same mechanisms without a parameter work: nothing was left active.
    let mut sha = mech(CKM_SHA256);
    assert_eq!(call!(r, C_DigestInit(h, &mut sha)), CKR_OK);
}

/// p11-kit's per-module `x-init-reserved:` hands a module a string in `C_Initialize`'s
/// `pReserved`: keygate takes a configuration path there (`config=PATH` or `PATH`), so one
/// application can be given its own configuration. Anything else there is refused.
#[test]
fn c_initialize_takes_a_configuration_path_in_p_reserved() {
    let env = Env::bare();
    let own = env.path().join("app.toml");
    let text = std::fs::read_to_string(env.path().join("keygate.toml"))
        .unwrap()
        .replace("label = \"test\"", "label = \"app-own\"");
    std::fs::write(&own, text).unwrap();
    std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let r = raw();
    let init = |reserved: &[u8]| {
        let mut args = init_args(reserved.as_ptr() as CK_VOID_PTR);
        call!(r, C_Initialize(&mut args as *mut _ as CK_VOID_PTR))
    };
    assert_eq!(init(b"relative/app.toml\0"), CKR_ARGUMENTS_BAD);
    assert_eq!(init(b"some=setting\0"), CKR_ARGUMENTS_BAD);
    let named = format!("config={}\0", own.display());
    assert_eq!(init(named.as_bytes()), CKR_OK);
    let mut slot = 0;
    let mut n = 1;
    assert_eq!(call!(r, C_GetSlotList(CK_TRUE, &mut slot, &mut n)), CKR_OK);
    assert_eq!(n, 1);
    // SAFETY: CK_TOKEN_INFO is plain data; all zeroes is a valid value.
    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(r, C_GetTokenInfo(slot, &mut info)), CKR_OK);
    assert!(
        info.label.starts_with(b"app-own "),
        "{:?}",
        String::from_utf8_lossy(&info.label)
    );
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
    // A plain path works too, and without pReserved the environment's configuration is back.
    let plain = format!("{}\0", own.display());
    assert_eq!(init(plain.as_bytes()), CKR_OK);
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    assert_eq!(call!(r, C_GetTokenInfo(slot, &mut info)), CKR_OK);
    assert!(info.label.starts_with(b"test "));
}

/// `C_Encrypt` with AES-GCM writes a large result straight into the caller's buffer (issue 21)
/// and answers a length query without running the operation. Each way a client can call it
/// gives the bytes the `aes-gcm` crate computes: length query then buffer, a short buffer then
/// the right one, a buffer larger than needed, and in place (input and output the same
/// memory, which takes the copying path), for 64 bytes (the crate) and 64 KiB (OpenSSL).
#[test]
fn gcm_encrypt_writes_into_the_callers_buffer_in_every_calling_pattern() {
    use aes_gcm::aead::{Aead, KeyInit};
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let key = [9u8; 32];
    let k = raw_aes(&r, h, &key);
    let outside = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    for len in [64usize, 65536] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut iv = [5u8; 12];
        let want = outside.encrypt(&iv.into(), &data[..]).unwrap();
        let mut params = gcm_params(&mut iv, 96);
        let mut m = gcm_mech(&mut params);
        let mut input = data.clone();
        let n = input.len() as CK_ULONG;
        // Length query, then a buffer that is one byte short (operation kept), then enough.
        assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_OK);
        let mut need = 0;
        assert_eq!(
            call!(r, C_Encrypt(h, input.as_mut_ptr(), n, null_mut(), &mut need)),
            CKR_OK
        );
        assert_eq!(need as usize, len + 16, "{len}: the length query");
        let mut out = vec![0u8; need as usize + 7];
        let mut short = need - 1;
        assert_eq!(
            call!(r, C_Encrypt(h, input.as_mut_ptr(), n, out.as_mut_ptr(), &mut short)),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(short, need);
        let mut got = out.len() as CK_ULONG;
        assert_eq!(
            call!(r, C_Encrypt(h, input.as_mut_ptr(), n, out.as_mut_ptr(), &mut got)),
            CKR_OK
        );
        assert_eq!(got, need);
        assert_eq!(&out[..got as usize], &want[..], "{len}: into a larger buffer");
        assert_eq!(out[got as usize..], [0u8; 7], "{len}: nothing written past the result");
        // The operation ended: a second call has nothing to run.
        assert_eq!(
            call!(r, C_Encrypt(h, input.as_mut_ptr(), n, out.as_mut_ptr(), &mut got)),
            CKR_OPERATION_NOT_INITIALIZED
        );
        // In place: the plaintext in a buffer with room for the tag, encrypted over itself.
        let mut inplace = data.clone();
        inplace.resize(len + 16, 0);
        assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_OK);
        let mut got = inplace.len() as CK_ULONG;
        assert_eq!(
            call!(r, C_Encrypt(h, inplace.as_mut_ptr(), n, inplace.as_mut_ptr(), &mut got)),
            CKR_OK
        );
        assert_eq!(&inplace[..got as usize], &want[..], "{len}: in place");
    }
}

/// Each thread remembers the session it used last and skips the table's lock for it
/// (`token/session.rs`): a session another thread closed is refused at this thread's next call,
/// and after `C_Finalize` and `C_Initialize` the same handle number is a new session with
/// nothing active, not the one this thread remembers.
#[test]
fn a_session_this_thread_used_last_is_refused_once_closed_and_new_after_finalize() {
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let mut sha = mech(CKM_SHA256);
    let data = [7u8; 16];
    let update = |h| call!(r, C_DigestUpdate(h, data.as_ptr() as *mut _, data.len() as CK_ULONG));
    assert_eq!(call!(r, C_DigestInit(h, &mut sha)), CKR_OK);
    assert_eq!(update(h), CKR_OK);
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(call!(r, C_CloseSession(h)), CKR_OK));
    });
    assert_eq!(update(h), CKR_SESSION_HANDLE_INVALID, "closed by another thread");

    let again = session(&r, false);
    assert_eq!(call!(r, C_DigestInit(again, &mut sha)), CKR_OK);
    assert_eq!(update(again), CKR_OK);
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    assert_eq!(
        update(again),
        CKR_SESSION_HANDLE_INVALID,
        "a handle from before C_Finalize"
    );
    assert_eq!(update(again), CKR_SESSION_HANDLE_INVALID, "still, a second time");
    let fresh = [session(&r, true), session(&r, true), session(&r, true)];
    assert_eq!(
        fresh[..2],
        [h, again],
        "handles start again at 1 after C_Initialize (what this test relies on)"
    );
    // One session closed here too: the new table's count of closures is the old one's.
    assert_eq!(call!(r, C_CloseSession(fresh[2])), CKR_OK);
    assert_eq!(
        update(again),
        CKR_OPERATION_NOT_INITIALIZED,
        "the new session with the old number has nothing active"
    );
    // SAFETY: CK_SESSION_INFO is plain data; all-zero is a valid value.
    let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(call!(r, C_GetSessionInfo(again, &mut info)), CKR_OK);
    assert_eq!(
        info.flags & CKF_RW_SESSION,
        CKF_RW_SESSION,
        "the new read/write session, not the read-only one of the same number before"
    );
    assert_eq!(call!(r, C_Finalize(null_mut())), CKR_OK);
}

/// AES-CBC and AES-CBC-PAD encryption write into the caller's buffer (OpenSSL's CBC from 1 KiB
/// up, the aes crate's below and for the last block): each way a client calls it gives the
/// bytes the `cbc` crate computes, for lengths around a block and around 1 KiB; CBC without
/// padding refuses data that is not whole blocks.
#[test]
fn cbc_encrypt_writes_into_the_callers_buffer_in_every_calling_pattern() {
    use cbc::cipher::{block_padding::NoPadding, block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let _env = Env::new();
    let r = raw();
    let h = logged_in(&r);
    let key = [11u8; 32];
    let k = raw_aes(&r, h, &key);
    let mut iv = [6u8; 16];
    for (ckm, pad) in [(CKM_AES_CBC, false), (CKM_AES_CBC_PAD, true)] {
        for len in [0usize, 1, 15, 16, 17, 1008, 1024, 1040, 1041, 4096, 4097] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let outside = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into());
            let mut buf = data.clone();
            buf.resize(len + 16, 0);
            let want = match pad {
                true => outside.encrypt_padded_mut::<Pkcs7>(&mut buf, len).unwrap().to_vec(),
                false if len % 16 == 0 => outside.encrypt_padded_mut::<NoPadding>(&mut buf, len).unwrap().to_vec(),
                false => Vec::new(),
            };
            let mut m = CK_MECHANISM {
                mechanism: ckm,
                pParameter: iv.as_mut_ptr() as CK_VOID_PTR,
                ulParameterLen: 16,
            };
            let mut input = data.clone();
            let n = len as CK_ULONG;
            assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_OK);
            let mut need = 0;
            let rv = call!(r, C_Encrypt(h, input.as_mut_ptr(), n, null_mut(), &mut need));
            if !pad && len % 16 != 0 {
                assert_eq!(rv, CKR_DATA_LEN_RANGE, "CBC of {len} bytes");
                continue;
            }
            assert_eq!(rv, CKR_OK, "{ckm:#x} {len}: the length query");
            assert_eq!(need as usize, want.len(), "{ckm:#x} {len}: the length query");
            let mut out = vec![0u8; need as usize + 5];
            if need > 0 {
                let mut short = need - 1;
                assert_eq!(
                    call!(r, C_Encrypt(h, input.as_mut_ptr(), n, out.as_mut_ptr(), &mut short)),
                    CKR_BUFFER_TOO_SMALL
                );
            }
            let mut got = out.len() as CK_ULONG;
            assert_eq!(
                call!(r, C_Encrypt(h, input.as_mut_ptr(), n, out.as_mut_ptr(), &mut got)),
                CKR_OK
            );
            assert_eq!(&out[..got as usize], &want[..], "{ckm:#x} {len}: into a larger buffer");
            assert_eq!(out[got as usize..], [0u8; 5], "{ckm:#x} {len}: nothing past the result");
            // In place, the caller's buffer holding the data with room for the padding.
            let mut inplace = data.clone();
            inplace.resize(want.len(), 0);
            assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_OK);
            let mut got = inplace.len() as CK_ULONG;
            assert_eq!(
                call!(r, C_Encrypt(h, inplace.as_mut_ptr(), n, inplace.as_mut_ptr(), &mut got)),
                CKR_OK
            );
            assert_eq!(&inplace[..got as usize], &want[..], "{ckm:#x} {len}: in place");
        }
        iv[0] ^= 1;
    }
}
