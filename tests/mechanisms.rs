//! The mechanisms issue 19 adds to the self-managed token, run against all three targets:
//! HMAC with SHA-256/384/512 (and the `_GENERAL` truncated forms), ECDSA with SHA-384/512 on
//! P-256, and AES-CBC, AES-CBC-PAD and AES-ECB single- and multi-part. Every result is checked
//! by OpenSSL through the `openssl` crate (keygate's own HMAC and AES block modes are
//! RustCrypto's), or, for ECDSA, by the p256 crate.

#[macro_use]
mod common;

use common::*;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType};
use cryptoki::session::Session;
use openssl::symm::{Cipher, Crypter, Mode};

fn session(env: &Env) -> (cryptoki::context::Pkcs11, Session) {
    let p = env.load();
    let s = Env::user_session(&p);
    (p, s)
}

fn hmac_outside(md: openssl::hash::MessageDigest, key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = openssl::pkey::PKey::hmac(key).unwrap();
    let mut signer = openssl::sign::Signer::new(md, &k).unwrap();
    signer.update(data).unwrap();
    signer.sign_to_vec().unwrap()
}

#[test]
fn hmac_sha256_384_512_match_openssl_single_and_multi_part() {
    use openssl::hash::MessageDigest;
    let env = Env::new();
    let (_p, s) = session(&env);
    // 64 bytes: SoftHSM2 wants at least the digest's length for SHA-384/512 HMAC keys.
    let key: Vec<u8> = (0u8..64).collect();
    let k = import_secret(
        &s,
        KeyType::GENERIC_SECRET,
        &key,
        &[Attribute::Sign(true), Attribute::Verify(true)],
    );
    for (m, md) in [
        (Mechanism::Sha256Hmac, MessageDigest::sha256()),
        (Mechanism::Sha384Hmac, MessageDigest::sha384()),
        (Mechanism::Sha512Hmac, MessageDigest::sha512()),
    ] {
        let want = hmac_outside(md, &key, b"the data, in two parts");
        assert_eq!(s.sign(&m, k, b"the data, in two parts").unwrap(), want, "{m:?}");
        s.sign_init(&m, k).unwrap();
        s.sign_update(b"the data, ").unwrap();
        s.sign_update(b"in two parts").unwrap();
        assert_eq!(s.sign_final().unwrap(), want, "{m:?} multi-part");
        s.verify(&m, k, b"the data, in two parts", &want).unwrap();
        let mut bad = want.clone();
        bad[0] ^= 1;
        assert!(matches!(
            s.verify(&m, k, b"the data, in two parts", &bad),
            Err(CkError::Pkcs11(RvError::SignatureInvalid, _))
        ));
    }
}

/// SHA-1 and SHA-224 digests (SHA-1 as a digest only: the floor refuses it in signatures and
/// MACs) and HMAC-SHA-224, against OpenSSL.
#[test]
fn sha1_and_sha224_digests_and_hmac_sha224_match_openssl() {
    use openssl::hash::{hash, MessageDigest};
    let env = Env::new();
    let (_p, s) = session(&env);
    for (m, md) in [
        (Mechanism::Sha1, MessageDigest::sha1()),
        (Mechanism::Sha224, MessageDigest::sha224()),
    ] {
        if target() == Target::Hsm && matches!(m, Mechanism::Sha224) {
            // cryptoki 0.12 has no type for CKM_SHA224 and drops it from the HSM's mechanism
            // list, so keygate's hsm mode does not see SoftHSM2's.
            assert!(matches!(
                s.digest(&m, b"x"),
                Err(CkError::Pkcs11(RvError::MechanismInvalid, _))
            ));
            continue;
        }
        let want = hash(md, b"abc, then more").unwrap().to_vec();
        assert_eq!(s.digest(&m, b"abc, then more").unwrap(), want, "{m:?}");
        s.digest_init(&m).unwrap();
        s.digest_update(b"abc, ").unwrap();
        s.digest_update(b"then more").unwrap();
        assert_eq!(s.digest_final().unwrap(), want, "{m:?} multi-part");
    }
    let key = [0x5cu8; 28];
    let k = import_secret(
        &s,
        KeyType::GENERIC_SECRET,
        &key,
        &[Attribute::Sign(true), Attribute::Verify(true)],
    );
    let want = hmac_outside(MessageDigest::sha224(), &key, b"data");
    assert_eq!(s.sign(&Mechanism::Sha224Hmac, k, b"data").unwrap(), want);
    s.verify(&Mechanism::Sha224Hmac, k, b"data", &want).unwrap();
    // SHA-1 as a MAC is below the floor (SoftHSM2 has it).
    let sha1_mac = s.sign(&Mechanism::Sha1Hmac, k, b"data");
    match target() {
        Target::SoftHsm => assert!(sha1_mac.is_ok()),
        _ => assert!(matches!(sha1_mac, Err(CkError::Pkcs11(RvError::MechanismInvalid, _)))),
    }
}

