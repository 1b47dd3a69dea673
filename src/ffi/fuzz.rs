//! Entry points for the fuzz targets (`fuzz/`, run by `ci/fuzz`) and for the test that replays
//! their corpora on the stable toolchain (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes,
//! decodes them the way keygate decodes what a caller or a file gives it, and panics only on a
//! bug: a decoder may refuse anything, but must never crash, and what it accepts must survive
//! being written back out.
//!
//! The C-structure decoders are fed well-formed pointers (into the fuzzer's own bytes) with
//! fuzzed lengths, types and values: a caller's wild pointer is undefined behaviour in any
//! PKCS#11 module, so it is not what is tested here.

use pkcs11_sys::*;

use crate::backend::local::anchor::Anchor;
use crate::backend::local::codec;
use crate::backend::local::header::Header;
use crate::config::Config;
use crate::model::attributes::{nested, RULES};
use crate::model::mechanisms::{mech, MECHANISMS};
use crate::token::object::{self, Origin};

/// Takes the next byte (0 once the input is used up).
fn byte(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((b, rest)) => {
            *data = rest;
            *b
        }
        None => 0,
    }
}

/// Takes up to `n` bytes.
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}

/// A `CK_ULONG` from eight bytes.
fn ulong(data: &mut &[u8]) -> CK_ULONG {
    let mut b = [0u8; 8];
    b.copy_from_slice(&[take(data, 8), &[0u8; 8]].concat()[..8]);
    u64::from_le_bytes(b) as CK_ULONG
}

/// Attribute types and values read from the fuzzer's bytes: a type keygate knows or another,
/// then a length byte and that many value bytes.
fn pairs(data: &mut &[u8]) -> Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)> {
    let mut pairs = Vec::new();
    while !data.is_empty() && pairs.len() < 64 {
        let pick = byte(data) as usize;
        let ty = match RULES.get(pick) {
            Some(r) => r.ty,
            None => [CKA_VENDOR_DEFINED, 0xdead_beef, CKA_VALUE, CKA_WRAP_TEMPLATE][pick % 4],
        };
        let len = byte(data) as usize;
        pairs.push((ty, take(data, len).to_vec()));
    }
    pairs
}

