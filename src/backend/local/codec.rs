//! The canonical, length-checked encoding of store records (see `docs/storage-format.md`).
//!
//! One encoding per value: integers big-endian, byte strings with a u32 length prefix,
//! attributes in strictly ascending type order, no trailing data. The decoder never panics on
//! any input (it is a fuzz target).

use crate::backend::ObjectId;
use crate::error::{Error, Result};
use crate::model::attributes::AttrMap;

/// The record format version written by this code.
pub const FORMAT_VERSION: u8 = 1;
/// Upper bound on a byte string inside a record (a certificate chain fits easily).
const MAX_BYTES: usize = 1 << 20;
/// Upper bound on the attributes of one object.
const MAX_ATTRS: u32 = 256;

#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    pub fn attrs(&mut self, m: &AttrMap) {
        self.u32(m.len() as u32);
        for (t, v) in m.iter() {
            self.u64(t);
            self.bytes(v);
        }
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
}

fn malformed(what: &str) -> Error {
    Error::Integrity(format!("malformed record: {what}"))
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(malformed("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > MAX_BYTES {
            return Err(malformed("byte string too long"));
        }
        self.take(n)
    }
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.bytes()?.try_into().map_err(|_| malformed("wrong fixed length"))
    }
    pub fn attrs(&mut self) -> Result<AttrMap> {
        let n = self.u32()?;
        if n > MAX_ATTRS {
            return Err(malformed("too many attributes"));
        }
        let mut m = AttrMap::new();
        let mut last: Option<u64> = None;
        for _ in 0..n {
            let t = self.u64()?;
            if last.is_some_and(|l| l >= t) {
                return Err(malformed("attributes out of order"));
            }
            last = Some(t);
            m.set(t, self.bytes()?.to_vec());
        }
        Ok(m)
    }
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed("bad boolean")),
        }
    }
    /// Ends decoding; trailing bytes are an error.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing data"))
        }
    }
}

/// An object as stored: clear attributes and, for keys with secret material, the sealed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub uid: ObjectId,
    pub attrs: AttrMap,
    pub sealed: Option<Vec<u8>>,
}

/// Refuses a record the decoder would not read back (an attribute value or sealed blob over
/// 1 MiB, more than 256 attributes): every write checks this first, so that nothing is accepted
/// that would later make the record, and `keygate verify` with it, fail.
pub fn check_limits(r: &Record) -> Result<()> {
    if r.attrs.len() > MAX_ATTRS as usize {
        return Err(Error::TemplateInconsistent("an object has more than 256 attributes"));
    }
    if let Some((t, _)) = r.attrs.iter().find(|(_, v)| v.len() > MAX_BYTES) {
        return Err(Error::AttributeValueInvalid(t));
    }
    if r.sealed.as_ref().is_some_and(|s| s.len() > MAX_BYTES) {
        return Err(Error::AttributeValueInvalid(crate::model::attributes::attr::VALUE));
    }
    Ok(())
}

pub fn encode_record(r: &Record) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(FORMAT_VERSION);
    w.bytes(&r.uid);
    w.attrs(&r.attrs);
    match &r.sealed {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.bytes(s);
        }
    }
    w.0
}

pub fn decode_record(buf: &[u8]) -> Result<Record> {
    let mut r = Reader::new(buf);
    if r.u8()? != FORMAT_VERSION {
        return Err(malformed("unknown record version"));
    }
    let uid = r.fixed::<16>()?;
    let attrs = r.attrs()?;
    let sealed = if r.bool()? { Some(r.bytes()?.to_vec()) } else { None };
    r.finish()?;
    Ok(Record { uid, attrs, sealed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut attrs = AttrMap::new();
        attrs.set_ulong(0, 4);
        attrs.set(3, b"label".to_vec());
        Record {
            uid: [7; 16],
            attrs,
            sealed: Some(vec![1, 2, 3]),
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(decode_record(&encode_record(&r)).unwrap(), r);
    }

    #[test]
    fn trailing_data_and_truncation_rejected() {
        let mut enc = encode_record(&sample());
        enc.push(0);
        assert!(decode_record(&enc).is_err());
        enc.pop();
        for cut in 0..enc.len() {
            assert!(decode_record(&enc[..cut]).is_err());
        }
    }

    #[test]
    fn order_enforced() {
        let mut w = Writer::default();
        w.u8(FORMAT_VERSION);
        w.bytes(&[0; 16]);
        w.u32(2);
        w.u64(5);
        w.bytes(b"");
        w.u64(5);
        w.bytes(b"");
        w.u8(0);
        assert!(decode_record(&w.0).is_err());
    }
}
