//! hsm mode (DESIGN.md §5): every call forwarded to a token on a real HSM through cryptoki.
//!
//! Keys never leave the HSM; keygate holds handles only. Each keygate session has its own HSM
//! session, so operation state lives in the HSM. HSM object handles are mapped to keygate's
//! object ids and never shown to the application. The HSM is reached lazily and again after a
//! failure, so a missing HSM gives `CKR_TOKEN_NOT_PRESENT`/`CKR_DEVICE_ERROR` on this slot only.

mod convert;
mod objects;
mod ops;
mod raw;
mod sessions;

use crate::fastmap::FastMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::Error as CkError;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session as CkSession;
use cryptoki::slot::Slot as CkSlot;
use parking_lot::{Mutex, RwLock};
use zeroize::Zeroizing;

use self::ops::{Cipher, Kind, Op, Prehashed};
use self::raw::RawFunctions;
use self::sessions::HsmSession;
use super::{Backend, CipherOp, DigestOp, Lifetime, ObjectId, SignOp, TokenStatus, UserType, VerifyOp};
use crate::config::{HsmConfig, LoginMode, TokenConfig};
use crate::error::{Error, Result};
use crate::model::attributes::{attr, AttrMap};
use crate::model::mechanisms::{lookup, mech, DigestAlg, Mechanism, MechanismInfo, Pin, FORWARDABLE};

/// The HSM library and the slot of the configured token.
struct Device {
    pkcs11: Pkcs11,
    slot: CkSlot,
    /// The library's own function list ([`RawFunctions`]).
    raw: Arc<RawFunctions>,
}

type Shared = Arc<Mutex<CkSession>>;

/// What the token offers, worked out once from what the HSM offers.
struct Offered {
    list: Vec<(u64, MechanismInfo)>,
    /// `CKM_ECDSA_SHA*` the HSM lacks but offers `CKM_ECDSA` for: keygate hashes and the HSM
    /// signs the digest (the key stays in the HSM; a hash is not secret).
    prehashed: Vec<u64>,
    /// The HSM's `CKM_AES_KEY_WRAP_PAD` is RFC 5649 (SoftHSM2 up to 2.6 at least, its issue
    /// #726): keygate offers it as `CKM_AES_KEY_WRAP_KWP`, which it is, and does not offer
    /// `CKM_AES_KEY_WRAP_PAD`, whose PKCS#11 meaning (PKCS#7 padding, then RFC 3394) that HSM
    /// does not implement.
    kwp_named_pad: bool,
}

pub struct HsmBackend {
    cfg: TokenConfig,
    hsm: HsmConfig,
    /// The HSM once reached (read on every call without a lock); `opening` serialises
    /// reaching it.
    device: std::sync::OnceLock<Device>,
    opening: Mutex<()>,
    mechanisms: std::sync::OnceLock<Offered>,
    sessions: RwLock<FastMap<u64, Arc<HsmSession>>>,
    objects: RwLock<FastMap<ObjectId, ObjectHandle>>,
    session_objects: Mutex<FastMap<u64, Vec<ObjectHandle>>>,
    /// The HSM refused the held credential (`login = "held"`); it is not presented again.
    held_refused: AtomicBool,
    /// What key operations check of a key ([`super::KEY_USE`]), as the HSM said it at most
    /// [`KEY_ATTRIBUTES_TTL`] ago.
    key_attrs: Mutex<FastMap<ObjectId, (Instant, Arc<AttrMap>)>>,
    /// This backend among the process's (`sessions.rs`: what a thread remembers is of one).
    id: u64,
    /// Counts keygate sessions closed: a thread's remembered operation session is used while
    /// this has not moved.
    closed: AtomicU64,
}

/// How long the attributes a key operation checks are taken from memory instead of asking the
/// HSM again, on a token without pins (keygate bench: asking SoftHSM2 cost 6 of every 7 µs of a
/// forwarded AES-GCM encryption). A change made through keygate is seen at once; one made by
/// another application of the HSM within this time. The HSM checks its own usage attributes on
/// every operation anyway, and the attributes keygate checks on its own (size, extractable,
/// sensitive) cannot change in the direction that would matter (docs/decisions.md).
const KEY_ATTRIBUTES_TTL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for HsmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmBackend").field("token", &self.cfg.label).finish()
    }
}

