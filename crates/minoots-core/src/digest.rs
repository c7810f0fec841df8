//! SHA-256 and HMAC-SHA256, the one implementation every plane uses: API-key and session
//! hashes, idempotency fingerprints, webhook signatures and Stripe's signatures.
//!
//! Backed by the `sha2` crate, which uses the CPU's SHA extensions where it has them
//! (about five times faster than portable code for a webhook-sized message on x86-64;
//! docs/benchmarks.md). Signing every webhook makes this part of the delivery path.

use hmac::{KeyInit, Mac};
use sha2::Digest;

/// HMAC-SHA256 with its key absorbed: clone it to sign many messages under one key
/// without computing the key schedule again.
#[derive(Clone)]
pub struct Keyed(hmac::Hmac<sha2::Sha256>);

impl Keyed {
    /// HMAC accepts keys of any length (longer ones are hashed first).
    pub fn new(key: &[u8]) -> Self {
        Self(hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finalize(self) -> [u8; 32] {
        self.0.finalize().into_bytes().into()
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Keyed::new(key);
    mac.update(data);
    mac.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // FIPS 180-2 and RFC 4231 test case 2.
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (RFC 4231 test case 6).
        let mut m = Keyed::new(&[0xaa; 131]);
        m.update(b"Test Using Larger Than Block-Size Key - ");
        m.update(b"Hash Key First");
        assert_eq!(
            hex(&m.finalize()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
