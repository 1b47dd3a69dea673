//! The HSM library's own C function list, for the calls cryptoki makes only together with
//! their `C_*Init` (a single-part `C_Sign` on an operation started earlier). With `ffi/` (the C
//! ABI keygate exports) and `sys/` (the OS calls), the only place keygate uses `unsafe`: this
//! module is the C ABI of the HSM library it calls.
#![allow(unsafe_code)]

use std::path::Path;

use cryptoki::object::ObjectHandle;

use crate::error::{Error, Result};

/// An HSM library's own `CK_FUNCTION_LIST`, for the calls cryptoki makes only together with
/// their `C_*Init`: a single-part `C_Sign`, `C_Verify`, `C_Encrypt`, `C_Decrypt` or `C_Digest`
/// on an operation started earlier (hsm mode starts every operation at the application's
/// `C_*Init`, so that the errors of an init belong to the init).
pub struct RawFunctions {
    _lib: libloading::Library,
    f: &'static pkcs11_sys::CK_FUNCTION_LIST,
}

impl std::fmt::Debug for RawFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawFunctions")
    }
}

/// The single-part data functions of [`RawFunctions::single`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinglePart {
    Sign,
    Encrypt,
    Decrypt,
    Digest,
}

/// A PKCS#11 length: every length keygate passes fits (it came from a `CK_ULONG` or a Vec).
fn ck_len(n: usize) -> pkcs11_sys::CK_ULONG {
    n as pkcs11_sys::CK_ULONG
}

impl RawFunctions {
    /// The function list of the library at `path` (already loaded by cryptoki: this takes one
    /// more reference to the same library).
    pub fn of(path: &Path) -> Result<RawFunctions> {
        let unavailable = |e: libloading::Error| Error::HsmUnavailable(format!("cannot load {}: {e}", path.display()));
        // SAFETY: the library is the PKCS#11 module the configuration names, which cryptoki has
        // loaded already; loading it again runs no initialiser twice.
        let lib = unsafe { libloading::Library::new(path) }.map_err(unavailable)?;
        let mut list: pkcs11_sys::CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module.
        let get: libloading::Symbol<unsafe extern "C" fn(pkcs11_sys::CK_FUNCTION_LIST_PTR_PTR) -> pkcs11_sys::CK_RV> =
            unsafe { lib.get(b"C_GetFunctionList") }.map_err(unavailable)?;
        // SAFETY: a valid out-pointer.
        let rv = unsafe { get(&mut list) };
        if rv != pkcs11_sys::CKR_OK || list.is_null() {
            return Err(Error::HsmUnavailable(format!(
                "C_GetFunctionList of {} returned {}",
                path.display(),
                crate::error::rv_name(rv)
            )));
        }
        // SAFETY: the list is static data of the module, alive while `lib` keeps it loaded.
        let f = unsafe { &*list };
        Ok(RawFunctions { _lib: lib, f })
    }

    /// Calls `call(out, out_len)` with a buffer of `guess` bytes, and again with the length the
    /// module asks for after `CKR_BUFFER_TOO_SMALL` (which leaves the operation running).
    fn with_output(
        guess: usize,
        mut call: impl FnMut(*mut u8, &mut pkcs11_sys::CK_ULONG) -> pkcs11_sys::CK_RV,
    ) -> std::result::Result<Vec<u8>, u64> {
        let mut out = vec![0u8; guess.max(1)];
        loop {
            let mut len = ck_len(out.len());
            match call(out.as_mut_ptr(), &mut len) {
                pkcs11_sys::CKR_OK => {
                    out.truncate(len as usize);
                    return Ok(out);
                }
                pkcs11_sys::CKR_BUFFER_TOO_SMALL if (len as usize) > out.len() => out.resize(len as usize, 0),
                rv => return Err(rv),
            }
        }
    }