/// The error for a failed HSM call: the HSM's own code for the application's request.
fn fwd(function: &'static str) -> impl Fn(CkError) -> Error {
    move |e| match e {
        CkError::Pkcs11(rv, _) => Error::Forwarded {
            function,
            rv: super::module::rv_code(rv),
        },
        other => Error::HsmUnavailable(format!("{function}: {other}")),
    }
}

fn id_of(h: ObjectHandle) -> ObjectId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&h.handle().to_le_bytes());
    id
}

impl Offered {
    fn from_hsm(mut list: Vec<(u64, MechanismInfo)>, manufacturer: &str) -> Offered {
        let offers = |list: &[(u64, MechanismInfo)], ty| lookup(list, ty).is_some();
        let kwp_named_pad = manufacturer.starts_with("SoftHSM")
            && offers(&list, mech::AES_KEY_WRAP_PAD)
            && !offers(&list, mech::AES_KEY_WRAP_KWP);
        if kwp_named_pad {
            for (ty, _) in list.iter_mut().filter(|(ty, _)| *ty == mech::AES_KEY_WRAP_PAD) {
                *ty = mech::AES_KEY_WRAP_KWP;
            }
        }
        // cryptoki 0.12 has no mechanism type for the _GENERAL MACs, so they cannot be passed
        // to the HSM: not offered, even where the HSM has them.
        list.retain(|(ty, _)| {
            !matches!(
                *ty,
                mech::SHA224_HMAC_GENERAL
                    | mech::SHA256_HMAC_GENERAL
                    | mech::SHA384_HMAC_GENERAL
                    | mech::SHA512_HMAC_GENERAL
                    | mech::AES_CMAC_GENERAL
            )
        });
        let mut prehashed = Vec::new();
        if let Some(ecdsa) = lookup(&list, mech::ECDSA) {
            for ty in [mech::ECDSA_SHA256, mech::ECDSA_SHA384, mech::ECDSA_SHA512] {
                if !offers(&list, ty) {
                    prehashed.push(ty);
                    list.push((ty, ecdsa));
                }
            }
        }
        Offered {
            list,
            prehashed,
            kwp_named_pad,
        }
    }
}

impl HsmBackend {
    pub fn new(cfg: TokenConfig) -> Result<HsmBackend> {
        let hsm = cfg
            .hsm
            .clone()
            .ok_or_else(|| Error::Config(format!("token {:?}: hsm mode needs `hsm`", cfg.label)))?;
        Ok(HsmBackend {
            cfg,
            hsm,
            device: std::sync::OnceLock::new(),
            opening: Mutex::new(()),
            mechanisms: std::sync::OnceLock::new(),
            held_refused: AtomicBool::new(false),
            key_attrs: Mutex::new(FastMap::default()),
            sessions: RwLock::new(FastMap::default()),
            objects: RwLock::new(FastMap::default()),
            session_objects: Mutex::new(FastMap::default()),
            id: sessions::new_backend_id(),
            closed: AtomicU64::new(0),
        })
    }

    /// The device, reached now if it was not yet (or failed before).
    fn device(&self) -> Result<&Device> {
        if let Some(d) = self.device.get() {
            return Ok(d);
        }
        let _opening = self.opening.lock();
        if let Some(d) = self.device.get() {
            return Ok(d);
        }
        let (pkcs11, slot) = super::module::open_token(&self.hsm.module, &self.hsm.token).inspect_err(|e| {
            log::error!("token {:?}: {e}", self.cfg.label);
        })?;
        let slot = slot.ok_or_else(|| {
            let e = Error::TokenNotPresent(format!(
                "no HSM token labelled {:?} on {}",
                self.hsm.token,
                self.hsm.module.display()
            ));
            log::error!("token {:?}: {e}", self.cfg.label);
            e
        })?;
        let raw = Arc::new(RawFunctions::of(&self.hsm.module)?);
        Ok(self.device.get_or_init(|| Device { pkcs11, slot, raw }))
    }

