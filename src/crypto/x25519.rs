//! X25519 key agreement (RFC 7748) over `x25519-dalek`: `CKK_EC_MONTGOMERY` keys, generated
//! with `CKM_EC_MONTGOMERY_KEY_PAIR_GEN` and used with `CKM_ECDH1_DERIVE`.

use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

fn secret(scalar: &[u8]) -> Result<StaticSecret> {
    let bytes: [u8; 32] = scalar.try_into().map_err(|_| Error::KeySizeRange)?;
    let bytes = Zeroizing::new(bytes);
    Ok(StaticSecret::from(*bytes))
}

/// A new key pair: (32-byte private key, 32-byte public u-coordinate).
pub fn generate() -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    let sk = StaticSecret::random_from_rng(OsRng);
    let public = PublicKey::from(&sk).to_bytes().to_vec();
    (Zeroizing::new(sk.to_bytes().to_vec()), public)
}

/// The public key of a private key (any 32 bytes are one: RFC 7748 clamps them).
pub fn public_of(scalar: &[u8]) -> Result<Vec<u8>> {
    Ok(PublicKey::from(&secret(scalar)?).to_bytes().to_vec())
}

/// The shared secret with a peer's 32-byte public key. A peer key of small order gives the
/// all-zero secret, which RFC 7748 §6.1 lets implementations refuse, and keygate does: such a
/// "shared" secret is known to everyone (`CKR_MECHANISM_PARAM_INVALID`, the peer key being a
/// parameter of the mechanism).
pub fn ecdh(scalar: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let peer: [u8; 32] = peer.try_into().map_err(|_| Error::MechanismParamInvalid)?;
    let shared = secret(scalar)?.diffie_hellman(&PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(Zeroizing::new(shared.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1's example: Alice's and Bob's keys and their shared secret.
    #[test]
    fn rfc7748_example() {
        let alice = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").unwrap();
        let bob_public = hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f").unwrap();
        assert_eq!(
            hex::encode(public_of(&alice).unwrap()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(&ecdh(&alice, &bob_public).unwrap()[..]),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        // A small-order peer point (0) is refused, not turned into a zero secret.
        assert_eq!(ecdh(&alice, &[0u8; 32]), Err(Error::MechanismParamInvalid));
    }
}
