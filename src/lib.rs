//! keygate: a PKCS#11 provider.
//!
//! The shared library `libkeygate_pkcs11.so` implements the PKCS#11 3.0 C ABI. Behind each
//! token sits a [`backend::Backend`]: the self-managed store (keys sealed under a KEK that only
//! the HSM plus the PIN can re-create) or, later, an HSM reached through cryptoki.
//!
//! Data flows one way: C caller → `ffi` → `token` → `audit` → a `Backend` → `crypto` → `config`
//! → `model` (`docs/architecture.md`; `tests/layering.rs` keeps it so). Only `ffi` (the C ABI
//! keygate exports), `sys` (the OS calls: locked pages, the process id across fork) and
//! `backend/hsm/raw.rs` (the C ABI of the HSM library, for the calls cryptoki lacks) touch raw
//! pointers and may use `unsafe`.
#![deny(unsafe_code)]

pub mod audit;
pub mod backend;
pub mod config;
pub mod crypto;
pub mod error;
pub mod fastmap;
pub mod ffi;
pub mod logging;
pub mod model;
pub mod sys;
pub mod token;