    /// What the token offers; `None` while the HSM cannot be reached (asked again next time).
    fn offered(&self) -> Option<&Offered> {
        if let Some(o) = self.mechanisms.get() {
            return Some(o);
        }
        let found = (|| -> Result<Offered> {
            let d = self.device()?;
            let from_hsm = d.pkcs11.get_mechanism_list(d.slot).map_err(fwd("C_GetMechanismList"))?;
            let mut list = Vec::new();
            for m in from_hsm {
                let ty: u64 = m.into();
                if !FORWARDABLE.contains(&ty) {
                    continue;
                }
                let Ok(i) = d.pkcs11.get_mechanism_info(d.slot, m) else {
                    continue;
                };
                list.push((ty, convert::mechanism_info(&i)));
            }
            let library = d.pkcs11.get_library_info().map_err(fwd("C_GetInfo"))?;
            Ok(Offered::from_hsm(list, library.manufacturer_id()))
        })()
        .ok()?;
        // Two threads asking at once both ask the HSM; the first answer is kept.
        Some(self.mechanisms.get_or_init(|| found))
    }

    /// The mechanism sent to the HSM for one keygate offers (see [`Offered::kwp_named_pad`]).
    fn to_hsm(&self, mech: &Mechanism) -> Mechanism {
        match mech {
            Mechanism::AesKeyWrapKwp if self.offered().is_some_and(|o| o.kwp_named_pad) => Mechanism::AesKeyWrapPad,
            other => other.clone(),
        }
    }

    /// Starts an operation on the HSM session of `session` (as `CKM_ECDSA` when keygate hashes
    /// for the HSM).
    fn start(&self, session: u64, kind: Kind, mech: &Mechanism, key: Option<&ObjectId>, prehashed: bool) -> Result<Op> {
        let key = key.map(|k| self.handle(k)).transpose()?;
        let mech = if prehashed { Mechanism::Ecdsa } else { self.to_hsm(mech) };
        Op::start(
            self.op_session(session, kind)?,
            self.device()?.raw.clone(),
            kind,
            mech,
            key,
        )
    }

    /// A `CKM_ECDSA_SHA*` that keygate hashes for the HSM: its digest.
    fn prehashed(&self, mech: &Mechanism) -> Option<DigestAlg> {
        match mech {
            Mechanism::EcdsaWith(d) if self.offered().is_some_and(|o| o.prehashed.contains(&mech.ty())) => Some(*d),
            _ => None,
        }
    }
}

impl Backend for HsmBackend {
    fn status(&self) -> Result<TokenStatus> {
        let d = self.device()?;
        let i = d.pkcs11.get_token_info(d.slot).map_err(fwd("C_GetTokenInfo"))?;
        let max = self.cfg.max_pin_failures.max(3);
        let failures = |locked: bool, last: bool, low: bool| {
            if locked {
                max
            } else if last {
                max - 1
            } else if low {
                1
            } else {
                0
            }
        };
        Ok(TokenStatus {
            initialized: i.token_initialized(),
            user_pin_initialized: i.user_pin_initialized(),
            label: self.cfg.label.clone(),
            serial: i.serial_number().trim_end().to_string(),
            user_failures: failures(i.user_pin_locked(), i.user_pin_final_try(), i.user_pin_count_low()),
            so_failures: failures(i.so_pin_locked(), i.so_pin_final_try(), i.so_pin_count_low()),
            max_failures: max,
            protected_path: self.hsm.login == LoginMode::Held,
            model: "hsm",
            write_protected: i.write_protected(),
        })
    }

    fn mechanisms(&self) -> &[(u64, MechanismInfo)] {
        match self.offered() {
            Some(o) => &o.list,
            None => &[],
        }
    }

    fn init_token(&self, _so_pin: &Pin, _label: &str) -> Result<()> {
        log::warn!(
            "token {:?}: C_InitToken refused: an hsm-mode token is initialised on the HSM itself",
            self.cfg.label
        );
        Err(Error::FunctionNotSupported)
    }

