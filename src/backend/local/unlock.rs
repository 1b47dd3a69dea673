//! What a token holds unlocked in this process: the integrity key and, while a user is logged
//! in, the DEK with its AES-GCM expansion, behind a lock every operation reads.

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};

use super::vault::Key32;
use crate::crypto;
use crate::sys::secret_page::HeldKey;

/// Key material unlocked for this process: the integrity key (needs only the HSM) of the token
/// with this identity (uuid, root key id) and, while someone is logged in, the DEK; and the
/// highest epoch this process has seen the token's header at (it never goes back).
#[derive(Default)]
pub(super) struct Unlocked {
    pub(super) ident: Option<([u8; 16], [u8; 16])>,
    pub(super) k_int: Option<HeldKey>,
    pub(super) dek: Option<HeldDek>,
    pub(super) epoch: u64,
}

/// The DEK while a user is logged in: the key, and its AES-GCM expansion for unsealing secrets
/// (per operation, so worth expanding once: it was a quarter of a 64-byte AES-GCM operation),
/// each in pages of their own where the OS gives them (`sys::secret_page`).
pub(super) struct HeldDek {
    key: HeldKey,
    gcm: HeldGcm,
}

enum HeldGcm {
    Page(crate::sys::secret_page::SecretBox<crypto::aes::GcmKey>),
    Heap(Box<crypto::aes::GcmKey>),
}

impl HeldDek {
    pub(super) fn new(dek: &Key32) -> HeldDek {
        let gcm = match crate::sys::secret_page::SecretBox::new(crypto::aes::GcmKey::new(dek)) {
            Ok(b) => HeldGcm::Page(b),
            Err(k) => HeldGcm::Heap(Box::new(k)),
        };
        HeldDek {
            key: HeldKey::new(dek),
            gcm,
        }
    }
    pub(super) fn key(&self) -> Key32 {
        self.key.key()
    }
    pub(super) fn gcm(&self) -> &crypto::aes::GcmKey {
        match &self.gcm {
            HeldGcm::Page(b) => b,
            HeldGcm::Heap(b) => b,
        }
    }
}

/// [`Unlocked`] behind a lock with a lock word per shard: every operation reads it (the DEK),
/// and threads that read one shared lock word would write one shared cache line. Login and
/// logout take every shard.
pub(super) struct UnlockState(pub(super) ShardedLock<Unlocked>);

impl UnlockState {
    pub(super) fn read(&self) -> ShardedLockReadGuard<'_, Unlocked> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub(super) fn write(&self) -> ShardedLockWriteGuard<'_, Unlocked> {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
