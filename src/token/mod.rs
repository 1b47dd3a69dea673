//! PKCS#11 semantics with no C types: slots and tokens, sessions and login state, object
//! handles, the attribute and usage policy, and operations. Guards both backends alike.

pub mod attributes;
mod audited;
pub mod dates;
pub mod handles;
pub mod mechanisms;
pub mod object;
pub mod operations;
pub mod pinning;
pub mod policy;
pub mod provider;
pub mod session;

pub use provider::{provider, Provider};
