//! An `aws-chunked` body between client and storage, as a proxy sees it: parsed strictly,
//! each chunk signature verified (the client's chain) and/or re-computed (the pool's
//! chain), and released only when its chunk checked out.
//!
//! A chunk is held until its trailing CRLF has arrived, for two reasons: a re-signed
//! chunk's new signature goes in its header, *before* its data, and a verified chunk
//! must not reach the storage before its signature is known good. So a forged or
//! tampered chunk never leaves weir, and the final chunk — which completes the upload —
//! is released only after every signature and `x-amz-decoded-content-length` matched.
//! A caller that hits an error resets the upstream request (its body is then short, so
//! nothing is committed). The cost is one chunk of memory per upload, bounded by the
//! caller's `chunk_bytes_max` (SDKs use 64–128 KiB chunks; AWS's minimum is 8 KiB).
//!
//! Re-signing keeps the wire length: the client's size digits and line layout stay,
//! only the 64 signature digits change, so the request's `Content-Length` still holds.
//! The data is hashed once per chunk however many chains use the hash.

use sha2::{Digest, Sha256};

use super::chunk::{trailers_hash, Chain, ChunkHeader, ChunkSigner, ChunkVerifier, TrailerLine};
use super::crypto::Signature;
use super::error::SigV4Error;

/// Longest chunk header line: 16 size digits, `;chunk-signature=`, 64 digits.
const CHUNK_LINE_BYTES_MAX: usize = 16 + 17 + 64;
/// Most bytes of trailer lines (checksums and the trailer signature are ~150).
const TRAILER_BYTES_MAX: usize = 4096;
/// Hex digits of a signature.
const SIGNATURE_DIGITS: usize = 64;

/// Where the parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk header line.
    Header,
    /// Reading a chunk's data: this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF, this many of the two bytes seen.
    DataEnd(u8),
    /// After the final chunk's header line of an upload without trailer: the closing CRLF.
    FinalCrlf(u8),
    /// After the final chunk of a trailer upload: trailer lines up to an empty line.
    Trailers,
    /// The body is complete and released.
    Done,
}

/// One streaming upload's body, fed as it arrives: [`feed`](Self::feed) bytes, send
/// what [`ready`](Self::ready) holds, [`sent`](Self::sent), repeat until
/// [`is_done`](Self::is_done).
#[derive(Debug)]
pub struct ChunkStream {
    verify: Option<Chain>,
    sign: Option<Chain>,
    trailer: bool,
    state: State,
    /// Bytes of the current line (header or trailer), without its CRLF.
    line: Vec<u8>,
    /// The bytes of the chunk in progress (or released, until `sent`).
    held: Vec<u8>,
    /// Where the current chunk header's signature digits start in `held`.
    signature_at: usize,
    /// The current chunk header's claimed signature.
    claimed: Option<Signature>,
    /// Whether `held` is complete and checked: the caller sends it next.
    released: bool,
    hasher: Sha256,
    decoded: u64,
    decoded_declared: Option<u64>,
    chunk_bytes_max: u64,
    /// The trailer section's header lines, (name, value) as sent.
    trailers: Vec<(Vec<u8>, Vec<u8>)>,
    trailer_bytes: usize,
    /// The trailer signature line has been seen (and checked).
    trailer_signed: bool,
}

impl ChunkStream {
    /// A stream for a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` body (`trailer` false) or its
    /// `-TRAILER` variant. `verifier` checks the client's chain (when weir verifies);
    /// `signer` writes a new one (when the pool re-signs); `decoded_length` is the
    /// `x-amz-decoded-content-length` the chunks must add up to; a chunk larger than
    /// `chunk_bytes_max` is refused.
    pub fn new(
        trailer: bool,
        verifier: Option<ChunkVerifier>,
        signer: Option<ChunkSigner>,
        decoded_length: Option<u64>,
        chunk_bytes_max: u64,
    ) -> Self {
        Self {
            verify: verifier.map(ChunkVerifier::into_chain),
            sign: signer.map(ChunkSigner::into_chain),
            trailer,
            state: State::Header,
            line: Vec::with_capacity(CHUNK_LINE_BYTES_MAX),
            held: Vec::new(),
            signature_at: 0,
            claimed: None,
            released: false,
            hasher: Sha256::new(),
            decoded: 0,
            decoded_declared: decoded_length,
            chunk_bytes_max,
            trailers: Vec::new(),
            trailer_bytes: 0,
            trailer_signed: false,
        }
    }

