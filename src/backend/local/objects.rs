//! Objects of the self-managed token: records in and out of the store (MAC-checked), session
//! objects in memory, and sealing of secret material.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::codec::{self, Record};
use super::members::Vouched;
use super::ops::Secret;
use super::store::{candidate_rows, IndexColumns, Row};
use super::unlock::Masked;
use super::vault::{self, Key32};
use super::view::{self, Stamp};
use super::{LocalBackend, SessionObject};
use crate::backend::{Lifetime, ObjectId};
use crate::crypto;
use crate::error::{Error, Result};
use crate::model::attributes::{attr, class, AttrMap};

const OBJECT_DOMAIN: &[u8] = b"keygate/v1/object";

/// The slot of an object's unsealed secret (`key_cache`), shared by every copy of the object.
pub(super) type SecretSlot = Arc<Mutex<Option<Secret>>>;

/// An object as this process last read it: its clear attributes (MAC checked) and, once an
/// operation has needed it while a user is logged in, its secret unsealed. Operations share
/// it, so that starting one neither reads the store nor unseals again; each thread uses a copy
/// of its own (`view.rs`).
pub(super) struct Opened {
    pub uid: ObjectId,
    pub attrs: Arc<AttrMap>,
    /// The sealed secret and the additional data it is bound to.
    sealed: Option<(Vec<u8>, Vec<u8>)>,
    pub lifetime: Lifetime,
    /// The secret, unsealed, when the token's `key_cache` is on and a user is logged in.
    secret: SecretSlot,
    /// Otherwise the secret masked under the login's memory key, once this copy's thread has
    /// unsealed it (each copy its own: nothing shared is written per operation, `view.rs`).
    masked: OnceLock<Masked>,
    /// An Ed25519 key's verifying key, derived from its seed at its first signature (public;
    /// deriving it costs as much as a signature).
    pub ed25519_public: Arc<OnceLock<ed25519_dalek::VerifyingKey>>,
}

impl Opened {
    fn new(r: Record, lifetime: Lifetime, uuid: &[u8; 16]) -> Opened {
        let sealed = r.sealed.map(|blob| (blob, vault::aad(uuid, &r.uid, &r.attrs)));
        Opened {
            uid: r.uid,
            attrs: Arc::new(r.attrs),
            sealed,
            lifetime,
            secret: Arc::new(Mutex::new(None)),
            masked: OnceLock::new(),
            ed25519_public: Arc::new(OnceLock::new()),
        }
    }

    /// A copy for one thread's use: its own attributes and reference counts, sharing the
    /// secret's slot and the derived public key with the original.
    pub(super) fn private_copy(&self) -> Opened {
        Opened {
            uid: self.uid,
            attrs: Arc::new((*self.attrs).clone()),
            sealed: self.sealed.clone(),
            lifetime: self.lifetime,
            secret: self.secret.clone(),
            masked: OnceLock::new(),
            ed25519_public: self.ed25519_public.clone(),
        }
    }

    /// Drops the unsealed secret (zeroised when the last operation using it ends).
    pub(super) fn forget_secret(&self) {
        *self.secret.lock() = None;
    }

    fn record(&self) -> Record {
        Record {
            uid: self.uid,
            attrs: (*self.attrs).clone(),
            sealed: self.sealed.as_ref().map(|(blob, _)| blob.clone()),
        }
    }
}

/// The token objects this process has opened, valid while the store's data version is the one
/// they were read at: a change committed by another process empties it (DESIGN.md §4).
#[derive(Default)]
pub(super) struct OpenedCache {
    version: Option<super::store::Version>,
    map: crate::fastmap::FastMap<ObjectId, Arc<Opened>>,
}

/// The largest record (encoded body) a session that has not logged in may write: public data
/// objects and certificates fit easily.
pub(super) const UNAUTHENTICATED_RECORD_MAX: usize = 64 * 1024;
/// A session that has not logged in creates no token object once the token holds this many.
pub(super) const UNAUTHENTICATED_OBJECTS_MAX: u64 = 10_000;

/// At most this many token objects stay open; beyond it the cache starts again empty (a token
/// used with more keys than this reads them from the store more often, nothing else).
const OPENED_MAX: usize = 4096;

impl OpenedCache {
    /// Forgets every object, and with them every unsealed secret (logout, re-initialisation).
    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.version = None;
    }
}