/// `CKM_SHA*_HMAC_GENERAL` (a MAC truncated to `CK_MAC_GENERAL_PARAMS` bytes), through the C
/// ABI: cryptoki has no name for it. SoftHSM2 2.6.1 does not have it, and keygate's hsm mode
/// cannot pass it to an HSM through cryptoki, so there it is `CKR_MECHANISM_INVALID`.
#[test]
fn hmac_general_truncates_and_verifies_the_truncated_mac() {
    use common::raw::*;
    use pkcs11_sys::*;
    let env = Env::new();
    let r = raw_target();
    let h = target_session(&r, true);
    login(&r, h);
    let key = [0x42u8; 48];
    let (class, kt, yes) = (CKO_SECRET_KEY, CKK_GENERIC_SECRET, CK_TRUE);
    let mut t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        attr(CKA_SIGN, &yes),
        attr(CKA_VERIFY, &yes),
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: key.as_ptr() as CK_VOID_PTR,
            ulValueLen: key.len() as CK_ULONG,
        },
    ];
    let mut k = 0;
    assert_eq!(
        call!(r, C_CreateObject(h, t.as_mut_ptr(), t.len() as CK_ULONG, &mut k)),
        CKR_OK
    );
    let mut len: CK_ULONG = 20;
    let mut m = CK_MECHANISM {
        mechanism: CKM_SHA384_HMAC_GENERAL,
        pParameter: &mut len as *mut CK_ULONG as CK_VOID_PTR,
        ulParameterLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
    };
    let rv = call!(r, C_SignInit(h, &mut m, k));
    if target() != Target::SelfManaged {
        assert_eq!(rv, CKR_MECHANISM_INVALID);
        drop(env);
        return;
    }
    assert_eq!(rv, CKR_OK);
    let data = b"truncated";
    let mut out = [0u8; 64];
    let mut n = out.len() as CK_ULONG;
    assert_eq!(
        call!(
            r,
            C_Sign(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut n
            )
        ),
        CKR_OK
    );
    let full = hmac_outside(openssl::hash::MessageDigest::sha384(), &key, data);
    assert_eq!(&out[..n as usize], &full[..20]);
    // Verify takes exactly the truncated length.
    assert_eq!(call!(r, C_VerifyInit(h, &mut m, k)), CKR_OK);
    assert_eq!(
        call!(
            r,
            C_Verify(h, data.as_ptr() as *mut u8, data.len() as CK_ULONG, out.as_mut_ptr(), n)
        ),
        CKR_OK
    );
    assert_eq!(call!(r, C_VerifyInit(h, &mut m, k)), CKR_OK);
    assert_eq!(
        call!(
            r,
            C_Verify(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                32
            )
        ),
        CKR_SIGNATURE_LEN_RANGE
    );
    // A length longer than the digest is a bad parameter.
    let mut too_long: CK_ULONG = 49;
    m.pParameter = &mut too_long as *mut CK_ULONG as CK_VOID_PTR;
    assert_eq!(call!(r, C_SignInit(h, &mut m, k)), CKR_MECHANISM_PARAM_INVALID);
    drop(env);
}

#[test]
fn ecdsa_sha384_and_sha512_on_p256_verify_outside() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let env = Env::new();
    let (_p, s) = session(&env);
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec()), Attribute::Verify(true)],
            &[Attribute::Sign(true)],
        )
        .unwrap();
    if target() == Target::SoftHsm {
        // SoftHSM2 2.6.1 has only CKM_ECDSA (keygate's hsm mode hashes for it).
        assert!(matches!(
            s.sign(&Mechanism::EcdsaSha384, private, b"m"),
            Err(CkError::Pkcs11(RvError::MechanismInvalid, _))
        ));
        return;
    }
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&s, public)).unwrap();
    let msg = b"hashed by the token";
    for (m, digest) in [
        (Mechanism::EcdsaSha384, sha2::Sha384::digest(msg).to_vec()),
        (Mechanism::EcdsaSha512, sha2::Sha512::digest(msg).to_vec()),
    ] {
        let sig = s.sign(&m, private, msg).unwrap();
        // SEC 1 §4.1.3: a digest longer than the curve's order is cut to its leftmost bits.
        vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap_or_else(|e| panic!("{m:?}: {e}"));
        s.verify(&m, public, msg, &sig).unwrap();
        assert!(s.verify(&m, public, b"another message", &sig).is_err());
    }
}

