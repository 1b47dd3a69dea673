//! Pointer decoding, written once: input slices, output buffers under the two-call length
//! convention, templates in and out (with `C_GetAttributeValue`'s per-attribute rules), and
//! mechanisms with their parameters. After these functions no raw pointer exists.

use pkcs11_sys::*;

use crate::error::{Error, Result};
use crate::model::attributes::{nested, AttrMap};
use crate::model::mechanisms::{mech, DigestAlg, Mechanism, OaepParams, Pin, PssParams};

/// Largest attribute value or input accepted through a pointer (sanity bound against lengths
/// that do not describe the caller's memory).
const MAX_LEN: CK_ULONG = 1 << 30;

/// An input byte string; `(NULL, 0)` is the empty string.
///
/// # Safety
/// `p` must point to `len` readable bytes, or be NULL.
pub unsafe fn in_slice<'a>(p: *const u8, len: CK_ULONG) -> Result<&'a [u8]> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(Error::ArgumentsBad) };
    }
    if len > MAX_LEN {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-null, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
}

/// A PIN; NULL with length 0 is an empty PIN (refused later by length).
///
/// # Safety
/// As [`in_slice`].
pub unsafe fn pin_in(p: *const u8, len: CK_ULONG) -> Result<Pin> {
    // SAFETY: forwarded contract.
    Ok(Pin::new(unsafe { in_slice(p, len) }?))
}

/// Writes one value to a caller's out-parameter.
///
/// # Safety
/// `p` must be writable for a `T`, or NULL.
pub unsafe fn out<T>(p: *mut T, v: T) -> Result<()> {
    if p.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-null and writable per the caller's contract.
    unsafe { p.write(v) };
    Ok(())
}

/// The capacity of an output buffer: `None` for a length query (NULL buffer).
///
/// # Safety
/// `len` must be readable, or NULL.
pub unsafe fn capacity(buf: *const u8, len: *const CK_ULONG) -> Result<Option<usize>> {
    if len.is_null() {
        return Err(Error::ArgumentsBad);
    }
    if buf.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, readable per the caller's contract.
    Ok(Some(unsafe { len.read() } as usize))
}

/// The caller's output buffer as a slice, for an operation that writes its result straight into
/// it (a large encryption, where a copy would cost a sixth of the call): `None` for a length
/// query, and `None` when the buffer overlaps `input` (a caller encrypting in place), which then
/// takes the path that computes into keygate's memory and copies.
///
/// # Safety
/// `buf` must be writable for `*len` bytes (or NULL), `len` readable; `input` must be the
/// operation's input, and nothing else may use the buffer while the slice lives.
pub unsafe fn out_slice<'a>(buf: *mut u8, len: *const CK_ULONG, input: &[u8]) -> Result<Option<&'a mut [u8]>> {
    // SAFETY: forwarded contract.
    let Some(cap) = (unsafe { capacity(buf, len) })? else {
        return Ok(None);
    };
    let cap = cap.min(MAX_LEN as usize);
    let (start, end) = (buf as usize, (buf as usize).saturating_add(cap));
    let (in_start, in_end) = (input.as_ptr() as usize, input.as_ptr() as usize + input.len());
    if start < in_end && in_start < end {
        return Ok(None);
    }
    // SAFETY: non-null, writable for `cap` bytes per the caller's contract, and not overlapping
    // the input.
    Ok(Some(unsafe { std::slice::from_raw_parts_mut(buf, cap) }))
}

/// Delivers an operation's answer under the two-call convention.
///
/// # Safety
/// `buf` must be writable for `*len` bytes (or NULL); `len` writable.
pub unsafe fn out_buf(buf: *mut u8, len: *mut CK_ULONG, o: crate::token::operations::Out) -> Result<()> {
    use crate::token::operations::Out;
    match o {
        Out::Len(n) => {
            // SAFETY: forwarded contract.
            unsafe { out(len, n as CK_ULONG) }
        }
        Out::TooSmall(n) => {
            // SAFETY: forwarded contract.
            unsafe { out(len, n as CK_ULONG) }?;
            Err(Error::BufferTooSmall)
        }
        Out::Data(mut d) => {
            // SAFETY: forwarded contract.
            let written = unsafe { copy_out(buf, len, &d) };
            wipe(std::mem::take(&mut *d));
            written
        }
        // SAFETY: forwarded contract.
        Out::Public(d) => unsafe { copy_out(buf, len, &d) },
        // SAFETY: forwarded contract.
        Out::Written(n) => unsafe { out(len, n as CK_ULONG) },
    }
}

