//! The module loaded through the raw C ABI (libloading + pkcs11-sys), as a C client calls it.

use super::*;
use pkcs11_sys::*;
use std::ptr::null_mut;

pub struct Raw {
    pub _lib: libloading::Library,
    pub f: &'static CK_FUNCTION_LIST,
}

pub fn raw() -> Raw {
    raw_of(&module_path())
}

/// The module of the suite's target ([`target_module`]): keygate, or SoftHSM2 itself.
pub fn raw_target() -> Raw {
    raw_of(&target_module())
}

fn raw_of(path: &Path) -> Raw {
    // SAFETY: loading the module under test, as any client does.
    let lib = unsafe { libloading::Library::new(path) }.unwrap();
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

/// `CK_C_INITIALIZE_ARGS` with OS locking and `reserved` as `pReserved`.
pub fn init_args(reserved: CK_VOID_PTR) -> CK_C_INITIALIZE_ARGS {
    CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: reserved,
    }
}

pub fn session(r: &Raw, rw: bool) -> CK_SESSION_HANDLE {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    assert_eq!(call!(r, C_OpenSession(0, flags, null_mut(), None, &mut h)), CKR_OK);
    h
}

/// C_Initialize, a read/write session, and the user logged in on it.
pub fn logged_in(r: &Raw) -> CK_SESSION_HANDLE {
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    let h = session(r, true);
    login(r, h);
    h
}

/// The slot of the token labelled "test" (SoftHSM2 also shows its root token and a free slot).
pub fn test_slot(r: &Raw) -> CK_SLOT_ID {
    let mut slots = [0; 8];
    let mut n = slots.len() as CK_ULONG;
    assert_eq!(call!(r, C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut n)), CKR_OK);
    *slots[..n as usize]
        .iter()
        .find(|s| {
            // SAFETY: CK_TOKEN_INFO is plain data; all zeroes is a valid value.
            let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            call!(r, C_GetTokenInfo(**s, &mut info)) == CKR_OK && info.label.starts_with(b"test ")
        })
        .expect("a token labelled test")
}

/// C_Initialize and a session on the target's test token (read/write or not), nobody logged in.
pub fn target_session(r: &Raw, rw: bool) -> CK_SESSION_HANDLE {
    assert_eq!(call!(r, C_Initialize(null_mut())), CKR_OK);
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    assert_eq!(
        call!(r, C_OpenSession(test_slot(r), flags, null_mut(), None, &mut h)),
        CKR_OK
    );
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

pub type GetInterface = unsafe extern "C" fn(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) -> CK_RV;
pub type GetInterfaceList = unsafe extern "C" fn(CK_INTERFACE_PTR, CK_ULONG_PTR) -> CK_RV;

/// `C_GetInterface(name, version)`: the interface found, or the call's error.
pub fn get_interface(r: &Raw, name: Option<&std::ffi::CStr>, version: Option<(u8, u8)>) -> Result<CK_INTERFACE, CK_RV> {
    // SAFETY: the exported symbol has this signature.
    let get: libloading::Symbol<GetInterface> = unsafe { r._lib.get(b"C_GetInterface") }.unwrap();
    let name = name.map_or(null_mut(), |n| n.as_ptr() as CK_UTF8CHAR_PTR);
    let mut v = version.map(|(major, minor)| CK_VERSION { major, minor });
    let vp = v.as_mut().map_or(null_mut(), |v| v as CK_VERSION_PTR);
    let mut i: CK_INTERFACE_PTR = null_mut();
    // SAFETY: a NUL-terminated name or NULL, a version or NULL, a valid out-pointer.
    let rv = unsafe { get(name, vp, &mut i, 0) };
    if rv != CKR_OK {
        return Err(rv);
    }
    // SAFETY: on CKR_OK the module points at one of its static interfaces.
    Ok(unsafe { i.read() })
}

/// The version at the head of an interface's function list.
pub fn version_of(i: &CK_INTERFACE) -> (u8, u8) {
    // SAFETY: every PKCS#11 function list begins with its CK_VERSION.
    let v = unsafe { (i.pFunctionList as *const CK_VERSION).read() };
    (v.major, v.minor)
}

/// The 3.0 function list, through `C_GetInterface`.
pub fn list_3_0(r: &Raw) -> &'static CK_FUNCTION_LIST_3_0 {
    let i = get_interface(r, Some(c"PKCS 11"), Some((3, 0))).unwrap();
    // SAFETY: the list is a static of the loaded module, alive while the library is loaded.
    unsafe { &*(i.pFunctionList as *const CK_FUNCTION_LIST_3_0) }
}
