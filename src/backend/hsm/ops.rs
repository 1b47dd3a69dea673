//! Forwarded operations: sign, verify and digest started on the HSM at the first data call,
//! `CKM_ECDSA_SHA*` hashed by keygate for an HSM with only `CKM_ECDSA`, and encryption and
//! decryption sent as one call.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism as CkMech;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session as CkSession;
use zeroize::Zeroizing;

use super::{convert, fwd, Shared};
use crate::backend::local::crypto::digest::Hasher;
use crate::backend::{CipherOp, DigestOp, SignOp, VerifyOp};
use crate::error::{Error, Result};
use crate::token::mechanisms::{DigestAlg, Mechanism};

/// A forwarded sign, verify or digest. The HSM operation starts with the first data call:
/// `C_Sign` in one step for the single-part form (mechanisms such as `CKM_ECDSA` have no
/// multi-part form on many HSMs), `C_*Init` + `C_*Update` for the multi-part form.
pub(super) struct Op {
    pub(super) session: Shared,
    pub(super) mech: Mechanism,
    key: Option<ObjectHandle>,
    started: bool,
}

type CkResult<T> = cryptoki::error::Result<T>;

impl Op {
    pub(super) fn new(session: Shared, mech: Mechanism, key: Option<ObjectHandle>) -> Op {
        Op {
            session,
            mech,
            key,
            started: false,
        }
    }

    pub(super) fn key(&self) -> Result<ObjectHandle> {
        self.key.ok_or(Error::KeyHandleInvalid)
    }

    /// One HSM call on this operation's session, given its mechanism; the HSM's answer as it
    /// gave it (the outer error is keygate's: a mechanism it cannot express).
    fn with_raw<T>(&self, f: impl FnOnce(&CkSession, &CkMech<'_>) -> CkResult<T>) -> Result<CkResult<T>> {
        let mut scratch = Vec::new();
        let m = convert::mechanism_out(&self.mech, &mut scratch)?;
        let s = self.session.lock();
        Ok(f(&s, &m))
    }

    /// As [`Op::with_raw`], with an HSM error reported for `function`.
    pub(super) fn with<T>(
        &self,
        function: &'static str,
        f: impl FnOnce(&CkSession, &CkMech<'_>) -> CkResult<T>,
    ) -> Result<T> {
        self.with_raw(f)?.map_err(fwd(function))
    }

    /// A multi-part data call, starting the HSM operation (`init`) on the first one.
    pub(super) fn feed(
        &mut self,
        init: (&'static str, impl FnOnce(&CkSession, &CkMech<'_>) -> CkResult<()>),
        update: (&'static str, impl FnOnce(&CkSession) -> CkResult<()>),
    ) -> Result<()> {
        if !self.started {
            self.with(init.0, init.1)?;
            self.started = true;
        }
        self.with(update.0, |s, _| (update.1)(s))
    }
}

impl SignOp for Op {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        let key = self.key()?;
        self.feed(
            ("C_SignInit", |s, m| s.sign_init(m, key)),
            ("C_SignUpdate", |s| s.sign_update(data)),
        )
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        if !self.started {
            return SignOp::once(self, &[]);
        }
        self.with("C_SignFinal", |s, _| s.sign_final())
    }
    fn once(self: Box<Self>, data: &[u8]) -> Result<Vec<u8>> {
        let key = self.key()?;
        self.with("C_Sign", |s, m| s.sign(m, key, data))
    }
}

impl VerifyOp for Op {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        let key = self.key()?;
        self.feed(
            ("C_VerifyInit", |s, m| s.verify_init(m, key)),
            ("C_VerifyUpdate", |s| s.verify_update(data)),
        )
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        if !self.started {
            return VerifyOp::once(self, &[], signature);
        }
        self.with("C_VerifyFinal", |s, _| s.verify_final(signature))
    }
    fn once(self: Box<Self>, data: &[u8], signature: &[u8]) -> Result<()> {
        let key = self.key()?;
        self.with("C_Verify", |s, m| s.verify(m, key, data, signature))
    }
}

impl DigestOp for Op {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.feed(
            ("C_DigestInit", |s, m| s.digest_init(m)),
            ("C_DigestUpdate", |s| s.digest_update(data)),
        )
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        if !self.started {
            return DigestOp::once(self, &[]);
        }
        self.with("C_DigestFinal", |s, _| s.digest_final())
    }
    fn once(self: Box<Self>, data: &[u8]) -> Result<Vec<u8>> {
        self.with("C_Digest", |s, m| s.digest(m, data))
    }
    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// `CKM_ECDSA_SHA*` for an HSM that offers only `CKM_ECDSA`: keygate hashes the data, the HSM
/// signs or verifies the digest with `CKM_ECDSA`.
pub(super) struct Prehashed {
    op: Op,
    hasher: Hasher,
}

impl Prehashed {
    pub(super) fn new(mut op: Op, d: DigestAlg) -> Prehashed {
        op.mech = Mechanism::Ecdsa;
        Prehashed {
            op,
            hasher: Hasher::new(d),
        }
    }
}

impl SignOp for Prehashed {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Vec<u8>> {
        let digest = self.hasher.finish();
        SignOp::once(Box::new(self.op), &digest)
    }
}

impl VerifyOp for Prehashed {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        Ok(())
    }
    fn finish(self: Box<Self>, signature: &[u8]) -> Result<()> {
        let digest = self.hasher.finish();
        VerifyOp::once(Box::new(self.op), &digest, signature)
    }
}

/// A forwarded encryption or decryption. Multi-part input is collected and sent as one
/// `C_Encrypt`/`C_Decrypt` (as keygate's own AEAD does): `C_*Update` returns nothing, and an
/// AEAD plaintext is never released before its tag is checked.
pub(super) struct Cipher {
    pub(super) op: Op,
    pub(super) encrypt: bool,
    pub(super) input: Zeroizing<Vec<u8>>,
}

impl CipherOp for Cipher {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.input.extend_from_slice(data);
        Ok(Zeroizing::new(Vec::new()))
    }
    fn finish(mut self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        let input = std::mem::take(&mut *self.input);
        let r = self.once(&input);
        drop(Zeroizing::new(input));
        r
    }
    fn update_len(&self, _input_len: usize) -> usize {
        0
    }
    fn once(self: Box<Self>, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.op.key()?;
        if self.encrypt {
            return self
                .op
                .with("C_Encrypt", |s, m| s.encrypt(m, key, data))
                .map(Zeroizing::new);
        }
        // AES-GCM decryption answers as keygate's own does: input shorter than the tag is
        // CKR_ENCRYPTED_DATA_LEN_RANGE, and a failed tag check CKR_ENCRYPTED_DATA_INVALID
        // (SoftHSM2 2.6.1 says CKR_GENERAL_ERROR for both; its tag check is the only way a
        // decryption fails on good handles and parameters).
        let gcm_tag = match &self.op.mech {
            Mechanism::AesGcm { tag_bits, .. } => Some((*tag_bits / 8) as usize),
            _ => None,
        };
        if gcm_tag.is_some_and(|t| data.len() < t) {
            return Err(Error::EncryptedDataLenRange);
        }
        match self.op.with_raw(|s, m| s.decrypt(m, key, data))? {
            Ok(v) => Ok(Zeroizing::new(v)),
            Err(CkError::Pkcs11(cryptoki::error::RvError::GeneralError, _)) if gcm_tag.is_some() => {
                Err(Error::EncryptedDataInvalid)
            }
            Err(e) => Err(fwd("C_Decrypt")(e)),
        }
    }
}