    fn login(&self, session: u64, user: UserType, pin: &Pin) -> Result<()> {
        self.log_in(session, user, pin)
    }

    fn logout(&self, session: u64) {
        let s = self.session(session).ok().or_else(|| self.any_session());
        if let Some(s) = s {
            if let Err(e) = s.lock().logout() {
                log::debug!("token {:?}: HSM logout: {e}", self.cfg.label);
            }
        }
    }

    fn init_pin(&self, session: u64, pin: &Pin) -> Result<()> {
        let s = self.session(session)?;
        let pin =
            cryptoki::types::AuthPin::from(String::from_utf8(pin.bytes().to_vec()).map_err(|_| Error::PinInvalid)?);
        let r = s.lock().init_pin(&pin).map_err(fwd("C_InitPIN"));
        r
    }

    fn set_pin(&self, session: u64, _user: UserType, old: &Pin, new: &Pin) -> Result<()> {
        let s = self.session(session)?;
        let text = |p: &Pin| -> Result<cryptoki::types::AuthPin> {
            Ok(cryptoki::types::AuthPin::from(
                String::from_utf8(p.bytes().to_vec()).map_err(|_| Error::PinInvalid)?,
            ))
        };
        let r = s.lock().set_pin(&text(old)?, &text(new)?).map_err(fwd("C_SetPIN"));
        r
    }

    fn create(&self, session: u64, lifetime: Lifetime, attrs: AttrMap) -> Result<ObjectId> {
        self.create_object(session, lifetime, attrs)
    }

    fn find(&self, session: u64, template: &AttrMap, _private_visible: bool) -> Result<Vec<ObjectId>> {
        let s = self.session(session)?;
        let t = convert::attributes_out(template)?;
        let found = s.lock().find_objects(&t).map_err(fwd("C_FindObjects"))?;
        Ok(found.into_iter().map(|h| self.register(h)).collect())
    }

    fn attributes(&self, session: u64, id: &ObjectId) -> Result<AttrMap> {
        self.object_attributes(session, id)
    }

    /// The HSM decides (`tests/objects.rs` shows SoftHSM2 refusing as keygate does): reading
    /// the attributes first cost a third of a P-256 key pair's generate-and-destroy in the
    /// benchmark (SoftHSM2 decodes the key to answer).
    fn access_attributes(&self, _session: u64, _id: &ObjectId) -> Result<Option<Arc<AttrMap>>> {
        Ok(None)
    }

    /// What a key operation checks: from memory within [`KEY_ATTRIBUTES_TTL`], else read with
    /// one C_GetAttributeValue.
    fn key_attributes(&self, session: u64, id: &ObjectId) -> Result<Arc<AttrMap>> {
        // A token with pins reads them every time: another application of the HSM could
        // relabel a key keygate has in memory under another label, and a substitute would pass
        // as unpinned for the rest of the time (docs/decisions.md).
        if !self.cfg.pins.is_empty() {
            return self.read_key_attributes(session, id);
        }
        let now = Instant::now();
        if let Some((at, a)) = self.key_attrs.lock().get(id) {
            if now.duration_since(*at) < KEY_ATTRIBUTES_TTL {
                return Ok(a.clone());
            }
        }
        let a = self.read_key_attributes(session, id)?;
        let mut cache = self.key_attrs.lock();
        if cache.len() >= 4096 {
            cache.retain(|_, (at, _)| now.duration_since(*at) < KEY_ATTRIBUTES_TTL);
        }
        cache.insert(*id, (now, a.clone()));
        Ok(a)
    }

    fn lifetime(&self, session: u64, id: &ObjectId) -> Result<Lifetime> {
        let a = self.attributes(session, id)?;
        Ok(if a.flag(attr::TOKEN) {
            Lifetime::Token
        } else {
            Lifetime::Session(session)
        })
    }

    fn secret_value(&self, session: u64, id: &ObjectId, ty: u64) -> Result<Zeroizing<Vec<u8>>> {
        let h = self.handle(id)?;
        let at = convert::attribute_type(ty).ok_or(Error::AttributeTypeInvalid(ty))?;
        let s = self.session(session)?;
        let got = s.lock().get_attributes(h, &[at]).map_err(fwd("C_GetAttributeValue"))?;
        match got.first().and_then(convert::attribute_in) {
            Some((t, v)) if t == ty => Ok(Zeroizing::new(v)),
            _ => Err(Error::AttributeSensitive(ty)),
        }
    }

