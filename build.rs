//! Build script. The C types come from `pkcs11-sys` (no libclang needed); nothing is generated.
//!
//! The shared library is linked `-z nodelete`: a host's `dlclose` (p11-kit and others unload
//! modules at finalisation) leaves it mapped. Rust code registers thread-local destructors and
//! keeps process-wide state (the logger, the record of HSM libraries initialised before fork);
//! unmapping it under a live thread would make those point into nothing.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
