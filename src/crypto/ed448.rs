//! Ed448 (RFC 8032, pure, empty context: `CKM_EDDSA` without parameters or with `phFlag`
//! false and no context) through OpenSSL, the one well-kept constant-time implementation
//! available to keygate; builds without OpenSSL do not offer it.

use openssl::pkey::{Id, PKey};
use openssl::sign::{Signer, Verifier};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The length of a private key, a public key, and half a signature.
pub const LEN: usize = 57;

fn private(key: &[u8]) -> Result<PKey<openssl::pkey::Private>> {
    if key.len() != LEN {
        return Err(Error::KeySizeRange);
    }
    PKey::private_key_from_raw_bytes(key, Id::ED448).map_err(|_| Error::Crypto)
}

/// A new key pair: (57-byte private key, 57-byte public key).
pub fn generate() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let k = PKey::generate_ed448().map_err(|_| Error::Crypto)?;
    let secret = Zeroizing::new(k.raw_private_key().map_err(|_| Error::Crypto)?);
    Ok((secret, k.raw_public_key().map_err(|_| Error::Crypto)?))
}

/// The public key of a private key.
pub fn public_of(key: &[u8]) -> Result<Vec<u8>> {
    private(key)?.raw_public_key().map_err(|_| Error::Crypto)
}

pub fn sign(key: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let k = private(key)?;
    let mut signer = Signer::new_without_digest(&k).map_err(|_| Error::Crypto)?;
    signer.sign_oneshot_to_vec(msg).map_err(|_| Error::Crypto)
}

pub fn verify(public: &[u8], msg: &[u8], sig: &[u8]) -> Result<()> {
    if public.len() != LEN {
        return Err(Error::KeyTypeInconsistent);
    }
    if sig.len() != 2 * LEN {
        return Err(Error::SignatureLenRange);
    }
    let k = PKey::public_key_from_raw_bytes(public, Id::ED448).map_err(|_| Error::KeyTypeInconsistent)?;
    let mut v = Verifier::new_without_digest(&k).map_err(|_| Error::Crypto)?;
    match v.verify_oneshot(sig, msg) {
        Ok(true) => Ok(()),
        _ => Err(Error::SignatureInvalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.4, "-----Blank" (the empty message).
    #[test]
    fn rfc8032_blank() {
        let sk = hex::decode("6c82a562cb808d10d632be89c8513ebf6c929f34ddfa8c9f63c9960ef6e348a3528c8a3fcc2f044e39a3fc5b94492f8f032e7549a20098f95b").unwrap();
        let pk = public_of(&sk).unwrap();
        assert_eq!(hex::encode(&pk), "5fd7449b59b461fd2ce787ec616ad46a1da1342485a70e1f8a0ea75d80e96778edf124769b46c7061bd6783df1e50f6cd1fa1abeafe8256180");
        let sig = sign(&sk, b"").unwrap();
        assert_eq!(hex::encode(&sig), "533a37f6bbe457251f023c0d88f976ae2dfb504a843e34d2074fd823d41a591f2b233f034f628281f2fd7a22ddd47d7828c59bd0a21bfd3980ff0d2028d4b18a9df63e006c5d1c2d345b925d8dc00b4104852db99ac5c7cdda8530a113a0f4dbb61149f05a7363268c71d95808ff2e652600");
        verify(&pk, b"", &sig).unwrap();
        assert_eq!(verify(&pk, b"x", &sig), Err(Error::SignatureInvalid));
    }
}
