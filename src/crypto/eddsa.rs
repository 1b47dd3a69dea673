//! Ed25519 (`CKM_EDDSA` without parameters: pure EdDSA).

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{SigningKey, Verifier, VerifyingKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

fn signing_key(seed: &[u8]) -> Result<SigningKey> {
    let seed: &[u8; 32] = seed.try_into().map_err(|_| Error::KeySizeRange)?;
    Ok(SigningKey::from_bytes(seed))
}

/// A new key pair: (32-byte seed, 32-byte public key).
pub fn generate() -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    let sk = SigningKey::generate(&mut OsRng);
    (
        Zeroizing::new(sk.to_bytes().to_vec()),
        sk.verifying_key().to_bytes().to_vec(),
    )
}

/// The public key of a seed.
pub fn public_of(seed: &[u8]) -> Result<Vec<u8>> {
    Ok(signing_key(seed)?.verifying_key().to_bytes().to_vec())
}

/// The verifying key of a seed: a base-point multiplication, as costly as a signature, so
/// done once per key and kept (`objects::Opened`), never per signature.
pub fn verifying_key(seed: &[u8]) -> Result<VerifyingKey> {
    Ok(signing_key(seed)?.verifying_key())
}

/// Signs with a seed and the verifying key [`verifying_key`] derived from that same seed. Never
/// pass a public key that came from anywhere else: signing under a mismatched public key
/// reveals the private key (the "double public key" oracle).
pub fn sign(seed: &[u8], public: &VerifyingKey, msg: &[u8]) -> Result<Vec<u8>> {
    let seed: &[u8; 32] = seed.try_into().map_err(|_| Error::KeySizeRange)?;
    let esk = ExpandedSecretKey::from(seed);
    Ok(raw_sign::<sha2::Sha512>(&esk, msg, public).to_bytes().to_vec())
}

/// As [`sign`], deriving the verifying key on the way (tests, one-off use).
#[cfg(test)]
fn sign_once(seed: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    use ed25519_dalek::Signer;
    let sk = signing_key(seed)?;
    // `try_sign` rather than `sign`: nothing on a reachable path may panic.
    let sig = sk.try_sign(msg).map_err(|_| Error::Crypto)?;
    Ok(sig.to_bytes().to_vec())
}

pub fn verify(public: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    let pk: &[u8; 32] = public.try_into().map_err(|_| Error::KeyTypeInconsistent)?;
    let vk = VerifyingKey::from_bytes(pk).map_err(|_| Error::KeyTypeInconsistent)?;
    let sig: &[u8; 64] = sig.try_into().map_err(|_| Error::SignatureLenRange)?;
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .map_err(|_| Error::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_1() {
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let want = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        assert_eq!(public_of(&seed).unwrap(), public);
        assert_eq!(sign(&seed, &verifying_key(&seed).unwrap(), b"").unwrap(), want);
        assert_eq!(sign_once(&seed, b"").unwrap(), want);
        let msg = b"a longer message to sign";
        assert_eq!(
            sign(&seed, &verifying_key(&seed).unwrap(), msg).unwrap(),
            sign_once(&seed, msg).unwrap()
        );
        verify(&public, b"", &want).unwrap();
        assert_eq!(verify(&public, b"x", &want), Err(Error::SignatureInvalid));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