fn has_secret(attrs: &AttrMap) -> bool {
    matches!(
        attrs.ulong(attr::CLASS),
        Ok(Some(class::SECRET_KEY | class::PRIVATE_KEY))
    )
}

impl LocalBackend {
    /// The token's identity and integrity key, from the cache or the verified header.
    pub(super) fn current(&self) -> Result<([u8; 16], Key32)> {
        {
            let u = self.unlocked.read();
            if let (Some((uuid, _)), Some(k)) = (u.ident, &u.k_int) {
                return Ok((uuid, k.key()));
            }
        }
        let h = self.header()?;
        Ok((h.uuid, self.k_int(&h)?))
    }

    fn row_mac(k: &Key32, uuid: &[u8; 16], uid: &ObjectId, body: &[u8]) -> Result<[u8; 32]> {
        vault::mac(k, OBJECT_DOMAIN, &[uuid, uid, body])
    }

    /// Decodes a row under the integrity key `k` of token `uuid`, checking its MAC and that
    /// the record is the one its identifier names.
    pub(super) fn check_row(k: &Key32, uuid: &[u8; 16], row: &Row) -> Result<Record> {
        vault::verify_mac(k, OBJECT_DOMAIN, &[uuid, &row.uid, &row.body], &row.mac)?;
        let r = codec::decode_record(&row.body)?;
        if r.uid == row.uid {
            Ok(r)
        } else {
            Err(Error::Integrity("record moved to another identifier".into()))
        }
    }

    /// Decodes a stored row after checking its MAC; failures are logged and refused. A MAC
    /// that fails under the integrity key this process holds is tried once more after reading
    /// the header, in case another process rotated the root key (and with it K_int).
    fn open_row(&self, row: &Row) -> Result<Record> {
        let (uuid, k) = self.current()?;
        let mut checked = Self::check_row(&k, &uuid, row);
        if checked.is_err() {
            let ident = self.unlocked.read().ident;
            if let Ok(h) = self.header() {
                if ident != Some((h.uuid, h.root_id)) {
                    checked = self.k_int(&h).and_then(|k| Self::check_row(&k, &h.uuid, row));
                }
            }
        }
        checked.inspect_err(|e| {
            log::error!(
                "token {:?}: object {} refused: {e}",
                self.cfg.label,
                hex::encode(row.uid)
            );
        })
    }

    /// The store's version (`Store::version`), read without touching a shared reference count.
    pub(super) fn store_version(&self) -> Result<super::store::Version> {
        if let Some(s) = &*self.store.load() {
            return s.version();
        }
        self.store()?.version()
    }

