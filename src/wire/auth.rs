//! Authenticated datagrams (the idea of OWAMP/TWAMP's authenticated mode): with a per-run key,
//! every datagram ends in a 16-byte tag, BLAKE3 in keyed mode over everything before it,
//! truncated. A datagram whose tag does not verify is counted as forged and dropped before
//! any stage sees it. Without a key nothing is added.
//!
//! BLAKE3: one compression for a datagram up to 64 bytes, no allocation; the tag is compared
//! in constant time.

pub const TAG_LEN: usize = 16;

/// A run's 32-byte key (`mpcomm c2 keygen` format on disk).
#[derive(Clone)]
pub struct RunKey([u8; 32]);

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunKey(..)") // Never print a key.
    }
}

impl RunKey {
    pub fn new(key: [u8; 32]) -> RunKey {
        RunKey(key)
    }

    fn tag(&self, body: &[u8]) -> [u8; TAG_LEN] {
        let full = blake3::keyed_hash(&self.0, body);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full.as_bytes()[..TAG_LEN]);
        t
    }

    /// Append the tag of `buf[..len]` at `buf[len..len + TAG_LEN]`; returns the new length.
    /// `buf` must be at least `len + TAG_LEN` long.
    pub fn sign(&self, buf: &mut [u8], len: usize) -> usize {
        let t = self.tag(&buf[..len]);
        buf[len..len + TAG_LEN].copy_from_slice(&t);
        len + TAG_LEN
    }

    /// The datagram without its tag, if the tag is right.
    pub fn verify<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let body_len = bytes.len().checked_sub(TAG_LEN)?;
        let (body, tag) = bytes.split_at(body_len);
        let want = self.tag(body);
        // Constant time: no early exit on the first differing byte.
        let diff = want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_datagram_verifies_and_any_change_does_not() {
        let key = RunKey::new([7; 32]);
        let mut buf = [0u8; 64];
        buf[..20].copy_from_slice(b"MP\x02\x03 some datagram!!");
        let n = key.sign(&mut buf, 20);
        assert_eq!(n, 36);
        assert_eq!(key.verify(&buf[..n]), Some(&buf[..20]));
        for i in 0..n {
            let mut b = buf;
            b[i] ^= 1;
            assert_eq!(key.verify(&b[..n]), None, "bit flip at {i}");
        }
        assert_eq!(key.verify(&buf[..n - 1]), None, "truncated");
        assert_eq!(key.verify(&buf[..10]), None, "shorter than a tag");
        assert_eq!(RunKey::new([8; 32]).verify(&buf[..n]), None, "another key");
        assert_eq!(format!("{key:?}"), "RunKey(..)");
    }
}
