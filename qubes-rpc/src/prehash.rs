//! Client-side hashing: a SHA-256 computation stopped before its final block.
//!
//! An OpenPGP signature's digest is `H(data || trailer)`, and the trailer (the
//! signature's hashed area, with the log index in it) is known only in the vault,
//! under the log's append lock. So the client cannot send a finished digest;
//! it sends the hash *state* after the data (the eight chaining words, the bytes
//! of the last partial block, the length), and the vault resumes from there with
//! the trailer it builds itself. The vault never sees the data on this path: it
//! logs that the client hashed it (docs/protocol.md, "Client-side hashing").

use sha2::digest::generic_array::GenericArray;

use crate::messages::{HashAlgo, HashState};

/// SHA-256's block size in bytes.
pub const BLOCK: usize = 64;

/// SHA-256's initial chaining value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Largest message SHA-256 is defined for, in bytes (2^64 bits).
const MAX_LEN: u64 = u64::MAX / 8;

/// A SHA-256 computation whose state can be sent and resumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sha256Midstate {
    state: [u32; 8],
    /// Bytes not yet compressed (always fewer than [`BLOCK`]).
    tail: Vec<u8>,
    /// Bytes hashed in all, `tail` included.
    len: u64,
}

impl Default for Sha256Midstate {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("client-side hashing is only defined for SHA-256")]
    Algorithm,
    #[error("hash state: {0}")]
    Malformed(&'static str),
}

impl Sha256Midstate {
    pub fn new() -> Self {
        Sha256Midstate { state: IV, tail: Vec::with_capacity(BLOCK), len: 0 }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.saturating_add(data.len() as u64);
        if !self.tail.is_empty() {
            let take = (BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < BLOCK {
                return;
            }
            compress(&mut self.state, &self.tail);
            self.tail.clear();
        }
        let rest = compress(&mut self.state, data);
        self.tail.extend_from_slice(rest);
    }

    /// The digest of everything hashed so far.
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        self.tail.push(0x80);
        let pad = if self.tail.len() > BLOCK - 8 { 2 * BLOCK } else { BLOCK };
        self.tail.resize(pad - 8, 0);
        self.tail.extend_from_slice(&bits.to_be_bytes());
        compress(&mut self.state, &self.tail);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The state as it travels.
    pub fn to_wire(&self) -> HashState {
        let mut state = Vec::with_capacity(32);
        for w in self.state {
            state.extend_from_slice(&w.to_be_bytes());
        }
        HashState { algo: HashAlgo::Sha256, state, tail: self.tail.clone(), len: self.len }
    }

    /// Checks and takes a state from the wire. Any 256-bit chaining value is a
    /// possible SHA-256 state, so only the shape can be checked.
    pub fn from_wire(h: &HashState) -> Result<Self, StateError> {
        if h.algo != HashAlgo::Sha256 {
            return Err(StateError::Algorithm);
        }
        if h.state.len() != 32 {
            return Err(StateError::Malformed("the chaining value must be 32 bytes"));
        }
        if h.tail.len() >= BLOCK {
            return Err(StateError::Malformed("the unhashed tail must be shorter than a block"));
        }
        if h.len > MAX_LEN || h.len < h.tail.len() as u64 || !(h.len - h.tail.len() as u64).is_multiple_of(BLOCK as u64)
        {
            return Err(StateError::Malformed("the length does not match the tail"));
        }
        let mut state = [0u32; 8];
        for (w, b) in state.iter_mut().zip(h.state.chunks_exact(4)) {
            *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        let mut tail = Vec::with_capacity(BLOCK);
        tail.extend_from_slice(&h.tail);
        Ok(Sha256Midstate { state, tail, len: h.len })
    }
}

/// Compresses every whole block of `data` into `state`; returns the bytes of
/// the partial block left over.
fn compress<'a>(state: &mut [u32; 8], data: &'a [u8]) -> &'a [u8] {
    let mut blocks = data.chunks_exact(BLOCK);
    for block in &mut blocks {
        // One block per call: the slice of blocks compress256 wants would
        // otherwise need a copy (or unsafe) to build from a byte slice.
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
    blocks.remainder()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn known_answers() {
        // FIPS 180-2 appendix B.1 and the empty string.
        let mut m = Sha256Midstate::new();
        m.update(b"abc");
        assert_eq!(hex(&m.finalize()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&Sha256Midstate::new().finalize()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn malformed_states_are_refused() {
        let good = Sha256Midstate::new().to_wire();
        let mut h = good.clone();
        h.algo = HashAlgo::Sha512;
        assert_eq!(Sha256Midstate::from_wire(&h), Err(StateError::Algorithm));
        let mut h = good.clone();
        h.state.pop();
        assert!(Sha256Midstate::from_wire(&h).is_err());
        let mut h = good.clone();
        h.tail = vec![0; 64];
        h.len = 64;
        assert!(Sha256Midstate::from_wire(&h).is_err());
        let mut h = good.clone();
        h.tail = vec![0; 3];
        h.len = 2;
        assert!(Sha256Midstate::from_wire(&h).is_err());
        h.len = 64 + 2;
        assert!(Sha256Midstate::from_wire(&h).is_err());
        h.len = 64 + 3;
        assert!(Sha256Midstate::from_wire(&h).is_ok());
        h.len = u64::MAX - 60;
        assert!(Sha256Midstate::from_wire(&h).is_err());
    }

    proptest! {
        /// Split anywhere, sent over the wire, resumed with more data: the
        /// digest is SHA-256 of the whole.
        #[test]
        fn resumed_state_equals_one_pass(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..6),
            more in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut m = Sha256Midstate::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut at = 0;
            for c in cuts {
                m.update(&data[at..c]);
                at = c;
            }
            m.update(&data[at..]);
            let mut resumed = Sha256Midstate::from_wire(&m.to_wire()).unwrap();
            resumed.update(&more);
            let mut whole = data.clone();
            whole.extend_from_slice(&more);
            prop_assert_eq!(resumed.finalize().to_vec(), Sha256::digest(&whole).to_vec());
        }
    }
}
