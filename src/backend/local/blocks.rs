//! The block and stream modes of AES for the self-managed token: ECB and CBC (with or without
//! PKCS#7 padding) and CTR. Each operation holds its key schedule, and its buffered input in
//! zeroising memory, for the operation's lifetime only.

use zeroize::Zeroizing;

use super::ops::Secret;
use crate::backend::CipherOp;
use crate::crypto::aes;
use crate::crypto::{provider, HeldBytes};
use crate::error::{Error, Result};

/// The block modes of AES: ECB and CBC, with or without PKCS#7 padding (`CKM_AES_CBC_PAD`).
/// Multi-part: every `update` returns the whole blocks it can; a padded decryption holds back
/// the last full block, which may be the padding, until `finish`.
pub struct AesBlocks {
    key: aes::BlockKey,
    /// The chaining value (CBC), or none (ECB).
    chain: Option<[u8; aes::BLOCK]>,
    pad: bool,
    encrypt: bool,
    /// Input not yet processed: less than a block, or (padded decryption) up to one block.
    held: HeldBytes,
    /// The key itself, for a CBC encryption the crypto provider may do in one call.
    secret: Option<Secret>,
}

impl AesBlocks {
    pub fn new(key: Secret, iv: Option<[u8; aes::BLOCK]>, pad: bool, encrypt: bool) -> Result<Self> {
        Ok(Self {
            key: aes::BlockKey::new(&key)?,
            chain: iv,
            pad,
            encrypt,
            held: HeldBytes::default(),
            secret: (encrypt && iv.is_some()).then_some(key),
        })
    }

    /// How many of `total` available bytes an update processes now.
    fn ready(&self, total: usize) -> usize {
        let whole = total - total % aes::BLOCK;
        if self.pad && !self.encrypt && whole == total {
            whole.saturating_sub(aes::BLOCK)
        } else {
            whole
        }
    }

    fn block(&mut self, block: &mut [u8; aes::BLOCK]) {
        match (&mut self.chain, self.encrypt) {
            (None, true) => self.key.encrypt(block),
            (None, false) => self.key.decrypt(block),
            (Some(prev), true) => {
                block.iter_mut().zip(prev.iter()).for_each(|(b, p)| *b ^= p);
                self.key.encrypt(block);
                *prev = *block;
            }
            (Some(prev), false) => {
                let c = *block;
                self.key.decrypt(block);
                block.iter_mut().zip(prev.iter()).for_each(|(b, p)| *b ^= p);
                *prev = c;
            }
        }
    }

    /// Encrypts whole blocks in place: ECB a pipeline of blocks at a time, CBC block after
    /// block as its chaining requires.
    fn encrypt_in_place(&mut self, buf: &mut [u8]) {
        match &mut self.chain {
            None => self.key.encrypt_all(buf),
            Some(prev) => {
                // One block of plaintext-derived state on the stack, wiped after the loop.
                let mut x = [0u8; aes::BLOCK];
                for b in buf.chunks_exact_mut(aes::BLOCK) {
                    x.copy_from_slice(b);
                    for i in 0..aes::BLOCK {
                        x[i] ^= prev[i];
                    }
                    self.key.encrypt(&mut x);
                    b.copy_from_slice(&x);
                    *prev = x;
                }
                zeroize::Zeroize::zeroize(&mut x);
            }
        }
    }

    /// Processes whole blocks of `data` into `out`, in place in `out` (a zeroising buffer):
    /// ECB and CBC decryption a pipeline of blocks at a time, CBC encryption block after block
    /// as its chaining requires.
    fn blocks(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(data);
        let buf = &mut out[start..];
        if self.encrypt {
            return self.encrypt_in_place(buf);
        }
        match &mut self.chain {
            None => self.key.decrypt_all(buf),
            Some(prev) => {
                self.key.decrypt_all(buf);
                // Each plaintext block is its decryption XOR the ciphertext block before it
                // (the chaining value for the first).
                for (i, b) in buf.chunks_exact_mut(aes::BLOCK).enumerate() {
                    let before = if i == 0 {
                        &prev[..]
                    } else {
                        &data[(i - 1) * aes::BLOCK..i * aes::BLOCK]
                    };
                    b.iter_mut().zip(before).for_each(|(x, p)| *x ^= p);
                }
                if let Some(last) = data.len().checked_sub(aes::BLOCK) {
                    prev.copy_from_slice(&data[last..]);
                }
            }
        }
    }
}