/// AES in a block mode through OpenSSL, `pad` as PKCS#7.
fn aes_outside(cipher: Cipher, key: &[u8], iv: Option<&[u8]>, pad: bool, mode: Mode, data: &[u8]) -> Vec<u8> {
    let mut c = Crypter::new(cipher, mode, key, iv).unwrap();
    c.pad(pad);
    let mut out = vec![0u8; data.len() + 32];
    let mut n = c.update(data, &mut out).unwrap();
    n += c.finalize(&mut out[n..]).unwrap();
    out.truncate(n);
    out
}

fn aes_key(s: &Session, key: &[u8]) -> cryptoki::object::ObjectHandle {
    import_secret(
        s,
        KeyType::AES,
        key,
        &[Attribute::Encrypt(true), Attribute::Decrypt(true)],
    )
}

#[test]
fn aes_cbc_cbc_pad_and_ecb_match_openssl() {
    let env = Env::new();
    let (_p, s) = session(&env);
    let iv = [0x24u8; 16];
    let data: Vec<u8> = (0..48u8).collect();
    for (key, cbc, ecb) in [
        (vec![1u8; 16], Cipher::aes_128_cbc(), Cipher::aes_128_ecb()),
        (vec![2u8; 24], Cipher::aes_192_cbc(), Cipher::aes_192_ecb()),
        (vec![3u8; 32], Cipher::aes_256_cbc(), Cipher::aes_256_ecb()),
    ] {
        let k = aes_key(&s, &key);
        let cases = [
            (Mechanism::AesCbc(iv), cbc, Some(&iv[..]), false, &data[..]),
            (Mechanism::AesCbcPad(iv), cbc, Some(&iv[..]), true, &data[..45]),
            (Mechanism::AesCbcPad(iv), cbc, Some(&iv[..]), true, &data[..]),
            (Mechanism::AesEcb, ecb, None, false, &data[..32]),
        ];
        for (m, cipher, civ, pad, pt) in cases {
            let want = aes_outside(cipher, &key, civ, pad, Mode::Encrypt, pt);
            let ct = s.encrypt(&m, k, pt).unwrap();
            assert_eq!(ct, want, "{m:?} with a {}-byte key", key.len());
            assert_eq!(s.decrypt(&m, k, &ct).unwrap(), pt, "{m:?}");
        }
    }
}

/// Multi-part CBC gives back every whole block at once, as clients expect, and CBC-PAD's
/// decryption holds back only the last block (it may be the padding).
#[test]
fn aes_cbc_streams_whole_blocks() {
    let env = Env::new();
    let (_p, s) = session(&env);
    let key = [9u8; 32];
    let iv = [1u8; 16];
    let k = aes_key(&s, &key);
    let data: Vec<u8> = (0..40u8).collect();
    let want = aes_outside(Cipher::aes_256_cbc(), &key, Some(&iv), true, Mode::Encrypt, &data);

    s.encrypt_init(&Mechanism::AesCbcPad(iv), k).unwrap();
    assert_eq!(s.encrypt_update(&data[..5]).unwrap().len(), 0);
    assert_eq!(s.encrypt_update(&data[5..21]).unwrap(), want[..16]);
    assert_eq!(s.encrypt_update(&data[21..]).unwrap(), want[16..32]);
    assert_eq!(s.encrypt_final().unwrap(), want[32..]);

    s.decrypt_init(&Mechanism::AesCbcPad(iv), k).unwrap();
    assert_eq!(s.decrypt_update(&want[..16]).unwrap().len(), 0);
    assert_eq!(s.decrypt_update(&want[16..]).unwrap(), data[..32]);
    assert_eq!(s.decrypt_final().unwrap(), data[32..]);
}

