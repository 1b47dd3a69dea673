//! `keygate bench --raw`: the ceiling. Each workload's primitive called directly in this
//! process, the way keygate's self-managed token calls it — the crypto provider's function
//! (OpenSSL or RustCrypto, as `KEYGATE_CRYPTO_PROVIDER` picks for the module), the crate, or
//! OpenSSL — with the key material ready: no PKCS#11 call, no session, no object, no unsealing.
//! What keygate takes per operation beyond this is its own cost. Each step is checked once
//! against an independent implementation, like the module's workloads.

use keygate_pkcs11::crypto::{self, aes, digest, ec, eddsa};

use super::bench::BenchResult;

/// One operation of a raw workload (`i` is the operation's number, for a fresh GCM IV).
pub type RawStep = Box<dyn Fn(u64) -> BenchResult<()> + Send + Sync>;

fn e<T, E: std::fmt::Debug>(r: Result<T, E>) -> BenchResult<T> {
    r.map_err(|e| format!("{e:?}"))
}

/// The primitive of workload `w` and the bytes each operation processes (0: none to count).
pub fn prepare(w: &str) -> BenchResult<(RawStep, usize)> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let p = crypto::provider();
    Ok(match w {
        "ecdsa-sign" | "ecdsa-verify" => {
            let (scalar, point) = e(ec::generate(ec::Curve::P256))?;
            let digest = [0x5au8; 32];
            let sig = e(p.p256_sign_prehash(&scalar, &digest))?;
            let vk = e(p256::ecdsa::VerifyingKey::from_sec1_bytes(&point))?;
            e(vk.verify_prehash(&digest, &e(p256::ecdsa::Signature::from_slice(&sig))?))?;
            if w == "ecdsa-sign" {
                (Box::new(move |_| e(p.p256_sign_prehash(&scalar, &digest)).map(drop)), 0)
            } else {
                (Box::new(move |_| e(p.p256_verify_prehash(&point, &digest, &sig))), 0)
            }
        }
        "p384-sign" => {
            let (scalar, point) = e(ec::generate(ec::Curve::P384))?;
            let digest = [0x5au8; 48];
            let sig = e(p.ec_sign_prehash(ec::Curve::P384, &scalar, &digest))?;
            let vk = e(p384::ecdsa::VerifyingKey::from_sec1_bytes(&point))?;
            e(vk.verify_prehash(&digest, &e(p384::ecdsa::Signature::from_slice(&sig))?))?;
            (
                Box::new(move |_| e(p.ec_sign_prehash(ec::Curve::P384, &scalar, &digest)).map(drop)),
                0,
            )
        }
        "ed25519-sign" | "ed25519-verify" => {
            let (seed, public) = eddsa::generate();
            let vk = e(eddsa::verifying_key(&seed))?;
            let msg = [0x33u8; 64];
            let sig = e(p.ed25519_sign(&seed, &vk, &msg))?;
            let outside = e(ed25519_dalek::VerifyingKey::from_bytes(&e(public.clone().try_into())?))?;
            e(outside.verify_strict(&msg, &e(ed25519_dalek::Signature::from_slice(&sig))?))?;
            if w == "ed25519-sign" {
                (Box::new(move |_| e(p.ed25519_sign(&seed, &vk, &msg)).map(drop)), 0)
            } else {
                (Box::new(move |_| e(p.ed25519_verify(&public, &msg, &sig))), 0)
            }
        }
        "aes-gcm-64" | "aes-gcm-64-token" | "aes-gcm-4k" | "aes-gcm-1m" => {
            use aes_gcm::aead::{Aead, KeyInit};
            let len = match w {
                "aes-gcm-4k" => 4096,
                "aes-gcm-1m" => 1 << 20,
                _ => 64,
            };
            let key = [0x42u8; 32];
            let data = vec![0x17u8; len];
            let iv = |i: u64| {
                let mut iv = [0u8; 12];
                iv[4..].copy_from_slice(&i.to_be_bytes());
                iv
            };
            let mut ct = vec![0u8; len + aes::TAG_LEN];
            e(p.gcm_encrypt_into(&key, &iv(0), &[], &data, &mut ct))?;
            let outside = e(aes_gcm::Aes256Gcm::new_from_slice(&key))?;
            if e(outside.decrypt(&iv(0).into(), &ct[..]))? != data {
                return Err("the provider's AES-GCM does not round-trip".into());
            }
            // Into a buffer of the thread's own, as the token now encrypts into the caller's.
            thread_local! {
                static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            (
                Box::new(move |i| {
                    OUT.with_borrow_mut(|out| {
                        out.resize(data.len() + aes::TAG_LEN, 0);
                        e(p.gcm_encrypt_into(&key, &iv(i), &[], &data, out))
                    })
                }),
                len,
            )
        }
        "aes-cbc-4k" => {
            // CBC encryption as the self-managed token chains it: block by block.
            let key = e(aes::BlockKey::new(&[0x42u8; 32]))?;
            let data = vec![0x17u8; 4096];
            (
                Box::new(move |_| {
                    let mut out = data.clone();
                    let mut prev = [0x24u8; 16];
                    for block in out.chunks_exact_mut(16) {
                        for (b, p) in block.iter_mut().zip(prev) {
                            *b ^= p;
                        }
                        let b: &mut [u8; 16] = e(block.try_into())?;
                        key.encrypt(b);
                        prev = *b;
                    }
                    Ok(())
                }),
                4096,
            )
        }
        "aes-wrap" => {
            let (kek, target) = ([0x11u8; 32], [0x22u8; 32]);
            let wrapped = e(aes::wrap(aes::WrapKind::Kw, &kek, &target))?;
            if e(aes_kw::KekAes256::from(kek).unwrap_vec(&wrapped))? != target {
                return Err("the wrap is not RFC 3394".into());
            }
            (
                Box::new(move |_| e(aes::wrap(aes::WrapKind::Kw, &kek, &target)).map(drop)),
                0,
            )
        }
        "hmac-sha256-64" => {
            let key = [0x0bu8; 32];
            let data = [0x61u8; 64];
            (
                Box::new(move |_| {
                    let mut h = e(digest::HmacSha256::new(&key))?;
                    h.update(&data);
                    std::hint::black_box(h.finish());
                    Ok(())
                }),
                64,
            )
        }
        "sha256-64" => {
            let data = [0x61u8; 64];
            if digest::sha256(&data)[..] != <sha2::Sha256 as sha2::Digest>::digest(data)[..] {
                return Err("not SHA-256".into());
            }
            (
                Box::new(move |_| {
                    std::hint::black_box(digest::sha256(std::hint::black_box(&data)));
                    Ok(())
                }),
                64,
            )
        }
        "random-32" => (
            Box::new(|_| {
                let mut out = [0u8; 32];
                e(crypto::random(&mut out))
            }),
            0,
        ),
        #[cfg(feature = "openssl")]
        "rsa2048-sign" | "rsa2048-verify" | "rsa3072-sign" | "rsa3072-verify" => {
            use keygate_pkcs11::crypto::rsa;
            use keygate_pkcs11::model::mechanisms::DigestAlg;
            let bits = if w.starts_with("rsa2048") { 2048 } else { 3072 };
            let k = e(rsa::generate(bits, &[1, 0, 1]))?;
            let pad = rsa::SigPadding::Pkcs1(Some(DigestAlg::Sha256));
            // CKM_SHA256_RSA_PKCS over 64 bytes: the hash is part of the operation.
            let msg = [0x5au8; 64];
            let sig = e(rsa::sign(&k.private, &pad, &digest::sha256(&msg)))?;
            let (modulus, exponent) = (k.modulus.clone(), k.public_exponent.clone());
            let verify = move || {
                let pad = rsa::SigPadding::Pkcs1(Some(DigestAlg::Sha256));
                e(rsa::verify(&modulus, &exponent, &pad, &digest::sha256(&msg), &sig))
            };
            verify()?;
            if w.ends_with("sign") {
                (
                    Box::new(move |_| e(rsa::sign(&k.private, &pad, &digest::sha256(&msg))).map(drop)),
                    0,
                )
            } else {
                (Box::new(move |_| verify()), 0)
            }
        }
        other => {
            return Err(format!(
                "{other} has no primitive of its own: it measures the token (its objects, store or login)"
            ))
        }
    })
}
