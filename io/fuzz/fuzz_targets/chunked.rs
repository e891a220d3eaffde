//! [`ChunkedDecoder`] driven as the relay drives it, over a body that arrives in pieces,
//! against an independent reading of the grammar (`weir_io_fuzz::reference`).
//!
//! The input is a harness line, then the body (`weir_io_fuzz::Input`). The harness line is
//! `peer piece seed line_bytes_max trailer_bytes_max trailers_count_max payload_bytes_max`:
//! an odd `peer` is a storage node (else a client); reads return 1 to `piece` bytes
//! (default 7; 0 = the whole body in one read), in sizes drawn from `seed`; the four limits
//! default to [`ChunkedLimits::default`].
//!
//! The drive is the relay's: parse the unconsumed bytes; on `Ok(None)` read more and parse
//! again from the same start; on `Data(n)` move the `n` payload bytes (those already read
//! leave the buffer, the rest are spliced and never enter it); on `Done` stop.
//!
//! Checked, beyond "never panics":
//! - with no limits in the way, the decoder agrees with the reference reading, item for
//!   item: the same payload sizes, the same framing bytes consumed for each, the same end
//!   of the body; it errs exactly where the reading finds the body broken, and waits for
//!   more exactly where the body is incomplete;
//! - with the chosen limits, a body the reading accepts is accepted identically when its
//!   longest size line, its trailer section, its trailer count and its total payload are
//!   within them, and refused otherwise (a client's payload with `EntityTooLarge`); a
//!   refused body is refused; an accepted body never exceeds `payload_bytes_max`;
//! - the pieces do not matter: the same items, consumed counts and end (or error) as with
//!   the whole body in one read;
//! - `consumed` never exceeds the bytes given; `Ok(None)` consumes nothing; the `Data`
//!   sizes add up to `payload_bytes()`; after `Done` the decoder answers `Done` with 0;
//! - client errors are 400/431, a node's are 502.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_io::http::{ChunkItem, ChunkedDecoder, ChunkedLimits, HeadError, Peer};
use weir_io_fuzz::reference::{self, Outcome, Reading, Step};
use weir_io_fuzz::Input;

/// No limit can trip: what the reference reading is compared with.
const UNLIMITED: ChunkedLimits = ChunkedLimits {
    line_bytes_max: usize::MAX,
    trailer_bytes_max: usize::MAX,
    trailers_count_max: usize::MAX,
    payload_bytes_max: u64::MAX,
};

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let peer = match input.number(0).unwrap_or(0) % 2 {
        0 => Peer::Client,
        _ => Peer::Upstream,
    };
    let piece = input.capped(1, 1 << 16).unwrap_or(7);
    let seed = input.number(2).unwrap_or(0);
    let defaults = ChunkedLimits::default();
    let limits = ChunkedLimits {
        line_bytes_max: input.capped(3, 1 << 16).unwrap_or(defaults.line_bytes_max),
        trailer_bytes_max: input
            .capped(4, 1 << 16)
            .unwrap_or(defaults.trailer_bytes_max),
        trailers_count_max: input
            .capped(5, 1 << 10)
            .unwrap_or(defaults.trailers_count_max),
        payload_bytes_max: input.number(6).unwrap_or(defaults.payload_bytes_max),
    };
    let body = input.message;

    let reading = reference::read(body);
    let free = drive(body, UNLIMITED, peer, Reads::whole());
    agrees(&free, &reading);

    let bounded = drive(body, limits, peer, Reads::whole());
    within_limits(&bounded, &free, &reading, &limits, peer);

    let pieces = drive(body, limits, peer, Reads::new(piece, seed));
    assert_eq!(
        pieces.steps, bounded.steps,
        "pieces of at most {piece} bytes"
    );
    assert_eq!(pieces.end, bounded.end, "pieces of at most {piece} bytes");
});

/// How a drive ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// `Done`: the framing ended at this offset.
    Done(usize),
    /// `Ok(None)` with every byte given, or a chunk's payload running past the end.
    Incomplete,
    /// An error.
    Error(HeadError),
}

#[derive(Debug)]
struct Drive {
    steps: Vec<Step>,
    end: End,
}

/// The sizes reads return: a small xorshift, so the fuzzer picks a whole pattern by
/// picking a seed.
struct Reads {
    max: usize,
    state: u64,
}

impl Reads {
    fn whole() -> Self {
        Reads { max: 0, state: 0 }
    }

    fn new(max: usize, seed: u64) -> Self {
        Reads {
            max,
            state: seed | 1,
        }
    }