/// `CK_ATTRIBUTE`s pointing into `values` (NULL for an empty one).
fn attributes_of(values: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> Vec<CK_ATTRIBUTE> {
    values
        .iter()
        .map(|(ty, v)| CK_ATTRIBUTE {
            type_: *ty,
            pValue: if v.is_empty() {
                std::ptr::null_mut()
            } else {
                v.as_ptr() as CK_VOID_PTR
            },
            ulValueLen: v.len() as CK_ULONG,
        })
        .collect()
}

/// A caller's template (`CK_ATTRIBUTE` array): attribute types keygate knows and others, values
/// of any length; then completed as `C_CreateObject` and `C_GenerateKey` would. The value of a
/// nested-template attribute (`CKA_WRAP_TEMPLATE`…) is built as the C ABI defines it: an array
/// of `CK_ATTRIBUTE` whose own values the fuzzer's bytes give, so that every pointer the module
/// follows is one a caller could rightly pass (raw bytes there would be wild pointers, which no
/// module can survive: the harness's bug, not the module's, found by `ci/fuzz`).
pub fn template(mut data: &[u8]) {
    let outer = pairs(&mut data);
    let inner: Vec<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>> = outer
        .iter()
        .map(|(ty, v)| match nested::is_template(*ty) {
            true => pairs(&mut v.as_slice()),
            false => Vec::new(),
        })
        .collect();
    let inner_attrs: Vec<Vec<CK_ATTRIBUTE>> = inner.iter().map(|i| attributes_of(i)).collect();
    let mut attrs = attributes_of(&outer);
    for (a, i) in attrs.iter_mut().zip(&inner_attrs) {
        if nested::is_template(a.type_) {
            a.pValue = if i.is_empty() {
                std::ptr::null_mut()
            } else {
                i.as_ptr() as CK_VOID_PTR
            };
            a.ulValueLen = std::mem::size_of_val(i.as_slice()) as CK_ULONG;
        }
    }
    // SAFETY: every pointer is NULL with length 0 or points into `outer`, `inner` or
    // `inner_attrs`, all alive here; nested arrays are whole `CK_ATTRIBUTE`s.
    let Ok(t) = (unsafe { super::raw::template_in(attrs.as_ptr(), attrs.len() as CK_ULONG) }) else {
        return;
    };
    let _ = object::complete(t.clone(), Origin::Create, false);
    let _ = object::complete(t, Origin::Generate(mech::AES_KEY_GEN), false);
}

/// A caller's `CK_MECHANISM`: any mechanism keygate knows or not, its parameter a structure
/// with fuzzed fields whose buffers are the fuzzer's bytes, or raw bytes of any length.
pub fn mechanism(mut data: &[u8]) {
    let pick = byte(&mut data) as usize;
    let ty = match MECHANISMS.get(pick) {
        Some((t, _)) => *t,
        None => [
            CKM_RSA_PKCS_OAEP,
            CKM_RSA_PKCS_PSS,
            CKM_AES_CBC_PAD,
            CKM_VENDOR_DEFINED,
            0x1234,
        ][pick % 5],
    };
    let shape = byte(&mut data);
    let a_len = byte(&mut data) as usize;
    let a = take(&mut data, a_len).to_vec();
    let b_len = byte(&mut data) as usize;
    let b = take(&mut data, b_len).to_vec();
    let (n1, n2) = (ulong(&mut data), ulong(&mut data));
    let ptr = |v: &Vec<u8>| {
        if v.is_empty() {
            std::ptr::null_mut()
        } else {
            v.as_ptr() as *mut u8
        }
    };
    let gcm = CK_GCM_PARAMS {
        pIv: ptr(&a),
        ulIvLen: a.len() as CK_ULONG,
        ulIvBits: n1,
        pAAD: ptr(&b),
        ulAADLen: b.len() as CK_ULONG,
        ulTagBits: n2 % 256,
    };
    let ecdh = CK_ECDH1_DERIVE_PARAMS {
        kdf: n1 % 16,
        ulSharedDataLen: a.len() as CK_ULONG,
        pSharedData: ptr(&a),
        ulPublicDataLen: b.len() as CK_ULONG,
        pPublicData: ptr(&b),
    };
    let oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: n1 % 0x300,
        mgf: n2 % 8,
        source: (shape as CK_ULONG) % 3,
        pSourceData: ptr(&a) as CK_VOID_PTR,
        ulSourceDataLen: a.len() as CK_ULONG,
    };
    let eddsa = CK_EDDSA_PARAMS {
        phFlag: shape & 1,
        ulContextDataLen: a.len() as CK_ULONG,
        pContextData: ptr(&a),
    };
    let (p, len): (*const u8, usize) = match (ty, shape % 3) {
        (_, 0) => (std::ptr::null(), 0),
        (CKM_AES_GCM, 1) => (&gcm as *const _ as *const u8, std::mem::size_of_val(&gcm)),
        (CKM_ECDH1_DERIVE, 1) => (&ecdh as *const _ as *const u8, std::mem::size_of_val(&ecdh)),
        (CKM_RSA_PKCS_OAEP, 1) => (&oaep as *const _ as *const u8, std::mem::size_of_val(&oaep)),
        (CKM_EDDSA, 1) => (&eddsa as *const _ as *const u8, std::mem::size_of_val(&eddsa)),
        // Structures without pointers (IVs, PSS parameters) read as raw bytes, any length.
        (CKM_AES_GCM | CKM_ECDH1_DERIVE | CKM_RSA_PKCS_OAEP | CKM_EDDSA, _) => (std::ptr::null(), 0),
        _ => (a.as_ptr(), a.len()),
    };
    let m = CK_MECHANISM {
        mechanism: ty,
        pParameter: p as CK_VOID_PTR,
        ulParameterLen: len as CK_ULONG,
    };
    // SAFETY: the parameter is NULL, a structure above whose buffers are `a` and `b`, or `a`
    // itself, all alive here, each with its true length.
    if let Ok(m) = unsafe { super::raw::mechanism_in(&m) } {
        let _ = m.key_types();
        let _ = m.ty();
    }
}

/// A stored record: whatever decodes must encode to bytes that decode to the same record.
pub fn record(data: &[u8]) {
    if let Ok(r) = codec::decode_record(data) {
        let again = codec::encode_record(&r);
        assert_eq!(codec::decode_record(&again).as_ref(), Ok(&r), "record round trip");
    }
}

/// A token header, likewise.
pub fn header(data: &[u8]) {
    if let Ok(h) = Header::decode(data) {
        let again = h.encode();
        assert_eq!(Header::decode(&again).as_ref(), Ok(&h), "header round trip");
    }
}

/// The HSM anchor's value (`backend/local/anchor.rs`), as read back from the root token.
pub fn anchor(data: &[u8]) {
    if let Ok(a) = Anchor::decode(data) {
        assert_eq!(a.encode(), data, "anchor encoding is canonical");
    }
}

/// The configuration text (the parser and every check made at load).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/` and the corpus test name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("template", template),
    ("mechanism", mechanism),
    ("record", record),
    ("header", header),
    ("config", config),
    ("anchor", anchor),
];
