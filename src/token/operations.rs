//! Cryptographic operations on a session: mechanism and key-usage policy, operation slots, and
//! the two-call length convention. A finished output that the caller's buffer could not take is
//! kept in the slot until the caller asks again, so no operation runs twice.

use crate::model::handles::{ObjectHandle, SessionHandle};

use zeroize::Zeroizing;

use super::provider::Provider;
use super::session::{Active, Session};
use crate::backend::{Backend, CipherOp, ObjectId};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, revocation, AttrMap};
use crate::model::dates;
use crate::model::mechanisms::{mflag, Mechanism, Usage};

/// The answer to a call that produces output.
#[derive(Debug)]
pub enum Out {
    /// The output; it fitted. Wiped once copied to the caller.
    Data(Zeroizing<Vec<u8>>),
    /// An output that is not secret (ciphertext, a wrapped key): copied, not wiped.
    Public(Vec<u8>),
    /// A length query (NULL buffer): the length the output needs.
    Len(usize),
    /// The buffer was too short: the length needed (`CKR_BUFFER_TOO_SMALL`, operation kept).
    TooSmall(usize),
    /// The output went straight into the caller's buffer: its length.
    Written(usize),
}

/// Hands out an operation's result under the two-call convention.
fn deliver<T>(
    slot: &mut Option<Active<T>>,
    cap: Option<usize>,
    run: impl FnOnce(T) -> Result<Zeroizing<Vec<u8>>>,
) -> Result<Out> {
    let out = match slot.take() {
        None => return Err(Error::OperationNotInitialized),
        Some(Active::Done(v)) => v,
        // An error ends the operation: the slot stays empty.
        Some(Active::Running(op)) => run(op)?,
    };
    size_out(slot, cap, out)
}

pub(super) fn size_out<T>(slot: &mut Option<Active<T>>, cap: Option<usize>, out: Zeroizing<Vec<u8>>) -> Result<Out> {
    let n = out.len();
    match cap {
        None => {
            *slot = Some(Active::Done(out));
            Ok(Out::Len(n))
        }
        Some(c) if c < n => {
            *slot = Some(Active::Done(out));
            Ok(Out::TooSmall(n))
        }
        Some(_) => Ok(Out::Data(out)),
    }
}

fn running<T>(slot: &mut Option<Active<T>>) -> Result<&mut T> {
    match slot {
        Some(Active::Running(op)) => Ok(op),
        Some(Active::Done(_)) => Err(Error::OperationActive),
        None => Err(Error::OperationNotInitialized),
    }
}

/// Which operation a `CKA_ALWAYS_AUTHENTICATE` key's login is for.
#[derive(Clone, Copy)]
enum Waits {
    Sign,
    Decrypt,
}

/// Refuses a data call of an operation still waiting for its `C_Login(CKU_CONTEXT_SPECIFIC)`:
/// `CKR_USER_NOT_LOGGED_IN`, and the operation ends (as the specification and SoftHSM2 do).
fn authorised(s: &mut Session, op: Waits) -> Result<()> {
    let waits = match op {
        Waits::Sign => &mut s.awaiting_login.sign,
        Waits::Decrypt => &mut s.awaiting_login.decrypt,
    };
    if !std::mem::take(waits) {
        return Ok(());
    }
    // Only a running operation waits: one whose output waits to be fetched was authorised.
    match op {
        Waits::Sign => s.sign = None,
        Waits::Decrypt => s.decrypt = None,
    }
    log::warn!(
        "an operation with a CKA_ALWAYS_AUTHENTICATE key was refused: no C_Login(CKU_CONTEXT_SPECIFIC) before it"
    );
    Err(Error::UserNotLoggedIn)
}

/// Whether the key's usage attribute and allowed mechanisms permit this use.
fn usage_permits(attrs: &AttrMap, usage: Usage, mech: &Mechanism) -> Result<()> {
    if !attrs.flag(usage.attribute()) {
        return Err(Error::KeyFunctionNotPermitted);
    }
    if let Some(allowed) = attrs.allowed_mechanisms() {
        if !allowed.contains(&mech.ty()) {
            return Err(Error::MechanismInvalid(mech.ty()));
        }
    }
    Ok(())
}