    /// Marks every thread's copies of token objects stale (`view.rs`).
    pub(super) fn bump_opened(&self) {
        self.opened_generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    pub(super) fn opened_generation(&self) -> u64 {
        self.opened_generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forgets every opened token object (and with them the secrets `key_cache` kept).
    pub(super) fn forget_opened(&self) {
        self.opened.lock().clear();
        self.bump_opened();
    }

    /// What a copy of an object of `lifetime` made now is stamped with (`view.rs`).
    fn stamp(&self, lifetime: Lifetime) -> Result<Stamp> {
        Ok(match lifetime {
            Lifetime::Token => Stamp::Token(self.opened_generation(), self.store_version()?),
            Lifetime::Session(_) => Stamp::Session(self.session_objects.generation()),
        })
    }

    /// An object: this thread's copy while nothing changed since it was made, else from this
    /// process's caches (a token object's when the store has not changed since it was read).
    pub(super) fn opened(&self, id: &ObjectId) -> Result<Arc<Opened>> {
        if let Some((stamp, o)) = view::get(self.id, id) {
            if stamp == self.stamp(o.lifetime)? {
                return Ok(o);
            }
        }
        // Each stamp is read before what it stamps: a change in between makes the copy stale
        // at once, never current while outdated.
        let stamp = self.stamp(Lifetime::Session(0))?;
        if let Some(o) = self.session_objects.read().get(id) {
            return Ok(view::put(self.id, stamp, &o.opened));
        }
        let stamp = self.stamp(Lifetime::Token)?;
        let Stamp::Token(_, version) = stamp else {
            unreachable!("a token stamp")
        };
        let store = self.store()?;
        {
            let mut cache = self.opened.lock();
            if cache.version != Some(version) {
                cache.map.clear();
                cache.version = Some(version);
            }
            if let Some(o) = cache.map.get(id) {
                let o = o.clone();
                drop(cache);
                return Ok(view::put(self.id, stamp, &o));
            }
        }
        // Read and checked without the cache's lock (opening takes the unlock state's lock,
        // which logout holds while it empties the cache).
        let row = self.vouched_row(&store, id)?;
        let (uuid, _) = self.current()?;
        let o = Arc::new(Opened::new(self.open_row(&row)?, Lifetime::Token, &uuid));
        let mut cache = self.opened.lock();
        if cache.version == Some(version) {
            if cache.map.len() >= OPENED_MAX {
                cache.map.clear();
            }
            cache.map.insert(*id, o.clone());
        }
        drop(cache);
        Ok(view::put(self.id, stamp, &o))
    }

    /// An object's record (a copy, to change) and lifetime.
    pub(super) fn load(&self, id: &ObjectId) -> Result<(Record, Lifetime)> {
        let o = self.opened(id)?;
        Ok((o.record(), o.lifetime))
    }

    /// Forgets what this process has cached of an object (it changed or is gone).
    fn forget(&self, id: &ObjectId) {
        self.opened.lock().map.remove(id);
        self.bump_opened();
    }

    /// The secret material of a key, unsealed under the DEK (login required). With the token's
    /// `key_cache` on, it is unsealed on first use and kept with the opened object until logout
    /// or until the object changes. Otherwise it is in the clear for each operation only: the
    /// thread that unsealed it keeps it masked under the login's memory key with its copy of
    /// the object (until logout or a change), and unmasks it for its next operation.
    pub(super) fn secret(&self, o: &Opened) -> Result<Secret> {
        // Held across the unsealing, so that a logout (which takes it to write) cannot happen
        // between the check and the caching.
        let unlocked = self.unlocked.read();
        let public_session = Self::public_session(o.lifetime, &o.attrs);
        let dek = match public_session {
            true => None,
            false => Some(unlocked.dek.as_ref().ok_or(Error::UserNotLoggedIn)?),
        };
        // The cache's lock only where there is a cache: without it, threads using one key
        // unseal it side by side.
        let slot = match self.cfg.key_cache {
            true => {
                let g = o.secret.lock();
                if let Some(s) = &*g {
                    return Ok(s.clone());
                }
                Some(g)
            }
            false => None,
        };
        // Unsealed by this thread before, during this login: unmasked, not opened again.
        if let (None, Some(dek), Some(m)) = (&slot, dek, o.masked.get()) {
            if let Some(s) = dek.unmask(m) {
                return Ok(Secret::Own(s));
            }
        }
        let (blob, aad) = o.sealed.as_ref().ok_or(Error::KeyTypeInconsistent)?;
        let opened = match dek {
            Some(dek) => vault::unseal_with(dek.gcm(), aad, blob),
            None => vault::unseal(&self.session_key()?, aad, blob),
        };
        let secret = match opened {
            Ok(s) => s,
            Err(e) => {
                let dek = dek.map(super::HeldDek::key);
                drop(slot);
                drop(unlocked);
                // Sealed under a newer DEK (`keygate rotate-dek` in another process)?
                if let (Some(dek), Ok(h)) = (dek, self.header()) {
                    self.check_dek_current(&h, &dek)?;
                }
                log::error!("token {:?}: object {} refused: {e}", self.cfg.label, hex::encode(o.uid));
                return Err(e);
            }
        };
        if let (None, Some(dek)) = (&slot, dek) {
            if let Some(m) = dek.mask(&secret) {
                // Another operation of this copy's may have set it first: the same secret.
                let _ = o.masked.set(m);
            }
        }
        let Some(mut g) = slot else {
            return Ok(Secret::Own(secret));
        };
        let secret = Secret::Own(secret).shared();
        *g = Some(secret.clone());
        // Wherever copies of the object go, logout finds the slot (`pins.rs`).
        let mut held = self.cached_secrets.lock();
        held.retain(|w| w.strong_count() > 0);
        held.push(Arc::downgrade(&o.secret));
        Ok(secret)
    }

    /// Builds a record: the secret (`CKA_VALUE` of a key) moves out of the clear attributes
    /// into the sealed blob.
    fn seal_record(&self, uid: ObjectId, mut attrs: AttrMap, lifetime: Lifetime) -> Result<Record> {
        attrs.set(attr::UNIQUE_ID, hex::encode(uid).into_bytes());
        let secret = if has_secret(&attrs) {
            attrs.remove(attr::VALUE).map(Zeroizing::new)
        } else {
            None
        };
        let sealed = match secret {
            None => None,
            Some(s) => {
                let dek = match Self::public_session(lifetime, &attrs) {
                    true => self.session_key()?,
                    false => self.dek()?,
                };
                let (uuid, _) = self.current()?;
                Some(vault::seal(&dek, &vault::aad(&uuid, &uid, &attrs), &s)?)
            }
        };
        Ok(Record { uid, attrs, sealed })
    }

    pub(super) fn index_of(r: &Record) -> IndexColumns<'_> {
        IndexColumns {
            class: r.attrs.ulong(attr::CLASS).ok().flatten().unwrap_or(u64::MAX),
            label: r.attrs.get(attr::LABEL),
            ckid: r.attrs.get(attr::ID),
        }
    }

    /// The row a client's change writes: within the codec's limits, and without a login
    /// within [`UNAUTHENTICATED_RECORD_MAX`], in a token under [`UNAUTHENTICATED_OBJECTS_MAX`]
    /// objects, so that a client that has not logged in cannot make the token unusable.
    fn row_to_write(&self, h: &super::header::Header, k: &Key32, r: &Record, new: bool) -> Result<Row> {
        codec::check_limits(r)?;
        let row = Self::row_of(k, &h.uuid, r)?;
        if self.unlocked.read().dek.is_none() {
            if row.body.len() > UNAUTHENTICATED_RECORD_MAX {
                log::warn!(
                    "token {:?}: refused a {}-byte record from a session that has not logged in (at most {UNAUTHENTICATED_RECORD_MAX})",
                    self.cfg.label,
                    row.body.len()
                );
                return Err(Error::AttributeValueInvalid(attr::VALUE));
            }
            if new && h.objects >= UNAUTHENTICATED_OBJECTS_MAX {
                log::warn!(
                    "token {:?}: refused a new object from a session that has not logged in: the token holds {} objects (at most {UNAUTHENTICATED_OBJECTS_MAX} for such writes)",
                    self.cfg.label,
                    h.objects
                );
                return Err(Error::DeviceMemory);
            }
        }
        Ok(row)
    }

    pub(super) fn row_of(k: &Key32, uuid: &[u8; 16], r: &Record) -> Result<Row> {
        let body = codec::encode_record(r);
        let mac = Self::row_mac(k, uuid, &r.uid, &body)?.to_vec();
        Ok(Row { uid: r.uid, body, mac })
    }

    /// Stores new records, all or none (a key pair is written in one transaction).
    pub(super) fn put_new(&self, records: Vec<(Lifetime, Record)>) -> Result<Vec<ObjectId>> {
        let ids = records.iter().map(|(_, r)| r.uid).collect();
        let token: Vec<&Record> = records
            .iter()
            .filter(|(l, _)| *l == Lifetime::Token)
            .map(|(_, r)| r)
            .collect();
        if !token.is_empty() {
            let dek = match token.iter().any(|r| r.sealed.is_some()) {
                true => Some(self.dek()?),
                false => None,
            };
            self.transact(|tx, h, k| {
                if let Some(dek) = &dek {
                    self.check_dek_current(h, dek)?;
                }
                for r in &token {
                    tx.insert(&Self::index_of(r), &self.row_to_write(h, k, r, true)?)?;
                }
                Ok(())
            })?;
            for r in &token {
                log::debug!("token {:?}: object {} stored", self.cfg.label, hex::encode(r.uid));
            }
        }
        let uuid = if records.iter().any(|(l, _)| *l != Lifetime::Token) {
            self.current()?.0
        } else {
            [0; 16]
        };
        let mut map = self.session_objects.write();
        for (l, r) in records {
            if let Lifetime::Session(s) = l {
                let opened = Arc::new(Opened::new(r, l, &uuid));
                map.insert(opened.uid, SessionObject { session: s, opened });
            }
        }
        Ok(ids)
    }

    /// A record for a new object of `lifetime` (fresh identifier) from complete attributes.
    pub(super) fn new_record(&self, attrs: AttrMap, lifetime: Lifetime) -> Result<Record> {
        let mut uid = [0u8; 16];
        crypto::random(&mut uid)?;
        self.seal_record(uid, attrs, lifetime)
    }

    /// A public session object: usable in a public session (PKCS#11's session states), so its
    /// secret is sealed under this process's session key, not under the DEK, which exists only
    /// while the user is logged in. It never leaves the process's memory.
    fn public_session(lifetime: Lifetime, attrs: &AttrMap) -> bool {
        matches!(lifetime, Lifetime::Session(_)) && !attrs.flag(attr::PRIVATE)
    }

    pub(crate) fn find_impl(&self, template: &AttrMap, private_visible: bool) -> Result<Vec<ObjectId>> {
        let visible = |a: &AttrMap| (private_visible || !a.flag(attr::PRIVATE)) && a.matches(template);
        let mut out: Vec<ObjectId> = self
            .session_objects
            .read()
            .iter()
            .filter(|(_, o)| visible(&o.opened.attrs))
            .map(|(id, _)| *id)
            .collect();
        if template.bool(attr::TOKEN)? == Some(false) {
            return Ok(out);
        }
        let Some(store) = self.store_opt()? else { return Ok(out) };
        let class = template.ulong(attr::CLASS)?;
        let (label, ckid) = (template.get(attr::LABEL), template.get(attr::ID));
        let Some((v, rows)) = self.read_vouched(&store, |c| candidate_rows(c, class, label, ckid))? else {
            return Ok(out);
        };
        for row in rows {
            // A record the header does not vouch for, or that fails its own checks, is logged and
            // skipped; the others still work.
            match v.vouch(&row) {
                Vouched::Yes => {}
                refused => {
                    self.refuse(&row, refused);
                    continue;
                }
            }
            if let Ok(r) = self.open_row(&row) {
                if visible(&r.attrs) {
                    out.push(r.uid);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn update_impl(&self, id: &ObjectId, attrs: AttrMap) -> Result<()> {
        let (mut r, lifetime) = self.load(id)?;
        r.attrs = attrs;
        match lifetime {
            Lifetime::Session(_) => {
                let (uuid, _) = self.current()?;
                if let Some(o) = self.session_objects.write().get_mut(id) {
                    o.opened = Arc::new(Opened::new(r, lifetime, &uuid));
                }
                Ok(())
            }
            Lifetime::Token => {
                // The sealed secret is taken from the record as it is inside the transaction, so
                // that a concurrent `rotate-dek` can never be undone by a stale copy.
                self.transact(|tx, h, k| {
                    let row = tx.get(id)?.ok_or(Error::ObjectHandleInvalid)?;
                    let current = Self::check_row(k, &h.uuid, &row)?;
                    let new = Record {
                        uid: *id,
                        attrs: r.attrs,
                        sealed: current.sealed,
                    };
                    tx.replace(&Self::index_of(&new), &self.row_to_write(h, k, &new, false)?)
                })?;
                // After the commit: a reader in between still saw the old, committed record.
                self.forget(id);
                log::debug!("token {:?}: object {} updated", self.cfg.label, hex::encode(id));
                Ok(())
            }
        }
    }

    pub(crate) fn copy_impl(&self, id: &ObjectId, lifetime: Lifetime, mut attrs: AttrMap) -> Result<ObjectId> {
        let o = self.opened(id)?;
        if o.sealed.is_some() {
            attrs.set(attr::VALUE, self.secret(&o)?.to_vec());
        }
        let new = self.new_record(attrs, lifetime)?;
        Ok(self.put_new(vec![(lifetime, new)])?[0])
    }

    pub(crate) fn destroy_impl(&self, id: &ObjectId) -> Result<()> {
        if self.session_objects.write().remove(id).is_some() {
            return Ok(());
        }
        let deleted = self.transact(|tx, _, _| tx.delete(id))?;
        self.forget(id);
        if deleted {
            log::debug!("token {:?}: object {} destroyed", self.cfg.label, hex::encode(id));
            // secure_delete zeroed the record in the database's pages; the write-ahead log
            // still holds earlier copies of those pages until it is emptied.
            match self.store()?.checkpoint() {
                Ok(true) => {}
                Ok(false) => log::info!(
                    "token {:?}: another process is reading the store; the destroyed record's old pages leave the write-ahead log at its next checkpoint",
                    self.cfg.label
                ),
                Err(e) => log::warn!("token {:?}: checkpoint after destroy failed: {e}", self.cfg.label),
            }
            Ok(())
        } else {
            Err(Error::ObjectHandleInvalid)
        }
    }

    pub(crate) fn session_closed_impl(&self, session: u64) {
        self.session_objects.write().retain(|_, o| o.session != session);
    }
}
