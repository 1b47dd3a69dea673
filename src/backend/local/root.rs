//! The root key R of a self-managed token, inside the HSM, reached through cryptoki.
//!
//! R is a 256-bit generic secret created at token initialisation with `CKA_TOKEN`,
//! `CKA_SENSITIVE`, non-extractable, usable only for `CKM_SHA256_HMAC` signing. keygate asks the
//! HSM for HMAC_R(input) and never sees R. The HSM library is initialised with
//! `CKF_OS_LOCKING_OK` (SoftHSM2 turns its locking off when given NULL arguments).
//!
//! The same token holds each keygate token's freshness anchor (`anchor.rs`): two private
//! secret-key objects labelled `keygate-anchor <uuid> 0|1`, usable for nothing, whose `CKA_ID`
//! holds the anchor's state. Only a session logged in to the root token reads or changes them.
//! A key's `CKA_ID` is modifiable (PKCS#11 3.0 §4.7) and binary, so each write is one
//! `C_SetAttributeValue` in place; a data object's `CKA_VALUE` would do, but SoftHSM2 refuses to
//! change it, and making a token object costs SoftHSM2 ten times more than changing one.

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism as CkMech;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType as CkUser};
use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::anchor::Anchor;
use crate::config::RootConfig;
use crate::error::{Error, Result};

/// An open, logged-in session on the HSM token holding root keys.
pub struct Root {
    session: Mutex<Session>,
    /// The anchor objects found so far, by (token uuid, slot): handles stay valid while nobody
    /// destroys the object, which only a torn object's repair does.
    anchors: Mutex<std::collections::HashMap<([u8; 16], u64), ObjectHandle>>,
    // Kept after `session` so that the session closes before the library is finalised.
    _pkcs11: Pkcs11,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Root")
    }
}

fn hsm(function: &'static str) -> impl Fn(CkError) -> Error {
    move |e| match e {
        CkError::Pkcs11(rv, _) => Error::Hsm {
            function: function.to_string(),
            rv: crate::error::rv_error_name(&rv),
        },
        other => Error::HsmUnavailable(format!("{function}: {other}")),
    }
}

/// The error for an HSM that refuses the root credential: which HSM token, which module, where
/// the PIN came from and the HSM's answer, so that an operator knows what to correct.
fn refused_login(cfg: &RootConfig, rv: &RvError) -> Error {
    let source = match (&cfg.pin_env, &cfg.pin_file) {
        (Some(var), _) => format!("environment variable {var} (root.pin_env)"),
        (None, Some(file)) => format!("file {} (root.pin_file)", file.display()),
        (None, None) => "nowhere".into(),
    };
    Error::HsmUnavailable(format!(
        "the HSM token {:?} holding the root key (module {}) refused the PIN from {source}: C_Login answered {}; \
         that credential must be the HSM token's user PIN",
        cfg.token,
        cfg.module.display(),
        crate::error::rv_error_name(rv),
    ))
}