/// Whether a key may still make something new: sign, encrypt, wrap or derive. A revoked key
/// (`CKA_KEYGATE_REVOKED`) and a key outside its `CKA_START_DATE`..=`CKA_END_DATE` may not; both
/// may still verify and decrypt what was made before.
fn in_service(attrs: &AttrMap, usage: Usage) -> Result<()> {
    if !usage.makes() {
        return Ok(());
    }
    let label = || String::from_utf8_lossy(attrs.get(attr::LABEL).unwrap_or_default()).into_owned();
    if let Some(reason) = attrs.ulong(attr::KEYGATE_REVOKED)? {
        log::warn!(
            "key {:?} is revoked ({}): refused for {}",
            label(),
            revocation::name(reason).unwrap_or("unknown reason"),
            usage.name()
        );
        return Err(Error::KeyFunctionNotPermitted);
    }
    let date = |ty| service_date(attrs, ty);
    if date(attr::START_DATE).is_none() && date(attr::END_DATE).is_none() {
        // Most keys have no validity dates: no clock reading per operation.
        return Ok(());
    }
    let today = dates::today();
    if let Some(start) = date(attr::START_DATE).filter(|s| *s > &today[..]) {
        log::warn!(
            "key {:?} is not in service before {}: refused for {}",
            label(),
            String::from_utf8_lossy(start),
            usage.name()
        );
        return Err(Error::KeyFunctionNotPermitted);
    }
    if let Some(end) = date(attr::END_DATE).filter(|e| *e < &today[..]) {
        log::warn!(
            "key {:?} went out of service after {}: refused for {}",
            label(),
            String::from_utf8_lossy(end),
            usage.name()
        );
        return Err(Error::KeyFunctionNotPermitted);
    }
    Ok(())
}

/// What [`Provider::keyed`] last concluded on this thread: that the key with these attributes
/// may be used with this mechanism for this use under this slot's policy (and whether it waits
/// for a context-specific login). Those checks read a dozen attributes, a third of keygate's
/// own work in a 64-byte AES-GCM operation; an application uses one key the same way over and
/// over. The verdict is taken again only for the very same attributes: the `Arc` the backend
/// handed out, kept here, which nothing changes in place (a change to a key gives a new one),
/// and which no other key or token can have while it is kept. Never for a key with validity
/// dates, whose verdict depends on the day. The key's pins and the mechanism's parameters are
/// checked every time.
struct Judged {
    slot: usize,
    attrs: std::sync::Arc<AttrMap>,
    mech: u64,
    usage: Usage,
    always_authenticate: bool,
}

thread_local! {
    static LAST_JUDGED: std::cell::RefCell<Option<Judged>> = const { std::cell::RefCell::new(None) };
}

/// The verdict remembered for exactly these attributes, mechanism, use and slot, if any.
fn judged(slot: usize, attrs: &std::sync::Arc<AttrMap>, mech: u64, usage: Usage) -> Option<bool> {
    LAST_JUDGED.with_borrow(|j| {
        j.as_ref()
            .filter(|j| j.slot == slot && j.mech == mech && j.usage == usage && std::sync::Arc::ptr_eq(&j.attrs, attrs))
            .map(|j| j.always_authenticate)
    })
}

fn remember_judged(slot: usize, attrs: &std::sync::Arc<AttrMap>, mech: u64, usage: Usage, always_authenticate: bool) {
    LAST_JUDGED.set(Some(Judged {
        slot,
        attrs: attrs.clone(),
        mech,
        usage,
        always_authenticate,
    }));
}

/// A validity date of a key (`CKA_START_DATE`, `CKA_END_DATE`), if it has one: an empty value
/// (the default) is none.
fn service_date(attrs: &AttrMap, ty: u64) -> Option<&[u8]> {
    attrs
        .get(ty)
        .filter(|d| d.len() == 8 && d.iter().all(u8::is_ascii_digit))
}