    fn update(&self, session: u64, id: &ObjectId, attrs: AttrMap) -> Result<()> {
        let h = self.handle(id)?;
        let changed = self.changes(session, id, &attrs)?;
        if changed.is_empty() {
            return Ok(());
        }
        let s = self.session(session)?;
        let t = convert::attributes_out(&changed)?;
        let r = s.lock().update_attributes(h, &t).map_err(fwd("C_SetAttributeValue"));
        self.key_attrs.lock().remove(id);
        r
    }

    fn copy(&self, session: u64, id: &ObjectId, lifetime: Lifetime, attrs: AttrMap) -> Result<ObjectId> {
        let h = self.handle(id)?;
        let changed = self.changes(session, id, &attrs)?;
        let s = self.session(session)?;
        let t = convert::attributes_out(&changed)?;
        let new = s.lock().copy_object(h, &t).map_err(fwd("C_CopyObject"))?;
        Ok(self.created(session, lifetime, new))
    }

    fn destroy(&self, session: u64, id: &ObjectId) -> Result<()> {
        let h = self.handle(id)?;
        let s = self.session(session)?;
        let r = s.lock().destroy_object(h).map_err(fwd("C_DestroyObject"));
        self.key_attrs.lock().remove(id);
        r?;
        self.objects.write().remove(id);
        Ok(())
    }

    fn session_opened(&self, session: u64, rw: bool) -> Result<()> {
        self.open_session(session, rw)
    }

    fn session_closed(&self, session: u64) {
        // The HSM destroys the session's objects when its session closes.
        if let Some(list) = self.session_objects.lock().remove(&session) {
            let mut objects = self.objects.write();
            let mut key_attrs = self.key_attrs.lock();
            for h in list {
                objects.remove(&id_of(h));
                key_attrs.remove(&id_of(h));
            }
        }
        self.sessions.write().remove(&session);
        self.closed.fetch_add(1, Ordering::AcqRel);
    }

    fn generate_key(&self, session: u64, mech: &Mechanism, lifetime: Lifetime, template: AttrMap) -> Result<ObjectId> {
        let s = self.session(session)?;
        let mut scratch = convert::Scratch::default();
        let m = convert::mechanism_out(mech, &mut scratch)?;
        let h = s
            .lock()
            .generate_key(&m, &convert::for_hsm(&template)?)
            .map_err(fwd("C_GenerateKey"))?;
        Ok(self.created(session, lifetime, h))
    }

    fn generate_key_pair(
        &self,
        session: u64,
        mech: &Mechanism,
        lifetimes: (Lifetime, Lifetime),
        public: AttrMap,
        private: AttrMap,
    ) -> Result<(ObjectId, ObjectId)> {
        let s = self.session(session)?;
        let mut scratch = convert::Scratch::default();
        let m = convert::mechanism_out(mech, &mut scratch)?;
        let (pu, pr) = s
            .lock()
            .generate_key_pair(&m, &convert::for_hsm(&public)?, &convert::for_hsm(&private)?)
            .map_err(fwd("C_GenerateKeyPair"))?;
        Ok((
            self.created(session, lifetimes.0, pu),
            self.created(session, lifetimes.1, pr),
        ))
    }

    fn wrap_key(&self, session: u64, mech: &Mechanism, wrapping: &ObjectId, key: &ObjectId) -> Result<Vec<u8>> {
        let (w, k) = (self.handle(wrapping)?, self.handle(key)?);
        let s = self.session(session)?;
        let mech = self.to_hsm(mech);
        let mut scratch = convert::Scratch::default();
        let m = convert::mechanism_out(&mech, &mut scratch)?;
        let r = s.lock().wrap_key(&m, w, k).map_err(fwd("C_WrapKey"));
        r
    }

