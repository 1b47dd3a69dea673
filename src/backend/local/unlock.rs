//! What a token holds unlocked in this process: the integrity key and, while a user is logged
//! in, the DEK with its AES-GCM expansion and the login's memory key, behind a lock every
//! operation reads.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use zeroize::Zeroizing;

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

/// The DEK while a user is logged in: the key, its AES-GCM expansion for unsealing secrets
/// (per operation, so worth expanding once: it was a quarter of a 64-byte AES-GCM operation),
/// and the login's memory key, which keeps secrets a thread has unsealed encrypted until their
/// next operation ([`Masked`]); each in pages of their own where the OS gives them
/// (`sys::secret_page`).
pub(super) struct HeldDek {
    key: HeldKey,
    gcm: Held<crypto::aes::GcmKey>,
    memory: Option<Held<crypto::aes::MemoryKey>>,
    /// This login, among every login of the process: a value masked under another login's
    /// memory key is not taken for one of this.
    login: u64,
    /// The next nonce for the memory key.
    nonces: AtomicU64,
}

enum Held<T> {
    Page(crate::sys::secret_page::SecretBox<T>),
    Heap(Box<T>),
}

impl<T> Held<T> {
    fn new(value: T) -> Held<T> {
        match crate::sys::secret_page::SecretBox::new(value) {
            Ok(b) => Held::Page(b),
            Err(v) => Held::Heap(Box::new(v)),
        }
    }
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Held::Page(b) => b,
            Held::Heap(b) => b,
        }
    }
}

static LOGINS: AtomicU64 = AtomicU64::new(1);

/// The longest secret kept masked (AES, HMAC and EC keys; an RSA key, whose operation dwarfs
/// its unsealing, is unsealed each time).
pub(super) const MASKED_MAX: usize = 64;

/// A secret encrypted under one login's memory key, held by the thread that unsealed it (with
/// its copy of the object, `view.rs`): the next operation with the key unmasks it rather than
/// opening the record's seal again. It is not secret itself, and dies with the copy.
pub(super) struct Masked {
    login: u64,
    nonce: u64,
    len: u8,
    bytes: [u8; MASKED_MAX],
}

impl HeldDek {
    pub(super) fn new(dek: &Key32) -> HeldDek {
        let memory = match crypto::aes::MemoryKey::random() {
            Ok(k) => Some(Held::new(k)),
            Err(e) => {
                log::warn!("no memory key for this login ({e}): every operation opens its key's seal");
                None
            }
        };
        HeldDek {
            key: HeldKey::new(dek),
            gcm: Held::new(crypto::aes::GcmKey::new(dek)),
            memory,
            login: LOGINS.fetch_add(1, Ordering::Relaxed),
            nonces: AtomicU64::new(0),
        }
    }
    pub(super) fn key(&self) -> Key32 {
        self.key.key()
    }
    pub(super) fn gcm(&self) -> &crypto::aes::GcmKey {
        &self.gcm
    }
    /// `secret` masked under this login's memory key; none for a secret longer than
    /// [`MASKED_MAX`] or without a memory key.
    pub(super) fn mask(&self, secret: &[u8]) -> Option<Masked> {
        let memory = self.memory.as_ref()?;
        if secret.len() > MASKED_MAX {
            return None;
        }
        let nonce = self.nonces.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; MASKED_MAX];
        bytes[..secret.len()].copy_from_slice(secret);
        memory.apply(nonce, &mut bytes[..secret.len()]);
        Some(Masked {
            login: self.login,
            nonce,
            len: secret.len() as u8,
            bytes,
        })
    }
    /// The secret `m` masks, if it was masked during this login.
    pub(super) fn unmask(&self, m: &Masked) -> Option<Zeroizing<Vec<u8>>> {
        let memory = self.memory.as_ref().filter(|_| m.login == self.login)?;
        let mut secret = Zeroizing::new(m.bytes[..m.len as usize].to_vec());
        memory.apply(m.nonce, &mut secret);
        Some(secret)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dek(byte: u8) -> HeldDek {
        HeldDek::new(&Key32::new([byte; 32]))
    }

    #[test]
    fn a_masked_secret_is_not_the_secret_and_comes_back_only_in_its_login() {
        let secret = [0x5au8; 32];
        let login = dek(1);
        let m = login.mask(&secret).expect("masked");
        assert_ne!(&m.bytes[..32], &secret[..], "masked bytes are the secret");
        assert_eq!(login.unmask(&m).as_deref().map(Vec::as_slice), Some(&secret[..]));
        // Each value has a nonce of its own: the same secret masks to other bytes.
        let again = login.mask(&secret).expect("masked");
        assert_ne!(again.bytes[..32], m.bytes[..32]);
        // A new login (even with the same DEK) has a new memory key and refuses the old value.
        assert!(dek(1).unmask(&m).is_none());
    }

    #[test]
    fn only_short_secrets_are_masked() {
        let login = dek(2);
        assert!(login.mask(&[7u8; MASKED_MAX]).is_some());
        assert!(login.mask(&[7u8; MASKED_MAX + 1]).is_none());
        let m = login.mask(&[]).expect("an empty value masks");
        assert_eq!(login.unmask(&m).map(|s| s.len()), Some(0));
    }
}