    /// A single-part data call on the operation running on `session`. `guess` is the output
    /// length expected. The module's own `CK_RV` on failure.
    pub fn single(
        &self,
        which: SinglePart,
        session: u64,
        data: &[u8],
        guess: usize,
    ) -> std::result::Result<Vec<u8>, u64> {
        let f = match which {
            SinglePart::Sign => self.f.C_Sign,
            SinglePart::Encrypt => self.f.C_Encrypt,
            SinglePart::Decrypt => self.f.C_Decrypt,
            SinglePart::Digest => self.f.C_Digest,
        }
        .ok_or(pkcs11_sys::CKR_FUNCTION_NOT_SUPPORTED)?;
        Self::with_output(guess, |out, len| {
            // SAFETY: `data` is valid for its length (the module only reads it: the pointer is
            // *mut in the C signature alone), `out` for `*len` bytes, `len` is a valid pointer.
            unsafe { f(session, data.as_ptr() as *mut u8, ck_len(data.len()), out, len) }
        })
    }

    /// `C_Verify` on the verification running on `session`.
    pub fn verify(&self, session: u64, data: &[u8], signature: &[u8]) -> std::result::Result<(), u64> {
        let f = self.f.C_Verify.ok_or(pkcs11_sys::CKR_FUNCTION_NOT_SUPPORTED)?;
        // SAFETY: both buffers are valid for their lengths and only read.
        let rv = unsafe {
            f(
                session,
                data.as_ptr() as *mut u8,
                ck_len(data.len()),
                signature.as_ptr() as *mut u8,
                ck_len(signature.len()),
            )
        };
        if rv == pkcs11_sys::CKR_OK {
            Ok(())
        } else {
            Err(rv)
        }
    }
}

impl RawFunctions {
    /// `C_CreateObject` with a template of (type, value) pairs as keygate holds them: every
    /// attribute, including those cryptoki has no variant for (`CKA_CERTIFICATE_CATEGORY`).
    pub fn create_object(&self, session: u64, template: &[(u64, &[u8])]) -> std::result::Result<ObjectHandle, u64> {
        let f = self.f.C_CreateObject.ok_or(pkcs11_sys::CKR_FUNCTION_NOT_SUPPORTED)?;
        let mut t: Vec<pkcs11_sys::CK_ATTRIBUTE> = template
            .iter()
            .map(|(ty, v)| pkcs11_sys::CK_ATTRIBUTE {
                type_: *ty,
                pValue: v.as_ptr() as pkcs11_sys::CK_VOID_PTR,
                ulValueLen: ck_len(v.len()),
            })
            .collect();
        let mut h = 0;
        // SAFETY: the template's values outlive the call and are only read; `h` is a valid
        // out-pointer.
        let rv = unsafe { f(session, t.as_mut_ptr(), ck_len(t.len()), &mut h) };
        if rv != pkcs11_sys::CKR_OK {
            return Err(rv);
        }
        // SAFETY: the handle is the one the HSM just gave for the new object.
        Ok(unsafe { ObjectHandle::new_from_raw(h) })
    }

    /// One attribute of an object, `None` if the HSM has none of that type for it (any error
    /// but a dead session reads as absent, as an attribute keygate asks for just in case).
    pub fn attribute(&self, session: u64, object: ObjectHandle, ty: u64) -> Option<Vec<u8>> {
        let f = self.f.C_GetAttributeValue?;
        let mut a = pkcs11_sys::CK_ATTRIBUTE {
            type_: ty,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        // SAFETY: one attribute with a NULL value: the HSM writes its length only.
        let rv = unsafe { f(session, object.handle(), &mut a, 1) };
        if rv != pkcs11_sys::CKR_OK || a.ulValueLen == pkcs11_sys::CK_UNAVAILABLE_INFORMATION {
            return None;
        }
        let mut v = vec![0u8; a.ulValueLen as usize];
        a.pValue = v.as_mut_ptr() as pkcs11_sys::CK_VOID_PTR;
        // SAFETY: the buffer holds the length the HSM gave.
        let rv = unsafe { f(session, object.handle(), &mut a, 1) };
        if rv != pkcs11_sys::CKR_OK {
            return None;
        }
        v.truncate(a.ulValueLen as usize);
        Some(v)
    }
}
