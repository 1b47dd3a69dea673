//! The token header: identity, the wrapped DEK per role, and the PIN failure counters. It is
//! MAC'd like every record, so the retry counter cannot be reset without the HSM.

use super::codec::{Reader, Writer, FORMAT_VERSION};
use super::vault::KdfParams;
use crate::error::{Error, Result};

/// One role's credential: how to turn its PIN into a KEK, and the DEK wrapped under that KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: [u8; 16],
    pub kdf: KdfParams,
    pub wrapped_dek: Vec<u8>,
}

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
        w.u8(FORMAT_VERSION);
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
        w.0
    }

    pub fn decode(buf: &[u8]) -> Result<Header> {
        let mut r = Reader::new(buf);
        if r.u8()? != FORMAT_VERSION {
            return Err(Error::Integrity("unknown header version".into()));
        }
        let uuid = r.fixed::<16>()?;
        let label = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| Error::Integrity("label not UTF-8".into()))?;
        let root_id = r.fixed::<16>()?;
        let so = get_cred(&mut r)?;
        let user = if r.bool()? { Some(get_cred(&mut r)?) } else { None };
        let so_failures = r.u32()?;
        let user_failures = r.u32()?;
        r.finish()?;
        Ok(Header {
            uuid,
            label,
            root_id,
            so,
            user,
            so_failures,
            user_failures,
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
        };
        let enc = h.encode();
        assert_eq!(Header::decode(&enc).unwrap(), h);
        let mut longer = enc.clone();
        longer.push(0);
        assert!(Header::decode(&longer).is_err());
        assert!(Header::decode(&enc[..enc.len() - 1]).is_err());
    }
}