/// Whether a key has validity dates (checked against the day, so never remembered).
fn dated(attrs: &AttrMap) -> bool {
    service_date(attrs, attr::START_DATE).is_some() || service_date(attrs, attr::END_DATE).is_some()
}

/// A keyed operation ready to start: the session, the key, its backend.
pub(super) struct Keyed<'a> {
    pub(super) session: super::session::SharedSession,
    pub(super) id: ObjectId,
    /// Borrowed from the provider the call holds: cloning the `Arc` would touch a reference
    /// count every thread using the token shares.
    pub(super) backend: &'a dyn Backend,
    /// The key is a private key with `CKA_ALWAYS_AUTHENTICATE`: each operation with it waits
    /// for a `C_Login(CKU_CONTEXT_SPECIFIC)`.
    pub(super) always_authenticate: bool,
}

impl Provider {
    /// Common start of every keyed operation: the session, the mechanism (offered for
    /// `usage`), the key (visible, permitting `usage`).
    pub(super) fn keyed(&self, h: u64, mech: &Mechanism, usage: Usage, key: u64) -> Result<Keyed<'_>> {
        let s = self.session(h)?;
        let (id, backend, always_authenticate) = {
            let g = s.lock();
            let slot = self.slot_of(&g);
            let backend: &dyn Backend = &*slot.backend;
            slot.check(mech, usage.flag())?;
            let (id, attrs) = self.key_object(&g, key, Error::KeyHandleInvalid)?;
            let known = judged(g.slot, &attrs, mech.ty(), usage);
            if known.is_none() {
                if !matches!(
                    attrs.class()?,
                    class::PUBLIC_KEY | class::PRIVATE_KEY | class::SECRET_KEY
                ) {
                    return Err(Error::KeyHandleInvalid);
                }
                // Checked here, at initialisation, for both modes: an HSM reached lazily would
                // only notice at the first data call.
                if let Some(types) = mech.key_types() {
                    if !attrs.key_type().is_some_and(|k| types.contains(&k)) {
                        return Err(Error::KeyTypeInconsistent);
                    }
                }
            }
            let always = match known {
                Some(always) => always,
                None => {
                    usage_permits(&attrs, usage, mech)?;
                    in_service(&attrs, usage)?;
                    slot.policy.check_key_size(&attrs)?;
                    let always = attrs.class()? == class::PRIVATE_KEY && attrs.flag(attr::ALWAYS_AUTHENTICATE);
                    if !dated(&attrs) {
                        remember_judged(g.slot, &attrs, mech.ty(), usage, always);
                    }
                    always
                }
            };
            slot.pins.check(backend, &id, &attrs)?;
            (id, backend, always)
        };
        Ok(Keyed {
            session: s,
            id,
            backend,
            always_authenticate,
        })
    }

    pub(super) fn sign_init_unaudited(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        let k = self.keyed(h, mech, Usage::Sign, key)?;
        let mut s = k.session.lock();
        if s.sign.is_some() {
            return Err(Error::OperationActive);
        }
        s.sign = Some(Active::Running(k.backend.sign(h, mech, &k.id)?));
        s.awaiting_login.sign = k.always_authenticate;
        Ok(())
    }
    pub fn sign(&self, h: SessionHandle, data: &[u8], cap: Option<usize>) -> Result<Out> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        authorised(&mut s, Waits::Sign)?;
        deliver(&mut s.sign, cap, |op| op.once(data).map(Zeroizing::new))
    }
    pub fn sign_update(&self, h: SessionHandle, data: &[u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        authorised(&mut s, Waits::Sign)?;
        let r = running(&mut s.sign)?.update(data);
        if r.is_err() {
            s.sign = None;
        }
        r
    }
    pub fn sign_final(&self, h: SessionHandle, cap: Option<usize>) -> Result<Out> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        authorised(&mut s, Waits::Sign)?;
        deliver(&mut s.sign, cap, |op| op.finish().map(Zeroizing::new))
    }

    pub(super) fn verify_init_unaudited(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        let k = self.keyed(h, mech, Usage::Verify, key)?;
        let mut s = k.session.lock();
        if s.verify.is_some() {
            return Err(Error::OperationActive);
        }
        s.verify = Some(k.backend.verify(h, mech, &k.id)?);
        Ok(())
    }
    pub fn verify(&self, h: SessionHandle, data: &[u8], signature: &[u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let op = s.lock().verify.take().ok_or(Error::OperationNotInitialized)?;
        op.once(data, signature)
    }
    pub fn verify_update(&self, h: SessionHandle, data: &[u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        let r = s.verify.as_mut().ok_or(Error::OperationNotInitialized)?.update(data);
        if r.is_err() {
            s.verify = None;
        }
        r
    }
    pub fn verify_final(&self, h: SessionHandle, signature: &[u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let op = s.lock().verify.take().ok_or(Error::OperationNotInitialized)?;
        op.finish(signature)
    }

    pub(super) fn crypt_init_unaudited(&self, h: u64, mech: &Mechanism, key: u64, encrypt: bool) -> Result<()> {
        let usage = if encrypt { Usage::Encrypt } else { Usage::Decrypt };
        let k = self.keyed(h, mech, usage, key)?;
        let mut s = k.session.lock();
        let slot = if encrypt { &mut s.encrypt } else { &mut s.decrypt };
        if slot.is_some() {
            return Err(Error::OperationActive);
        }
        let op = if encrypt {
            k.backend.encrypt(h, mech, &k.id)?
        } else {
            k.backend.decrypt(h, mech, &k.id)?
        };
        *slot = Some(Active::Running(op));
        if !encrypt {
            s.awaiting_login.decrypt = k.always_authenticate;
        }
        Ok(())
    }
    /// Runs `f` on the operation slot of an encryption or decryption data call, a decryption's
    /// context-specific login checked first.
    fn with_cipher<T>(
        &self,
        h: SessionHandle,
        encrypt: bool,
        f: impl FnOnce(&mut Option<Active<Box<dyn CipherOp>>>) -> Result<T>,
    ) -> Result<T> {
        let s = self.session(h.0)?;
        let mut s = s.lock();
        if !encrypt {
            authorised(&mut s, Waits::Decrypt)?;
        }
        f(if encrypt { &mut s.encrypt } else { &mut s.decrypt })
    }
    /// `C_Encrypt`/`C_Decrypt`. `direct` is the caller's buffer when the output may be written
    /// into it (it overlaps no input): an operation whose output length is known before it runs
    /// answers a length query without running, and then writes straight into the buffer.
    pub fn crypt(
        &self,
        h: SessionHandle,
        encrypt: bool,
        data: &[u8],
        cap: Option<usize>,
        direct: Option<&mut [u8]>,
    ) -> Result<Out> {
        self.with_cipher(h, encrypt, |slot| {
            if let Some(Active::Running(op)) = slot {
                if let Some(n) = op.once_len(data.len()) {
                    match (cap, direct) {
                        (None, _) => return Ok(Out::Len(n)),
                        (Some(c), _) if c < n => return Ok(Out::TooSmall(n)),
                        (Some(_), Some(buf)) => {
                            let Some(Active::Running(op)) = slot.take() else {
                                unreachable!("matched above")
                            };
                            return op.once_into(data, buf).map(Out::Written);
                        }
                        // In place: computed into keygate's memory and copied, below.
                        (Some(_), None) => {}
                    }
                }
            }
            Self::crypt_once(slot, encrypt, data, cap)
        })
    }

    fn crypt_once(
        slot: &mut Option<Active<Box<dyn CipherOp>>>,
        encrypt: bool,
        data: &[u8],
        cap: Option<usize>,
    ) -> Result<Out> {
        match deliver(slot, cap, |op| op.once(data))? {
            // Ciphertext needs no wiping (for 1 MiB, the wipe was a sixth of the call).
            Out::Data(mut ct) if encrypt => Ok(Out::Public(std::mem::take(&mut *ct))),
            out => Ok(out),
        }
    }
    pub fn crypt_update(&self, h: SessionHandle, encrypt: bool, data: &[u8], cap: Option<usize>) -> Result<Out> {
        self.with_cipher(h, encrypt, |slot| {
            // The output this input will produce, answered without feeding the cipher: a
            // length query or a short buffer leaves the operation as it was.
            let need = running(slot)?.update_len(data.len());
            match cap {
                None => return Ok(Out::Len(need)),
                Some(c) if c < need => return Ok(Out::TooSmall(need)),
                Some(_) => {}
            }
            match running(slot)?.update(data) {
                Ok(out) if out.len() <= need => Ok(Out::Data(out)),
                Ok(_) => {
                    *slot = None;
                    Err(Error::General("cipher produced more output than it announced".into()))
                }
                Err(e) => {
                    *slot = None;
                    Err(e)
                }
            }
        })
    }
    pub fn crypt_final(&self, h: SessionHandle, encrypt: bool, cap: Option<usize>) -> Result<Out> {
        self.with_cipher(h, encrypt, |slot| deliver(slot, cap, |op| op.finish()))
    }

    pub fn digest_init(&self, h: SessionHandle, mech: &Mechanism) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        let b = &self.slot_of(&s).backend;
        self.slot_of(&s).check(mech, mflag::DIGEST)?;
        if s.digest.is_some() {
            return Err(Error::OperationActive);
        }
        s.digest = Some(Active::Running(b.digest(h, mech)?));
        Ok(())
    }
    pub fn digest(&self, h: SessionHandle, data: &[u8], cap: Option<usize>) -> Result<Out> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        deliver(&mut s.digest, cap, |op| op.once(data).map(Zeroizing::new))
    }
    pub fn digest_update(&self, h: SessionHandle, data: &[u8]) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        let r = running(&mut s.digest)?.update(data);
        if r.is_err() {
            s.digest = None;
        }
        r
    }
    pub fn digest_key(&self, h: SessionHandle, key: ObjectHandle) -> Result<()> {
        let h = h.0;
        let key = key.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        let (id, attrs) = self.object(&s, key, Error::KeyHandleInvalid)?;
        if attrs.class()? != class::SECRET_KEY || attrs.flag(attr::SENSITIVE) {
            return Err(Error::KeyIndigestible);
        }
        let b = &self.slots[s.slot].backend;
        let op = running(&mut s.digest)?;
        b.digest_key(h, op.as_mut(), &id)
    }
    pub fn digest_final(&self, h: SessionHandle, cap: Option<usize>) -> Result<Out> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        deliver(&mut s.digest, cap, |op| op.finish().map(Zeroizing::new))
    }
}

