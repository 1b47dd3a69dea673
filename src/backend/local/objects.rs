//! Objects of the self-managed token: records in and out of the store (MAC-checked), session
//! objects in memory, and sealing of secret material.

use zeroize::Zeroizing;

use super::codec::{self, Record};
use super::store::{IndexColumns, Row};
use super::vault::{self, Key32};
use super::{crypto, LocalBackend, SessionObject};
use crate::backend::{Lifetime, ObjectId};
use crate::error::{Error, Result};
use crate::token::attributes::{attr, class, AttrMap};

const OBJECT_DOMAIN: &[u8] = b"keygate/v1/object";

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
            if let (Some(uuid), Some(k)) = (u.uuid, &u.k_int) {
                return Ok((uuid, k.key()));
            }
        }
        let h = self.header()?;
        Ok((h.uuid, self.k_int(&h)?))
    }

    fn row_mac(k: &Key32, uuid: &[u8; 16], uid: &ObjectId, body: &[u8]) -> Result<[u8; 32]> {
        vault::mac(k, OBJECT_DOMAIN, &[uuid, uid, body])
    }

    /// Decodes a stored row after checking its MAC; failures are logged and refused.
    fn open_row(&self, row: &Row) -> Result<Record> {
        let (uuid, k) = self.current()?;
        let checked = vault::verify_mac(&k, OBJECT_DOMAIN, &[&uuid, &row.uid, &row.body], &row.mac)
            .and_then(|()| codec::decode_record(&row.body))
            .and_then(|r| {
                if r.uid == row.uid {
                    Ok(r)
                } else {
                    Err(Error::Integrity("record moved to another identifier".into()))
                }
            });
        checked.inspect_err(|e| {
            log::error!(
                "token {:?}: object {} refused: {e}",
                self.cfg.label,
                hex::encode(row.uid)
            );
        })
    }

    /// An object's record and lifetime.
    pub(super) fn load(&self, id: &ObjectId) -> Result<(Record, Lifetime)> {
        if let Some(o) = self.session_objects.lock().get(id) {
            return Ok((o.record.clone(), Lifetime::Session(o.session)));
        }
        let store = self.store()?;
        let row = store.get(id)?.ok_or(Error::ObjectHandleInvalid)?;
        Ok((self.open_row(&row)?, Lifetime::Token))
    }

    /// The secret material of a record, unsealed under the DEK (login required).
    pub(super) fn unseal(&self, r: &Record) -> Result<Zeroizing<Vec<u8>>> {
        let sealed = r.sealed.as_ref().ok_or(Error::KeyTypeInconsistent)?;
        let dek = self.dek()?;
        let (uuid, _) = self.current()?;
        vault::unseal(&dek, &vault::aad(&uuid, &r.uid, &r.attrs), sealed).inspect_err(|e| {
            log::error!("token {:?}: object {} refused: {e}", self.cfg.label, hex::encode(r.uid));
        })
    }

    /// Builds a record: the secret (`CKA_VALUE` of a key) moves out of the clear attributes
    /// into the sealed blob.
    fn seal_record(&self, uid: ObjectId, mut attrs: AttrMap) -> Result<Record> {
        attrs.set(attr::UNIQUE_ID, hex::encode(uid).into_bytes());
        let secret = if has_secret(&attrs) {
            attrs.remove(attr::VALUE).map(Zeroizing::new)
        } else {
            None
        };
        let sealed = match secret {
            None => None,
            Some(s) => {
                let dek = self.dek()?;
                let (uuid, _) = self.current()?;
                Some(vault::seal(&dek, &vault::aad(&uuid, &uid, &attrs), &s)?)
            }
        };
        Ok(Record { uid, attrs, sealed })
    }

    fn index_of(r: &Record) -> IndexColumns<'_> {
        IndexColumns {
            class: r.attrs.ulong(attr::CLASS).ok().flatten().unwrap_or(u64::MAX),
            label: r.attrs.get(attr::LABEL),
            ckid: r.attrs.get(attr::ID),
        }
    }

    fn row_of(&self, r: &Record) -> Result<Row> {
        let (uuid, k) = self.current()?;
        let body = codec::encode_record(r);
        let mac = Self::row_mac(&k, &uuid, &r.uid, &body)?.to_vec();
        Ok(Row { uid: r.uid, body, mac })
    }

    /// Stores new records, all or none (a key pair is written in one transaction).
    pub(super) fn put_new(&self, records: Vec<(Lifetime, Record)>) -> Result<Vec<ObjectId>> {
        let ids = records.iter().map(|(_, r)| r.uid).collect();
        let mut rows = Vec::new();
        for (l, r) in &records {
            if *l == Lifetime::Token {
                rows.push((Self::index_of(r), self.row_of(r)?));
            }
        }
        if !rows.is_empty() {
            self.store()?.insert(&rows)?;
            for (_, row) in &rows {
                log::debug!("token {:?}: object {} stored", self.cfg.label, hex::encode(row.uid));
            }
        }
        let mut map = self.session_objects.lock();
        for (l, r) in records {
            if let Lifetime::Session(s) = l {
                map.insert(r.uid, SessionObject { session: s, record: r });
            }
        }
        Ok(ids)
    }

    /// A record for a new object (fresh identifier) from complete attributes.
    pub(super) fn new_record(&self, attrs: AttrMap) -> Result<Record> {
        let mut uid = [0u8; 16];
        crypto::random(&mut uid)?;
        self.seal_record(uid, attrs)
    }

    pub(crate) fn find_impl(&self, template: &AttrMap, private_visible: bool) -> Result<Vec<ObjectId>> {
        let visible = |a: &AttrMap| (private_visible || !a.flag(attr::PRIVATE)) && a.matches(template);
        let mut out: Vec<ObjectId> = self
            .session_objects
            .lock()
            .iter()
            .filter(|(_, o)| visible(&o.record.attrs))
            .map(|(id, _)| *id)
            .collect();
        if template.bool(attr::TOKEN)? == Some(false) {
            return Ok(out);
        }
        let Some(store) = self.store_opt()? else { return Ok(out) };
        if self.header_opt()?.is_none() {
            return Ok(out);
        }
        let class = template.ulong(attr::CLASS)?;
        for row in store.candidates(class, template.get(attr::LABEL), template.get(attr::ID))? {
            // A record that fails its checks is logged and skipped; the others still work.
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
                if let Some(o) = self.session_objects.lock().get_mut(id) {
                    o.record = r;
                }
                Ok(())
            }
            Lifetime::Token => {
                self.store()?.replace(Self::index_of(&r), &self.row_of(&r)?)?;
                log::debug!("token {:?}: object {} updated", self.cfg.label, hex::encode(id));
                Ok(())
            }
        }
    }

    pub(crate) fn copy_impl(&self, id: &ObjectId, lifetime: Lifetime, mut attrs: AttrMap) -> Result<ObjectId> {
        let (r, _) = self.load(id)?;
        if r.sealed.is_some() {
            attrs.set(attr::VALUE, self.unseal(&r)?.to_vec());
        }
        let new = self.new_record(attrs)?;
        Ok(self.put_new(vec![(lifetime, new)])?[0])
    }

    pub(crate) fn destroy_impl(&self, id: &ObjectId) -> Result<()> {
        if self.session_objects.lock().remove(id).is_some() {
            return Ok(());
        }
        if self.store()?.delete(id)? {
            log::debug!("token {:?}: object {} destroyed", self.cfg.label, hex::encode(id));
            Ok(())
        } else {
            Err(Error::ObjectHandleInvalid)
        }
    }

    pub(crate) fn session_closed_impl(&self, session: u64) {
        self.session_objects.lock().retain(|_, o| o.session != session);
    }
}