    fn next(&mut self, left: usize) -> usize {
        if self.max == 0 {
            return left;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let size = 1 + usize::try_from(self.state % self.max as u64).unwrap_or(0);
        size.min(left)
    }
}

fn drive(body: &[u8], limits: ChunkedLimits, peer: Peer, mut reads: Reads) -> Drive {
    let mut decoder = ChunkedDecoder::new(limits, peer);
    let mut steps = Vec::new();
    // body[pos..read] is the relay's buffer: read, not yet consumed.
    let (mut pos, mut read) = (0usize, 0usize);
    let mut payload = 0u64;
    let end = loop {
        let buffered = &body[pos..read];
        match decoder.parse(buffered) {
            Ok(None) => {
                assert_eq!(decoder.payload_bytes(), payload);
                assert!(!decoder.is_done());
                if read == body.len() {
                    break End::Incomplete;
                }
                read += reads.next(body.len() - read);
            }
            Ok(Some((item, consumed))) => {
                assert!(
                    consumed <= buffered.len(),
                    "consumed {consumed} of {buffered:?}"
                );
                let start = pos;
                pos += consumed;
                match item {
                    ChunkItem::Data(n) => {
                        assert!(n > 0);
                        steps.push(Step {
                            start,
                            consumed,
                            data: Some(n),
                        });
                        payload += n;
                        assert_eq!(decoder.payload_bytes(), payload);
                        assert!(payload <= limits.payload_bytes_max);
                        let size = usize::try_from(n).unwrap_or(usize::MAX);
                        if size > body.len() - pos {
                            break End::Incomplete;
                        }
                        // What was read leaves the buffer; the rest is spliced past it.
                        pos += size;
                        read = read.max(pos);
                    }
                    ChunkItem::Done => {
                        steps.push(Step {
                            start,
                            consumed,
                            data: None,
                        });
                        assert!(decoder.is_done());
                        assert_eq!(decoder.payload_bytes(), payload);
                        assert_eq!(
                            decoder.parse(&body[pos..read]),
                            Ok(Some((ChunkItem::Done, 0)))
                        );
                        break End::Done(pos);
                    }
                }
            }
            Err(e) => {
                match peer {
                    Peer::Client => assert!(
                        matches!(
                            (e.status, e.code),
                            (400, "InvalidRequest")
                                | (400, "EntityTooLarge")
                                | (431, "RequestHeaderSectionTooLarge")
                        ),
                        "{e:?}"
                    ),
                    Peer::Upstream => assert_eq!((e.status, e.code), (502, "BadGateway")),
                }
                break End::Error(e);
            }
        }
    };
    Drive { steps, end }
}

/// The decoder without limits against the reference reading.
fn agrees(free: &Drive, reading: &Reading) {
    assert_eq!(free.steps, reading.steps, "items differ from the reference");
    match (&free.end, reading.outcome) {
        (End::Done(a), Outcome::Done(b)) => assert_eq!(*a, b),
        (End::Error(_), Outcome::Reject) | (End::Incomplete, Outcome::Incomplete) => {}
        (end, outcome) => panic!("decoder: {end:?}, reference: {outcome:?}"),
    }
}

/// The decoder with limits against the same without: identical within them, refused
/// beyond them.
fn within_limits(
    bounded: &Drive,
    free: &Drive,
    reading: &Reading,
    limits: &ChunkedLimits,
    peer: Peer,
) {
    assert!(
        free.steps.starts_with(&bounded.steps),
        "limits changed the items"
    );
    let m = reading.measure;
    let fits = m.size_line_max <= limits.line_bytes_max
        && m.trailer_bytes <= limits.trailer_bytes_max
        && m.trailers <= limits.trailers_count_max
        && m.payload <= u128::from(limits.payload_bytes_max);
    match (&free.end, &bounded.end) {
        (End::Done(_), End::Done(_)) => {
            assert!(fits, "accepted beyond the limits: {m:?}, {limits:?}");
            assert_eq!(bounded.steps, free.steps);
        }
        (End::Done(_), End::Error(e)) => {
            assert!(!fits, "refused within the limits: {e:?}, {m:?}, {limits:?}");
            // The refusal names the limit that was crossed.
            if peer == Peer::Client {
                let crossed = match (e.status, e.code) {
                    (400, "EntityTooLarge") => m.payload > u128::from(limits.payload_bytes_max),
                    (431, _) => {
                        m.trailer_bytes > limits.trailer_bytes_max
                            || m.trailers > limits.trailers_count_max
                    }
                    _ => m.size_line_max > limits.line_bytes_max,
                };
                assert!(crossed, "{e:?} for {m:?}, {limits:?}");
            }
        }
        (End::Error(_), end) => assert!(matches!(end, End::Error(_)), "{end:?}"),
        (End::Incomplete, End::Incomplete | End::Error(_)) => {}
        (free, bounded) => panic!("without limits {free:?}, with {bounded:?}"),
    }
}
