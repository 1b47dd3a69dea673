//! The handles an application holds, as distinct types at the token layer's API: a session
//! handle cannot be passed where an object handle is meant.

/// A PKCS#11 session handle (`CK_SESSION_HANDLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHandle(pub u64);

/// A PKCS#11 object handle (`CK_OBJECT_HANDLE`), valid for the application's sessions on one
/// slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectHandle(pub u64);
