//! PINs: the SO's and the user's credentials in the header, checking a PIN (serialised across
//! processes, the attempt counted before Argon2id), and what logging in and out holds.

use super::header::{Credential, Header};
use super::vault::{self, KdfParams, Key32, Purpose, Role};
use super::{check_pin_len, LocalBackend};
use crate::backend::UserType;
use crate::crypto;
use crate::error::{Error, Result};
use crate::model::mechanisms::Pin;

impl LocalBackend {
    pub(super) fn new_credential(
        &self,
        h: &Header,
        pin: &Pin,
        dek: &Key32,
        role: Role,
        kdf: KdfParams,
    ) -> Result<Credential> {
        let mut salt = [0u8; 16];
        crypto::random(&mut salt)?;
        let pk = vault::pin_key(pin.bytes(), &salt, kdf)?;
        let kek = vault::kek(&*self.hw(h, Purpose::Kek)?, &pk, role);
        Ok(Credential {
            salt,
            kdf,
            wrapped_dek: vault::wrap_dek(&kek, dek)?,
        })
    }

    /// Tries `pin` against `role`'s credential. The attempt is counted in the header (an
    /// anchored commit) before the PIN is evaluated, and the count cleared after a right PIN,
    /// all under the token's login lock: however many processes and threads guess at once,
    /// exactly `max_pin_failures` wrong PINs are evaluated, and a process killed while Argon2id
    /// runs has spent its attempt. PIN checks of one token run one at a time.
    pub(super) fn check_pin(&self, role: Role, pin: &Pin) -> Result<Key32> {
        let _serial = self.login_lock.lock()?;
        let max = self.cfg.max_pin_failures;
        fn counter(h: &mut Header, role: Role) -> &mut u32 {
            match role {
                Role::So => &mut h.so_failures,
                Role::User => &mut h.user_failures,
            }
        }
        // Counted even while serving from the mirror: a read-only token still limits guessing.
        let counted = self.transact_any(|_, h, _| {
            if role == Role::User && h.user.is_none() {
                return Err(Error::UserPinNotInitialized);
            }
            if *counter(h, role) >= max {
                return Err(Error::PinLocked);
            }
            *counter(h, role) += 1;
            Ok(h.clone())
        });
        let h = counted.inspect_err(|e| {
            if matches!(e, Error::PinLocked) {
                log::warn!("token {:?}: {role} PIN is locked", self.cfg.label);
            }
        })?;
        let result = self.evaluate_pin(&h, role, pin);
        if result.is_ok() {
            self.transact_any(|_, h, _| {
                *counter(h, role) = 0;
                Ok(())
            })?;
        } else {
            log::warn!("token {:?}: wrong {role} PIN", self.cfg.label);
        }
        result
    }

    /// The DEK `pin` opens under `role`'s credential in `h`, counting nothing (Argon2id and the
    /// HSM run with no lock of this process held).
    pub(super) fn evaluate_pin(&self, h: &Header, role: Role, pin: &Pin) -> Result<Key32> {
        let cred = match role {
            Role::So => Some(&h.so),
            Role::User => h.user.as_ref(),
        }
        .ok_or(Error::UserPinNotInitialized)?;
        let pk = vault::pin_key(pin.bytes(), &cred.salt, cred.kdf)?;
        let kek = vault::kek(&*self.hw(h, Purpose::Kek)?, &pk, role);
        vault::unwrap_dek(&kek, &cred.wrapped_dek)
    }

    pub(crate) fn login_impl(&self, user: UserType, pin: &Pin) -> Result<()> {
        let role = match user {
            UserType::So => Role::So,
            UserType::User | UserType::ContextSpecific => Role::User,
        };
        let dek = self.check_pin(role, pin)?;
        self.unlocked.write().dek = Some(super::HeldDek::new(&dek));
        Ok(())
    }

    pub(crate) fn logout_impl(&self) {
        let mut unlocked = self.unlocked.write();
        unlocked.dek = None;
        // The secrets unsealed while logged in are forgotten, in every copy of the objects
        // that held them (`view.rs`).
        self.forget_opened();
        for o in self.session_objects.read().values() {
            o.opened.forget_secret();
        }
        for slot in self.cached_secrets.lock().drain(..) {
            if let Some(slot) = slot.upgrade() {
                *slot.lock() = None;
            }
        }
    }

    pub(crate) fn init_pin_impl(&self, pin: &Pin) -> Result<()> {
        check_pin_len(pin)?;
        let dek = self.dek()?;
        let h = self.header()?;
        let cred = self.new_credential(&h, pin, &dek, Role::User, KdfParams::from(self.cfg.pin_kdf))?;
        self.change_header(|h| {
            h.user = Some(cred);
            h.user_failures = 0;
            Ok(())
        })
    }

    pub(crate) fn set_pin_impl(&self, user: UserType, old: &Pin, new: &Pin) -> Result<()> {
        check_pin_len(new)?;
        let role = if user == UserType::So { Role::So } else { Role::User };
        let dek = self.check_pin(role, old)?;
        let h = self.header()?;
        let kdf = match role {
            Role::So => h.so.kdf,
            Role::User => h.user.as_ref().map(|c| c.kdf).ok_or(Error::UserPinNotInitialized)?,
        };
        let cred = self.new_credential(&h, new, &dek, role, kdf)?;
        self.change_header(|h| {
            match role {
                Role::So => h.so = cred,
                Role::User => h.user = Some(cred),
            }
            Ok(())
        })
    }
}
