//! `Range: bytes=…` resolution against an object size, as S3 does it (RFC 9110 §14).
//!
//! One range only: a malformed header or a multi-range list is ignored (the whole object is
//! served with 200), a syntactically valid range that selects nothing is 416.

/// What a `Range` header asks of an object of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve the whole object (no header, or one we ignore).
    Full,
    /// Serve `start ..= end_inclusive` with 206 and `Content-Range`.
    Partial {
        /// First byte offset served.
        start: u64,
        /// Last byte offset served (inclusive, as in `Content-Range`).
        end_inclusive: u64,
    },
    /// 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

impl RangeOutcome {
    /// Resolves an optional `Range` header value against `size_bytes`.
    pub fn resolve(header: Option<&str>, size_bytes: u64) -> Self {
        let Some(header) = header else {
            return Self::Full;
        };
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return Self::Full;
        };
        if spec.contains(',') {
            return Self::Full;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return Self::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            // Suffix range: the last N bytes.
            let Some(suffix_bytes) = parse_decimal(last) else {
                return Self::Full;
            };
            if suffix_bytes == 0 || size_bytes == 0 {
                return Self::Unsatisfiable;
            }
            let start = size_bytes.saturating_sub(suffix_bytes);
            return Self::Partial {
                start,
                end_inclusive: size_bytes - 1,
            };
        }
        let Some(start) = parse_decimal(first) else {
            return Self::Full;
        };
        let end_inclusive = if last.is_empty() {
            None
        } else {
            match parse_decimal(last) {
                Some(end) if end >= start => Some(end),
                _ => return Self::Full,
            }
        };
        if start >= size_bytes {
            return Self::Unsatisfiable;
        }
        let end_inclusive = end_inclusive.map_or(size_bytes - 1, |end| end.min(size_bytes - 1));
        Self::Partial {
            start,
            end_inclusive,
        }
    }
}

/// Digits only (no sign, no spaces inside), without overflow.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::RangeOutcome::{self, *};

    fn r(header: &str, size: u64) -> RangeOutcome {
        RangeOutcome::resolve(Some(header), size)
    }

    fn p(start: u64, end_inclusive: u64) -> RangeOutcome {
        Partial {
            start,
            end_inclusive,
        }
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(r("bytes=0-0", 10), p(0, 0));
        assert_eq!(r("bytes=2-5", 10), p(2, 5));
        assert_eq!(r("bytes=2-500", 10), p(2, 9));
        assert_eq!(r("bytes=9-9", 10), p(9, 9));
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=5-2", 10), Full);
    }

    #[test]
    fn open_and_suffix_ranges() {
        assert_eq!(r("bytes=3-", 10), p(3, 9));
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=-4", 10), p(6, 9));
        assert_eq!(r("bytes=-40", 10), p(0, 9));
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=-1", 0), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
    }

    #[test]
    fn ignored_headers() {
        assert_eq!(RangeOutcome::resolve(None, 10), Full);
        assert_eq!(r("items=0-1", 10), Full);
        assert_eq!(r("bytes=0-1,4-5", 10), Full);
        assert_eq!(r("bytes=a-b", 10), Full);
        assert_eq!(r("bytes=-", 10), Full);
        assert_eq!(r("bytes=+1-2", 10), Full);
        assert_eq!(r("bytes=99999999999999999999-", 10), Full);
    }
}
