//! The root key R of a self-managed token, inside the HSM, reached through cryptoki.
//!
//! R is a 256-bit generic secret created at token initialisation with `CKA_TOKEN`,
//! `CKA_SENSITIVE`, non-extractable, usable only for `CKM_SHA256_HMAC` signing. keygate asks the
//! HSM for HMAC_R(input) and never sees R. The HSM library is initialised with
//! `CKF_OS_LOCKING_OK` (SoftHSM2 turns its locking off when given NULL arguments).

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism as CkMech;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType as CkUser};
use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::config::RootConfig;
use crate::error::{Error, Result};

/// An open, logged-in session on the HSM token holding root keys.
pub struct Root {
    session: Mutex<Session>,
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
            rv: format!("{rv:?}"),
        },
        other => Error::HsmUnavailable(format!("{function}: {other}")),
    }
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
            Err(e) => return Err(hsm("C_Login")(e)),
        }
        log::info!("HSM token {:?} holding root keys: logged in", cfg.token);
        Ok(Root {
            session: Mutex::new(session),
            _pkcs11: pkcs11,
        })
    }

    fn find(session: &Session, id: &[u8]) -> Result<Option<ObjectHandle>> {
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Id(id.to_vec())])
            .map_err(hsm("C_FindObjects"))?;
        Ok(found.into_iter().next())
    }

    /// Creates a root key with CKA_ID `id`.
    pub fn create_key(&self, id: &[u8]) -> Result<()> {
        let session = self.session.lock();
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Verify(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Modifiable(false),
            Attribute::Id(id.to_vec()),
            Attribute::Label(b"keygate-root".to_vec()),
        ];
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
}
