//! What the hostile node does with one request, read from the request target:
//! `/hostile/<mode>/<name>?param=value&…` picks a hostile answer, any other path a
//! well-behaved one (`/<bucket>/<key>?size=N`). One node can so mix innocent answers with
//! hostile ones, and a test says in each request what it wants.
//!
//! Every body the node sends is the synthetic pattern of the request's path (without the
//! leading slash and the query) from offset 0, so a client checks any answer, or any cut
//! part of one, with [`expected_body`] and [`crate::pattern::verify`].

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::pattern;
use crate::units::parse_size_bytes;

/// Body size of an answer whose request does not say (`size=`).
pub const DEFAULT_SIZE_BYTES: u64 = 4096;
/// Header fields above which `header_close` closes without answering (weir-sim parses at
/// most this many, and closes on more).
pub const DEFAULT_HEADERS_OVER: usize = 64;
/// The body of the fake response `wrong_length_long` and `idle_bytes` smuggle onto the
/// connection: a client that ever sees it got bytes meant for nobody.
pub const SMUGGLED_BODY: &[u8] = b"SMUGGLED BY THE HOSTILE NODE\n";

/// A whole fake `200 OK` response carrying [`SMUGGLED_BODY`].
pub fn smuggled_response() -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        SMUGGLED_BODY.len()
    )
    .into_bytes();
    out.extend_from_slice(SMUGGLED_BODY);
    out
}

/// How `early_answer` ends its connection after the final answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyClose {
    /// Close with the rest of the upload unread: the kernel answers it with an RST.
    Reset,
    /// Shut down the write side, read the rest of the upload until EOF, then close.
    Drain,
}

/// The kinds of `malformed_head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Lines end in a bare LF.
    BareLf,
    /// The status code is not three digits (`2x0`).
    BadStatus,
    /// The status line does not start with `HTTP/1.x`.
    BadVersion,
    /// A header continued on the next line (obsolete line folding).
    ObsFold,
    /// Both `Content-Length` and `Transfer-Encoding: chunked`.
    ClTe,
    /// Two different `Content-Length` values.
    TwoLengths,
    /// A `Content-Length` that is not a plain decimal number (`+N`).
    BadLength,
    /// A space between a field name and its colon.
    SpaceBeforeColon,
    /// A NUL byte in a field value.
    Nul,
    /// `101 Switching Protocols` nobody asked for.
    Switching,
}

impl Malformed {
    /// Every kind, in the order the `kind=` names are listed.
    pub const ALL: [Malformed; 10] = [
        Malformed::BareLf,
        Malformed::BadStatus,
        Malformed::BadVersion,
        Malformed::ObsFold,
        Malformed::ClTe,
        Malformed::TwoLengths,
        Malformed::BadLength,
        Malformed::SpaceBeforeColon,
        Malformed::Nul,
        Malformed::Switching,
    ];