impl CipherOp for AesBlocks {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut input = std::mem::take(&mut self.held);
        input.extend_from_slice(data);
        let n = self.ready(input.len());
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        self.blocks(&input[..n], &mut out);
        self.held = HeldBytes::from(input[n..].to_vec());
        Ok(out)
    }

    fn finish(mut self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        let held = std::mem::take(&mut self.held);
        let mut out = Zeroizing::new(Vec::with_capacity(aes::BLOCK));
        match (self.pad, self.encrypt) {
            (false, _) if held.is_empty() => {}
            (false, true) => return Err(Error::DataLenRange),
            (false, false) => return Err(Error::EncryptedDataLenRange),
            (true, true) => {
                // PKCS#7: 1 to 16 bytes, each the count.
                let n = aes::BLOCK - held.len();
                let mut last = Zeroizing::new([n as u8; aes::BLOCK]);
                last[..held.len()].copy_from_slice(&held);
                self.block(&mut last);
                out.extend_from_slice(&last[..]);
            }
            (true, false) => {
                let mut last = Zeroizing::new([0u8; aes::BLOCK]);
                if held.len() != aes::BLOCK {
                    return Err(Error::EncryptedDataLenRange);
                }
                last.copy_from_slice(&held);
                self.block(&mut last);
                let keep = aes::unpad(&last).ok_or(Error::EncryptedDataInvalid)?;
                out.extend_from_slice(&last[..keep]);
            }
        }
        Ok(out)
    }

    fn update_len(&self, input_len: usize) -> usize {
        self.ready(self.held.len() + input_len)
    }

    /// A single-part encryption's length is known: the data (whole blocks), or with padding the
    /// data rounded up to the next whole block. Decryption keeps its zeroising path.
    fn once_len(&self, input_len: usize) -> Option<usize> {
        if !self.encrypt || !self.held.is_empty() {
            return None;
        }
        match self.pad {
            true => Some((input_len / aes::BLOCK + 1) * aes::BLOCK),
            false => input_len.is_multiple_of(aes::BLOCK).then_some(input_len),
        }
    }

    /// Encrypts straight into the caller's buffer: no output of keygate's to zero, fill and
    /// copy (AES-CBC 4 KiB spent a third of its time on them).
    fn once_into(mut self: Box<Self>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        let n = self.once_len(data.len()).ok_or(Error::DataLenRange)?;
        let out = out.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        let whole = data.len() - data.len() % aes::BLOCK;
        // The provider takes all but the last block when there is no padding block after it
        // (it writes into a buffer a block longer than its input).
        let head = if self.pad {
            whole
        } else {
            whole.saturating_sub(aes::BLOCK)
        };
        let mut done = 0;
        if let (Some(key), Some(iv), true) = (&self.secret, self.chain, head > 0) {
            if provider().cbc_encrypt_into(key, &iv, &data[..head], &mut out[..head + aes::BLOCK])? {
                done = head;
                if let Some(prev) = &mut self.chain {
                    prev.copy_from_slice(&out[head - aes::BLOCK..head]);
                }
            }
        }
        out[done..whole].copy_from_slice(&data[done..whole]);
        self.encrypt_in_place(&mut out[done..whole]);
        if self.pad {
            // PKCS#7: 1 to 16 bytes, each the count.
            let rest = &data[whole..];
            let mut last = Zeroizing::new([(aes::BLOCK - rest.len()) as u8; aes::BLOCK]);
            last[..rest.len()].copy_from_slice(rest);
            self.block(&mut last);
            out[whole..].copy_from_slice(&last[..]);
        }
        Ok(n)
    }
}

/// AES-CTR (NIST SP 800-38A): the low `bits` bits of the counter block count, big-endian. A
/// stream: every update returns as many bytes as it was given. Refuses to go on once the
/// counter would come back to where it started (the keystream would repeat).
pub struct AesCtr {
    key: aes::BlockKey,
    counter: u128,
    mask: u128,
    /// Blocks of keystream left before the counter wraps (`None`: a 128-bit counter).
    left: Option<u128>,
    /// The current block of keystream and how much of it is used.
    stream: Zeroizing<[u8; aes::BLOCK]>,
    used: usize,
}

impl AesCtr {
    pub fn new(key: &[u8], counter_bits: u64, cb: [u8; aes::BLOCK]) -> Result<Self> {
        let (mask, left) = match counter_bits {
            128 => (u128::MAX, None),
            b @ 1..=127 => ((1u128 << b) - 1, Some(1u128 << b)),
            _ => return Err(Error::MechanismParamInvalid),
        };
        Ok(Self {
            key: aes::BlockKey::new(key)?,
            counter: u128::from_be_bytes(cb),
            mask,
            left,
            stream: Zeroizing::new([0u8; aes::BLOCK]),
            used: aes::BLOCK,
        })
    }

    fn next_block(&mut self) -> Result<()> {
        if let Some(left) = &mut self.left {
            *left = left.checked_sub(1).ok_or(Error::DataLenRange)?;
        }
        *self.stream = self.counter.to_be_bytes();
        self.key.encrypt(&mut self.stream);
        self.used = 0;
        self.counter = (self.counter & !self.mask) | (self.counter.wrapping_add(1) & self.mask);
        Ok(())
    }
}

impl CipherOp for AesCtr {
    fn update(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
        for b in data {
            if self.used == aes::BLOCK {
                self.next_block()?;
            }
            out.push(b ^ self.stream[self.used]);
            self.used += 1;
        }
        Ok(out)
    }
    fn finish(self: Box<Self>) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(Vec::new()))
    }
    fn update_len(&self, input_len: usize) -> usize {
        input_len
    }
}
