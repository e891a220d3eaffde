//! The synthetic object scheme shared by the simulator and the load generator.
//!
//! A synthetic object's bytes are a pure function of its full key (`bucket/key`) and the
//! byte offset, so every simulator node serves identical bytes (and therefore identical
//! ETags) without an upload, and a client verifies a body, or any range of it, without
//! holding a copy. The generator is counter-based (one add, one shift, one xor per 8 bytes)
//! so both filling and checking vectorise and run far faster than the network.

use anyhow::{bail, Context, Result};

use crate::units::parse_size_bytes;

/// Odd 64-bit step between consecutive pattern words (the golden-ratio constant).
const WORD_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// Bytes checked per block by [`verify`] before looking at the accumulated difference.
const VERIFY_BLOCK_BYTES: usize = 16384;

/// The per-key seed of the pattern: FNV-1a of the key, then a splitmix64 finaliser so
/// keys that differ in one character get unrelated streams.
pub fn key_seed(full_key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in full_key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = hash.wrapping_add(WORD_STEP);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pattern word covering byte offsets `8*index .. 8*index+8` (little-endian).
#[inline(always)]
fn word(seed: u64, index: u64) -> u64 {
    let x = seed.wrapping_add(index.wrapping_mul(WORD_STEP));
    x ^ (x >> 29)
}

/// The pattern byte at `offset`.
#[inline]
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    word(seed, offset / 8).to_le_bytes()[(offset % 8) as usize]
}

/// Fills `buf` with the pattern bytes at `offset .. offset + buf.len()`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let buf_len = buf.len();
    // Unaligned head: byte by byte until the offset is a multiple of 8.
    let head = ((8 - offset % 8) % 8).min(buf.len() as u64) as usize;
    for (i, byte) in buf[..head].iter_mut().enumerate() {
        *byte = byte_at(seed, offset + i as u64);
    }
    let aligned_offset = offset + head as u64;
    let rest = &mut buf[head..];
    let first_word = aligned_offset / 8;
    let groups_len = rest.len() - rest.len() % (LANES * 8);
    let (groups, words) = rest.split_at_mut(groups_len);
    fill_groups(seed, first_word, groups);
    let words_first = first_word + (groups_len / 8) as u64;
    let mut chunks = words.chunks_exact_mut(8);
    for (i, chunk) in (&mut chunks).enumerate() {
        chunk.copy_from_slice(&word(seed, words_first + i as u64).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    let tail_offset = offset + (buf_len - tail.len()) as u64;
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte = byte_at(seed, tail_offset + i as u64);
    }
}

/// Checks `buf` against the pattern at `offset`; returns the index in `buf` of the first
/// differing byte, or `None` when every byte matches.
pub fn verify(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    let head = ((8 - offset % 8) % 8).min(buf.len() as u64) as usize;
    for (i, &byte) in buf[..head].iter().enumerate() {
        if byte != byte_at(seed, offset + i as u64) {
            return Some(i);
        }
    }
    let aligned_offset = offset + head as u64;
    let rest = &buf[head..];
    let groups_len = rest.len() - rest.len() % (LANES * 8);
    // Blocks (multiples of 64 bytes): xor-accumulate without branches so the loop
    // vectorises; only a block whose accumulator is non-zero is walked again byte by byte.
    let mut block_start = 0;
    for block in rest[..groups_len].chunks(VERIFY_BLOCK_BYTES) {
        let block_offset = aligned_offset + block_start as u64;
        if block_diff(seed, block_offset / 8, block) != 0 {
            return first_mismatch(seed, block_offset, block).map(|i| head + block_start + i);
        }
        block_start += block.len();
    }
    let tail_offset = aligned_offset + groups_len as u64;
    first_mismatch(seed, tail_offset, &rest[groups_len..]).map(|i| head + groups_len + i)
}

/// Words per lane group: 8 independent running values, so the loop has no serial
/// dependency and maps onto two AVX2 (or four SSE2) registers.
const LANES: usize = 8;

/// OR of (data xor pattern) over `block` (a multiple of 64 bytes starting at word
/// `first_word`): zero exactly when the block matches.
fn block_diff(seed: u64, first_word: u64, block: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { block_diff_avx2(seed, first_word, block) };
    }
    block_diff_lanes(seed, first_word, block)
}

/// The same loop compiled with AVX2 enabled (3x faster than the SSE2 baseline).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_diff_avx2(seed: u64, first_word: u64, block: &[u8]) -> u64 {
    block_diff_lanes(seed, first_word, block)
}

#[inline(always)]
fn block_diff_lanes(seed: u64, first_word: u64, block: &[u8]) -> u64 {
    let mut x = [0u64; LANES];
    for (lane, value) in x.iter_mut().enumerate() {
        *value = seed.wrapping_add((first_word + lane as u64).wrapping_mul(WORD_STEP));
    }
    let step = WORD_STEP.wrapping_mul(LANES as u64);
    let mut acc = [0u64; LANES];
    for group in block.chunks_exact(LANES * 8) {
        for lane in 0..LANES {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&group[lane * 8..lane * 8 + 8]);
            acc[lane] |= u64::from_le_bytes(bytes) ^ (x[lane] ^ (x[lane] >> 29));
            x[lane] = x[lane].wrapping_add(step);
        }
    }
    acc.iter().fold(0, |a, b| a | b)
}