    /// The `kind=` name.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::BareLf => "bare_lf",
            Malformed::BadStatus => "bad_status",
            Malformed::BadVersion => "bad_version",
            Malformed::ObsFold => "obs_fold",
            Malformed::ClTe => "cl_te",
            Malformed::TwoLengths => "two_lengths",
            Malformed::BadLength => "bad_length",
            Malformed::SpaceBeforeColon => "space_before_colon",
            Malformed::Nul => "nul",
            Malformed::Switching => "switching",
        }
    }

    fn parse(text: &str) -> Result<Malformed> {
        Malformed::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .with_context(|| {
                let names: Vec<&str> = Malformed::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "malformed_head kind {text:?} is not one of {}",
                    names.join(", ")
                )
            })
    }

    /// The whole answer (head and a `body` the head may or may not frame correctly).
    pub fn response(self, body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let head = match self {
            Malformed::BareLf => format!("HTTP/1.1 200 OK\nContent-Length: {n}\n\n"),
            Malformed::BadStatus => format!("HTTP/1.1 2x0 OK\r\nContent-Length: {n}\r\n\r\n"),
            Malformed::BadVersion => format!("HTTQ/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n"),
            Malformed::ObsFold => {
                format!("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: {n}\r\n\r\n")
            }
            Malformed::ClTe => {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n"
                )
                .into_bytes();
                out.extend_from_slice(body);
                out.extend_from_slice(b"\r\n0\r\n\r\n");
                return out;
            }
            Malformed::TwoLengths => format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Length: {}\r\n\r\n",
                n + 1
            ),
            Malformed::BadLength => format!("HTTP/1.1 200 OK\r\nContent-Length: +{n}\r\n\r\n"),
            Malformed::SpaceBeforeColon => {
                format!("HTTP/1.1 200 OK\r\nContent-Length : {n}\r\n\r\n")
            }
            Malformed::Nul => {
                format!("HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: {n}\r\n\r\n")
            }
            Malformed::Switching => {
                "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_string()
            }
        };
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// What the node does with one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Script {
    /// Well-behaved: GET/HEAD serve a stored object or the path's pattern of `size` bytes
    /// (`Content-Length`, a strong `ETag`), PUT stores the body (answered with the MD5
    /// ETag), DELETE forgets it; `Expect: 100-continue` is honoured; keep-alive.
    Plain {
        /// Body size of a GET of an object that was not stored.
        size: u64,
    },
    /// `interim`: these 1xx answers (`codes=103,102`; a 103 carries `Link` headers), `gap`
    /// apart (`gap_ms=`), then a plain answer.
    Interim {
        /// The interim status codes, in order.
        codes: Vec<u16>,
        /// Pause before each interim answer and before the final one.
        gap: Duration,
        /// Final body size.
        size: u64,
    },
    /// `interim_flood`: an interim answer (102, 103, 100 in turn) every `every_ms`, forever
    /// (until the peer goes away; at most ten minutes) or `count` times and then a plain
    /// answer.
    InterimFlood {
        /// Pause between interim answers (0 = a burst).
        every: Duration,
        /// How many; `None` = forever.
        count: Option<u64>,
        /// Final body size (after `count`).
        size: u64,
    },
    /// `close_delimited_reset`: `200` with neither `Content-Length` nor
    /// `Transfer-Encoding` (the body ends at the close), `bytes` of body, then an RST.
    CloseDelimitedReset {
        /// Body bytes sent before the reset.
        bytes: u64,
    },
    /// `chunked_reset`: a chunked `200`, `bytes` of body in chunks, then an RST instead of
    /// the last chunk.
    ChunkedReset {
        /// Body bytes sent before the reset.
        bytes: u64,
    },
    /// `length_reset`: `Content-Length: size`, `bytes` of it, then an RST. No `ETag`
    /// (`etag=1` adds one), so a proxy cannot resume the body elsewhere.
    LengthReset {
        /// Declared length.
        size: u64,
        /// Body bytes sent before the reset.
        bytes: u64,
        /// Whether the head carries the strong ETag a plain GET would.
        etag: bool,
    },
    /// `early_answer`: reads `after` bytes of the request body (no `100 Continue`), answers
    /// a final `400` with an S3 XML error, and closes (`close=rst` or `close=drain`).
    EarlyAnswer {
        /// Body bytes read before answering.
        after: u64,
        /// How the connection ends.
        close: EarlyClose,
    },
    /// `oversized_head`: a `200` whose head is `head_bytes` long (filler fields), then a
    /// plain body.
    OversizedHead {
        /// Length of the head.
        head_bytes: u64,
        /// Body size.
        size: u64,
    },
    /// `malformed_head`: an answer whose head is broken as `kind=` says; then the node
    /// closes the connection.
    MalformedHead {
        /// The breakage.
        kind: Malformed,
        /// Body size.
        size: u64,
    },
    /// `wrong_length_short`: declares `size` bytes, sends `sent`, then closes (FIN).
    WrongLengthShort {
        /// Declared length.
        size: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// `wrong_length_long`: declares `size` bytes and sends them followed by a whole fake
    /// response ([`smuggled_response`]); the connection stays open.
    WrongLengthLong {
        /// Declared (and sent) length.
        size: u64,
    },
    /// `idle_bytes`: a plain keep-alive answer, then, `delay` later, a whole fake response
    /// ([`smuggled_response`]) written on the idle connection.
    IdleBytes {
        /// Body size of the real answer.
        size: u64,
        /// Pause before the unsolicited bytes.
        delay: Duration,
    },
    /// `header_close`: a request with more than `over` header fields is never answered —
    /// the node closes the connection (a "query of death"); otherwise a plain answer.
    HeaderClose {
        /// Most header fields answered.
        over: usize,
        /// Body size of the plain answer.
        size: u64,
    },
}

