//! General-purpose, slot and token functions (PKCS#11 3.0 §5.4–5.5).

use pkcs11_sys::*;

use super::entry;
use super::raw::{self, padded};
use crate::error::Error;
use crate::model::handles::SessionHandle;
use crate::model::mechanisms::lookup;
use crate::token::{provider, provider as prov};

/// keygate's library version, reported in `CK_INFO` and `CK_SLOT_INFO`/`CK_TOKEN_INFO`.
const VERSION: CK_VERSION = CK_VERSION { major: 0, minor: 1 };

/// Writes a list under the two-call convention.
///
/// # Safety
/// `list` writable for `*count` elements or NULL; `count` readable and writable.
unsafe fn out_list<T: Copy>(list: *mut T, count: *mut CK_ULONG, items: &[T]) -> crate::error::Result<()> {
    if count.is_null() {
        return Err(Error::ArgumentsBad);
    }
    if !list.is_null() {
        // SAFETY: non-null and readable per the caller's contract.
        let cap = unsafe { count.read() } as usize;
        if cap < items.len() {
            // SAFETY: as above, writable.
            unsafe { count.write(items.len() as CK_ULONG) };
            return Err(Error::BufferTooSmall);
        }
        // SAFETY: the caller's array holds at least `items.len()` elements.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), list, items.len()) };
    }
    // SAFETY: non-null and writable per the caller's contract.
    unsafe { count.write(items.len() as CK_ULONG) };
    Ok(())
}

