//! The module loaded through the raw C ABI (libloading + pkcs11-sys), as a C client calls it.

use super::*;
use pkcs11_sys::*;
use std::ptr::null_mut;

pub struct Raw {
    pub _lib: libloading::Library,
    pub f: &'static CK_FUNCTION_LIST,
}

pub fn raw() -> Raw {
    // SAFETY: loading the module under test, as any client does.
    let lib = unsafe { libloading::Library::new(module_path()) }.unwrap();
    let mut list: CK_FUNCTION_LIST_PTR = null_mut();
    // SAFETY: the exported symbol has this signature.
    let get: libloading::Symbol<unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV> =
        unsafe { lib.get(b"C_GetFunctionList") }.unwrap();
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { get(&mut list) }, CKR_OK);
    // SAFETY: the list is a static inside the loaded module, alive while `lib` is.
    let f = unsafe { &*list };
    Raw { f, _lib: lib }
}

pub fn session(r: &Raw, rw: bool) -> CK_SESSION_HANDLE {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    assert_eq!(call!(r, C_OpenSession(0, flags, null_mut(), None, &mut h)), CKR_OK);
    h
}

pub fn login(r: &Raw, h: CK_SESSION_HANDLE) {
    let pin = USER_PIN.as_bytes();
    assert_eq!(
        call!(r, C_Login(h, CKU_USER, pin.as_ptr() as *mut u8, pin.len() as CK_ULONG)),
        CKR_OK
    );
}

pub fn attr<T>(ty: CK_ATTRIBUTE_TYPE, v: &T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v as *const T as CK_VOID_PTR,
        ulValueLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}