    /// Consumes bytes of the body from the start of `input` and returns how many. Stops
    /// early when a chunk is released: send [`ready`](Self::ready), call
    /// [`sent`](Self::sent), then feed the rest. An error leaves nothing to send.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, SigV4Error> {
        let mut used = 0;
        while used < input.len() && !self.released {
            let rest = &input[used..];
            used += match self.state {
                State::Header => self.header_bytes(rest)?,
                State::Data(left) => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.hasher.update(&rest[..n]);
                    self.held.extend_from_slice(&rest[..n]);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd(0)
                    } else {
                        State::Data(left)
                    };
                    n
                }
                State::DataEnd(seen) => {
                    self.crlf_byte(rest[0], seen)?;
                    if seen == 0 {
                        self.state = State::DataEnd(1);
                    } else {
                        self.finish_chunk()?;
                        self.state = State::Header;
                    }
                    1
                }
                State::FinalCrlf(seen) => {
                    self.crlf_byte(rest[0], seen)?;
                    if seen == 0 {
                        self.state = State::FinalCrlf(1);
                    } else {
                        self.finish_body()?;
                    }
                    1
                }
                State::Trailers => self.trailer_bytes_in(rest)?,
                State::Done => {
                    return Err(SigV4Error::MalformedChunk(
                        "bytes after the end of the aws-chunked body",
                    ))
                }
            };
        }
        Ok(used)
    }

    /// The checked bytes to send to the storage now (empty while a chunk is incomplete).
    pub fn ready(&self) -> &[u8] {
        if self.released {
            &self.held
        } else {
            &[]
        }
    }

    /// The [`ready`](Self::ready) bytes went out.
    pub fn sent(&mut self) {
        if self.released {
            self.held.clear();
            self.released = false;
        }
    }

    /// Whether the whole body was parsed, checked and released.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded (payload) bytes seen so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded
    }

    fn crlf_byte(&self, byte: u8, seen: u8) -> Result<(), SigV4Error> {
        let expected = if seen == 0 { b'\r' } else { b'\n' };
        if byte != expected {
            return Err(SigV4Error::MalformedChunk("expected CRLF after chunk data"));
        }
        Ok(())
    }

    /// Collects a line up to CRLF into `self.line`; returns (bytes used, line complete).
    fn line_bytes(&mut self, rest: &[u8], max: usize) -> Result<(usize, bool), SigV4Error> {
        let (take, complete) = match rest.iter().position(|&c| c == b'\n') {
            Some(lf) => (lf + 1, true),
            None => (rest.len(), false),
        };
        self.line.extend_from_slice(&rest[..take]);
        if self.line.len() > max + 2 {
            return Err(SigV4Error::MalformedChunk("line too long"));
        }
        if complete {
            // Bare LF is refused, as in HTTP heads (docs/design.md, "A request's way"): a
            // line end the node might read differently must not get past the verifier.
            if !self.line.ends_with(b"\r\n") {
                return Err(SigV4Error::MalformedChunk("line not ended by CRLF"));
            }
            self.line.truncate(self.line.len() - 2);
        }
        Ok((take, complete))
    }

    fn header_bytes(&mut self, rest: &[u8]) -> Result<usize, SigV4Error> {
        let (used, complete) = self.line_bytes(rest, CHUNK_LINE_BYTES_MAX)?;
        if !complete {
            return Ok(used);
        }
        let header = ChunkHeader::parse(&self.line)?;
        let claimed = header.signature.ok_or(SigV4Error::MalformedChunk(
            "a signed streaming upload's chunk has no chunk-signature",
        ))?;
        if header.size > self.chunk_bytes_max {
            return Err(SigV4Error::ChunkTooLarge {
                max: self.chunk_bytes_max,
            });
        }
        self.decoded = self
            .decoded
            .checked_add(header.size)
            .ok_or(SigV4Error::MalformedChunk("chunk sizes overflow"))?;
        if self.decoded_declared.is_some_and(|d| self.decoded > d) {
            return Err(SigV4Error::DecodedLengthMismatch);
        }
        self.claimed = Some(claimed);
        self.held.extend_from_slice(&self.line);
        self.signature_at = self.held.len() - SIGNATURE_DIGITS;
        self.held.extend_from_slice(b"\r\n");
        self.line.clear();
        self.state = match header.size {
            0 => {
                // The final chunk: its signature covers the empty data.
                self.check_chunk()?;
                if self.trailer {
                    State::Trailers
                } else {
                    State::FinalCrlf(0)
                }
            }
            size => State::Data(size),
        };
        Ok(used)
    }

    fn finish_chunk(&mut self) -> Result<(), SigV4Error> {
        self.check_chunk()?;
        self.held.extend_from_slice(b"\r\n");
        self.released = true;
        Ok(())
    }

    /// Checks the current chunk's claimed signature and writes the re-signed one into
    /// its header in `held`.
    fn check_chunk(&mut self) -> Result<(), SigV4Error> {
        let data_hash: [u8; 32] = self.hasher.finalize_reset().into();
        let claimed = self
            .claimed
            .take()
            .ok_or(SigV4Error::MalformedChunk("chunk without header"))?;
        if let Some(chain) = &mut self.verify {
            chain.accept(chain.chunk_signature(data_hash), &claimed)?;
        }
        if let Some(chain) = &mut self.sign {
            let signature = chain.chunk_signature(data_hash);
            chain.previous = signature;
            let at = self.signature_at;
            self.held[at..at + SIGNATURE_DIGITS].copy_from_slice(&signature.hex());
        }
        Ok(())
    }

    fn trailer_bytes_in(&mut self, rest: &[u8]) -> Result<usize, SigV4Error> {
        let (used, complete) = self.line_bytes(rest, TRAILER_BYTES_MAX)?;
        self.trailer_bytes += used;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(SigV4Error::MalformedChunk("trailer section too long"));
        }
        if !complete {
            return Ok(used);
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if !self.trailer_signed {
                return Err(SigV4Error::MalformedChunk(
                    "trailer section without x-amz-trailer-signature",
                ));
            }
            self.held.extend_from_slice(b"\r\n");
            self.finish_body()?;
            return Ok(used);
        }
        if self.trailer_signed {
            return Err(SigV4Error::MalformedChunk(
                "trailer lines after x-amz-trailer-signature",
            ));
        }
        let start = self.held.len();
        self.held.extend_from_slice(&line);
        self.held.extend_from_slice(b"\r\n");
        match TrailerLine::parse(&line)? {
            TrailerLine::Header { name, value } => {
                self.trailers.push((name.to_vec(), value.to_vec()));
            }
            TrailerLine::Signature(claimed) => {
                let hash = trailers_hash(
                    self.trailers
                        .iter()
                        .map(|(n, v)| (n.as_slice(), v.as_slice())),
                );
                if let Some(chain) = &mut self.verify {
                    chain.accept(chain.trailer_signature(hash), &claimed)?;
                }
                if let Some(chain) = &mut self.sign {
                    let signature = chain.trailer_signature(hash);
                    chain.previous = signature;
                    // The digits follow the colon and any blanks before them.
                    let colon = line.iter().position(|&c| c == b':').unwrap_or(0);
                    let blanks = line[colon + 1..]
                        .iter()
                        .take_while(|c| matches!(c, b' ' | b'\t'))
                        .count();
                    let at = start + colon + 1 + blanks;
                    self.held[at..at + SIGNATURE_DIGITS].copy_from_slice(&signature.hex());
                }
                self.trailer_signed = true;
            }
        }
        Ok(used)
    }

    fn finish_body(&mut self) -> Result<(), SigV4Error> {
        if self.decoded_declared.is_some_and(|d| d != self.decoded) {
            return Err(SigV4Error::DecodedLengthMismatch);
        }
        if self.state == State::FinalCrlf(1) {
            self.held.extend_from_slice(b"\r\n");
        }
        self.state = State::Done;
        self.released = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3code::S3Code;
    use crate::sigv4::key::{Scope, SigningKey};
    use crate::sigv4::tests_aws::{
        chunked_body, example_key, EXAMPLE_TIME, STREAMING_CHUNKS, STREAMING_SEED, TRAILER_CHUNKS,
        TRAILER_SEED, TRAILER_SIGNATURE,
    };
    use crate::sigv4::time::{Date, Timestamp};

    fn time() -> Timestamp {
        Timestamp::parse_amz(EXAMPLE_TIME).unwrap()
    }

    fn seed(hex: &str) -> Signature {
        Signature::from_hex(hex.as_bytes()).unwrap()
    }

    fn verifier(seed_hex: &str) -> ChunkVerifier {
        ChunkVerifier::new(example_key(), time(), seed(seed_hex))
    }

    /// A pool's identity: another secret, another region.
    fn pool_key() -> SigningKey {
        SigningKey::derive(
            b"pool-secret",
            Scope::new(Date::new(2013, 5, 24).unwrap(), "eu-west-1", "s3"),
        )
    }

    /// Feeds `body` in pieces of `piece` bytes; returns what the stream released.
    fn run(stream: &mut ChunkStream, body: &[u8], piece: usize) -> Result<Vec<u8>, SigV4Error> {
        let mut out = Vec::new();
        for mut part in body.chunks(piece) {
            while !part.is_empty() {
                let used = stream.feed(part)?;
                out.extend_from_slice(stream.ready());
                stream.sent();
                part = &part[used..];
            }
        }
        Ok(out)
    }

    /// Feeds `body` whole until the stream refuses it; returns what it released before.
    fn run_to_error(stream: &mut ChunkStream, body: &[u8]) -> (Vec<u8>, SigV4Error) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            assert!(!rest.is_empty(), "the whole body was accepted");
            match stream.feed(rest) {
                Ok(used) => {
                    out.extend_from_slice(stream.ready());
                    stream.sent();
                    rest = &rest[used..];
                }
                Err(e) => return (out, e),
            }
        }
    }

    fn trailer_body() -> Vec<u8> {
        let mut body = chunked_body(&TRAILER_CHUNKS);
        body.truncate(body.len() - 2);
        body.extend_from_slice(
            format!(
                "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n"
            )
            .as_bytes(),
        );
        body
    }

    #[test]
    fn a_verified_body_passes_unchanged_in_any_pieces() {
        let body = chunked_body(&STREAMING_CHUNKS);
        for piece in [1, 2, 7, 4096, 65_536, body.len()] {
            let mut s = ChunkStream::new(
                false,
                Some(verifier(STREAMING_SEED)),
                None,
                Some(66_560),
                1 << 20,
            );
            assert_eq!(run(&mut s, &body, piece).unwrap(), body, "piece {piece}");
            assert!(s.is_done());
            assert_eq!(s.decoded_bytes(), 66_560);
        }
    }

    #[test]
    fn resigning_changes_only_the_signature_digits_and_verifies_with_the_new_key() {
        let body = chunked_body(&STREAMING_CHUNKS);
        // Same identity, same seed: AWS's example is reproduced byte for byte.
        let same = ChunkSigner::new(example_key(), time(), seed(STREAMING_SEED));
        let mut s = ChunkStream::new(
            false,
            Some(verifier(STREAMING_SEED)),
            Some(same),
            None,
            1 << 20,
        );
        assert_eq!(run(&mut s, &body, 1000).unwrap(), body);

        // The pool's identity: a new chain from a new seed.
        let new_seed = seed(&"ab".repeat(32));
        let signer = ChunkSigner::new(pool_key(), time(), new_seed);
        let mut s = ChunkStream::new(
            false,
            Some(verifier(STREAMING_SEED)),
            Some(signer),
            Some(66_560),
            1 << 20,
        );
        let out = run(&mut s, &body, 4096).unwrap();
        assert!(s.is_done());
        assert_eq!(out.len(), body.len(), "Content-Length still holds");
        assert_ne!(out, body);
        let differing = out.iter().zip(&body).filter(|(a, b)| a != b).count();
        assert!(differing <= 3 * 64, "{differing} bytes changed");
        // The storage, holding the pool's secret, accepts the new chain ...
        let pool_verifier = ChunkVerifier::new(pool_key(), time(), new_seed);
        let mut check = ChunkStream::new(false, Some(pool_verifier), None, Some(66_560), 1 << 20);
        assert_eq!(run(&mut check, &out, 333).unwrap(), out);
        // ... and the client's chain no longer verifies against it.
        let mut client =
            ChunkStream::new(false, Some(verifier(STREAMING_SEED)), None, None, 1 << 20);
        assert_eq!(
            run(&mut client, &out, 333),
            Err(SigV4Error::ChunkSignatureDoesNotMatch)
        );
    }

    #[test]
    fn a_tampered_chunk_is_never_released() {
        let body = chunked_body(&STREAMING_CHUNKS);
        // A byte of the second chunk's data: the first chunk went out, nothing after it.
        let mut tampered = body.clone();
        let second_data = body.len() - 1024 - 2 - 86 - 2 - 2;
        tampered[second_data + 10] = b'b';
        let mut s = ChunkStream::new(false, Some(verifier(STREAMING_SEED)), None, None, 1 << 20);
        let (out, err) = run_to_error(&mut s, &tampered);
        assert_eq!(err, SigV4Error::ChunkSignatureDoesNotMatch);
        assert_eq!(
            out.len(),
            86 + 2 + 65_536 + 2,
            "only the first chunk was released"
        );
        assert!(s.ready().is_empty());

        // A byte of the first chunk: nothing at all.
        let mut tampered = body.clone();
        tampered[100] = b'b';
        let mut s = ChunkStream::new(false, Some(verifier(STREAMING_SEED)), None, None, 1 << 20);
        let mut released = 0;
        let e = s.feed(&tampered).map(|_| released = s.ready().len());
        assert_eq!(e, Err(SigV4Error::ChunkSignatureDoesNotMatch));
        assert_eq!(released, 0);

        // Chunks swapped or a signature replaced by another chunk's: refused.
        let swapped = chunked_body(&[
            STREAMING_CHUNKS[1],
            STREAMING_CHUNKS[0],
            STREAMING_CHUNKS[2],
        ]);
        let mut s = ChunkStream::new(false, Some(verifier(STREAMING_SEED)), None, None, 1 << 20);
        assert!(run(&mut s, &swapped, 4096).is_err());
    }

    #[test]
    fn the_final_chunk_waits_for_the_decoded_length() {
        let body = chunked_body(&STREAMING_CHUNKS);
        let mut s = ChunkStream::new(
            false,
            Some(verifier(STREAMING_SEED)),
            None,
            Some(66_561),
            1 << 20,
        );
        let (out, err) = run_to_error(&mut s, &body);
        assert_eq!(err, SigV4Error::DecodedLengthMismatch);
        assert_eq!(
            out.len(),
            body.len() - (82 + 2 + 2),
            "the final chunk was held back"
        );
        // Declared shorter than the chunks: refused at the chunk that passes it.
        let mut s = ChunkStream::new(
            false,
            Some(verifier(STREAMING_SEED)),
            None,
            Some(100),
            1 << 20,
        );
        assert_eq!(
            run(&mut s, &body, 4096),
            Err(SigV4Error::DecodedLengthMismatch)
        );
        assert_eq!(
            SigV4Error::DecodedLengthMismatch.s3_status(),
            (400, S3Code::IncompleteBody)
        );
    }

    #[test]
    fn trailers_are_verified_and_resigned() {
        let body = trailer_body();
        let mut s = ChunkStream::new(
            true,
            Some(verifier(TRAILER_SEED)),
            None,
            Some(66_560),
            1 << 20,
        );
        assert_eq!(run(&mut s, &body, 1000).unwrap(), body);
        assert!(s.is_done());

        let same = ChunkSigner::new(example_key(), time(), seed(TRAILER_SEED));
        let mut s = ChunkStream::new(true, None, Some(same), None, 1 << 20);
        let mut zeroed = body.clone();
        // Signer only (auth off): the client's digits are not checked, just replaced.
        let at = zeroed.len() - 4 - 64;
        zeroed[at..at + 64].copy_from_slice(&[b'0'; 64]);
        assert_eq!(run(&mut s, &zeroed, 1000).unwrap(), body);

        let new_seed = seed(&"cd".repeat(32));
        let signer = ChunkSigner::new(pool_key(), time(), new_seed);
        let mut s = ChunkStream::new(
            true,
            Some(verifier(TRAILER_SEED)),
            Some(signer),
            None,
            1 << 20,
        );
        let out = run(&mut s, &body, 1000).unwrap();
        let mut check = ChunkStream::new(
            true,
            Some(ChunkVerifier::new(pool_key(), time(), new_seed)),
            None,
            None,
            1 << 20,
        );
        assert_eq!(run(&mut check, &out, 77).unwrap(), out);

        // A changed checksum fails at the trailer signature; the end is never released.
        let forged = String::from_utf8(body.clone())
            .unwrap()
            .replace("sOO8/Q==", "AAAAAA==");
        let mut s = ChunkStream::new(true, Some(verifier(TRAILER_SEED)), None, None, 1 << 20);
        let (out, err) = run_to_error(&mut s, forged.as_bytes());
        assert_eq!(err, SigV4Error::ChunkSignatureDoesNotMatch);
        assert!(!out.ends_with(b"\r\n\r\n"));
        // No trailer signature at all: refused.
        let unsigned_end = String::from_utf8(body).unwrap().replace(
            &format!("x-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n"),
            "",
        );
        let mut s = ChunkStream::new(true, Some(verifier(TRAILER_SEED)), None, None, 1 << 20);
        assert!(matches!(
            run(&mut s, unsigned_end.as_bytes(), 1000),
            Err(SigV4Error::MalformedChunk(_))
        ));
    }

    #[test]
    fn malformed_framing_is_refused() {
        let body = chunked_body(&STREAMING_CHUNKS);
        let fresh = || ChunkStream::new(false, Some(verifier(STREAMING_SEED)), None, None, 1 << 20);
        let bare_lf = String::from_utf8(body.clone())
            .unwrap()
            .replacen("\r\n", "\n", 1);
        assert!(matches!(
            run(&mut fresh(), bare_lf.as_bytes(), 512),
            Err(SigV4Error::MalformedChunk(_))
        ));
        let mut trailing = body.clone();
        trailing.extend_from_slice(b"x");
        assert!(matches!(
            run(&mut fresh(), &trailing, 512),
            Err(SigV4Error::MalformedChunk(_))
        ));
        let no_crlf_after_data = {
            let mut b = body.clone();
            b[86 + 2 + 65_536] = b'x';
            b
        };
        assert!(run(&mut fresh(), &no_crlf_after_data, 512).is_err());
        assert!(matches!(
            run(&mut fresh(), b"10000\r\n", 512),
            Err(SigV4Error::MalformedChunk(_))
        ));
        assert!(matches!(
            run(&mut fresh(), &[b'1'; 200], 512),
            Err(SigV4Error::MalformedChunk(_))
        ));
        let mut small = ChunkStream::new(false, Some(verifier(STREAMING_SEED)), None, None, 4096);
        assert_eq!(
            run(&mut small, &body, 512),
            Err(SigV4Error::ChunkTooLarge { max: 4096 })
        );
    }
}
