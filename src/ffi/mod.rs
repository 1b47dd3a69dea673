//! The C ABI keygate exports: the only place an application's raw pointers are read or
//! written. Every entry point runs inside [`guard`]: pointers are decoded at the top by
//! `raw.rs`, the call goes to `token/`, the result maps to a `CK_RV` once, and a panic never
//! crosses the C boundary (it becomes `CKR_GENERAL_ERROR`). The OS calls keygate makes (locked
//! pages, the process id across fork) are in `sys/`.
#![allow(unsafe_code)]
#![allow(non_snake_case)]

mod crypt;
mod digest;
#[doc(hidden)]
pub mod fuzz;
mod general;
pub mod interface;
mod key;
mod object;
mod random;
pub mod raw;
mod session;
mod sign;
mod unsupported;

use std::panic::{catch_unwind, AssertUnwindSafe};

use pkcs11_sys::{CKR_GENERAL_ERROR, CKR_OK, CK_RV};

use crate::error::Result;

/// Runs one entry point: logging set up, panics caught, the error mapped to its `CK_RV`.
pub(crate) fn guard(name: &'static str, f: impl FnOnce() -> Result<()>) -> CK_RV {
    crate::logging::init();
    log::trace!("{name}");
    match catch_unwind(AssertUnwindSafe(|| {
        injected_panic(name);
        f()
    })) {
        Ok(Ok(())) => {
            log::trace!("{name}: CKR_OK");
            CKR_OK
        }
        Ok(Err(e)) => {
            let rv = e.ck_rv();
            if e.is_fault() {
                log::error!("{name}: {e} ({})", crate::error::rv_name(rv));
            } else {
                log::debug!("{name}: {e} ({})", crate::error::rv_name(rv));
            }
            rv
        }
        Err(_) => {
            log::error!("{name}: internal error (panic caught at the C boundary)");
            CKR_GENERAL_ERROR
        }
    }
}

/// Test hook, compiled into debug builds only: `KEYGATE_TEST_PANIC_IN=C_GetInfo` makes that
/// entry point panic inside the guard, so the integration tests can show through the built
/// library that a panic never crosses the C boundary. Release builds have no such hook.
#[cfg(debug_assertions)]
fn injected_panic(name: &str) {
    if std::env::var_os("KEYGATE_TEST_PANIC_IN").is_some_and(|v| v == name) {
        panic!("injected test panic in {name}");
    }
}

#[cfg(not(debug_assertions))]
fn injected_panic(_: &str) {}

/// Declares entry points: `unsafe extern "C"` functions whose body runs inside [`guard`].
macro_rules! entry {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block)*) => {
        $(
            #[doc = concat!("PKCS#11 `", stringify!($name), "`.")]
            ///
            /// # Safety
            /// Pointer arguments must be valid as the PKCS#11 specification describes for this
            /// function; NULL where the specification allows it.
            pub(crate) unsafe extern "C" fn $name($($arg: $ty),*) -> pkcs11_sys::CK_RV {
                $crate::ffi::guard(stringify!($name), || -> $crate::error::Result<()> { $body })
            }
        )*
    };
}
pub(crate) use entry;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_general_error() {
        let rv = guard("test", || panic!("boom"));
        assert_eq!(rv, CKR_GENERAL_ERROR);
    }

    #[test]
    fn errors_map_through_ck_rv() {
        let rv = guard("test", || Err(crate::error::Error::PinIncorrect));
        assert_eq!(rv, pkcs11_sys::CKR_PIN_INCORRECT);
    }
}