/// Fills `groups` (a multiple of 64 bytes starting at word `first_word`).
fn fill_groups(seed: u64, first_word: u64, groups: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { fill_groups_avx2(seed, first_word, groups) };
    }
    fill_groups_lanes(seed, first_word, groups)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_groups_avx2(seed: u64, first_word: u64, groups: &mut [u8]) {
    fill_groups_lanes(seed, first_word, groups)
}

#[inline(always)]
fn fill_groups_lanes(seed: u64, first_word: u64, groups: &mut [u8]) {
    let mut x = [0u64; LANES];
    for (lane, value) in x.iter_mut().enumerate() {
        *value = seed.wrapping_add((first_word + lane as u64).wrapping_mul(WORD_STEP));
    }
    let step = WORD_STEP.wrapping_mul(LANES as u64);
    for group in groups.chunks_exact_mut(LANES * 8) {
        for lane in 0..LANES {
            let value = x[lane] ^ (x[lane] >> 29);
            group[lane * 8..lane * 8 + 8].copy_from_slice(&value.to_le_bytes());
            x[lane] = x[lane].wrapping_add(step);
        }
    }
}

/// Byte-by-byte scan for the first mismatch (slow path; also handles unaligned tails).
fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    buf.iter()
        .enumerate()
        .find(|&(i, &byte)| byte != byte_at(seed, offset + i as u64))
        .map(|(i, _)| i)
}

/// A family of synthetic objects: `COUNT` keys `PREFIX0 .. PREFIX{COUNT-1}` of `SIZE` bytes,
/// where the prefix starts with the bucket (`bench/obj-` = bucket `bench`, keys `obj-N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synthetic {
    /// `bucket/key-prefix`, without a leading slash.
    pub prefix: String,
    /// Size of every object in the family.
    pub size_bytes: u64,
    /// Number of objects in the family.
    pub count: u64,
}

impl Synthetic {
    /// Parses `PREFIX:SIZE:COUNT` (e.g. `bench/obj-:64MiB:4`); the prefix may hold colons.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.rsplitn(3, ':');
        let (Some(count), Some(size), Some(prefix)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("synthetic spec {text:?} is not PREFIX:SIZE:COUNT");
        };
        let prefix = prefix.trim_start_matches('/').to_string();
        let Some((bucket, _)) = prefix.split_once('/') else {
            bail!("synthetic prefix {prefix:?} must start with a bucket: BUCKET/KEYPREFIX");
        };
        if bucket.is_empty() {
            bail!("synthetic prefix {prefix:?} has an empty bucket");
        }
        let size_bytes = parse_size_bytes(size)?;
        let count: u64 = count
            .parse()
            .with_context(|| format!("bad count {count:?} in synthetic spec {text:?}"))?;
        if count == 0 {
            bail!("synthetic spec {text:?} has a count of 0");
        }
        Ok(Self {
            prefix,
            size_bytes,
            count,
        })
    }

    /// The full key (`bucket/key`) of object `index`.
    pub fn key(&self, index: u64) -> String {
        format!("{}{index}", self.prefix)
    }

    /// The request path (`/bucket/key`) of object `index`.
    pub fn path(&self, index: u64) -> String {
        format!("/{}{index}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_for_every_alignment() {
        let seed = key_seed("bench/obj-0");
        for offset in 0..17u64 {
            for len in [0usize, 1, 7, 8, 9, 63, 4096, 4103, 9000] {
                let mut buf = vec![0u8; len];
                fill(seed, offset, &mut buf);
                for (i, &b) in buf.iter().enumerate() {
                    assert_eq!(
                        b,
                        byte_at(seed, offset + i as u64),
                        "off {offset} len {len}"
                    );
                }
                assert_eq!(verify(seed, offset, &buf), None);
            }
        }
    }

    #[test]
    fn verify_finds_the_first_flipped_byte() {
        let seed = key_seed("b/k");
        let mut buf = vec![0u8; 3 * VERIFY_BLOCK_BYTES + 13];
        for offset in [0u64, 3, 8, 4095] {
            fill(seed, offset, &mut buf);
            for flip in [0usize, 5, 4096, 4100, buf.len() - 1] {
                buf[flip] ^= 0x40;
                assert_eq!(verify(seed, offset, &buf), Some(flip));
                buf[flip] ^= 0x40;
            }
        }
    }

    #[test]
    fn keys_get_different_streams() {
        let a = key_seed("bench/obj-0");
        let b = key_seed("bench/obj-1");
        assert_ne!(a, b);
        let mut x = [0u8; 64];
        let mut y = [0u8; 64];
        fill(a, 0, &mut x);
        fill(b, 0, &mut y);
        assert_ne!(x, y);
        // A range read is the same bytes as the slice of a full read.
        let mut full = vec![0u8; 1000];
        fill(a, 0, &mut full);
        let mut part = vec![0u8; 100];
        fill(a, 333, &mut part);
        assert_eq!(&full[333..433], &part[..]);
    }

    #[test]
    fn synthetic_specs() {
        let s = Synthetic::parse("bench/obj-:64MiB:4").unwrap();
        assert_eq!(s.prefix, "bench/obj-");
        assert_eq!(s.size_bytes, 64 << 20);
        assert_eq!(s.count, 4);
        assert_eq!(s.key(3), "bench/obj-3");
        assert_eq!(s.path(0), "/bench/obj-0");
        let s = Synthetic::parse("/b/a:b:c-:4KiB:2").unwrap();
        assert_eq!(s.prefix, "b/a:b:c-");
        assert!(Synthetic::parse("nobucket:1:1").is_err());
        assert!(Synthetic::parse("b/x:1").is_err());
        assert!(Synthetic::parse("b/x:1:0").is_err());
    }
}