/// Copies `d` into `buf` (which `capacity` confirmed holds it) and its length into `len`.
///
/// # Safety
/// As [`out_buf`].
unsafe fn copy_out(buf: *mut u8, len: *mut CK_ULONG, d: &[u8]) -> Result<()> {
    if !d.is_empty() {
        if buf.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: `capacity` confirmed the buffer holds at least `d.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), buf, d.len()) };
    }
    // SAFETY: forwarded contract.
    unsafe { out(len, d.len() as CK_ULONG) }
}

/// Zeroes a buffer's whole allocation before freeing it, with `explicit_bzero` (the C
/// library's memset that the compiler may not remove). `zeroize` writes byte by byte: for the
/// 4 KiB output of an AES-GCM `C_Encrypt` that was a sixth of the call (perf, `keygate bench`).
pub fn wipe(mut v: Vec<u8>) {
    if v.capacity() > 0 {
        // SAFETY: writes only within the allocation `v` owns (initialised or not).
        unsafe { libc::explicit_bzero(v.as_mut_ptr().cast(), v.capacity()) };
    }
}

/// A template given by the caller.
///
/// # Safety
/// `p` must point to `n` readable `CK_ATTRIBUTE`s whose values are readable, or be NULL.
pub unsafe fn template_in(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<AttrMap> {
    // SAFETY: forwarded contract.
    let attrs = unsafe { attributes(p, n) }?;
    let mut pairs = Vec::with_capacity(attrs.len());
    for a in attrs {
        if nested::is_template(a.type_) {
            // SAFETY: forwarded contract.
            pairs.push((a.type_, unsafe { nested_in(a) }?));
            continue;
        }
        // SAFETY: the caller promises each value is readable for its length.
        let v = unsafe { in_slice(a.pValue as *const u8, a.ulValueLen) }?;
        pairs.push((a.type_, v.to_vec()));
    }
    let t = AttrMap::from_pairs(pairs)?;
    // The map's Debug output names the attribute types only, never a value.
    log::trace!("template {t:?}");
    Ok(t)
}

const ATTRIBUTE_SIZE: usize = std::mem::size_of::<CK_ATTRIBUTE>();

/// A nested template (`CKA_WRAP_TEMPLATE`…): an array of `CK_ATTRIBUTE` of `ulValueLen` bytes,
/// as its canonical form ([`nested`]).
///
/// # Safety
/// As [`template_in`], for the nested array and its values.
unsafe fn nested_in(a: &CK_ATTRIBUTE) -> Result<Vec<u8>> {
    let len = a.ulValueLen as usize;
    if !len.is_multiple_of(ATTRIBUTE_SIZE) {
        return Err(Error::AttributeValueInvalid(a.type_));
    }
    // SAFETY: forwarded contract; nested templates inside this one are refused by decode.
    let inner = unsafe { attributes(a.pValue as *const CK_ATTRIBUTE, (len / ATTRIBUTE_SIZE) as CK_ULONG) }?;
    let mut pairs = Vec::with_capacity(inner.len());
    for i in inner {
        if nested::is_template(i.type_) {
            return Err(Error::AttributeValueInvalid(a.type_));
        }
        // SAFETY: the caller promises each nested value is readable for its length.
        let v = unsafe { in_slice(i.pValue as *const u8, i.ulValueLen) }?;
        pairs.push((i.type_, v.to_vec()));
    }
    let encoded = nested::encode(&AttrMap::from_pairs(pairs)?);
    nested::decode(&encoded).map_err(|_| Error::AttributeValueInvalid(a.type_))?;
    Ok(encoded)
}

/// Writes a nested template into the caller's `CK_ATTRIBUTE` array, under the same two-call
/// convention one level down: the array's size, then per element its type and value length,
/// then the values into the buffers the caller gives each element. False when a buffer was
/// too short.
///
/// # Safety
/// `a.pValue` must be NULL or writable for `a.ulValueLen` bytes, each element's non-NULL
/// `pValue` writable for its `ulValueLen`.
unsafe fn nested_out(a: &mut CK_ATTRIBUTE, canonical: &[u8]) -> Result<bool> {
    let t = nested::decode(canonical)?;
    let need = t.iter().count() * ATTRIBUTE_SIZE;
    if a.pValue.is_null() {
        a.ulValueLen = need as CK_ULONG;
        return Ok(true);
    }
    if (a.ulValueLen as usize) < need {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return Ok(false);
    }
    // SAFETY: non-null, and the caller's buffer holds at least `need` bytes of elements.
    let out = unsafe { std::slice::from_raw_parts_mut(a.pValue as *mut CK_ATTRIBUTE, need / ATTRIBUTE_SIZE) };
    let mut fitted = true;
    for (o, (ty, v)) in out.iter_mut().zip(t.iter()) {
        o.type_ = ty;
        if o.pValue.is_null() {
            o.ulValueLen = v.len() as CK_ULONG;
        } else if (o.ulValueLen as usize) < v.len() {
            o.ulValueLen = CK_UNAVAILABLE_INFORMATION;
            fitted = false;
        } else {
            // SAFETY: the element's buffer holds `ulValueLen >= v.len()` bytes.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), o.pValue as *mut u8, v.len()) };
            o.ulValueLen = v.len() as CK_ULONG;
        }
    }
    a.ulValueLen = need as CK_ULONG;
    Ok(fitted)
}

/// The caller's attribute array, as a slice.
///
/// # Safety
/// As [`template_in`].
unsafe fn attributes<'a>(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<&'a [CK_ATTRIBUTE]> {
    if p.is_null() {
        return if n == 0 { Ok(&[]) } else { Err(Error::ArgumentsBad) };
    }
    if n > 4096 {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-null; the caller promises `n` elements.
    Ok(unsafe { std::slice::from_raw_parts(p, n as usize) })
}

/// The types a `C_GetAttributeValue` call asks for.
///
/// # Safety
/// As [`template_in`] (values not read).
pub unsafe fn template_types(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<Vec<CK_ATTRIBUTE_TYPE>> {
    // SAFETY: forwarded contract.
    Ok(unsafe { attributes(p, n) }?.iter().map(|a| a.type_).collect())
}

/// Writes `C_GetAttributeValue` answers: per attribute, the value or its length, or
/// `CK_UNAVAILABLE_INFORMATION`; the call's return value is the most serious per-attribute
/// condition (sensitive, then invalid type, then buffer too small), else `CKR_OK`.
///
/// # Safety
/// `p` must point to `n` writable `CK_ATTRIBUTE`s whose non-NULL `pValue` is writable for
/// `ulValueLen` bytes.
pub unsafe fn template_out(p: *mut CK_ATTRIBUTE, n: CK_ULONG, answers: Vec<Result<Vec<u8>>>) -> Result<()> {
    if p.is_null() || answers.len() != n as usize {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-null; the caller promises `n` writable elements.
    let attrs = unsafe { std::slice::from_raw_parts_mut(p, n as usize) };
    let (mut sensitive, mut invalid, mut small) = (None, None, false);
    for (a, ans) in attrs.iter_mut().zip(answers) {
        match ans {
            Ok(v) if nested::is_template(a.type_) => {
                // SAFETY: forwarded contract.
                small |= !unsafe { nested_out(a, &v) }?;
            }
            Ok(v) => {
                if a.pValue.is_null() {
                    a.ulValueLen = v.len() as CK_ULONG;
                } else if (a.ulValueLen as usize) < v.len() {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    small = true;
                } else {
                    // SAFETY: the caller's buffer holds `ulValueLen >= v.len()` bytes.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len()) };
                    a.ulValueLen = v.len() as CK_ULONG;
                }
            }
            Err(e @ Error::AttributeSensitive(_)) => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                sensitive = Some(e);
            }
            Err(e @ Error::AttributeTypeInvalid(_)) => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                invalid = Some(e);
            }
            Err(other) => return Err(other),
        }
    }
    match (sensitive, invalid, small) {
        (Some(e), _, _) | (None, Some(e), _) => Err(e),
        (None, None, true) => Err(Error::BufferTooSmall),
        (None, None, false) => Ok(()),
    }
}

/// Reads a mechanism parameter of exactly the size of `T`.
///
/// # Safety
/// `m.pParameter` must be readable for `m.ulParameterLen` bytes, or NULL.
unsafe fn param<T: Copy>(m: &CK_MECHANISM) -> Result<T> {
    if m.pParameter.is_null() || m.ulParameterLen as usize != std::mem::size_of::<T>() {
        return Err(Error::MechanismParamInvalid);
    }
    // SAFETY: non-null and of the right size; read_unaligned tolerates any alignment.
    Ok(unsafe { (m.pParameter as *const T).read_unaligned() })
}

/// `CK_GCM_PARAMS`: the IV and the additional data, copied.
///
/// # Safety
/// As [`mechanism_in`], for a `CKM_AES_GCM` mechanism.
unsafe fn gcm_in(m: &CK_MECHANISM) -> Result<Mechanism> {
    let bad = |_| Error::MechanismParamInvalid;
    // SAFETY: forwarded contract.
    let g: CK_GCM_PARAMS = unsafe { param(m) }?;
    // ulIvBits restates ulIvLen in bits; 0 is what clients that leave it unset send.
    if g.ulIvBits != 0 && Some(g.ulIvBits) != g.ulIvLen.checked_mul(8) {
        return Err(Error::MechanismParamInvalid);
    }
    // SAFETY: the caller promises the IV and AAD buffers are readable.
    let iv = unsafe { in_slice(g.pIv, g.ulIvLen) }.map_err(bad)?.to_vec();
    // SAFETY: as above.
    let aad = unsafe { in_slice(g.pAAD, g.ulAADLen) }.map_err(bad)?.to_vec();
    Ok(Mechanism::AesGcm {
        iv,
        aad,
        tag_bits: g.ulTagBits,
    })
}

/// `CK_ECDH1_DERIVE_PARAMS`: the KDF, the shared data and the peer's public data, copied.
///
/// # Safety
/// As [`mechanism_in`], for a `CKM_ECDH1_DERIVE` mechanism.
unsafe fn ecdh_in(m: &CK_MECHANISM) -> Result<Mechanism> {
    let bad = |_| Error::MechanismParamInvalid;
    // SAFETY: forwarded contract.
    let e: CK_ECDH1_DERIVE_PARAMS = unsafe { param(m) }?;
    // SAFETY: the caller promises the shared and public data are readable.
    let shared_data = unsafe { in_slice(e.pSharedData, e.ulSharedDataLen) }
        .map_err(bad)?
        .to_vec();
    // SAFETY: as above.
    let public_data = unsafe { in_slice(e.pPublicData, e.ulPublicDataLen) }
        .map_err(bad)?
        .to_vec();
    Ok(Mechanism::Ecdh1Derive {
        kdf: e.kdf,
        shared_data,
        public_data,
    })
}

/// `CK_RSA_PKCS_OAEP_PARAMS`: hash, MGF and the label, copied.
///
/// # Safety
/// As [`mechanism_in`], for a `CKM_RSA_PKCS_OAEP` mechanism.
unsafe fn oaep_in(m: &CK_MECHANISM) -> Result<Mechanism> {
    // SAFETY: forwarded contract.
    let p: CK_RSA_PKCS_OAEP_PARAMS = unsafe { param(m) }?;
    let label = match p.source {
        0 => Vec::new(),
        // SAFETY: the caller promises the source data is readable.
        CKZ_DATA_SPECIFIED => unsafe { in_slice(p.pSourceData as *const u8, p.ulSourceDataLen) }
            .map_err(|_| Error::MechanismParamInvalid)?
            .to_vec(),
        _ => return Err(Error::MechanismParamInvalid),
    };
    Ok(Mechanism::RsaOaep(OaepParams {
        hash: p.hashAlg,
        mgf: p.mgf,
        label,
    }))
}

/// A mechanism with its parameter decoded and copied.
///
/// # Safety
/// `p` must point to a readable `CK_MECHANISM` whose parameter (and the buffers it points to)
/// are readable as the specification describes, or be NULL.
pub unsafe fn mechanism_in(p: *const CK_MECHANISM) -> Result<Mechanism> {
    if p.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-null and readable per the caller's contract.
    let m = unsafe { p.read_unaligned() };
    log::trace!(
        "{}, {} parameter bytes",
        crate::error::mechanism_name(m.mechanism),
        m.ulParameterLen
    );
    Ok(match m.mechanism {
        mech::AES_GCM => {
            // SAFETY: forwarded contract.
            unsafe { gcm_in(&m) }?
        }
        mech::ECDH1_DERIVE => {
            // SAFETY: forwarded contract.
            unsafe { ecdh_in(&m) }?
        }
        mech::AES_KEY_WRAP if !m.pParameter.is_null() && m.ulParameterLen != 0 => {
            // SAFETY: forwarded contract.
            let iv: [u8; 8] = unsafe { param(&m) }?;
            Mechanism::AesKeyWrap { iv: Some(iv) }
        }
        mech::EDDSA if !m.pParameter.is_null() && m.ulParameterLen != 0 => {
            // SAFETY: forwarded contract.
            let e: CK_EDDSA_PARAMS = unsafe { param(&m) }?;
            if e.phFlag != 0 || e.ulContextDataLen != 0 {
                return Err(Error::MechanismParamInvalid);
            }
            Mechanism::Eddsa
        }
        mech::RSA_PKCS_PSS | mech::SHA256_RSA_PKCS_PSS | mech::SHA384_RSA_PKCS_PSS | mech::SHA512_RSA_PKCS_PSS => {
            // SAFETY: forwarded contract.
            let p: CK_RSA_PKCS_PSS_PARAMS = unsafe { param(&m) }?;
            let pss = PssParams {
                hash: p.hashAlg,
                mgf: p.mgf,
                salt_len: p.sLen,
            };
            match m.mechanism {
                mech::SHA256_RSA_PKCS_PSS => Mechanism::RsaPssWith(DigestAlg::Sha256, pss),
                mech::SHA384_RSA_PKCS_PSS => Mechanism::RsaPssWith(DigestAlg::Sha384, pss),
                mech::SHA512_RSA_PKCS_PSS => Mechanism::RsaPssWith(DigestAlg::Sha512, pss),
                _ => Mechanism::RsaPss(pss),
            }
        }
        mech::RSA_PKCS_OAEP => {
            // SAFETY: forwarded contract.
            unsafe { oaep_in(&m) }?
        }
        mech::SHA224_HMAC_GENERAL
        | mech::SHA256_HMAC_GENERAL
        | mech::SHA384_HMAC_GENERAL
        | mech::SHA512_HMAC_GENERAL => {
            // SAFETY: forwarded contract. CK_MAC_GENERAL_PARAMS is a CK_ULONG: the MAC length.
            let len: CK_ULONG = unsafe { param(&m) }?;
            let alg = match m.mechanism {
                mech::SHA224_HMAC_GENERAL => DigestAlg::Sha224,
                mech::SHA256_HMAC_GENERAL => DigestAlg::Sha256,
                mech::SHA384_HMAC_GENERAL => DigestAlg::Sha384,
                _ => DigestAlg::Sha512,
            };
            if len == 0 || len as usize > alg.output_len() {
                return Err(Error::MechanismParamInvalid);
            }
            Mechanism::HmacGeneral(alg, len)
        }
        mech::AES_CTR => {
            // SAFETY: forwarded contract.
            let p: CK_AES_CTR_PARAMS = unsafe { param(&m) }?;
            if !(1..=128).contains(&p.ulCounterBits) {
                return Err(Error::MechanismParamInvalid);
            }
            Mechanism::AesCtr {
                counter_bits: p.ulCounterBits,
                cb: p.cb,
            }
        }
        mech::AES_CMAC_GENERAL => {
            // SAFETY: forwarded contract. CK_MAC_GENERAL_PARAMS is a CK_ULONG: the MAC length.
            let len: CK_ULONG = unsafe { param(&m) }?;
            if !(1..=16).contains(&len) {
                return Err(Error::MechanismParamInvalid);
            }
            Mechanism::AesCmacGeneral(len)
        }
        mech::AES_CBC | mech::AES_CBC_PAD => {
            // SAFETY: forwarded contract.
            let iv: [u8; 16] = unsafe { param(&m) }?;
            if m.mechanism == mech::AES_CBC {
                Mechanism::AesCbc { iv }
            } else {
                Mechanism::AesCbcPad { iv }
            }
        }
        // Of the mechanisms without a parameter, only the key wraps with padding are lenient
        // (PKCS#11 3.0 lets KWP carry an optional IV that keygate does not use).
        ty => match Mechanism::without_param(ty) {
            Some(_) if m.ulParameterLen != 0 && !matches!(ty, mech::AES_KEY_WRAP_PAD | mech::AES_KEY_WRAP_KWP) => {
                return Err(Error::MechanismParamInvalid)
            }
            Some(known) => known,
            None => Mechanism::Other(ty),
        },
    })
}

/// A blank-padded fixed-width field of `CK_INFO`-like structures.
pub fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut n = 0;
    for (i, c) in s.char_indices() {
        if i + c.len_utf8() > N {
            break;
        }
        n = i + c.len_utf8();
    }
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_empty_slice_is_fine() {
        // SAFETY: NULL with zero length is the documented empty input.
        assert_eq!(unsafe { in_slice(std::ptr::null(), 0) }.unwrap(), &[] as &[u8]);
        // SAFETY: NULL with a length is refused before any read.
        assert_eq!(unsafe { in_slice(std::ptr::null(), 5) }, Err(Error::ArgumentsBad));
    }

    #[test]
    fn padding_never_splits_characters() {
        assert_eq!(&padded::<4>("ab"), b"ab  ");
        assert_eq!(&padded::<3>("aé€"), b"a\xc3\xa9");
    }
}