#[test]
fn aes_block_modes_refuse_bad_lengths_and_bad_padding() {
    let env = Env::new();
    let (_p, s) = session(&env);
    let key = [5u8; 16];
    let iv = [0u8; 16];
    let k = aes_key(&s, &key);
    let rv = |r: cryptoki::error::Result<Vec<u8>>| match r {
        Err(CkError::Pkcs11(rv, _)) => rv,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rv(s.encrypt(&Mechanism::AesCbc(iv), k, &[0u8; 17])),
        RvError::DataLenRange
    );
    assert_eq!(rv(s.encrypt(&Mechanism::AesEcb, k, &[0u8; 15])), RvError::DataLenRange);
    assert_eq!(
        rv(s.decrypt(&Mechanism::AesCbcPad(iv), k, &[0u8; 20])),
        RvError::EncryptedDataLenRange
    );
    // Last blocks whose padding is not PKCS#7: a count above 16, zero, and bytes that do not
    // all repeat the count.
    let mut uneven = [0x03u8; 16];
    uneven[14] = 0x02;
    // SoftHSM2 2.6.1 answers CKR_GENERAL_ERROR, and keygate's hsm mode passes the HSM's answer
    // on; PKCS#11 3.0 §5.2 names CKR_ENCRYPTED_DATA_INVALID, which the self-managed token returns.
    let want = match target() {
        Target::SelfManaged => RvError::EncryptedDataInvalid,
        Target::Hsm | Target::SoftHsm => RvError::GeneralError,
    };
    for last in [[0x11u8; 16], [0u8; 16], uneven] {
        let bad = aes_outside(Cipher::aes_128_cbc(), &key, Some(&iv), false, Mode::Encrypt, &last);
        assert_eq!(rv(s.decrypt(&Mechanism::AesCbcPad(iv), k, &bad)), want, "{last:02x?}");
    }
}

/// A secret key with `value` made through the C ABI, usable for everything the test asks.
fn raw_aes_key(r: &common::raw::Raw, h: pkcs11_sys::CK_SESSION_HANDLE, value: &[u8]) -> pkcs11_sys::CK_OBJECT_HANDLE {
    use common::raw::*;
    use pkcs11_sys::*;
    let (class, kt, yes) = (CKO_SECRET_KEY, CKK_AES, CK_TRUE);
    let mut t = [
        attr(CKA_CLASS, &class),
        attr(CKA_KEY_TYPE, &kt),
        attr(CKA_ENCRYPT, &yes),
        attr(CKA_DECRYPT, &yes),
        attr(CKA_SIGN, &yes),
        attr(CKA_VERIFY, &yes),
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: value.as_ptr() as CK_VOID_PTR,
            ulValueLen: value.len() as CK_ULONG,
        },
    ];
    let mut k = 0;
    assert_eq!(
        call!(r, C_CreateObject(h, t.as_mut_ptr(), t.len() as CK_ULONG, &mut k)),
        CKR_OK
    );
    k
}

/// `CKM_AES_CTR` through the C ABI (cryptoki has no variant for it): a 128-bit counter
/// matches OpenSSL's AES-CTR, single- and multi-part, every update returning every byte; a
/// 1-bit counter gives two blocks of keystream and then refuses to repeat it.
#[test]
fn aes_ctr_matches_openssl_and_will_not_wrap() {
    use common::raw::*;
    use pkcs11_sys::*;
    let env = Env::new();
    let r = raw_target();
    let h = target_session(&r, true);
    login(&r, h);
    let key = [0x61u8; 32];
    let k = raw_aes_key(&r, h, &key);
    let mut cb = [0u8; 16];
    cb[15] = 0xfe; // the counter carries into the next byte after two blocks
    let data: Vec<u8> = (0..50u8).collect();
    let want = aes_outside(Cipher::aes_256_ctr(), &key, Some(&cb), false, Mode::Encrypt, &data);
    let mut p = CK_AES_CTR_PARAMS { ulCounterBits: 128, cb };
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_CTR,
        pParameter: &mut p as *mut CK_AES_CTR_PARAMS as CK_VOID_PTR,
        ulParameterLen: std::mem::size_of::<CK_AES_CTR_PARAMS>() as CK_ULONG,
    };
    let mut out = vec![0u8; 64];
    let mut n = out.len() as CK_ULONG;
    assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_OK);
    assert_eq!(
        call!(
            r,
            C_Encrypt(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut n
            )
        ),
        CKR_OK
    );
    assert_eq!(&out[..n as usize], &want[..]);
    // Multi-part: 7 bytes in, 7 bytes out.
    assert_eq!(call!(r, C_DecryptInit(h, &mut m, k)), CKR_OK);
    let mut part = [0u8; 64];
    let mut n = part.len() as CK_ULONG;
    assert_eq!(
        call!(
            r,
            C_DecryptUpdate(h, want.as_ptr() as *mut u8, 7, part.as_mut_ptr(), &mut n)
        ),
        CKR_OK
    );
    assert_eq!(&part[..n as usize], &data[..7]);
    let mut n2 = (part.len() - 7) as CK_ULONG;
    assert_eq!(
        call!(
            r,
            C_DecryptUpdate(h, want[7..].as_ptr() as *mut u8, 43, part[7..].as_mut_ptr(), &mut n2)
        ),
        CKR_OK
    );
    assert_eq!(&part[7..7 + n2 as usize], &data[7..]);
    let mut n3 = 16 as CK_ULONG;
    assert_eq!(call!(r, C_DecryptFinal(h, part.as_mut_ptr(), &mut n3)), CKR_OK);
    assert_eq!(n3, 0);
    if target() == Target::SelfManaged {
        // Two blocks with a 1-bit counter, then the keystream would repeat.
        let mut one_bit = CK_AES_CTR_PARAMS {
            ulCounterBits: 1,
            cb: [0u8; 16],
        };
        m.pParameter = &mut one_bit as *mut CK_AES_CTR_PARAMS as CK_VOID_PTR;
        assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_OK);
        let mut n = out.len() as CK_ULONG;
        assert_eq!(
            call!(r, C_Encrypt(h, data.as_ptr() as *mut u8, 33, out.as_mut_ptr(), &mut n)),
            CKR_DATA_LEN_RANGE
        );
        let mut no_bits = CK_AES_CTR_PARAMS {
            ulCounterBits: 0,
            cb: [0u8; 16],
        };
        m.pParameter = &mut no_bits as *mut CK_AES_CTR_PARAMS as CK_VOID_PTR;
        assert_eq!(call!(r, C_EncryptInit(h, &mut m, k)), CKR_MECHANISM_PARAM_INVALID);
    }
    drop(env);
}

