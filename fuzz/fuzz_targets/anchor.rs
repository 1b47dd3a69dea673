#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keygate_pkcs11::ffi::fuzz::anchor(data));
