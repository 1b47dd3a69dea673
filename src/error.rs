//! One error type for the whole module and its ONE mapping to a PKCS#11 return value.
//!
//! `Display` never contains attribute values, PINs or key bytes, so logging `{e}` is always safe.
//! Sites where the specification dictates a particular code pick the variant there; everything
//! else is mapped here, exhaustively (no `_ =>` arm), and tested as a table.

use std::fmt;

/// A `CK_RV` value, as a plain number so that nothing below `ffi/` needs the C types.
pub type Rv = u64;

/// Every way an operation of keygate can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    ArgumentsBad,
    AttributeReadOnly(u64),
    AttributeSensitive(u64),
    AttributeTypeInvalid(u64),
    AttributeValueInvalid(u64),
    BufferTooSmall,
    CryptokiNotInitialized,
    CryptokiAlreadyInitialized,
    CurveNotSupported,
    DataInvalid,
    DataLenRange,
    /// The token takes no more of what was asked (a client without a login past its bound).
    DeviceMemory,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    FunctionNotSupported,
    KeyFunctionNotPermitted,
    KeyHandleInvalid,
    KeyIndigestible,
    KeyNotWrappable,
    KeySizeRange,
    KeyTypeInconsistent,
    KeyUnextractable,
    MechanismInvalid(u64),
    MechanismParamInvalid,
    ObjectHandleInvalid,
    OperationActive,
    OperationNotInitialized,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    SessionExists,
    SessionHandleInvalid,
    SessionParallelNotSupported,
    SessionReadOnly,
    SessionReadOnlyExists,
    SessionReadWriteSoExists,
    SignatureInvalid,
    SignatureLenRange,
    SlotIdInvalid,
    TemplateIncomplete(&'static str),
    TemplateInconsistent(&'static str),
    /// The token is not there; the text says what is missing and what to do.
    TokenNotPresent(String),
    TokenNotRecognized(String),
    /// The token serves from its mirror and takes no changes to its objects.
    TokenWriteProtected,
    UnwrappingKeyHandleInvalid,
    UnwrappingKeyTypeInconsistent,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
    UserNotLoggedIn,
    UserPinNotInitialized,
    UserTypeInvalid,
    WrappedKeyInvalid,
    WrappedKeyLenRange,
    WrappingKeyHandleInvalid,
    WrappingKeyTypeInconsistent,
    /// A cryptographic primitive failed; deliberately without detail.
    Crypto,
    /// A stored record failed its MAC or AEAD check: it is refused, never used.
    Integrity(String),
    /// The store (sqlite) failed.
    Store(String),
    /// The HSM answered with an error; the function name and its `CK_RV` are kept.
    Hsm {
        function: String,
        rv: String,
    },
    ActionProhibited,
    /// The HSM's own answer to an application's request, passed on unchanged (hsm mode).
    Forwarded {
        function: &'static str,
        rv: u64,
    },
    FunctionNotParallel,
    RandomSeedNotSupported,
    /// `C_WaitForSlotEvent` with `CKF_DONT_BLOCK`: no slot changed.
    NoEvent,
    /// The HSM or its root key is unreachable.
    HsmUnavailable(String),
    /// The configuration is missing or broken.
    Config(String),
    /// Anything else; the text says what.
    General(String),
    HostMemory,
    MutexBad,
    CantLock,
    NeedToCreateThreads,
    RandomNoRng,
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The PKCS#11 return value for this error. Exhaustive on purpose.
    pub fn ck_rv(&self) -> Rv {
        use pkcs11_sys as ck;
        match self {
            Error::ArgumentsBad => ck::CKR_ARGUMENTS_BAD,
            Error::AttributeReadOnly(_) => ck::CKR_ATTRIBUTE_READ_ONLY,
            Error::AttributeSensitive(_) => ck::CKR_ATTRIBUTE_SENSITIVE,
            Error::AttributeTypeInvalid(_) => ck::CKR_ATTRIBUTE_TYPE_INVALID,
            Error::AttributeValueInvalid(_) => ck::CKR_ATTRIBUTE_VALUE_INVALID,
            Error::BufferTooSmall => ck::CKR_BUFFER_TOO_SMALL,
            Error::CryptokiNotInitialized => ck::CKR_CRYPTOKI_NOT_INITIALIZED,
            Error::CryptokiAlreadyInitialized => ck::CKR_CRYPTOKI_ALREADY_INITIALIZED,
            Error::CurveNotSupported => ck::CKR_CURVE_NOT_SUPPORTED,
            Error::DataInvalid => ck::CKR_DATA_INVALID,
            Error::DataLenRange => ck::CKR_DATA_LEN_RANGE,
            Error::DeviceMemory => ck::CKR_DEVICE_MEMORY,
            Error::EncryptedDataInvalid => ck::CKR_ENCRYPTED_DATA_INVALID,
            Error::EncryptedDataLenRange => ck::CKR_ENCRYPTED_DATA_LEN_RANGE,
            Error::FunctionNotSupported => ck::CKR_FUNCTION_NOT_SUPPORTED,
            Error::KeyFunctionNotPermitted => ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
            Error::KeyHandleInvalid => ck::CKR_KEY_HANDLE_INVALID,
            Error::KeyIndigestible => ck::CKR_KEY_INDIGESTIBLE,
            Error::KeyNotWrappable => ck::CKR_KEY_NOT_WRAPPABLE,
            Error::KeySizeRange => ck::CKR_KEY_SIZE_RANGE,
            Error::KeyTypeInconsistent => ck::CKR_KEY_TYPE_INCONSISTENT,
            Error::KeyUnextractable => ck::CKR_KEY_UNEXTRACTABLE,
            Error::MechanismInvalid(_) => ck::CKR_MECHANISM_INVALID,
            Error::MechanismParamInvalid => ck::CKR_MECHANISM_PARAM_INVALID,
            Error::ObjectHandleInvalid => ck::CKR_OBJECT_HANDLE_INVALID,
            Error::OperationActive => ck::CKR_OPERATION_ACTIVE,
            Error::OperationNotInitialized => ck::CKR_OPERATION_NOT_INITIALIZED,
            Error::PinIncorrect => ck::CKR_PIN_INCORRECT,
            Error::PinInvalid => ck::CKR_PIN_INVALID,
            Error::PinLenRange => ck::CKR_PIN_LEN_RANGE,
            Error::PinLocked => ck::CKR_PIN_LOCKED,
            Error::SessionExists => ck::CKR_SESSION_EXISTS,
            Error::SessionHandleInvalid => ck::CKR_SESSION_HANDLE_INVALID,
            Error::SessionParallelNotSupported => ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            Error::SessionReadOnly => ck::CKR_SESSION_READ_ONLY,
            Error::SessionReadOnlyExists => ck::CKR_SESSION_READ_ONLY_EXISTS,
            Error::SessionReadWriteSoExists => ck::CKR_SESSION_READ_WRITE_SO_EXISTS,
            Error::SignatureInvalid => ck::CKR_SIGNATURE_INVALID,
            Error::SignatureLenRange => ck::CKR_SIGNATURE_LEN_RANGE,
            Error::SlotIdInvalid => ck::CKR_SLOT_ID_INVALID,
            Error::TemplateIncomplete(_) => ck::CKR_TEMPLATE_INCOMPLETE,
            Error::TemplateInconsistent(_) => ck::CKR_TEMPLATE_INCONSISTENT,
            Error::TokenNotPresent(_) => ck::CKR_TOKEN_NOT_PRESENT,
            Error::TokenNotRecognized(_) => ck::CKR_TOKEN_NOT_RECOGNIZED,
            Error::TokenWriteProtected => ck::CKR_TOKEN_WRITE_PROTECTED,
            Error::UnwrappingKeyHandleInvalid => ck::CKR_UNWRAPPING_KEY_HANDLE_INVALID,
            Error::UnwrappingKeyTypeInconsistent => ck::CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
            Error::UserAlreadyLoggedIn => ck::CKR_USER_ALREADY_LOGGED_IN,
            Error::UserAnotherAlreadyLoggedIn => ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            Error::UserNotLoggedIn => ck::CKR_USER_NOT_LOGGED_IN,
            Error::UserPinNotInitialized => ck::CKR_USER_PIN_NOT_INITIALIZED,
            Error::UserTypeInvalid => ck::CKR_USER_TYPE_INVALID,
            Error::WrappedKeyInvalid => ck::CKR_WRAPPED_KEY_INVALID,
            Error::WrappedKeyLenRange => ck::CKR_WRAPPED_KEY_LEN_RANGE,
            Error::WrappingKeyHandleInvalid => ck::CKR_WRAPPING_KEY_HANDLE_INVALID,
            Error::WrappingKeyTypeInconsistent => ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT,
            Error::Crypto => ck::CKR_FUNCTION_FAILED,
            Error::ActionProhibited => ck::CKR_ACTION_PROHIBITED,
            Error::FunctionNotParallel => ck::CKR_FUNCTION_NOT_PARALLEL,
            Error::RandomSeedNotSupported => ck::CKR_RANDOM_SEED_NOT_SUPPORTED,
            Error::NoEvent => ck::CKR_NO_EVENT,
            Error::Integrity(_) => ck::CKR_DEVICE_ERROR,
            Error::Store(_) => ck::CKR_DEVICE_ERROR,
            Error::Hsm { .. } => ck::CKR_DEVICE_ERROR,
            Error::Forwarded { rv, .. } => *rv,
            Error::HsmUnavailable(_) => ck::CKR_DEVICE_ERROR,
            Error::Config(_) => ck::CKR_GENERAL_ERROR,
            Error::General(_) => ck::CKR_GENERAL_ERROR,
            Error::HostMemory => ck::CKR_HOST_MEMORY,
            Error::MutexBad => ck::CKR_MUTEX_BAD,
            Error::CantLock => ck::CKR_CANT_LOCK,
            Error::NeedToCreateThreads => ck::CKR_NEED_TO_CREATE_THREADS,
            Error::RandomNoRng => ck::CKR_RANDOM_NO_RNG,
        }
    }

    /// Whether this is an ordinary answer to a caller's mistake (logged at debug) rather than a
    /// fault of the module, the store or the HSM (logged as an error).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Error::Integrity(_)
                | Error::Store(_)
                | Error::Hsm { .. }
                | Error::HsmUnavailable(_)
                | Error::Config(_)
                | Error::General(_)
                | Error::TokenNotRecognized(_)
                | Error::TokenNotPresent(_)
        ) || matches!(
            self,
            Error::Forwarded { rv, .. }
                if matches!(*rv, pkcs11_sys::CKR_DEVICE_ERROR | pkcs11_sys::CKR_GENERAL_ERROR
                    | pkcs11_sys::CKR_DEVICE_REMOVED | pkcs11_sys::CKR_DEVICE_MEMORY
                    | pkcs11_sys::CKR_TOKEN_NOT_PRESENT)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AttributeReadOnly(t) => write!(f, "{} is read-only", attribute_name(*t)),
            Error::AttributeSensitive(t) => write!(f, "{} is sensitive", attribute_name(*t)),
            Error::AttributeTypeInvalid(t) => write!(f, "attribute type {} is not valid here", attribute_name(*t)),
            Error::AttributeValueInvalid(t) => write!(f, "{} has an invalid value", attribute_name(*t)),
            Error::MechanismInvalid(m) => write!(f, "{} is not supported here", mechanism_name(*m)),
            Error::TemplateIncomplete(why) => write!(f, "template incomplete: {why}"),
            Error::TemplateInconsistent(why) => write!(f, "template inconsistent: {why}"),
            Error::TokenNotRecognized(why) => write!(f, "token not recognized: {why}"),
            Error::TokenNotPresent(why) => write!(f, "token not present: {why}"),
            Error::Integrity(why) => write!(f, "integrity check failed: {why}"),
            Error::Store(why) => write!(f, "store error: {why}"),
            Error::Hsm { function, rv } => write!(f, "the HSM answered {function} with {rv}"),
            Error::Forwarded { function, rv } => write!(f, "the HSM answered {function} with {}", rv_name(*rv)),
            Error::HsmUnavailable(why) => write!(f, "HSM unavailable: {why}"),
            Error::Config(why) => write!(f, "configuration error: {why}"),
            Error::General(why) => write!(f, "{why}"),
            Error::Crypto => write!(f, "cryptographic operation failed"),
            Error::PinIncorrect => write!(f, "wrong PIN"),
            Error::PinLocked => write!(f, "the PIN is locked after too many wrong PINs"),
            Error::PinLenRange => write!(f, "the PIN is too short or too long"),
            Error::UserNotLoggedIn => write!(f, "not logged in"),
            Error::UserPinNotInitialized => write!(f, "the token or its user PIN is not initialised"),
            Error::ObjectHandleInvalid => write!(f, "no such object"),
            Error::TokenWriteProtected => write!(
                f,
                "the token serves from its mirror and is read-only until `keygate restore` rebuilds its primary store"
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs11_sys as ck;

    #[test]
    fn mapping_table() {
        let table: &[(Error, Rv)] = &[
            (Error::ArgumentsBad, ck::CKR_ARGUMENTS_BAD),
            (Error::PinIncorrect, ck::CKR_PIN_INCORRECT),
            (Error::PinLocked, ck::CKR_PIN_LOCKED),
            (Error::TemplateInconsistent("x"), ck::CKR_TEMPLATE_INCONSISTENT),
            (Error::KeyFunctionNotPermitted, ck::CKR_KEY_FUNCTION_NOT_PERMITTED),
            (Error::Integrity("x".into()), ck::CKR_DEVICE_ERROR),
            (Error::Crypto, ck::CKR_FUNCTION_FAILED),
            (Error::General("x".into()), ck::CKR_GENERAL_ERROR),
            (Error::CryptokiNotInitialized, ck::CKR_CRYPTOKI_NOT_INITIALIZED),
            (Error::BufferTooSmall, ck::CKR_BUFFER_TOO_SMALL),
            (Error::SessionReadOnly, ck::CKR_SESSION_READ_ONLY),
            (Error::DeviceMemory, ck::CKR_DEVICE_MEMORY),
        ];
        for (e, rv) in table {
            assert_eq!(e.ck_rv(), *rv, "{e:?}");
        }
    }

    #[test]
    fn display_is_generic_for_crypto() {
        assert_eq!(Error::Crypto.to_string(), "cryptographic operation failed");
    }
}

/// The specification's name of a mechanism (`CKM_AES_GCM`), or its number in hex.
pub fn mechanism_name(m: u64) -> String {
    match cryptoki::mechanism::MechanismType::try_from(m) {
        Ok(t) if m < pkcs11_sys::CKM_VENDOR_DEFINED => t.to_string(),
        _ => format!("mechanism {m:#x}"),
    }
}

/// The specification's name of an attribute type (`CKA_VALUE`), or its number in hex.
pub fn attribute_name(t: u64) -> String {
    match cryptoki::object::AttributeType::try_from(t) {
        Ok(a) if t < pkcs11_sys::CKA_VENDOR_DEFINED => a.to_string(),
        _ => format!("attribute {t:#x}"),
    }
}

/// The specification's name of a return value (`CKR_PIN_INCORRECT`), or its number in hex.
pub fn rv_name(rv: Rv) -> String {
    use cryptoki::error::{Rv as CkRv, RvError};
    match CkRv::from(rv) {
        CkRv::Ok => "CKR_OK".into(),
        CkRv::Error(RvError::UnknownErrorCode(_) | RvError::VendorDefined(_)) => format!("{rv:#x}"),
        CkRv::Error(e) => rv_error_name(&e),
    }
}

/// The specification's name of a return value cryptoki reported (`CKR_PIN_INCORRECT`).
pub fn rv_error_name(e: &cryptoki::error::RvError) -> String {
    use cryptoki::error::RvError;
    if let RvError::UnknownErrorCode(rv) | RvError::VendorDefined(rv) = e {
        return format!("{rv:#x}");
    }
    let mut name = String::from("CKR");
    for c in format!("{e:?}").chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod rv_name_tests {
    #[test]
    fn names_follow_the_specification() {
        assert_eq!(super::rv_name(pkcs11_sys::CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
        assert_eq!(
            super::mechanism_name(pkcs11_sys::CKM_AES_KEY_WRAP_PAD),
            "CKM_AES_KEY_WRAP_PAD"
        );
        assert_eq!(super::attribute_name(pkcs11_sys::CKA_VALUE_LEN), "CKA_VALUE_LEN");
        assert_eq!(super::attribute_name(0x8000_1234), "attribute 0x80001234");
        assert_eq!(super::rv_name(pkcs11_sys::CKR_KEY_SIZE_RANGE), "CKR_KEY_SIZE_RANGE");
        assert_eq!(super::rv_name(0x8000_1234), "0x80001234");
    }
}