/// `CKM_AES_CMAC` against RFC 4493's vectors (AES-128) and OpenSSL (AES-256); the
/// `_GENERAL` form truncates (self-managed only: SoftHSM2 has no CMAC_GENERAL, and keygate's hsm
/// mode cannot name it to cryptoki).
#[test]
fn aes_cmac_matches_rfc4493_and_openssl() {
    use common::raw::*;
    use pkcs11_sys::*;
    let env = Env::new();
    let r = raw_target();
    let h = target_session(&r, true);
    login(&r, h);
    let sign = |mech: &mut CK_MECHANISM, k, data: &[u8]| {
        assert_eq!(call!(r, C_SignInit(h, mech, k)), CKR_OK);
        let mut out = [0u8; 16];
        let mut n = out.len() as CK_ULONG;
        let rv = call!(
            r,
            C_Sign(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut n
            )
        );
        assert_eq!(rv, CKR_OK);
        out[..n as usize].to_vec()
    };
    let mut cmac = CK_MECHANISM {
        mechanism: CKM_AES_CMAC,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    };
    // RFC 4493 §4: the key and the 16- and 40-byte examples.
    let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
    let msg = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411").unwrap();
    let k = raw_aes_key(&r, h, &key);
    assert_eq!(
        sign(&mut cmac, k, &msg[..16]),
        hex::decode("070a16b46b4d4144f79bdd9dd04a287c").unwrap()
    );
    assert_eq!(
        sign(&mut cmac, k, &msg),
        hex::decode("dfa66747de9ae63030ca32611497c827").unwrap()
    );
    assert_eq!(
        sign(&mut cmac, k, &[]),
        hex::decode("bb1d6929e95937287fa37d129b756746").unwrap()
    );
    let key256 = [0x77u8; 32];
    let k256 = raw_aes_key(&r, h, &key256);
    let ok = openssl::pkey::PKey::cmac(&Cipher::aes_256_cbc(), &key256).unwrap();
    let mut signer = openssl::sign::Signer::new_without_digest(&ok).unwrap();
    signer.update(b"cmac with a 256-bit key").unwrap();
    let want = signer.sign_to_vec().unwrap();
    let tag = sign(&mut cmac, k256, b"cmac with a 256-bit key");
    assert_eq!(tag, want);
    let mut bad = tag.clone();
    bad[15] ^= 0x80;
    assert_eq!(call!(r, C_VerifyInit(h, &mut cmac, k256)), CKR_OK);
    let data = b"cmac with a 256-bit key";
    assert_eq!(
        call!(
            r,
            C_Verify(
                h,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                bad.as_mut_ptr(),
                16
            )
        ),
        CKR_SIGNATURE_INVALID
    );
    let mut len: CK_ULONG = 8;
    let mut general = CK_MECHANISM {
        mechanism: CKM_AES_CMAC_GENERAL,
        pParameter: &mut len as *mut CK_ULONG as CK_VOID_PTR,
        ulParameterLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
    };
    if target() == Target::SelfManaged {
        assert_eq!(sign(&mut general, k256, data), want[..8]);
    } else {
        assert_eq!(call!(r, C_SignInit(h, &mut general, k256)), CKR_MECHANISM_INVALID);
    }
    drop(env);
}

