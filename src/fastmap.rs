//! Hash maps for the per-call lookups (session handles, object handles, object identifiers).
//!
//! The standard library's SipHash resists hash flooding by keys an attacker picks; these keys
//! are picked by keygate (sequential handles) or are random identifiers, and a lookup happens
//! several times per PKCS#11 call, where SipHash was a measurable part of the hsm-mode overhead
//! (`keygate bench`, perf). This is the multiply-rotate hash rustc uses for its own tables.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`Fast`] hashing.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fast>>;

/// FxHash: per word, rotate, xor, multiply by an odd constant.
#[derive(Default, Clone, Copy)]
pub struct Fast(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for Fast {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_shape_are_found() {
        let mut m: FastMap<u64, u64> = FastMap::default();
        for i in 0..10_000 {
            m.insert(i, i * 3);
        }
        assert!((0..10_000).all(|i| m.get(&i) == Some(&(i * 3))));
        let mut ids: FastMap<(usize, [u8; 16]), u64> = FastMap::default();
        for i in 0..1000u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_le_bytes());
            id[15] = (i % 7) as u8;
            ids.insert(((i % 3) as usize, id), i);
        }
        assert_eq!(ids.len(), 1000);
        let mut probe = [0u8; 16];
        probe[..8].copy_from_slice(&999u64.to_le_bytes());
        probe[15] = (999 % 7) as u8;
        assert_eq!(ids.get(&(0, probe)), Some(&999));
    }
}
