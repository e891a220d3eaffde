//! Bucket globs for `[[route]]`: `*` matches any run of characters (including none), `?`
//! matches exactly one; everything else matches itself.

use std::fmt;
use std::str::FromStr;

/// A validated bucket-name glob such as `rag-*` or `logs-202?-*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketGlob {
    pattern: String,
}

/// Why a bucket glob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is empty (use `*` to match every bucket).
    #[error("empty pattern (use \"*\" to match every bucket)")]
    Empty,
    /// A character that can never occur in a bucket name.
    #[error("{0:?} cannot occur in a bucket name (allowed: a-z 0-9 . - and the wildcards * ?)")]
    BadChar(char),
    /// More fixed characters than the longest bucket name, so nothing could match.
    #[error("longer than any bucket name ({BUCKET_LEN_MAX} characters)")]
    TooLong,
}

/// Longest S3 bucket name.
const BUCKET_LEN_MAX: usize = 63;

impl BucketGlob {
    /// Validates `pattern`: lower-case bucket characters and wildcards only, and no more
    /// than 63 (the longest bucket name) non-`*` characters, since more could never match.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if let Some(c) = pattern.chars().find(|c| !is_glob_char(*c)) {
            return Err(GlobError::BadChar(c));
        }
        if pattern.bytes().filter(|b| *b != b'*').count() > BUCKET_LEN_MAX {
            return Err(GlobError::TooLong);
        }
        Ok(Self {
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `bucket` matches. Linear backtracking over the last `*` only, so the cost is
    /// O(pattern × bucket) at worst and never exponential.
    pub fn matches(&self, bucket: &str) -> bool {
        let (p, s) = (self.pattern.as_bytes(), bucket.as_bytes());
        let (mut pi, mut si) = (0, 0);
        // Where to resume after the most recent `*`: (pattern index after it, text index).
        let mut resume: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some(b'*') => {
                    resume = Some((pi + 1, si));
                    pi += 1;
                }
                Some(&c) if c == b'?' || c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match resume {
                    // Let the last `*` swallow one more character and retry.
                    Some((rp, rs)) => {
                        pi = rp;
                        si = rs + 1;
                        resume = Some((rp, rs + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi.min(p.len())..].iter().all(|c| *c == b'*')
    }
}

/// Characters a bucket glob may contain.
fn is_glob_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '*' | '?')
}

impl FromStr for BucketGlob {
    type Err = GlobError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        Self::new(pattern)
    }
}

impl fmt::Display for BucketGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn glob(p: &str) -> BucketGlob {
        BucketGlob::new(p).unwrap()
    }

    #[test]
    fn matching() {
        let cases = [
            ("rag-*", "rag-", true),
            ("rag-*", "rag-docs", true),
            ("rag-*", "ragdocs", false),
            ("*", "anything", true),
            ("*-logs", "web-logs", true),
            ("*-logs", "web-logs2", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**", "x", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, bucket, want) in cases {
            assert_eq!(glob(pattern).matches(bucket), want, "{pattern} vs {bucket}");
        }
    }

    #[test]
    fn rejections() {
        assert_eq!(BucketGlob::new(""), Err(GlobError::Empty));
        assert_eq!(BucketGlob::new("Rag-*"), Err(GlobError::BadChar('R')));
        assert_eq!(BucketGlob::new("rag_*"), Err(GlobError::BadChar('_')));
        assert_eq!(BucketGlob::new("[ab]"), Err(GlobError::BadChar('[')));
        assert_eq!(BucketGlob::new(&"a".repeat(64)), Err(GlobError::TooLong));
        assert!(BucketGlob::new(&format!("{}*", "a".repeat(63))).is_ok());
    }

    /// Reference matcher: the obvious recursion, fine for short inputs.
    fn naive(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => s.is_empty(),
            (Some(b'*'), _) => naive(&p[1..], s) || (!s.is_empty() && naive(p, &s[1..])),
            (Some(b'?'), Some(_)) => naive(&p[1..], &s[1..]),
            (Some(c), Some(d)) if c == d => naive(&p[1..], &s[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_naive_matcher(p in "[ab*?]{1,8}", s in "[ab]{0,10}") {
            prop_assert_eq!(glob(&p).matches(&s), naive(p.as_bytes(), s.as_bytes()));
        }
    }
}
