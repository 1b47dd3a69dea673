//! Forwarded operations. Each starts on the HSM at the application's `C_*Init`, so that an
//! init's errors (a key the mechanism cannot use, a key of the wrong size) are the init's, and a
//! `C_Login(CKU_CONTEXT_SPECIFIC)` finds the operation it authorises. Single-part calls reach
//! the HSM as single-part calls, multi-part calls as multi-part calls, except:
//! - mechanisms with only a single-part form (`CKM_ECDSA`, `CKM_EDDSA`, raw RSA): keygate
//!   collects what the application feeds and makes one call at the end;
//! - `CKM_ECDSA_SHA*` for an HSM with only `CKM_ECDSA`: keygate hashes, the HSM signs the digest;
//! - AES-GCM and the key-wrap mechanisms: the input is collected and sent as one call, so that
//!   no plaintext is released before its tag is checked (as keygate's own AEAD does);
//! - AES-CBC, CBC-PAD and ECB stream: every update returns the whole blocks it completes;
//!   AES-CTR returns every byte.
//!
//! An operation the application leaves (a new `C_*Init` after an error, `C_SessionCancel`, an
//! error keygate raised itself) is ended on the HSM too, so the HSM session is free for the
//! next one.

use std::sync::Arc;

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session as CkSession;
use zeroize::Zeroizing;

use super::raw::{RawFunctions, SinglePart};
use super::{convert, fwd, Shared};
use crate::backend::{CipherOp, DigestOp, SignOp, VerifyOp};
use crate::crypto::digest::Hasher;
use crate::error::{Error, Result};
use crate::model::mechanisms::{DigestAlg, Mechanism};

/// Which kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Digest,
}

impl Kind {
    /// How many kinds there are (one HSM session each, `HsmSession`).
    pub(super) const COUNT: usize = 5;

    fn init_name(self) -> &'static str {
        match self {
            Kind::Sign => "C_SignInit",
            Kind::Verify => "C_VerifyInit",
            Kind::Encrypt => "C_EncryptInit",
            Kind::Decrypt => "C_DecryptInit",
            Kind::Digest => "C_DigestInit",
        }
    }
}

/// A room for a signature of any key keygate forwards (RSA 4096: 512 bytes); a module that
/// needs more says so and is asked again.
const SIGNATURE_ROOM: usize = 512;

/// Whether keygate collects the input of `mech` and sends it in one call at the end.
fn collected(kind: Kind, mech: &Mechanism) -> bool {
    match kind {
        Kind::Sign | Kind::Verify => matches!(
            mech,
            Mechanism::Ecdsa | Mechanism::Eddsa | Mechanism::RsaPkcs | Mechanism::RsaPss(_)
        ),
        Kind::Encrypt | Kind::Decrypt => !matches!(
            mech,
            Mechanism::AesCbc { .. } | Mechanism::AesCbcPad { .. } | Mechanism::AesEcb | Mechanism::AesCtr { .. }
        ),
        Kind::Digest => false,
    }
}

/// An operation running on the HSM.
pub(super) struct Op {
    session: Shared,
    raw: Arc<RawFunctions>,
    kind: Kind,
    /// The mechanism as the HSM was given it.
    pub(super) mech: Mechanism,
    key: Option<ObjectHandle>,
    /// The input collected for a single call at the end (see [`collected`]).
    input: Option<crate::crypto::HeldBytes>,
    /// An update reached the HSM: the operation ends with a `C_*Final`.
    streamed: bool,
    /// The HSM's operation was started and may still be running: ended on drop.
    live: bool,
}

impl Op {
    /// Starts `kind` with `mech` and `key` on the HSM session: a keyed operation at once, so
    /// that the init's errors are the init's; a digest (no key, so no such errors) at its first
    /// data call, because an HSM may run one operation per session (SoftHSM2 does) and a digest
    /// beside an encryption is common (the dual-function calls).
    pub(super) fn start(
        session: Shared,
        raw: Arc<RawFunctions>,
        kind: Kind,
        mech: Mechanism,
        key: Option<ObjectHandle>,
    ) -> Result<Op> {
        let mut op = Op {
            input: collected(kind, &mech).then(crate::crypto::HeldBytes::default),
            session,
            raw,
            kind,
            mech,
            key,
            streamed: false,
            live: false,
        };
        if kind != Kind::Digest {
            op.begin()?;
        }
        Ok(op)
    }