const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

/// OpenSSL's view of a public point on `nid`.
fn openssl_public(nid: openssl::nid::Nid, point: &[u8]) -> openssl::ec::EcKey<openssl::pkey::Public> {
    let group = openssl::ec::EcGroup::from_curve_name(nid).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let p = openssl::ec::EcPoint::from_bytes(&group, point, &mut ctx).unwrap();
    openssl::ec::EcKey::from_public_key(&group, &p).unwrap()
}

/// P-384 and P-521: key generation, `CKM_ECDSA` on a digest (and `CKM_ECDSA_SHA384/512` where
/// the target has them), each signature checked by OpenSSL; ECDH with an OpenSSL key agrees
/// with OpenSSL's own derivation.
#[test]
fn p384_and_p521_sign_and_derive_as_openssl_does() {
    use openssl::nid::Nid;
    use sha2::Digest;
    let env = Env::new();
    let (_p, s) = session(&env);
    for (oid, nid, field) in [(P384_OID, Nid::SECP384R1, 48usize), (P521_OID, Nid::SECP521R1, 66)] {
        let (public, private) = s
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[Attribute::EcParams(oid.to_vec()), Attribute::Verify(true)],
                &[Attribute::Sign(true), Attribute::Derive(true), Attribute::Token(false)],
            )
            .unwrap();
        let point = ec_point_any(&s, public);
        assert_eq!(point.len(), 1 + 2 * field, "{nid:?}");
        let theirs = openssl_public(nid, &point);
        let verify_outside = |digest: &[u8], sig: &[u8]| {
            assert_eq!(sig.len(), 2 * field);
            let r = openssl::bn::BigNum::from_slice(&sig[..field]).unwrap();
            let sv = openssl::bn::BigNum::from_slice(&sig[field..]).unwrap();
            let sig = openssl::ecdsa::EcdsaSig::from_private_components(r, sv).unwrap();
            assert!(
                sig.verify(digest, &theirs).unwrap(),
                "{nid:?}: OpenSSL rejects the signature"
            );
        };
        let digest = sha2::Sha384::digest(b"a message for a bigger curve");
        verify_outside(&digest, &s.sign(&Mechanism::Ecdsa, private, &digest).unwrap());
        if target() != Target::SoftHsm {
            let sig = s.sign(&Mechanism::EcdsaSha512, private, b"hashed here").unwrap();
            verify_outside(&sha2::Sha512::digest(b"hashed here"), &sig);
            s.verify(&Mechanism::EcdsaSha512, public, b"hashed here", &sig).unwrap();
        }

        // ECDH with a key OpenSSL made.
        let group = openssl::ec::EcGroup::from_curve_name(nid).unwrap();
        let other = openssl::ec::EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let other_point = other
            .public_key()
            .to_bytes(&group, openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx)
            .unwrap();
        let params = cryptoki::mechanism::elliptic_curve::Ecdh1DeriveParams::new(
            cryptoki::mechanism::elliptic_curve::EcKdf::null(),
            &other_point,
        );
        let derived = s
            .derive_key(
                &Mechanism::Ecdh1Derive(params),
                private,
                &[
                    Attribute::Class(cryptoki::object::ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                ],
            )
            .unwrap();
        let ours = match s
            .get_attributes(derived, &[cryptoki::object::AttributeType::Value])
            .unwrap()
            .remove(0)
        {
            Attribute::Value(v) => v,
            other => panic!("{other:?}"),
        };
        let other_pkey = openssl::pkey::PKey::from_ec_key(other).unwrap();
        let peer = openssl::pkey::PKey::from_ec_key(theirs.clone()).unwrap();
        let mut deriver = openssl::derive::Deriver::new(&other_pkey).unwrap();
        deriver.set_peer(&peer).unwrap();
        assert_eq!(
            ours,
            deriver.derive_to_vec().unwrap(),
            "{nid:?}: ECDH differs from OpenSSL's"
        );
    }
}

