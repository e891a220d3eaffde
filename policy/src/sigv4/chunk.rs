//! Streaming uploads (`Content-Encoding: aws-chunked`; docs/design.md,
//! "Identity at the edge"): each chunk is `hex-size;chunk-signature=<sig>\r\n<data>\r\n`,
//! the last one has size 0, and the `-TRAILER` variants end with trailer lines and
//! `x-amz-trailer-signature:<sig>`.
//!
//! Chunk *n*'s signature is an HMAC over
//! `AWS4-HMAC-SHA256-PAYLOAD\n<time>\n<scope>\n<signature n-1>\n<sha256("")>\n<sha256(data n)>`
//! with the seed (header) signature as signature 0, so chunks cannot be dropped,
//! reordered or replaced. The trailer's is over
//! `AWS4-HMAC-SHA256-TRAILER\n<time>\n<scope>\n<last chunk signature>\n<sha256(trailers)>`
//! where the trailers are `name:value\n` lines, names in lower case.
//!
//! Both sides hash data as it passes ([`ChunkVerifier::update`], [`ChunkSigner::update`]),
//! so the appliance never holds more than its read buffer to verify. Re-signing differs:
//! a chunk's signature is written *before* its data, so a re-signing proxy must hold one
//! whole chunk (bound it by config) before it can emit the new header. A verifying proxy
//! forwards data before the chunk's signature is known to be good; on a mismatch it must
//! abort the upstream request before the final chunk so the storage never commits it.
//!
//! The framing itself (reading sizes, CRLFs, `Content-Length` vs `Transfer-Encoding`) is
//! the relay's; [`ChunkHeader::parse`] and [`TrailerLine::parse`] parse its lines strictly.

use sha2::{Digest, Sha256};

use super::canonical::push_header_value;
use super::crypto::{hex32, Signature, EMPTY_SHA256_HEX};
use super::error::SigV4Error;
use super::key::SigningKey;
use super::time::Timestamp;

/// Most hex digits of a chunk size (16 hex digits fill a `u64`).
const CHUNK_SIZE_DIGITS_MAX: usize = 16;
/// The extension that carries a chunk's signature.
const CHUNK_SIGNATURE_EXT: &[u8] = b";chunk-signature=";
/// The trailer line that carries the trailer signature.
const TRAILER_SIGNATURE_NAME: &[u8] = b"x-amz-trailer-signature";

/// The signature chain of one streaming upload: key, time, scope, previous signature.
#[derive(Clone, Debug)]
pub(super) struct Chain {
    key: SigningKey,
    /// `<time>\n<scope>\n`, the middle of every string to sign.
    time_scope: Vec<u8>,
    pub(super) previous: Signature,
}

impl Chain {
    fn new(key: SigningKey, time: Timestamp, seed: Signature) -> Self {
        let time_scope = format!("{time}\n{}\n", key.scope()).into_bytes();
        Self {
            key,
            time_scope,
            previous: seed,
        }
    }

    pub(super) fn chunk_signature(&self, data_hash: [u8; 32]) -> Signature {
        self.key.sign(&[
            b"AWS4-HMAC-SHA256-PAYLOAD\n",
            &self.time_scope,
            &self.previous.hex(),
            b"\n",
            EMPTY_SHA256_HEX.as_bytes(),
            b"\n",
            &hex32(&data_hash),
        ])
    }

    pub(super) fn trailer_signature(&self, trailers_hash: [u8; 32]) -> Signature {
        self.key.sign(&[
            b"AWS4-HMAC-SHA256-TRAILER\n",
            &self.time_scope,
            &self.previous.hex(),
            b"\n",
            &hex32(&trailers_hash),
        ])
    }

    /// Accepts `claimed` if it is `expected`, which becomes the previous signature.
    pub(super) fn accept(
        &mut self,
        expected: Signature,
        claimed: &Signature,
    ) -> Result<(), SigV4Error> {
        if !expected.ct_eq(claimed) {
            return Err(SigV4Error::ChunkSignatureDoesNotMatch);
        }
        self.previous = expected;
        Ok(())
    }
}

/// SHA-256 of the canonical trailers: `name:value\n` per trailer, in the order sent.
pub(super) fn trailers_hash<'t>(
    trailers: impl IntoIterator<Item = (&'t [u8], &'t [u8])>,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(128);
    for (name, value) in trailers {
        line.clear();
        line.extend(name.iter().map(u8::to_ascii_lowercase));
        line.push(b':');
        push_header_value(&mut line, value);
        line.push(b'\n');
        hasher.update(&line);
    }
    hasher.finalize().into()
}