    /// The HSM's `C_*Init`, unless it was made already.
    fn begin(&mut self) -> Result<()> {
        if self.live {
            return Ok(());
        }
        let mut scratch = convert::Scratch::default();
        let m = convert::mechanism_out(&self.mech, &mut scratch)?;
        let s = self.session.lock();
        let key = || self.key.ok_or(Error::KeyHandleInvalid);
        match self.kind {
            Kind::Sign => s.sign_init(&m, key()?),
            Kind::Verify => s.verify_init(&m, key()?),
            Kind::Encrypt => s.encrypt_init(&m, key()?),
            Kind::Decrypt => s.decrypt_init(&m, key()?),
            Kind::Digest => s.digest_init(&m),
        }
        .map_err(fwd(self.kind.init_name()))?;
        drop(s);
        self.live = true;
        Ok(())
    }

    /// A cryptoki call on the operation's session; the operation has ended on success.
    fn call<T>(
        &mut self,
        function: &'static str,
        ends: bool,
        f: impl FnOnce(&CkSession) -> cryptoki::error::Result<T>,
    ) -> Result<T> {
        self.begin()?;
        let r = f(&self.session.lock()).map_err(fwd(function))?;
        if ends {
            self.live = false;
        }
        Ok(r)
    }

    /// A single-part call through the library's own function list; the operation has ended on
    /// success.
    fn single(&mut self, which: SinglePart, data: &[u8], room: usize) -> std::result::Result<Vec<u8>, u64> {
        let out = {
            let s = self.session.lock();
            self.raw.single(which, s.handle(), data, room)
        }?;
        self.live = false;
        Ok(out)
    }

    /// The single-part call of this operation, as a keygate error.
    fn single_fwd(&mut self, function: &'static str, which: SinglePart, data: &[u8], room: usize) -> Result<Vec<u8>> {
        self.begin()?;
        self.single(which, data, room)
            .map_err(|rv| Error::Forwarded { function, rv })
    }

    /// Feeds `data`: collected, or sent as an update.
    fn feed(
        &mut self,
        function: &'static str,
        data: &[u8],
        f: impl FnOnce(&CkSession) -> cryptoki::error::Result<()>,
    ) -> Result<()> {
        if let Some(input) = &mut self.input {
            input.extend_from_slice(data);
            return Ok(());
        }
        self.streamed = true;
        self.call(function, false, f)
    }

    /// Ends the HSM's operation that the application left: the call that ends it whatever it
    /// answers (PKCS#11 ends an operation on every error but a short buffer).
    fn end(&mut self) {
        let s = self.session.lock();
        let h = s.handle();
        let ended = match (self.kind, self.streamed) {
            (Kind::Sign, false) => self.raw.single(SinglePart::Sign, h, &[], SIGNATURE_ROOM).map(drop),
            (Kind::Sign, true) => s.sign_final().map(drop).map_err(|_| 0),
            (Kind::Verify, false) => self.raw.verify(h, &[], &[0]),
            (Kind::Verify, true) => s.verify_final(&[0]).map_err(|_| 0),
            (Kind::Encrypt, false) => self.raw.single(SinglePart::Encrypt, h, &[], 64).map(drop),
            (Kind::Encrypt, true) => s.encrypt_final().map(drop).map_err(|_| 0),
            (Kind::Decrypt, false) => self.raw.single(SinglePart::Decrypt, h, &[], 64).map(drop),
            (Kind::Decrypt, true) => s.decrypt_final().map(drop).map_err(|_| 0),
            (Kind::Digest, false) => self.raw.single(SinglePart::Digest, h, &[], 64).map(drop),
            (Kind::Digest, true) => s.digest_final().map(drop).map_err(|_| 0),
        };
        log::debug!(
            "ended an HSM {:?} operation the application left ({})",
            self.kind,
            if ended.is_ok() {
                "completed"
            } else {
                "ended by its error"
            }
        );
    }

    /// `C_DigestKey` on the HSM.
    pub(super) fn digest_key(&mut self, key: ObjectHandle) -> Result<()> {
        self.streamed = true;
        self.call("C_DigestKey", false, |s| s.digest_key(key))
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if self.live {
            self.end();
        }
    }
}

impl SignOp for Op {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.feed("C_SignUpdate", data, |s| s.sign_update(data))
    }
    fn finish(mut self: Box<Self>) -> Result<Vec<u8>> {
        match self.input.take() {
            Some(input) => self.single_fwd("C_Sign", SinglePart::Sign, &input, SIGNATURE_ROOM),
            None => self.call("C_SignFinal", true, |s| s.sign_final()),
        }
    }
    fn once(mut self: Box<Self>, data: &[u8]) -> Result<Vec<u8>> {
        self.single_fwd("C_Sign", SinglePart::Sign, data, SIGNATURE_ROOM)
    }
}

