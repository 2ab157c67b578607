//! The cluster secret: the accepting side challenges every connection to prove it knows it
//!
//! After a valid [`Hello`](super::handshake::Hello), the accepting side sends a
//! challenge with a fresh random nonce; the connecting side answers with a proof ([`prove`]): a
//! 128-bit keyed SipHash-2-4 of the nonce and the hello, keyed by [`secret_key`] of the
//! cluster secret. The accepting side recomputes it and compares in constant time. The
//! secret itself never crosses the network, and an old proof does not answer a new nonce, so
//! a stranger can neither join nor inject messages.
//!
//! What it does not do: traffic is not encrypted, and a weak secret can be guessed offline
//! from a recorded handshake; use a long random secret, and a private network or a tunnel
//! where traffic must be confidential. Nodes without a secret use the empty one, and the
//! handshake is the same.
//!
//! ```
//! use shale_runtime_std::transport::auth::{prove, secret_key, verify};
//!
//! let key = secret_key(b"correct horse battery staple");
//! let hello = [1u8; 29];
//! let proof = prove(&key, &[7u8; 16], &hello);
//! assert!(verify(&key, &[7u8; 16], &hello, &proof));
//! assert!(!verify(&secret_key(b"guess"), &[7u8; 16], &hello, &proof));
//! assert!(!verify(&key, &[8u8; 16], &hello, &proof));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip128::{Hasher128, SipHasher24};

/// Bytes in a challenge nonce
pub const NONCE_LEN: usize = 16;
/// Bytes in a proof
pub const PROOF_LEN: usize = 16;

/// The 128-bit key derived from a cluster secret of any length
pub fn secret_key(secret: &[u8]) -> [u8; 16] {
    let mut h = SipHasher24::new_with_keys(0x7368_616c_655f_6b65, 0x795f_6465_7269_7665);
    h.write(secret);
    h.finish128().as_bytes()
}

/// The proof that the connecting side knows `key`, for `nonce` and the `hello` it sent
pub fn prove(key: &[u8; 16], nonce: &[u8; NONCE_LEN], hello: &[u8]) -> [u8; PROOF_LEN] {
    let mut h = SipHasher24::new_with_key(key);
    h.write(nonce);
    h.write(hello);
    h.finish128().as_bytes()
}

/// Whether `proof` answers `nonce` for `hello` under `key` (constant time in the proof)
pub fn verify(key: &[u8; 16], nonce: &[u8; NONCE_LEN], hello: &[u8], proof: &[u8]) -> bool {
    let expected = prove(key, nonce, hello);
    if proof.len() != PROOF_LEN {
        return false;
    }
    expected
        .iter()
        .zip(proof)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

/// A fresh nonce: the process's random hash keys (from the OS) over a counter and the time
pub fn nonce() -> [u8; NONCE_LEN] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let mut out = [0u8; NONCE_LEN];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(nanos);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }

    #[test]
    fn a_proof_of_the_wrong_length_fails() {
        let key = secret_key(b"");
        let n = [0u8; NONCE_LEN];
        let proof = prove(&key, &n, b"hello");
        assert!(verify(&key, &n, b"hello", &proof));
        assert!(!verify(&key, &n, b"hello", &proof[..15]));
        assert!(!verify(&key, &n, b"hellO", &proof));
    }
}
