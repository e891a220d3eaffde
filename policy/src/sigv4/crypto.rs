//! SHA-256, HMAC-SHA256, hex and constant-time comparison: the primitives SigV4 is made
//! of. HMAC is built here on `sha2` (RFC 2104, checked against RFC 4231 below) so that a
//! key's padded inner and outer states are computed once and cloned per signature: a
//! chunk signature then costs the blocks of its string to sign and nothing more.

use std::fmt;

use sha2::{Digest, Sha256};

/// `sha256("")` in hex: the hash of an empty payload, and the fifth line of every chunk's
/// string to sign.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// SHA-256 block size in bytes (the HMAC key block).
const BLOCK_BYTES: usize = 64;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// An HMAC-SHA256 key with its padded inner and outer hash states precomputed.
#[derive(Clone)]
pub(crate) struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl HmacKey {
    /// Prepares `key` (hashed first when longer than a block, as RFC 2104 says).
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut block = [0u8; BLOCK_BYTES];
        if key.len() > BLOCK_BYTES {
            block[..32].copy_from_slice(&sha256(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut ipad = [0x36u8; BLOCK_BYTES];
        let mut opad = [0x5cu8; BLOCK_BYTES];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(block) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = Sha256::new();
        inner.update(ipad);
        let mut outer = Sha256::new();
        outer.update(opad);
        Self { inner, outer }
    }

    /// HMAC of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for part in parts {
            inner.update(part);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// HMAC-SHA256 of `data` under `key`, for one-off uses (key derivation).
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    HmacKey::new(key).mac(&[data])
}

/// Lower-case hex of 32 bytes, without allocating.
pub(crate) fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

/// Parses exactly 64 lower-case hex digits (the only form SigV4 sends).
pub(crate) fn parse_hex32(text: &[u8]) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Equality whose time does not depend on where `a` and `b` differ, so a client cannot
/// learn a valid signature byte by byte from response times.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A SigV4 signature: 32 bytes, shown as 64 lower-case hex digits. Compare untrusted
/// signatures with [`Signature::ct_eq`], not `==`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 32]);

impl Signature {
    /// Parses the 64 lower-case hex digits of a signature.
    pub fn from_hex(text: &[u8]) -> Option<Self> {
        parse_hex32(text).map(Self)
    }

    /// The signature as 64 lower-case hex digits (ASCII bytes, no allocation).
    pub fn hex(&self) -> [u8; 64] {
        hex32(&self.0)
    }

    /// Compares with `other` in constant time.
    pub fn ct_eq(&self, other: &Signature) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // hex32 only writes ASCII digits, so this never falls back.
        f.write_str(std::str::from_utf8(&hex).unwrap_or(""))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: [u8; 32]) -> String {
        String::from_utf8(hex32(&bytes).to_vec()).unwrap()
    }

    #[test]
    fn sha256_of_empty_is_the_constant() {
        assert_eq!(hex(sha256(b"")), EMPTY_SHA256_HEX);
    }

    // RFC 4231 test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            hex(hmac(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn mac_over_parts_equals_mac_over_concatenation() {
        let key = HmacKey::new(b"key");
        assert_eq!(key.mac(&[b"ab", b"", b"cd"]), key.mac(&[b"abcd"]));
    }

    #[test]
    fn hex_round_trips_and_rejects_upper_case() {
        let sig = Signature([0xab; 32]);
        assert_eq!(Signature::from_hex(&sig.hex()), Some(sig));
        assert_eq!(Signature::from_hex(&[b'A'; 64]), None);
        assert_eq!(Signature::from_hex(&[b'a'; 63]), None);
        assert_eq!(sig.to_string().len(), 64);
    }

    #[test]
    fn ct_eq_compares_every_byte() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(ct_eq(&a, &b));
        b[31] ^= 1;
        assert!(!ct_eq(&a, &b));
    }
}