impl VerifyOp for Op {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.feed("C_VerifyUpdate", data, |s| s.verify_update(data))
    }
    fn finish(mut self: Box<Self>, signature: &[u8]) -> Result<()> {
        match self.input.take() {
            Some(input) => VerifyOp::once(self, &input, signature),
            None => self.call("C_VerifyFinal", true, |s| s.verify_final(signature)),
        }
    }
    fn once(mut self: Box<Self>, data: &[u8], signature: &[u8]) -> Result<()> {
        let r = {
            let s = self.session.lock();
            self.raw.verify(s.handle(), data, signature)
        };
        // A verification ends with its answer, valid or not.
        if matches!(
            r,
            Ok(()) | Err(pkcs11_sys::CKR_SIGNATURE_INVALID | pkcs11_sys::CKR_SIGNATURE_LEN_RANGE)
        ) {
            self.live = false;
        }
        r.map_err(|rv| Error::Forwarded {
            function: "C_Verify",
            rv,
        })
    }
}

impl DigestOp for Op {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.feed("C_DigestUpdate", data, |s| s.digest_update(data))
    }
    fn finish(mut self: Box<Self>) -> Result<Vec<u8>> {
        self.call("C_DigestFinal", true, |s| s.digest_final())
    }
    fn once(mut self: Box<Self>, data: &[u8]) -> Result<Vec<u8>> {
        self.single_fwd("C_Digest", SinglePart::Digest, data, 64)
    }
    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// `CKM_ECDSA_SHA*` for an HSM that offers only `CKM_ECDSA`: keygate hashes the data, the HSM
/// signs or verifies the digest with the `CKM_ECDSA` operation started at init.
pub(super) struct Prehashed {
    op: Op,
    hasher: Hasher,
}

impl Prehashed {
    pub(super) fn new(op: Op, d: DigestAlg) -> Prehashed {
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

/// A forwarded encryption or decryption (see the module's notes for which stream).
pub(super) struct Cipher {
    op: Op,
    /// Input the HSM holds back so far (a partial block; for CBC-PAD decryption, the last
    /// block), so that a length query is answered without asking the HSM.
    pending: usize,
}

const AES_BLOCK: usize = 16;

impl Cipher {
    pub(super) fn new(op: Op) -> Cipher {
        Cipher { op, pending: 0 }
    }

    fn encrypt(&self) -> bool {
        self.op.kind == Kind::Encrypt
    }
}

impl CipherOp for Cipher {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(input) = &mut self.op.input {
            input.extend_from_slice(data);
            return Ok(Zeroizing::new(Vec::new()));
        }
        self.op.streamed = true;
        let out = if self.encrypt() {
            self.op.call("C_EncryptUpdate", false, |s| s.encrypt_update(data))?
        } else {
            self.op.call("C_DecryptUpdate", false, |s| s.decrypt_update(data))?
        };
        self.pending = (self.pending + data.len()).saturating_sub(out.len());
        Ok(Zeroizing::new(out))
    }
    fn update_len(&self, input_len: usize) -> usize {
        if self.op.input.is_some() {
            return 0;
        }
        let total = self.pending + input_len;
        // CTR is a stream: every byte comes back at once.
        if matches!(self.op.mech, Mechanism::AesCtr { .. }) {
            return total;
        }
        let whole = total / AES_BLOCK * AES_BLOCK;
        // CBC-PAD decryption keeps the last whole block back: it may be the padding.
        let keeps_last = !self.encrypt() && matches!(self.op.mech, Mechanism::AesCbcPad { .. });
        if keeps_last && whole == total {
            whole.saturating_sub(AES_BLOCK)
        } else {
            whole
        }
    }
    fn finish(mut self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(input) = self.op.input.take() {
            return self.once(&input);
        }
        let out = if self.encrypt() {
            self.op.call("C_EncryptFinal", true, |s| s.encrypt_final())?
        } else {
            self.op.call("C_DecryptFinal", true, |s| s.decrypt_final())?
        };
        Ok(Zeroizing::new(out))
    }
    fn once(mut self: Box<Self>, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if self.encrypt() {
            let room = data.len() + 64;
            return self
                .op
                .single_fwd("C_Encrypt", SinglePart::Encrypt, data, room)
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
        match self.op.single(SinglePart::Decrypt, data, data.len().max(AES_BLOCK)) {
            Ok(v) => Ok(Zeroizing::new(v)),
            Err(pkcs11_sys::CKR_GENERAL_ERROR) if gcm_tag.is_some() => Err(Error::EncryptedDataInvalid),
            Err(rv) => Err(Error::Forwarded {
                function: "C_Decrypt",
                rv,
            }),
        }
    }
}