/// Verifies the chunk signatures of a streaming upload, fed the chunk data as it passes.
///
/// Per chunk: [`update`](Self::update) with its data (any number of calls), then
/// [`finish_chunk`](Self::finish_chunk) with the signature from its header — the final,
/// empty chunk included. After a mismatch every further call fails too.
#[derive(Clone, Debug)]
pub struct ChunkVerifier {
    chain: Chain,
    hasher: Sha256,
    failed: bool,
}

impl ChunkVerifier {
    /// A verifier for the chunks of a request whose header signature `seed` was made with
    /// `key` at `time` (all three from [`Verified`](super::Verified)).
    pub fn new(key: SigningKey, time: Timestamp, seed: Signature) -> Self {
        Self {
            chain: Chain::new(key, time, seed),
            hasher: Sha256::new(),
            failed: false,
        }
    }

    /// Hashes the next bytes of the current chunk's data.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Ends the current chunk: its data hashed so far must carry `claimed`.
    pub fn finish_chunk(&mut self, claimed: &Signature) -> Result<(), SigV4Error> {
        let data_hash: [u8; 32] = self.hasher.finalize_reset().into();
        let expected = self.chain.chunk_signature(data_hash);
        self.accept(expected, claimed)
    }

    /// Checks the trailer signature of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`
    /// upload: `trailers` are the (name, value) lines before `x-amz-trailer-signature`.
    pub fn verify_trailer<'t>(
        &mut self,
        trailers: impl IntoIterator<Item = (&'t [u8], &'t [u8])>,
        claimed: &Signature,
    ) -> Result<(), SigV4Error> {
        let expected = self.chain.trailer_signature(trailers_hash(trailers));
        self.accept(expected, claimed)
    }

    /// The last signature accepted (the seed before the first chunk).
    pub fn previous(&self) -> &Signature {
        &self.chain.previous
    }

    fn accept(&mut self, expected: Signature, claimed: &Signature) -> Result<(), SigV4Error> {
        if self.failed {
            return Err(SigV4Error::ChunkSignatureDoesNotMatch);
        }
        let accepted = self.chain.accept(expected, claimed);
        self.failed = accepted.is_err();
        accepted
    }

    /// The chain, for [`ChunkStream`](super::ChunkStream), which hashes data once for
    /// both chains.
    pub(super) fn into_chain(self) -> Chain {
        self.chain
    }
}

/// Computes chunk signatures for a re-signed streaming upload, fed the chunk data as it
/// passes: [`update`](Self::update) with a chunk's data, then
/// [`finish_chunk`](Self::finish_chunk) for its signature.
#[derive(Clone, Debug)]
pub struct ChunkSigner {
    chain: Chain,
    hasher: Sha256,
}

impl ChunkSigner {
    /// A signer continuing from the seed signature `seed` made with `key` at `time`
    /// (from [`Signed`](super::Signed)).
    pub fn new(key: SigningKey, time: Timestamp, seed: Signature) -> Self {
        Self {
            chain: Chain::new(key, time, seed),
            hasher: Sha256::new(),
        }
    }

    /// Hashes the next bytes of the current chunk's data.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// Ends the current chunk and returns its signature.
    pub fn finish_chunk(&mut self) -> Signature {
        let data_hash: [u8; 32] = self.hasher.finalize_reset().into();
        let signature = self.chain.chunk_signature(data_hash);
        self.chain.previous = signature;
        signature
    }

    /// The signature of the trailer lines `trailers` (after the final, empty chunk).
    pub fn sign_trailer<'t>(
        &mut self,
        trailers: impl IntoIterator<Item = (&'t [u8], &'t [u8])>,
    ) -> Signature {
        let signature = self.chain.trailer_signature(trailers_hash(trailers));
        self.chain.previous = signature;
        signature
    }

    /// The chain, for [`ChunkStream`](super::ChunkStream).
    pub(super) fn into_chain(self) -> Chain {
        self.chain
    }
}

/// A chunk header line of an `aws-chunked` body: `hex-size[;chunk-signature=<sig>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The chunk's data length in bytes.
    pub size: u64,
    /// The chunk's signature (absent in `STREAMING-UNSIGNED-PAYLOAD-TRAILER` bodies).
    pub signature: Option<Signature>,
}

