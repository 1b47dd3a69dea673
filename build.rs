//! Build script. The C types come from `pkcs11-sys` (no libclang needed); nothing is generated
//! here yet. Rebuild only when the build script itself changes.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