/// The raw point from a `CKA_EC_POINT` of any NIST curve (DER OCTET STRING, short or long form).
fn ec_point_any(s: &Session, key: cryptoki::object::ObjectHandle) -> Vec<u8> {
    use der::Decode;
    match s
        .get_attributes(key, &[cryptoki::object::AttributeType::EcPoint])
        .unwrap()
        .remove(0)
    {
        Attribute::EcPoint(v) => der::asn1::OctetString::from_der(&v).unwrap().into_bytes(),
        other => panic!("{other:?}"),
    }
}

/// ECDH with the ANSI X9.63 KDFs (`CKD_SHA256_KDF`, `CKD_SHA512_KDF`) and shared info: the
/// derived key is SHA-n(Z ‖ counter ‖ SharedInfo)… cut to `CKA_VALUE_LEN`, computed here from
/// the shared secret OpenSSL derives.
#[test]
fn ecdh_with_x963_kdfs_matches_the_formula() {
    use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
    use sha2::Digest;
    let env = Env::new();
    let (_p, s) = session(&env);
    let (_, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(P256_OID.to_vec())],
            &[Attribute::Derive(true), Attribute::Token(false)],
        )
        .unwrap();
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let other = openssl::ec::EcKey::generate(&group).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let other_point = other
        .public_key()
        .to_bytes(&group, openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx)
        .unwrap();
    let shared_info = b"keygate x9.63 test";
    let derive = |kdf: EcKdf, len: u64| {
        let h = s.derive_key(
            &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(kdf, &other_point)),
            private,
            &[
                Attribute::Class(cryptoki::object::ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(len.into()),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )?;
        match s
            .get_attributes(h, &[cryptoki::object::AttributeType::Value])?
            .remove(0)
        {
            Attribute::Value(v) => Ok::<_, CkError>(v),
            other => panic!("{other:?}"),
        }
    };
    let z = derive(EcKdf::null(), 32).unwrap();
    let x963 = |z: &[u8], len: usize, h: &dyn Fn(&[u8]) -> Vec<u8>| {
        let mut out = Vec::new();
        for counter in 1u32.. {
            if out.len() >= len {
                break;
            }
            out.extend(h(&[z, &counter.to_be_bytes()[..], &shared_info[..]].concat()));
        }
        out.truncate(len);
        out
    };
    let got = derive(EcKdf::sha256(shared_info), 40);
    let got512 = derive(EcKdf::sha512(shared_info), 32);
    if target() == Target::SelfManaged {
        assert_eq!(got.unwrap(), x963(&z, 40, &|d| sha2::Sha256::digest(d).to_vec()));
        assert_eq!(got512.unwrap(), x963(&z, 32, &|d| sha2::Sha512::digest(d).to_vec()));
    } else {
        // SoftHSM2 2.6.1 derives with CKD_NULL only.
        assert!(got.is_err() && got512.is_err(), "{got:?}");
    }
}

const X25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];

/// A private key wrapped under a new AES key with `CKM_AES_KEY_WRAP_PAD` (PKCS#8 inside) and
/// unwrapped again as a session key of type `kt` with `usage`.
fn pkcs8_round_trip(
    s: &Session,
    private: cryptoki::object::ObjectHandle,
    kt: KeyType,
    usage: Attribute,
) -> cryptoki::object::ObjectHandle {
    let kek = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32u64.into()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Token(false),
            ],
        )
        .unwrap();
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, private).unwrap();
    s.unwrap_key(
        &Mechanism::AesKeyWrapPad,
        kek,
        &wrapped,
        &[
            Attribute::Class(cryptoki::object::ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(kt),
            usage,
            Attribute::Token(false),
        ],
    )
    .unwrap()
}

