//! Session management (PKCS#11 3.0 §5.6).

use pkcs11_sys::*;

use super::{entry, raw};
use crate::backend::UserType;
use crate::error::Error;
use crate::model::handles::SessionHandle;
use crate::token::provider;

entry! {
    fn C_OpenSession(
        slotID: CK_SLOT_ID,
        flags: CK_FLAGS,
        pApplication: CK_VOID_PTR,
        Notify: CK_NOTIFY,
        phSession: CK_SESSION_HANDLE_PTR,
    ) {
        let _ = (pApplication, Notify);
        let p = provider()?;
        if phSession.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let h = p.open_session(slotID, flags & CKF_SERIAL_SESSION != 0, flags & CKF_RW_SESSION != 0)?;
        // SAFETY: checked non-null; caller-provided out-parameter.
        unsafe { raw::out(phSession, h.0) }
    }

    fn C_CloseSession(hSession: CK_SESSION_HANDLE) {
        provider()?.close_session(SessionHandle(hSession))
    }

    fn C_CloseAllSessions(slotID: CK_SLOT_ID) {
        provider()?.close_all_sessions(slotID)
    }

    fn C_GetSessionInfo(hSession: CK_SESSION_HANDLE, pInfo: CK_SESSION_INFO_PTR) {
        let i = provider()?.session_info(SessionHandle(hSession))?;
        let flags = CKF_SERIAL_SESSION | if i.rw { CKF_RW_SESSION } else { 0 };
        let info = CK_SESSION_INFO { slotID: i.slot, state: i.state, flags, ulDeviceError: 0 };
        // SAFETY: caller-provided out-parameter.
        unsafe { raw::out(pInfo, info) }
    }

    fn C_Login(hSession: CK_SESSION_HANDLE, userType: CK_USER_TYPE, pPin: CK_UTF8CHAR_PTR, ulPinLen: CK_ULONG) {
        let p = provider()?;
        let user = match userType {
            CKU_SO => UserType::So,
            CKU_USER => UserType::User,
            CKU_CONTEXT_SPECIFIC => UserType::ContextSpecific,
            _ => return Err(Error::UserTypeInvalid),
        };
        // SAFETY: caller-provided PIN buffer.
        let pin = unsafe { raw::pin_in(pPin, ulPinLen) }?;
        p.login(SessionHandle(hSession), user, &pin)
    }

    fn C_Logout(hSession: CK_SESSION_HANDLE) {
        provider()?.logout(SessionHandle(hSession))
    }

    fn C_SessionCancel(hSession: CK_SESSION_HANDLE, flags: CK_FLAGS) {
        provider()?.session_cancel(SessionHandle(hSession), flags)
    }
}