    fn unwrap_key(
        &self,
        session: u64,
        mech: &Mechanism,
        unwrapping: &ObjectId,
        wrapped: &[u8],
        lifetime: Lifetime,
        template: AttrMap,
    ) -> Result<ObjectId> {
        let u = self.handle(unwrapping)?;
        let s = self.session(session)?;
        let mech = self.to_hsm(mech);
        let mut scratch = convert::Scratch::default();
        let m = convert::mechanism_out(&mech, &mut scratch)?;
        let key_wrap = matches!(
            mech,
            Mechanism::AesKeyWrap { .. } | Mechanism::AesKeyWrapPad | Mechanism::AesKeyWrapKwp
        );
        let h = s
            .lock()
            .unwrap_key(&m, u, wrapped, &convert::for_hsm(&template)?)
            .map_err(|e| match e {
                // The integrity check of a key wrap is the one way its unwrap fails on good
                // handles; some HSMs (SoftHSM2 2.6.1) report it as CKR_GENERAL_ERROR.
                CkError::Pkcs11(cryptoki::error::RvError::GeneralError, _) if key_wrap => {
                    log::debug!(
                        "token {:?}: the HSM's C_UnwrapKey failed its integrity check",
                        self.cfg.label
                    );
                    Error::WrappedKeyInvalid
                }
                e => fwd("C_UnwrapKey")(e),
            })?;
        Ok(self.created(session, lifetime, h))
    }

    fn derive_key(
        &self,
        session: u64,
        mech: &Mechanism,
        base: &ObjectId,
        lifetime: Lifetime,
        template: AttrMap,
    ) -> Result<ObjectId> {
        let b = self.handle(base)?;
        let s = self.session(session)?;
        let mut scratch = convert::Scratch::default();
        let m = convert::mechanism_out(mech, &mut scratch)?;
        let h = s
            .lock()
            .derive_key(&m, b, &convert::for_hsm(&template)?)
            .map_err(fwd("C_DeriveKey"))?;
        Ok(self.created(session, lifetime, h))
    }

    fn sign(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn SignOp>> {
        let prehashed = self.prehashed(mech);
        let op = self.start(session, Kind::Sign, mech, Some(key), prehashed.is_some())?;
        Ok(match prehashed {
            Some(d) => Box::new(Prehashed::new(op, d)),
            None => Box::new(op),
        })
    }

    fn verify(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn VerifyOp>> {
        let prehashed = self.prehashed(mech);
        let op = self.start(session, Kind::Verify, mech, Some(key), prehashed.is_some())?;
        Ok(match prehashed {
            Some(d) => Box::new(Prehashed::new(op, d)),
            None => Box::new(op),
        })
    }

    fn encrypt(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(Cipher::new(self.start(
            session,
            Kind::Encrypt,
            mech,
            Some(key),
            false,
        )?)))
    }

    fn decrypt(&self, session: u64, mech: &Mechanism, key: &ObjectId) -> Result<Box<dyn CipherOp>> {
        Ok(Box::new(Cipher::new(self.start(
            session,
            Kind::Decrypt,
            mech,
            Some(key),
            false,
        )?)))
    }

    fn digest(&self, session: u64, mech: &Mechanism) -> Result<Box<dyn DigestOp>> {
        Ok(Box::new(self.start(session, Kind::Digest, mech, None, false)?))
    }

    fn digest_key(&self, _session: u64, op: &mut dyn DigestOp, key: &ObjectId) -> Result<()> {
        let key = self.handle(key)?;
        let op = op.as_any().downcast_mut::<Op>().ok_or(Error::OperationNotInitialized)?;
        op.digest_key(key)
    }

    fn random(&self, session: u64, out: &mut [u8]) -> Result<()> {
        let s = self.session(session)?;
        let r = s.lock().generate_random_slice(out).map_err(fwd("C_GenerateRandom"));
        r
    }

    fn seed_random(&self, session: u64, seed: &[u8]) -> Result<()> {
        let s = self.session(session)?;
        let r = s.lock().seed_random(seed).map_err(fwd("C_SeedRandom"));
        r
    }

    fn object_count(&self) -> Result<u64> {
        Err(Error::FunctionNotSupported)
    }
}