/// The shared secret of `private` with a raw 32-byte peer key, read back from a derived
/// generic secret.
fn x25519_derive(s: &Session, private: cryptoki::object::ObjectHandle, peer: &[u8]) -> Result<Vec<u8>, CkError> {
    let params = cryptoki::mechanism::elliptic_curve::Ecdh1DeriveParams::new(
        cryptoki::mechanism::elliptic_curve::EcKdf::null(),
        peer,
    );
    let k = s.derive_key(
        &Mechanism::Ecdh1Derive(params),
        private,
        &[
            Attribute::Class(cryptoki::object::ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Token(false),
        ],
    )?;
    match s
        .get_attributes(k, &[cryptoki::object::AttributeType::Value])?
        .remove(0)
    {
        Attribute::Value(v) => Ok(v),
        other => panic!("{other:?}"),
    }
}

/// X25519: a key pair the token makes agrees with a key OpenSSL makes, both ways; an imported
/// private key gives RFC 7748's shared secret; a small-order peer key is refused; the private
/// key wraps as RFC 8410 PKCS#8 and unwraps to the same key. SoftHSM2 2.6.1 has no
/// `CKM_EC_MONTGOMERY_KEY_PAIR_GEN`, and so neither has keygate's hsm mode over it.
#[test]
fn x25519_agrees_with_openssl_and_rfc7748() {
    let env = Env::new();
    let (_p, s) = session(&env);
    let generated = s.generate_key_pair(
        &Mechanism::EccMontgomeryKeyPairGen,
        &[Attribute::EcParams(X25519_OID.to_vec()), Attribute::Token(false)],
        &[
            Attribute::Derive(true),
            Attribute::Token(false),
            Attribute::Extractable(true),
        ],
    );
    if target() != Target::SelfManaged {
        assert!(
            matches!(generated, Err(CkError::Pkcs11(RvError::MechanismInvalid, _))),
            "{generated:?}"
        );
        return;
    }
    let (public, private) = generated.unwrap();
    let point = ec_point_any(&s, public);
    assert_eq!(point.len(), 32);
    let theirs = openssl::pkey::PKey::generate_x25519().unwrap();
    let ours_public = openssl::pkey::PKey::public_key_from_raw_bytes(&point, openssl::pkey::Id::X25519).unwrap();
    let mut d = openssl::derive::Deriver::new(&theirs).unwrap();
    d.set_peer(&ours_public).unwrap();
    let want = d.derive_to_vec().unwrap();
    let got = x25519_derive(&s, private, &theirs.raw_public_key().unwrap()).unwrap();
    assert_eq!(got, want, "X25519 differs from OpenSSL's");

    // RFC 7748 §6.1: Alice's private key, Bob's public key.
    let alice = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
    let bob = hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f").unwrap();
    let imported = s
        .create_object(&[
            Attribute::Class(cryptoki::object::ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC_MONTGOMERY),
            Attribute::EcParams(X25519_OID.to_vec()),
            Attribute::Value(alice),
            Attribute::Derive(true),
            Attribute::Token(false),
        ])
        .unwrap();
    assert_eq!(
        hex::encode(x25519_derive(&s, imported, &bob).unwrap()),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
    assert!(matches!(
        x25519_derive(&s, imported, &[0u8; 32]),
        Err(CkError::Pkcs11(RvError::MechanismParamInvalid, _))
    ));

    // Wrapped as PKCS#8 and back: the same key (the same secret with the same peer).
    let back = pkcs8_round_trip(&s, private, KeyType::EC_MONTGOMERY, Attribute::Derive(true));
    assert_eq!(
        x25519_derive(&s, back, &theirs.raw_public_key().unwrap()).unwrap(),
        want
    );
}

const ED448_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];

/// Ed448 on every target (SoftHSM2 has it): a key pair made in the token signs what OpenSSL
/// verifies, with `CKM_EDDSA` without parameters and with `phFlag` false and no context (as
/// python-pkcs11 asks); the private key wraps as RFC 8410 PKCS#8 and still signs after unwrap
/// (self-managed; hsm mode over SoftHSM2 has no PAD wrap, tests/crypto.rs says why).
#[test]
fn ed448_signs_what_openssl_verifies() {
    use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
    let env = Env::new();
    let (_p, s) = session(&env);
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[
                Attribute::EcParams(ED448_OID.to_vec()),
                Attribute::Verify(true),
                Attribute::Token(false),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Token(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    let point = ec_point_any(&s, public);
    assert_eq!(point.len(), 57);
    let outside = openssl::pkey::PKey::public_key_from_raw_bytes(&point, openssl::pkey::Id::ED448).unwrap();
    let check = |sig: &[u8]| {
        let mut v = openssl::sign::Verifier::new_without_digest(&outside).unwrap();
        assert!(
            v.verify_oneshot(sig, b"HI BOB!").unwrap(),
            "OpenSSL rejects the Ed448 signature"
        );
    };
    for m in [
        Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed448(&[]))),
    ] {
        let sig = s.sign(&m, private, b"HI BOB!").unwrap();
        assert_eq!(sig.len(), 114);
        check(&sig);
        s.verify(&m, public, b"HI BOB!", &sig).unwrap();
        assert!(s.verify(&m, public, b"HI BOB?", &sig).is_err());
    }
    if target() != Target::SelfManaged {
        return;
    }
    let back = pkcs8_round_trip(&s, private, KeyType::EC_EDWARDS, Attribute::Sign(true));
    let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    check(&s.sign(&m, back, b"HI BOB!").unwrap());
}
