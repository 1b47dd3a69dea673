//! The token header: identity, the wrapped DEK per role, and the PIN failure counters. It is
//! MAC'd like every record, so the retry counter cannot be reset without the HSM. It also
//! vouches for the set of objects (their number and an XOR of one MAC per identifier), so that a
//! record deleted from the database behind keygate's back is noticed, and it identifies the DEK
//! the records are sealed under, so that a process still holding a rotated-out DEK notices.
//! Its epoch counts the token's committed changes; the HSM anchor (`anchor.rs`) vouches for it,
//! so that an older copy of the store is refused.

use super::codec::{Reader, Writer};
use super::vault::KdfParams;
use crate::error::{Error, Result};

/// One role's credential: how to turn its PIN into a KEK, and the DEK wrapped under that KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: [u8; 16],
    pub kdf: KdfParams,
    pub wrapped_dek: Vec<u8>,
}

/// The header format written by this code. Version 3 is version 4 without `epoch` (read as 0),
/// version 2 is version 3 without `retiring`; both are still read. Version 1 (before object membership and the DEK check) was a development format
/// only; such a store is refused with a clear message.
pub const HEADER_VERSION: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub uuid: [u8; 16],
    pub label: String,
    /// CKA_ID of the root key in the HSM.
    pub root_id: [u8; 16],
    pub so: Credential,
    pub user: Option<Credential>,
    pub so_failures: u32,
    pub user_failures: u32,
    /// How many token objects the store holds.
    pub objects: u64,
    /// XOR over the objects of HMAC(K_int, member domain ‖ uuid ‖ uid) (`vault::member_tag`).
    pub members: [u8; 32],
    /// Identifies the DEK (`vault::dek_check`), not secret.
    pub dek_check: [u8; 16],
    /// A root key to destroy, never `root_id` (`keygate rotate-root`).
    pub retiring: Option<Retiring>,
    /// How many changes the token has committed; every commit adds one, and the HSM anchor
    /// names the epoch the store must be at (`anchor.rs`). 0 in a store written before anchors.
    pub epoch: u64,
}

/// A root key a rotation leaves to destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retiring {
    /// The new key of a rotation under way, or of one that did not commit: it never protected
    /// anything, but may yet become the root, so it is forgotten before it is destroyed.
    Unused([u8; 16]),
    /// The root key before a rotation that committed: backups made before still open under it,
    /// so it is destroyed before it is forgotten.
    Previous([u8; 16]),
}

impl Retiring {
    pub fn id(&self) -> [u8; 16] {
        match self {
            Retiring::Unused(id) | Retiring::Previous(id) => *id,
        }
    }
}

fn put_cred(w: &mut Writer, c: &Credential) {
    w.bytes(&c.salt);
    w.u32(c.kdf.memory_kib);
    w.u32(c.kdf.iterations);
    w.u32(c.kdf.parallelism);
    w.bytes(&c.wrapped_dek);
}

fn get_cred(r: &mut Reader<'_>) -> Result<Credential> {
    let salt = r.fixed::<16>()?;
    let kdf = KdfParams {
        memory_kib: r.u32()?,
        iterations: r.u32()?,
        parallelism: r.u32()?,
    };
    Ok(Credential {
        salt,
        kdf,
        wrapped_dek: r.bytes()?.to_vec(),
    })
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(HEADER_VERSION);
        w.bytes(&self.uuid);
        w.bytes(self.label.as_bytes());
        w.bytes(&self.root_id);
        put_cred(&mut w, &self.so);
        match &self.user {
            None => w.u8(0),
            Some(c) => {
                w.u8(1);
                put_cred(&mut w, c);
            }
        }
        w.u32(self.so_failures);
        w.u32(self.user_failures);
        w.u64(self.objects);
        w.bytes(&self.members);
        w.bytes(&self.dek_check);
        match &self.retiring {
            None => w.u8(0),
            Some(Retiring::Unused(id)) => {
                w.u8(1);
                w.bytes(id);
            }
            Some(Retiring::Previous(id)) => {
                w.u8(2);
                w.bytes(id);
            }
        }
        w.u64(self.epoch);
        w.0
    }

    /// Counts an object in: its member tag XORed into the digest.
    pub fn add_member(&mut self, tag: &[u8; 32]) {
        super::vault::xor_into(&mut self.members, tag);
        self.objects = self.objects.saturating_add(1);
    }

    /// Counts an object out.
    pub fn remove_member(&mut self, tag: &[u8; 32]) {
        super::vault::xor_into(&mut self.members, tag);
        self.objects = self.objects.saturating_sub(1);
    }

    pub fn decode(buf: &[u8]) -> Result<Header> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        match version {
            2 | 3 | HEADER_VERSION => {}
            1 => {
                return Err(Error::Integrity(
                    "the token header is of version 1, a development format this keygate no longer reads; re-initialise the token".into(),
                ))
            }
            v => return Err(Error::Integrity(format!("unknown token header version {v}"))),
        }
        let uuid = r.fixed::<16>()?;
        let label = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| Error::Integrity("label not UTF-8".into()))?;
        let root_id = r.fixed::<16>()?;
        let so = get_cred(&mut r)?;
        let user = if r.bool()? { Some(get_cred(&mut r)?) } else { None };
        let so_failures = r.u32()?;
        let user_failures = r.u32()?;
        let objects = r.u64()?;
        let members = r.fixed::<32>()?;
        let dek_check = r.fixed::<16>()?;
        let retiring = match if version >= 3 { r.u8()? } else { 0 } {
            0 => None,
            1 => Some(Retiring::Unused(r.fixed::<16>()?)),
            2 => Some(Retiring::Previous(r.fixed::<16>()?)),
            _ => return Err(Error::Integrity("bad retiring root key tag".into())),
        };
        let epoch = if version >= 4 { r.u64()? } else { 0 };
        r.finish()?;
        Ok(Header {
            uuid,
            label,
            root_id,
            so,
            user,
            so_failures,
            user_failures,
            objects,
            members,
            dek_check,
            retiring,
            epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strict() {
        let c = Credential {
            salt: [1; 16],
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            wrapped_dek: vec![2; 40],
        };
        let h = Header {
            uuid: [3; 16],
            label: "t".into(),
            root_id: [4; 16],
            so: c.clone(),
            user: Some(c),
            so_failures: 1,
            user_failures: 2,
            objects: 3,
            members: [5; 32],
            dek_check: [6; 16],
            retiring: Some(Retiring::Previous([7; 16])),
            epoch: 9,
        };
        let enc = h.encode();
        assert_eq!(Header::decode(&enc).unwrap(), h);
        let unused = Header {
            retiring: Some(Retiring::Unused([8; 16])),
            ..h.clone()
        };
        assert_eq!(Header::decode(&unused.encode()).unwrap(), unused);
        let none = Header {
            retiring: None,
            epoch: 0,
            ..h.clone()
        };
        assert_eq!(Header::decode(&none.encode()).unwrap(), none);
        // Version 3: the same without the epoch (read as 0); version 2 also without `retiring`.
        let mut v3 = none.encode();
        v3[0] = 3;
        v3.truncate(v3.len() - 8);
        assert_eq!(Header::decode(&v3).unwrap(), none);
        let mut v2 = v3.clone();
        v2[0] = 2;
        v2.pop();
        assert_eq!(Header::decode(&v2).unwrap(), none);
        let mut longer = enc.clone();
        longer.push(0);
        assert!(Header::decode(&longer).is_err());
        assert!(Header::decode(&enc[..enc.len() - 1]).is_err());
    }
}