/// The template of a generic secret key made in the HSM that never leaves it and does nothing
/// but, when `sign` is set, HMAC: the root key (which signs) and the anchor objects (which hold
/// their state in `CKA_ID` and do nothing).
fn secret_in_hsm(len: u64, id: Vec<u8>, label: Vec<u8>, sign: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(len.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(sign),
        Attribute::Verify(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(id),
        Attribute::Label(label),
    ]
}

impl Root {
    /// Loads the HSM module, finds the token by label and logs in as its user.
    pub fn open(cfg: &RootConfig) -> Result<Root> {
        let (pkcs11, slot) = crate::backend::module::open_token(&cfg.module, &cfg.token)?;
        let slot = slot.ok_or_else(|| Error::HsmUnavailable(format!("no HSM token labelled {:?}", cfg.token)))?;
        let session = pkcs11.open_rw_session(slot).map_err(hsm("C_OpenSession"))?;
        let pin = crate::backend::module::credential(cfg.pin_env.as_ref(), cfg.pin_file.as_ref(), "root token PIN")?;
        match session.login_with_raw(CkUser::User, &crate::backend::module::raw_pin(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(rv, _)) => return Err(refused_login(cfg, &rv)),
            Err(e) => return Err(hsm("C_Login")(e)),
        }
        log::info!("HSM token {:?} holding root keys: logged in", cfg.token);
        Ok(Root {
            session: Mutex::new(session),
            anchors: Mutex::new(Default::default()),
            _pkcs11: pkcs11,
        })
    }

    fn find(session: &Session, id: &[u8]) -> Result<Option<ObjectHandle>> {
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Id(id.to_vec())])
            .map_err(hsm("C_FindObjects"))?;
        Ok(found.into_iter().next())
    }

    /// The label of a keygate token's root key: `keygate-root <token label>`, so that the keys
    /// on an HSM can be told apart (and one no configured token uses found).
    pub fn key_label(token: &str) -> Vec<u8> {
        format!("keygate-root {token}").into_bytes()
    }

    /// Every keygate root key on this HSM token, as (label, CKA_ID): secret keys labelled
    /// `keygate-root` (older tokens) or `keygate-root <token label>`.
    pub fn keygate_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let session = self.session.lock();
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .map_err(hsm("C_FindObjects"))?;
        let mut keys = Vec::new();
        for o in found {
            let attrs = session
                .get_attributes(o, &[AttributeType::Label, AttributeType::Id])
                .map_err(hsm("C_GetAttributeValue"))?;
            let (mut label, mut id) = (String::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(i) => id = i,
                    _ => {}
                }
            }
            if label == "keygate-root" || label.starts_with("keygate-root ") {
                keys.push((label, id));
            }
        }
        Ok(keys)
    }

    /// Whether the HSM holds a root key made for the token labelled `token`.
    pub fn holds_key_of(&self, token: &str) -> Result<bool> {
        let session = self.session.lock();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(Self::key_label(token)),
            ])
            .map_err(hsm("C_FindObjects"))?;
        Ok(!found.is_empty())
    }

    /// Creates a root key with CKA_ID `id`, labelled for the token `token`.
    pub fn create_key(&self, id: &[u8], token: &str) -> Result<()> {
        let session = self.session.lock();
        let mut template = secret_in_hsm(32, id.to_vec(), Self::key_label(token), true);
        template.push(Attribute::Modifiable(false));
        session
            .generate_key(&CkMech::GenericSecretKeyGen, &template)
            .map_err(hsm("C_GenerateKey"))?;
        Ok(())
    }

    /// HMAC-SHA256 under the root key `id`, computed inside the HSM.
    pub fn hmac(&self, id: &[u8], input: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let session = self.session.lock();
        let key = Self::find(&session, id)?
            .ok_or_else(|| Error::HsmUnavailable("the token's root key is not in the HSM (destroyed?)".into()))?;
        let tag = Zeroizing::new(session.sign(&CkMech::Sha256Hmac, key, input).map_err(hsm("C_Sign"))?);
        let arr: [u8; 32] = tag
            .as_slice()
            .try_into()
            .map_err(|_| Error::HsmUnavailable("HMAC of wrong length".into()))?;
        Ok(Zeroizing::new(arr))
    }

    /// Destroys root key `id`; absent is fine.
    pub fn destroy_key(&self, id: &[u8]) -> Result<()> {
        let session = self.session.lock();
        if let Some(key) = Self::find(&session, id)? {
            session.destroy_object(key).map_err(hsm("C_DestroyObject"))?;
        }
        Ok(())
    }

    fn anchor_label(uuid: &[u8; 16], slot: u64) -> Vec<u8> {
        format!("keygate-anchor {} {slot}", hex::encode(uuid)).into_bytes()
    }

    /// The anchor object `slot` of token `uuid`: the cached handle unless `fresh`, else found.
    fn anchor_object(
        &self,
        session: &Session,
        uuid: &[u8; 16],
        slot: u64,
        fresh: bool,
    ) -> Result<Option<ObjectHandle>> {
        let mut cache = self.anchors.lock();
        if !fresh {
            if let Some(h) = cache.get(&(*uuid, slot)) {
                return Ok(Some(*h));
            }
        }
        cache.remove(&(*uuid, slot));
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(Self::anchor_label(uuid, slot)),
            ])
            .map_err(hsm("C_FindObjects"))?
            .into_iter()
            .next();
        if let Some(h) = found {
            cache.insert((*uuid, slot), h);
        }
        Ok(found)
    }

    /// The state object `slot` holds: `None` if it is missing or reads back as no anchor (a
    /// write torn by a kill). A cached handle that fails is looked up again once.
    fn read_slot(&self, session: &Session, uuid: &[u8; 16], slot: u64) -> Result<Option<Anchor>> {
        let mut value = None;
        for fresh in [false, true] {
            let Some(h) = self.anchor_object(session, uuid, slot, fresh)? else {
                return Ok(None);
            };
            if let Ok(attrs) = session.get_attributes(h, &[AttributeType::Id]) {
                value = attrs.into_iter().next();
                break;
            }
        }
        let decoded = match value {
            Some(Attribute::Id(v)) => Anchor::decode(&v),
            _ => Err(Error::Integrity("no value".into())),
        };
        match decoded {
            Ok(a) if a.uuid == *uuid && a.seq % 2 == slot => Ok(Some(a)),
            Ok(_) => {
                log::warn!(
                    "anchor object {slot} of token {} names another token or slot; ignored",
                    hex::encode(uuid)
                );
                Ok(None)
            }
            Err(e) => {
                log::warn!(
                    "anchor object {slot} of token {} is unreadable ({e}); the other one is used",
                    hex::encode(uuid)
                );
                Ok(None)
            }
        }
    }

    /// The token `uuid`'s anchor: the newest of its two objects that reads back whole (the other
    /// may be one a killed write left torn). `None` if it has none.
    pub fn read_anchor(&self, uuid: &[u8; 16]) -> Result<Option<Anchor>> {
        let session = self.session.lock();
        let mut newest: Option<Anchor> = None;
        for slot in 0..2 {
            if let Some(a) = self.read_slot(&session, uuid, slot)? {
                if newest.as_ref().is_none_or(|n| a.seq > n.seq) {
                    newest = Some(a);
                }
            }
        }
        Ok(newest)
    }

    /// Writes `a` into the object `a.seq % 2`, in place; the other object holds the newest
    /// state meanwhile, so a write killed half-way loses nothing that was named. A missing
    /// object is made, and one that cannot be changed (torn) is destroyed and made again.
    pub fn write_anchor(&self, a: &Anchor) -> Result<()> {
        let session = self.session.lock();
        let slot = a.seq % 2;
        let value = a.encode();
        for fresh in [false, true] {
            match self.anchor_object(&session, &a.uuid, slot, fresh)? {
                Some(h) => match session.update_attributes(h, &[Attribute::Id(value.clone())]) {
                    Ok(()) => return Ok(()),
                    Err(e) if fresh => {
                        log::warn!("anchor object {slot}: rewriting failed ({e}); making it again");
                        let _ = session.destroy_object(h);
                        self.anchors.lock().remove(&(a.uuid, slot));
                    }
                    Err(_) => {}
                },
                None if fresh => {}
                None => continue,
            }
        }
        let h = session
            .generate_key(
                &CkMech::GenericSecretKeyGen,
                &secret_in_hsm(16, value, Self::anchor_label(&a.uuid, slot), false),
            )
            .map_err(hsm("C_GenerateKey"))?;
        self.anchors.lock().insert((a.uuid, slot), h);
        Ok(())
    }

    /// Destroys the token `uuid`'s anchor objects; absent is fine.
    pub fn destroy_anchor(&self, uuid: &[u8; 16]) -> Result<()> {
        let session = self.session.lock();
        for slot in 0..2 {
            if let Some(h) = self.anchor_object(&session, uuid, slot, true)? {
                session.destroy_object(h).map_err(hsm("C_DestroyObject"))?;
            }
            self.anchors.lock().remove(&(*uuid, slot));
        }
        Ok(())
    }
}