/// The parameters of a target's query (`a=1&b=2`), unknown ones kept for the error.
struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    used: Vec<&'a str>,
}

impl<'a> Params<'a> {
    fn new(query: &'a str) -> Self {
        Self {
            pairs: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect(),
            used: Vec::new(),
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a str> {
        self.used.push(key);
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn size(&mut self, key: &'a str, default: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_size_bytes(v).with_context(|| format!("{key}={v:?}")),
        }
    }

    fn millis(&mut self, key: &'a str, default: u64) -> Result<Duration> {
        let ms = match self.get(key) {
            None => default,
            Some(v) => v
                .parse()
                .with_context(|| format!("{key}={v:?} is not a whole number of ms"))?,
        };
        Ok(Duration::from_millis(ms))
    }

    /// Fails on a parameter the mode does not know (a typo must not pass as a default).
    fn finish(&self, mode: &str) -> Result<()> {
        if let Some((k, _)) = self.pairs.iter().find(|(k, _)| !self.used.contains(k)) {
            bail!("mode {mode} has no parameter {k:?}");
        }
        Ok(())
    }
}

/// The path (without the query) and the query of a request target.
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The full key whose pattern the bodies of `target` carry: its path without the leading
/// slash and without the query (`/data/k1?size=9` → `data/k1`).
pub fn pattern_key(target: &str) -> &str {
    split_target(target).0.trim_start_matches('/')
}

/// The first `len` bytes of the body the node sends for `target`.
pub fn pattern_bytes(target: &str, len: u64) -> Vec<u8> {
    let mut out = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    pattern::fill(pattern::key_seed(pattern_key(target)), 0, &mut out);
    out
}

/// The whole body a correct client receives for a GET of `target`, from a node that did
/// not store anything under its path: the pattern of the size the script declares
/// (`None` for scripts that never complete an answer).
pub fn expected_body(target: &str) -> Result<Option<Vec<u8>>> {
    let size = match Script::from_target(target)? {
        Script::Plain { size }
        | Script::Interim { size, .. }
        | Script::WrongLengthLong { size }
        | Script::IdleBytes { size, .. }
        | Script::HeaderClose { size, .. }
        | Script::OversizedHead { size, .. } => size,
        Script::InterimFlood {
            count: Some(_),
            size,
            ..
        } => size,
        _ => return Ok(None),
    };
    Ok(Some(pattern_bytes(target, size)))
}

impl Script {
    /// The script of a request target; an unknown mode or parameter is an error (the node
    /// answers it with a 400 naming it).
    pub fn from_target(target: &str) -> Result<Script> {
        let (path, query) = split_target(target);
        let mut params = Params::new(query);
        let Some(rest) = path.strip_prefix("/hostile/") else {
            let size = params.size("size", DEFAULT_SIZE_BYTES)?;
            // A plain object may carry any query an S3 client sends.
            return Ok(Script::Plain { size });
        };
        let mode = rest.split('/').next().unwrap_or("");
        let size = params.size("size", DEFAULT_SIZE_BYTES)?;
        let script = match mode {
            "ok" => Script::Plain { size },
            "interim" => {
                let codes = match params.get("codes") {
                    None => vec![103, 102],
                    Some(list) => list
                        .split(',')
                        .map(|c| {
                            let code: u16 = c
                                .parse()
                                .with_context(|| format!("codes: {c:?} is not a status"))?;
                            if !(100..200).contains(&code) {
                                bail!("codes: {code} is not an interim (1xx) status");
                            }
                            Ok(code)
                        })
                        .collect::<Result<_>>()?,
                };
                Script::Interim {
                    codes,
                    gap: params.millis("gap_ms", 20)?,
                    size,
                }
            }
            "interim_flood" => Script::InterimFlood {
                every: params.millis("every_ms", 300)?,
                count: params
                    .get("count")
                    .map(|c| c.parse().with_context(|| format!("count={c:?}")))
                    .transpose()?,
                size,
            },
            "close_delimited_reset" => Script::CloseDelimitedReset {
                bytes: params.size("bytes", 64 << 10)?,
            },
            "chunked_reset" => Script::ChunkedReset {
                bytes: params.size("bytes", 64 << 10)?,
            },
            "length_reset" => Script::LengthReset {
                size: params.size("size", 1 << 20)?,
                bytes: params.size("bytes", 64 << 10)?,
                etag: params.get("etag").is_some_and(|v| v == "1"),
            },
            "early_answer" => Script::EarlyAnswer {
                after: params.size("after", 1 << 20)?,
                close: match params.get("close") {
                    None | Some("rst") => EarlyClose::Reset,
                    Some("drain") => EarlyClose::Drain,
                    Some(other) => bail!("close={other:?} is not rst or drain"),
                },
            },
            "oversized_head" => Script::OversizedHead {
                head_bytes: params.size("head_bytes", 64 << 10)?,
                size,
            },
            "malformed_head" => Script::MalformedHead {
                kind: Malformed::parse(params.get("kind").unwrap_or("bare_lf"))?,
                size,
            },
            "wrong_length_short" => {
                let declared = params.size("size", 64 << 10)?;
                let sent = params.size("sent", declared / 2)?;
                if sent >= declared {
                    bail!("wrong_length_short: sent={sent} is not below size={declared}");
                }
                Script::WrongLengthShort {
                    size: declared,
                    sent,
                }
            }
            "wrong_length_long" => Script::WrongLengthLong { size },
            "idle_bytes" => Script::IdleBytes {
                size,
                delay: params.millis("delay_ms", 200)?,
            },
            "header_close" => Script::HeaderClose {
                over: params
                    .get("over")
                    .map(|v| v.parse().with_context(|| format!("over={v:?}")))
                    .transpose()?
                    .unwrap_or(DEFAULT_HEADERS_OVER),
                size,
            },
            other => bail!(
                "unknown hostile mode {other:?} (ok, interim, interim_flood, \
                 close_delimited_reset, chunked_reset, length_reset, early_answer, \
                 oversized_head, malformed_head, wrong_length_short, wrong_length_long, \
                 idle_bytes, header_close)"
            ),
        };
        params.finish(mode)?;
        Ok(script)
    }

    /// The mode's name (`plain` for well-behaved answers), as recorded.
    pub fn name(&self) -> &'static str {
        match self {
            Script::Plain { .. } => "plain",
            Script::Interim { .. } => "interim",
            Script::InterimFlood { .. } => "interim_flood",
            Script::CloseDelimitedReset { .. } => "close_delimited_reset",
            Script::ChunkedReset { .. } => "chunked_reset",
            Script::LengthReset { .. } => "length_reset",
            Script::EarlyAnswer { .. } => "early_answer",
            Script::OversizedHead { .. } => "oversized_head",
            Script::MalformedHead { .. } => "malformed_head",
            Script::WrongLengthShort { .. } => "wrong_length_short",
            Script::WrongLengthLong { .. } => "wrong_length_long",
            Script::IdleBytes { .. } => "idle_bytes",
            Script::HeaderClose { .. } => "header_close",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_pick_scripts() {
        assert_eq!(
            Script::from_target("/data/k1?size=10").unwrap(),
            Script::Plain { size: 10 }
        );
        assert_eq!(
            Script::from_target("/data/k1?versionId=3").unwrap(),
            Script::Plain {
                size: DEFAULT_SIZE_BYTES
            }
        );
        assert_eq!(
            Script::from_target("/hostile/interim/a?codes=100,103&gap_ms=5&size=1KiB").unwrap(),
            Script::Interim {
                codes: vec![100, 103],
                gap: Duration::from_millis(5),
                size: 1024
            }
        );
        assert_eq!(
            Script::from_target("/hostile/interim_flood/a?every_ms=0&count=10000").unwrap(),
            Script::InterimFlood {
                every: Duration::ZERO,
                count: Some(10_000),
                size: DEFAULT_SIZE_BYTES
            }
        );
        assert_eq!(
            Script::from_target("/hostile/early_answer/a?after=64KiB&close=drain").unwrap(),
            Script::EarlyAnswer {
                after: 64 << 10,
                close: EarlyClose::Drain
            }
        );
        assert_eq!(
            Script::from_target("/hostile/wrong_length_short/a?size=100").unwrap(),
            Script::WrongLengthShort {
                size: 100,
                sent: 50
            }
        );
        assert_eq!(
            Script::from_target("/hostile/header_close/a").unwrap(),
            Script::HeaderClose {
                over: 64,
                size: DEFAULT_SIZE_BYTES
            }
        );
        for kind in Malformed::ALL {
            let t = format!("/hostile/malformed_head/x?kind={}", kind.name());
            assert_eq!(
                Script::from_target(&t).unwrap(),
                Script::MalformedHead {
                    kind,
                    size: DEFAULT_SIZE_BYTES
                }
            );
        }
    }

    #[test]
    fn typos_are_errors() {
        assert!(Script::from_target("/hostile/nope/a").is_err());
        assert!(Script::from_target("/hostile/interim/a?cdoes=103").is_err());
        assert!(Script::from_target("/hostile/interim/a?codes=200").is_err());
        assert!(Script::from_target("/hostile/malformed_head/a?kind=x").is_err());
        assert!(Script::from_target("/hostile/wrong_length_short/a?size=4&sent=4").is_err());
        assert!(Script::from_target("/hostile/early_answer/a?close=maybe").is_err());
    }

    #[test]
    fn bodies_are_the_pattern_of_the_path() {
        let body = expected_body("/data/k1?size=100").unwrap().unwrap();
        assert_eq!(body.len(), 100);
        assert_eq!(
            pattern::verify(pattern::key_seed("data/k1"), 0, &body),
            None
        );
        assert_ne!(
            pattern_bytes("/data/k1", 64),
            pattern_bytes("/data/k2", 64),
            "every path gets its own bytes"
        );
        assert_eq!(expected_body("/hostile/interim_flood/a").unwrap(), None);
        assert_eq!(
            expected_body("/hostile/interim_flood/a?count=3&size=7")
                .unwrap()
                .map(|b| b.len()),
            Some(7)
        );
        let smuggled = smuggled_response();
        let text = String::from_utf8(smuggled).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn malformed_answers_are_what_they_say() {
        let body = b"hello";
        let bare = Malformed::BareLf.response(body);
        assert!(!bare.windows(2).any(|w| w == b"\r\n"));
        let clte = String::from_utf8(Malformed::ClTe.response(body)).unwrap();
        assert!(clte.contains("Content-Length: 5\r\nTransfer-Encoding: chunked"));
        assert!(clte.ends_with("5\r\nhello\r\n0\r\n\r\n"));
        assert!(Malformed::Nul.response(body).contains(&0));
    }
}