impl ChunkHeader {
    /// Parses a chunk header line without its CRLF. Strict: 1..=16 hex digits, then
    /// nothing or exactly `;chunk-signature=` and 64 lower-case hex digits.
    pub fn parse(line: &[u8]) -> Result<Self, SigV4Error> {
        let digits_len = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits_len == 0 || digits_len > CHUNK_SIZE_DIGITS_MAX {
            return Err(SigV4Error::MalformedChunk(
                "chunk size must be 1 to 16 hex digits",
            ));
        }
        let (digits, rest) = line.split_at(digits_len);
        let size = digits.iter().try_fold(0u64, |acc, &c| {
            let digit = char::from(c).to_digit(16)?;
            acc.checked_mul(16)?.checked_add(u64::from(digit))
        });
        let size = size.ok_or(SigV4Error::MalformedChunk("chunk size overflows"))?;
        if rest.is_empty() {
            return Ok(Self {
                size,
                signature: None,
            });
        }
        let signature = rest
            .strip_prefix(CHUNK_SIGNATURE_EXT)
            .and_then(Signature::from_hex)
            .ok_or(SigV4Error::MalformedChunk(
                "expected ;chunk-signature= and 64 lower-case hex digits",
            ))?;
        Ok(Self {
            size,
            signature: Some(signature),
        })
    }

    /// Appends the line with its CRLF: `hex-size[;chunk-signature=<sig>]\r\n`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{:x}", self.size).as_bytes());
        if let Some(signature) = &self.signature {
            out.extend_from_slice(CHUNK_SIGNATURE_EXT);
            out.extend_from_slice(&signature.hex());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// One line of an `aws-chunked` trailer section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerLine<'a> {
    /// A trailing header (`x-amz-checksum-crc32c:sOO8/Q==`); the value is trimmed.
    Header {
        /// The name as sent.
        name: &'a [u8],
        /// The value without surrounding whitespace.
        value: &'a [u8],
    },
    /// `x-amz-trailer-signature:<sig>`.
    Signature(Signature),
}

impl<'a> TrailerLine<'a> {
    /// Parses a trailer line without its CRLF: a token name, `:`, a value.
    pub fn parse(line: &'a [u8]) -> Result<Self, SigV4Error> {
        let colon = line
            .iter()
            .position(|&c| c == b':')
            .ok_or(SigV4Error::MalformedChunk("trailer line without ':'"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let token = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.iter().all(token) {
            return Err(SigV4Error::MalformedChunk("invalid trailer name"));
        }
        let value = value.trim_ascii();
        if value.iter().any(|&c| c.is_ascii_control() && c != b'\t') {
            return Err(SigV4Error::MalformedChunk("control character in trailer"));
        }
        if name.eq_ignore_ascii_case(TRAILER_SIGNATURE_NAME) {
            return Signature::from_hex(value).map(Self::Signature).ok_or(
                SigV4Error::MalformedChunk(
                    "x-amz-trailer-signature must be 64 lower-case hex digits",
                ),
            );
        }
        Ok(Self::Header { name, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_header_lines_parse_strictly() {
        let sig = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";
        let line = format!("10000;chunk-signature={sig}");
        let header = ChunkHeader::parse(line.as_bytes()).unwrap();
        assert_eq!(header.size, 65_536);
        assert_eq!(header.signature.unwrap().to_string(), sig);
        let mut out = Vec::new();
        header.write(&mut out);
        assert_eq!(out, format!("{line}\r\n").into_bytes());
        assert_eq!(
            ChunkHeader::parse(b"0").unwrap(),
            ChunkHeader {
                size: 0,
                signature: None
            }
        );
        assert_eq!(
            ChunkHeader::parse(b"FFFFFFFFFFFFFFFF").unwrap().size,
            u64::MAX
        );
        for bad in [
            "".to_string(),
            "10000000000000000".to_string(),
            "x".to_string(),
            " 1".to_string(),
            "1 ".to_string(),
            "1;".to_string(),
            format!("1;chunk-signature={}", &sig[1..]),
            format!("1;chunk-signature={sig};x=y"),
            format!("1;Chunk-Signature={sig}"),
            format!("1 ;chunk-signature={sig}"),
        ] {
            assert!(
                matches!(
                    ChunkHeader::parse(bad.as_bytes()),
                    Err(SigV4Error::MalformedChunk(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn trailer_lines_parse() {
        assert_eq!(
            TrailerLine::parse(b"x-amz-checksum-crc32c: sOO8/Q== ").unwrap(),
            TrailerLine::Header {
                name: b"x-amz-checksum-crc32c",
                value: b"sOO8/Q=="
            }
        );
        let sig = [b'a'; 64];
        let mut line = b"x-amz-trailer-signature:".to_vec();
        line.extend_from_slice(&sig);
        assert_eq!(
            TrailerLine::parse(&line).unwrap(),
            TrailerLine::Signature(Signature::from_hex(&sig).unwrap())
        );
        for bad in [
            &b"no colon"[..],
            b":v",
            b"a b:v",
            b"x-amz-trailer-signature:zz",
            b"a:\x01",
        ] {
            assert!(TrailerLine::parse(bad).is_err(), "{bad:?}");
        }
    }
}
