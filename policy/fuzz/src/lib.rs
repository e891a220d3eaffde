//! What the fuzz targets in `fuzz_targets/` share: the keys they verify with and a lenient
//! reader of the text request heads that `verify` and `sign_verify` take as input.
//!
//! The heads are plain HTTP/1.1 text, so the seeds in `seeds/verify/` are AWS's published
//! example requests as they appear in the S3 documentation, and libFuzzer's mutations stay
//! readable in a crash report:
//!
//! ```text
//! GET /test.txt HTTP/1.1
//! Host: examplebucket.s3.amazonaws.com
//! x-amz-date: 20130524T000000Z
//! @now: 20130524T000100Z
//! ```
//!
//! Lines starting with `@` are not headers but settings of the harness: `@now:` (the
//! verifier's clock, `YYYYMMDDTHHMMSSZ` or Unix seconds; default the examples' time,
//! 2013-05-24T00:00:00Z) and `@skew:` (seconds; default 900, as S3). Reading stops at the
//! first empty line, as a head ends there.

use std::time::{Duration, SystemTime};

use weir_policy::sigv4::Timestamp;

/// The access key of AWS's examples, the only one the fuzzed verifier knows.
pub const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
/// The secret of AWS's examples.
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 2013-05-24T00:00:00Z, when every AWS example was signed.
pub const EXAMPLE_UNIX_SECS: i64 = 1_369_353_600;
/// S3's clock skew bound, the default of `@skew:`.
pub const SKEW_DEFAULT: Duration = Duration::from_secs(900);
/// Most header lines read from one input (the appliance bounds a head by bytes and count).
pub const HEADERS_MAX: usize = 64;

/// A request head read from fuzz input: everything `RequestParts::new` takes, plus the
/// clock and skew to verify at.
#[derive(Debug)]
pub struct Head<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// The origin-form target (`/path?query`).
    pub target: &'a str,
    /// The header fields in order: the name as sent, the value trimmed of surrounding
    /// whitespace (as the appliance's head parser hands them over).
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// The verifier's clock.
    pub now: SystemTime,
    /// The verifier's skew bound.
    pub skew: Duration,
}

impl<'a> Head<'a> {
    /// Reads `data` leniently; `None` only when the request line is not UTF-8 (the
    /// appliance's head parser hands the verifier `&str` method and target).
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let mut lines = data
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let request_line = std::str::from_utf8(lines.next()?).ok()?;
        let mut words = request_line.splitn(3, ' ');
        let method = words.next().unwrap_or("");
        let target = words.next().unwrap_or("");
        let mut head = Head {
            method,
            target,
            headers: Vec::new(),
            now: Timestamp::from_unix_secs(EXAMPLE_UNIX_SECS)?.to_system_time(),
            skew: SKEW_DEFAULT,
        };
        for line in lines.take_while(|line| !line.is_empty()) {
            let colon = line.iter().position(|&b| b == b':');
            let (name, value) = match colon {
                Some(at) => (&line[..at], line[at + 1..].trim_ascii()),
                None => (line, &b""[..]),
            };
            match name {
                b"@now" => {
                    if let Some(now) = parse_now(value) {
                        head.now = now;
                    }
                }
                b"@skew" => {
                    let secs = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    if let Some(secs) = secs {
                        head.skew = Duration::from_secs(secs);
                    }
                }
                _ if head.headers.len() < HEADERS_MAX => head.headers.push((name, value)),
                _ => {}
            }
        }
        Some(head)
    }

    /// The headers as `RequestParts` takes them.
    pub fn header_iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone + '_ {
        self.headers.iter().copied()
    }
}

/// `YYYYMMDDTHHMMSSZ` or Unix seconds, within the years SigV4 can sign (1970..=9999).
fn parse_now(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let time = match Timestamp::parse_amz(text) {
        Some(t) => t,
        None => Timestamp::from_unix_secs(text.parse().ok()?)?,
    };
    Some(time.to_system_time())
}

/// SigV4 `UriEncode` of `bytes` (every byte but `A-Za-z0-9-_.~` escaped), written here
/// again rather than borrowed from weir so a round trip does not test weir against itself.
pub fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_read_leniently() {
        let head = Head::parse(
            b"GET /a?b HTTP/1.1\r\nHost:  h \r\nx:\r\nnocolon\r\n@now: 0\r\n@skew: 5\r\n\r\nX: body",
        )
        .unwrap();
        assert_eq!((head.method, head.target), ("GET", "/a?b"));
        assert_eq!(
            head.headers,
            [(&b"Host"[..], &b"h"[..]), (b"x", b""), (b"nocolon", b"")]
        );
        assert_eq!(head.now, SystemTime::UNIX_EPOCH);
        assert_eq!(head.skew, Duration::from_secs(5));
        assert!(Head::parse(b"\xff /").is_none());
        assert_eq!(Head::parse(b"").unwrap().method, "");
    }

    /// The seed heads are AWS's examples, so each verifies: the fuzzer starts from
    /// requests that pass every check, not from the first refusal.
    #[test]
    fn every_verify_seed_verifies() {
        use weir_policy::sigv4::{verify, RequestParts};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/verify");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let head = Head::parse(&data).unwrap();
            let parts = RequestParts::new(head.method, head.target, head.header_iter());
            let mut keys = |k: &str| (k == AKID).then_some(SECRET);
            let verified = verify(&parts, &mut keys, head.now, head.skew);
            assert!(verified.is_ok(), "{}: {verified:?}", path.display());
            seen += 1;
        }
        assert!(seen >= 7, "{seen} seeds");
    }

    /// The config seeds are what their names say: `accepted_*` and the example file
    /// validate, `rejected_*` and the syntax errors do not.
    #[test]
    fn config_seeds_are_what_they_say() {
        use weir_policy::config::Config;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/config");
        let (mut accepted, mut rejected) = (0, 0);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let result = Config::from_toml_str(&text, &name);
            if name.starts_with("accepted_") || name == "example_weir_toml" {
                assert!(result.is_ok(), "{name}: {result:?}");
                accepted += 1;
            } else if name.starts_with("rejected_") || name.starts_with("syntax_") {
                assert!(result.is_err(), "{name} accepted");
                rejected += 1;
            }
        }
        assert!(accepted >= 20 && rejected >= 100, "{accepted} / {rejected}");
    }

    #[test]
    fn uri_encode_escapes_all_but_unreserved() {
        assert_eq!(uri_encode(b"aZ0-_.~/ %+"), "aZ0-_.~%2F%20%25%2B");
    }
}