impl Provider {
    /// `C_SessionCancel`: ends the operations named by `flags` (`CKF_ENCRYPT`, `CKF_SIGN`, …).
    pub fn session_cancel(&self, h: SessionHandle, flags: u64) -> Result<()> {
        let h = h.0;
        let s = self.session(h)?;
        let mut s = s.lock();
        if flags & mflag::ENCRYPT != 0 {
            s.encrypt = None;
        }
        if flags & mflag::DECRYPT != 0 {
            s.decrypt = None;
            s.awaiting_login.decrypt = false;
        }
        if flags & mflag::DIGEST != 0 {
            s.digest = None;
        }
        if flags & mflag::SIGN != 0 {
            s.sign = None;
            s.awaiting_login.sign = false;
        }
        if flags & mflag::VERIFY != 0 {
            s.verify = None;
        }
        if flags & pkcs11_sys::CKF_FIND_OBJECTS != 0 {
            s.find = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod judged_tests {
    use super::*;

    /// A verdict that depends on the day is never remembered: a key valid today may not be
    /// tomorrow, with nothing about it changed.
    #[test]
    fn only_keys_without_validity_dates_are_remembered() {
        let mut a = AttrMap::new();
        assert!(!dated(&a));
        // The default, empty dates, are none.
        a.set(attr::START_DATE, Vec::new());
        a.set(attr::END_DATE, Vec::new());
        assert!(!dated(&a));
        for ty in [attr::START_DATE, attr::END_DATE] {
            let mut d = a.clone();
            d.set(ty, b"20991231".to_vec());
            assert!(dated(&d));
        }
    }
}
