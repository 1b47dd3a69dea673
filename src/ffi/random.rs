//! Random number generation (PKCS#11 3.0 §5.15).

use pkcs11_sys::*;

use super::entry;
use crate::error::Error;
use crate::model::handles::SessionHandle;
use crate::token::provider;

entry! {
    fn C_SeedRandom(hSession: CK_SESSION_HANDLE, pSeed: CK_BYTE_PTR, ulSeedLen: CK_ULONG) {
        let p = provider()?;
        p.session_info(SessionHandle(hSession))?;
        if pSeed.is_null() && ulSeedLen > 0 {
            return Err(Error::ArgumentsBad);
        }
        if ulSeedLen > 1 << 20 {
            return Err(Error::ArgumentsBad);
        }
        let seed = if ulSeedLen == 0 {
            &[][..]
        } else {
            // SAFETY: the caller's buffer holds `ulSeedLen` bytes, checked non-NULL above.
            unsafe { std::slice::from_raw_parts(pSeed, ulSeedLen as usize) }
        };
        // Self-managed: the OS generator takes no seed (CKR_RANDOM_SEED_NOT_SUPPORTED); hsm
        // mode: the HSM's generator, which may.
        p.seed_random(SessionHandle(hSession), seed)
    }

    fn C_GenerateRandom(hSession: CK_SESSION_HANDLE, RandomData: CK_BYTE_PTR, ulRandomLen: CK_ULONG) {
        let p = provider()?;
        if RandomData.is_null() && ulRandomLen > 0 {
            return Err(Error::ArgumentsBad);
        }
        if ulRandomLen > 1 << 30 {
            return Err(Error::ArgumentsBad);
        }
        let mut buf = vec![0u8; ulRandomLen as usize];
        p.random(SessionHandle(hSession), &mut buf)?;
        if !buf.is_empty() {
            // SAFETY: the caller's buffer holds `ulRandomLen` bytes.
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), RandomData, buf.len()) };
        }
        Ok(())
    }
}