/// The configuration file an application names in `pReserved`, as p11-kit's per-module
/// `x-init-reserved:` passes it: an absolute path, NUL-terminated (at most 4096 bytes), or
/// `config=` and one. Anything else there is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string (or at least 4096 readable bytes).
unsafe fn config_in(p: CK_VOID_PTR) -> crate::error::Result<Option<std::path::PathBuf>> {
    if p.is_null() {
        return Ok(None);
    }
    // No string lives in the first page: a small number there is a caller's mistake, refused
    // without being read.
    if (p as usize) < 4096 {
        return Err(Error::ArgumentsBad);
    }
    const MAX: usize = 4096;
    let bytes = p as *const u8;
    let mut len = 0;
    // SAFETY: reads up to the NUL, within the caller's string.
    while len < MAX && unsafe { bytes.wrapping_add(len).read() } != 0 {
        len += 1;
    }
    if len == MAX {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: `len` bytes were just read from this string.
    let text =
        std::str::from_utf8(unsafe { std::slice::from_raw_parts(bytes, len) }).map_err(|_| Error::ArgumentsBad)?;
    let path = text.strip_prefix("config=").unwrap_or(text).trim();
    if !path.starts_with('/') {
        log::error!("C_Initialize: pReserved is not a configuration path (an absolute path, or config=PATH)");
        return Err(Error::ArgumentsBad);
    }
    Ok(Some(std::path::PathBuf::from(path)))
}

fn check_init_args(args: &CK_C_INITIALIZE_ARGS) -> crate::error::Result<()> {
    let given = [
        args.CreateMutex.is_some(),
        args.DestroyMutex.is_some(),
        args.LockMutex.is_some(),
        args.UnlockMutex.is_some(),
    ];
    let all = given.iter().all(|g| *g);
    if !all && given.iter().any(|g| *g) {
        return Err(Error::ArgumentsBad);
    }
    // keygate locks with the OS's primitives; it cannot use an application's mutex callbacks,
    // so callbacks without CKF_OS_LOCKING_OK cannot be honoured.
    if all && args.flags & CKF_OS_LOCKING_OK == 0 {
        return Err(Error::CantLock);
    }
    Ok(())
}

entry! {
    fn C_Initialize(pInitArgs: CK_VOID_PTR) {
        let mut config = None;
        if !pInitArgs.is_null() {
            // SAFETY: non-null; the spec says it points to a CK_C_INITIALIZE_ARGS.
            let args = unsafe { (pInitArgs as *const CK_C_INITIALIZE_ARGS).read_unaligned() };
            check_init_args(&args)?;
            // SAFETY: a string of the application's, as p11-kit's x-init-reserved passes it.
            config = unsafe { config_in(args.pReserved) }?;
        }
        prov::initialize(config.as_deref())
    }

    fn C_Finalize(pReserved: CK_VOID_PTR) {
        if !pReserved.is_null() {
            return Err(Error::ArgumentsBad);
        }
        prov::finalize()
    }

    fn C_WaitForSlotEvent(flags: CK_FLAGS, pSlot: CK_SLOT_ID_PTR, pReserved: CK_VOID_PTR) {
        provider()?;
        if pSlot.is_null() || !pReserved.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let slot = prov::wait_for_slot_event(flags & CKF_DONT_BLOCK == 0)?;
        // SAFETY: caller-provided out-parameter, checked above.
        unsafe { raw::out(pSlot, slot) }
    }

    fn C_GetInfo(pInfo: CK_INFO_PTR) {
        provider()?;
        let info = CK_INFO {
            cryptokiVersion: CK_VERSION { major: 3, minor: 0 },
            manufacturerID: padded("keygate"),
            flags: 0,
            libraryDescription: padded("keygate PKCS#11 provider"),
            libraryVersion: VERSION,
        };
        // SAFETY: caller-provided out-parameter; `out` checks NULL.
        unsafe { raw::out(pInfo, info) }
    }

    fn C_GetSlotList(tokenPresent: CK_BBOOL, pSlotList: CK_SLOT_ID_PTR, pulCount: CK_ULONG_PTR) {
        let _ = tokenPresent;
        let ids: Vec<CK_SLOT_ID> = (0..provider()?.slots.len() as CK_SLOT_ID).collect();
        // SAFETY: caller-provided list and count per the two-call convention.
        unsafe { out_list(pSlotList, pulCount, &ids) }
    }

    fn C_GetSlotInfo(slotID: CK_SLOT_ID, pInfo: CK_SLOT_INFO_PTR) {
        let p = provider()?;
        let slot = p.slot(slotID)?;
        let info = CK_SLOT_INFO {
            slotDescription: padded(&format!("keygate slot {}", slot.label)),
            manufacturerID: padded("keygate"),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
        };
        // SAFETY: caller-provided out-parameter.
        unsafe { raw::out(pInfo, info) }
    }

    fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: CK_TOKEN_INFO_PTR) {
        let p = provider()?;
        let st = p.token_status(slotID)?;
        let (sessions, rw) = p.session_counts(slotID);
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED;
        if st.protected_path {
            flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
        }
        if st.initialized {
            flags |= CKF_TOKEN_INITIALIZED;
        }
        if st.write_protected {
            flags |= CKF_WRITE_PROTECTED;
        }
        if st.user_pin_initialized {
            flags |= CKF_USER_PIN_INITIALIZED;
        }
        let pin_flags = |failures: u32, low, last, locked| {
            if failures >= st.max_failures {
                locked
            } else if failures + 1 == st.max_failures {
                last | low
            } else if failures > 0 {
                low
            } else {
                0
            }
        };
        flags |= pin_flags(st.user_failures, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED);
        flags |= pin_flags(st.so_failures, CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED);
        let info = CK_TOKEN_INFO {
            label: padded(&st.label),
            manufacturerID: padded("keygate"),
            model: padded(st.model),
            serialNumber: padded(&st.serial),
            flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: sessions,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: rw,
            ulMaxPinLen: crate::model::mechanisms::PIN_MAX as CK_ULONG,
            ulMinPinLen: crate::model::mechanisms::PIN_MIN as CK_ULONG,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
            utcTime: [b' '; 16],
        };
        // SAFETY: caller-provided out-parameter.
        unsafe { raw::out(pInfo, info) }
    }

    fn C_GetMechanismList(slotID: CK_SLOT_ID, pMechanismList: CK_MECHANISM_TYPE_PTR, pulCount: CK_ULONG_PTR) {
        let types: Vec<CK_MECHANISM_TYPE> = provider()?.mechanisms(slotID)?.iter().map(|(t, _)| *t).collect();
        // SAFETY: caller-provided list and count per the two-call convention.
        unsafe { out_list(pMechanismList, pulCount, &types) }
    }

    fn C_GetMechanismInfo(slotID: CK_SLOT_ID, type_: CK_MECHANISM_TYPE, pInfo: CK_MECHANISM_INFO_PTR) {
        let p = provider()?;
        if pInfo.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let i = lookup(p.mechanisms(slotID)?, type_).ok_or(Error::MechanismInvalid(type_))?;
        let info = CK_MECHANISM_INFO { ulMinKeySize: i.min_key_size, ulMaxKeySize: i.max_key_size, flags: i.flags };
        // SAFETY: caller-provided out-parameter.
        unsafe { raw::out(pInfo, info) }
    }

    fn C_InitToken(slotID: CK_SLOT_ID, pPin: CK_UTF8CHAR_PTR, ulPinLen: CK_ULONG, pLabel: CK_UTF8CHAR_PTR) {
        let p = provider()?;
        // SAFETY: caller-provided PIN buffer.
        let pin = unsafe { raw::pin_in(pPin, ulPinLen) }?;
        if pLabel.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: the spec fixes the label at 32 bytes.
        let label = unsafe { raw::in_slice(pLabel, 32) }?;
        let label = std::str::from_utf8(label).map_err(|_| Error::ArgumentsBad)?;
        p.init_token(slotID, &pin, label.trim_end_matches([' ', '\0']))
    }

    fn C_InitPIN(hSession: CK_SESSION_HANDLE, pPin: CK_UTF8CHAR_PTR, ulPinLen: CK_ULONG) {
        let p = provider()?;
        // SAFETY: caller-provided PIN buffer.
        let pin = unsafe { raw::pin_in(pPin, ulPinLen) }?;
        p.init_pin(SessionHandle(hSession), &pin)
    }

    fn C_SetPIN(
        hSession: CK_SESSION_HANDLE,
        pOldPin: CK_UTF8CHAR_PTR,
        ulOldLen: CK_ULONG,
        pNewPin: CK_UTF8CHAR_PTR,
        ulNewLen: CK_ULONG,
    ) {
        let p = provider()?;
        // SAFETY: caller-provided PIN buffer.
        let old = unsafe { raw::pin_in(pOldPin, ulOldLen) }?;
        // SAFETY: caller-provided PIN buffer.
        let new = unsafe { raw::pin_in(pNewPin, ulNewLen) }?;
        p.set_pin(SessionHandle(hSession), &old, &new)
    }

    fn C_GetFunctionStatus(hSession: CK_SESSION_HANDLE) {
        let _ = hSession;
        provider()?;
        Err(Error::FunctionNotParallel)
    }

    fn C_CancelFunction(hSession: CK_SESSION_HANDLE) {
        let _ = hSession;
        provider()?;
        Err(Error::FunctionNotParallel)
    }
}
