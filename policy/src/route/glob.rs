//! Bucket globs for `[[route]]`, `[[rule]] bucket` and `[[tenant]] buckets`: `*` matches
//! any run of characters (including none), `?` matches exactly one; everything else
//! matches itself, exactly (case-sensitive).
//!
//! A glob is matched against the canonical bucket of a request (docs/identity.md,
//! "Request targets"), which is always a valid bucket name. So a glob is checked at
//! config load to be able to match at least one valid name under the configured
//! [`BucketNames`]: one that could never match (upper case under the strict rules, a
//! character no bucket has, a fixed part too long, a shape no bucket has such as `-x*`
//! or `ab`) is a config error, not a silent hole in a policy.

use std::fmt;
use std::str::FromStr;

use super::s3::BucketNames;

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
    /// An upper-case letter, which strict bucket names never have.
    #[error("{0:?}: bucket names are lower case (legacy names need [appliance] bucket_names = \"legacy\")")]
    UpperCase(char),
    /// A character that can never occur in a bucket name.
    #[error("{0:?} cannot occur in a bucket name (allowed: {1} and the wildcards * ?)")]
    BadChar(char, &'static str),
    /// More fixed characters than the longest bucket name, so nothing could match.
    #[error("longer than any bucket name ({0} characters)")]
    TooLong(usize),
    /// No valid bucket name matches the pattern.
    #[error("no valid bucket name matches it ({0})")]
    NeverMatches(&'static str),
}

impl BucketGlob {
    /// Validates `pattern` against the strict (DNS-compatible) bucket names.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        Self::for_names(pattern, BucketNames::Strict)
    }

    /// Validates `pattern` for bucket names under `names`: only characters such names
    /// have and the wildcards, and at least one valid name must match.
    pub fn for_names(pattern: &str, names: BucketNames) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let allowed =
            |c: char| c.is_ascii() && (matches!(c, '*' | '?') || names.allows_byte(c as u8));
        if let Some(c) = pattern.chars().find(|c| !allowed(*c)) {
            return Err(if c.is_ascii_uppercase() {
                GlobError::UpperCase(c)
            } else {
                GlobError::BadChar(c, allowed_text(names))
            });
        }
        if pattern.bytes().filter(|b| *b != b'*').count() > names.len_max() {
            return Err(GlobError::TooLong(names.len_max()));
        }
        let matchable = if pattern.contains(['*', '?']) {
            some_name_matches(pattern.as_bytes(), names)
        } else {
            names.is_valid(pattern)
        };
        if !matchable {
            return Err(GlobError::NeverMatches(rules_text(names)));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `bucket` matches (exactly: case matters).
    pub fn matches(&self, bucket: &str) -> bool {
        glob_matches(self.pattern.as_bytes(), bucket.as_bytes())
    }
}

/// The characters of names under `names`, for messages.
fn allowed_text(names: BucketNames) -> &'static str {
    match names {
        BucketNames::Strict => "a-z 0-9 . -",
        BucketNames::Legacy => "A-Z a-z 0-9 . _ -",
    }
}

/// The rules of names under `names`, for messages.
fn rules_text(names: BucketNames) -> &'static str {
    match names {
        BucketNames::Strict => {
            "3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit, no \"..\", not an IPv4 address"
        }
        BucketNames::Legacy => "3 to 255 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    }
}

/// Whether `text` matches glob `pattern`. Linear backtracking over the last `*` only, so
/// the cost is O(pattern × text) at worst and never exponential.
fn glob_matches(p: &[u8], s: &[u8]) -> bool {
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

/// What a bucket-name character is, as far as the name rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A letter or digit.
    Alnum,
    /// `.`
    Dot,
    /// `-` or `_`.
    Other,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Alnum, Kind::Dot, Kind::Other];

    fn of(b: u8) -> Kind {
        match b {
            b'.' => Kind::Dot,
            b'-' | b'_' => Kind::Other,
            _ => Kind::Alnum,
        }
    }

    fn index(kind: Option<Kind>) -> usize {
        match kind {
            None => 0,
            Some(Kind::Alnum) => 1,
            Some(Kind::Dot) => 2,
            Some(Kind::Other) => 3,
        }
    }
}

/// Whether a name under `names` may go on from `len` characters ending in `last` with a
/// character of kind `next`.
fn may_extend(names: BucketNames, last: Option<Kind>, next: Kind, len: usize) -> bool {
    if len + 1 > names.len_max() || (last.is_none() && next != Kind::Alnum) {
        return false;
    }
    match names {
        BucketNames::Strict => !(last == Some(Kind::Dot) && next == Kind::Dot),
        BucketNames::Legacy => true,
    }
}

/// Whether `len` characters ending in `last` make a whole name under `names` (the
/// IPv4 exclusion aside: see [`some_name_matches`]).
fn may_end(names: BucketNames, last: Option<Kind>, len: usize) -> bool {
    len >= 3
        && match names {
            BucketNames::Strict => last == Some(Kind::Alnum),
            BucketNames::Legacy => last.is_some(),
        }
}

/// Whether some valid name under `names` matches a pattern with wildcards: a search of
/// (pattern position, length, kind of the last character), in which a wildcard may stand
/// for any kind. The strict rules' IPv4 exclusion needs no state: when a wildcard pattern
/// matches a valid name, it matches one with a letter too (a `?` can be one, a `*` can
/// take one more, and a letter never breaks a rule), and no IPv4 address has a letter.
fn some_name_matches(pattern: &[u8], names: BucketNames) -> bool {
    // Runs of `*` mean one `*`; that bounds the search by the fixed characters.
    let mut p: Vec<u8> = Vec::with_capacity(pattern.len());
    for &b in pattern {
        if !(b == b'*' && p.last() == Some(&b'*')) {
            p.push(b);
        }
    }
    let lens = names.len_max() + 1;
    let id = |pi: usize, len: usize, last: Option<Kind>| (pi * lens + len) * 4 + Kind::index(last);
    let mut seen = vec![false; (p.len() + 1) * lens * 4];
    let mut stack = vec![(0usize, 0usize, None::<Kind>)];
    while let Some((pi, len, last)) = stack.pop() {
        let slot = id(pi, len, last);
        if seen[slot] {
            continue;
        }
        seen[slot] = true;
        let Some(&c) = p.get(pi) else {
            if may_end(names, last, len) {
                return true;
            }
            continue;
        };
        let kinds: &[Kind] = match c {
            b'*' => {
                stack.push((pi + 1, len, last));
                &Kind::ALL
            }
            b'?' => &Kind::ALL,
            c => &[Kind::of(c)][..],
        };
        let next_pi = if c == b'*' { pi } else { pi + 1 };
        for &kind in kinds {
            if may_extend(names, last, kind, len) {
                stack.push((next_pi, len + 1, Some(kind)));
            }
        }
    }
    false
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
    use crate::route::is_bucket_name;
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
        let strict = |p: &str| BucketGlob::new(p).map(|_| ());
        assert_eq!(strict(""), Err(GlobError::Empty));
        assert_eq!(strict("Rag-*"), Err(GlobError::UpperCase('R')));
        assert_eq!(strict("rag_*"), Err(GlobError::BadChar('_', "a-z 0-9 . -")));
        assert_eq!(strict("[ab]"), Err(GlobError::BadChar('[', "a-z 0-9 . -")));
        assert_eq!(
            strict("%62ench"),
            Err(GlobError::BadChar('%', "a-z 0-9 . -"))
        );
        assert_eq!(strict("bénch"), Err(GlobError::BadChar('é', "a-z 0-9 . -")));
        assert_eq!(strict(&"a".repeat(64)), Err(GlobError::TooLong(63)));
        assert!(strict(&format!("{}*", "a".repeat(63))).is_ok());
        // Shapes no bucket has.
        for never in [
            "ab",
            "a",
            "-abc",
            "abc-",
            "-*",
            "*-",
            ".*",
            "*.",
            "a..*",
            "*..*",
            "192.168.1.1",
            "a?",
            "?",
            "??",
            "-?",
            "*a..b*",
            "a.-",
            &format!("{}-*", "a".repeat(62)),
        ] {
            assert!(
                matches!(strict(never), Err(GlobError::NeverMatches(_))),
                "{never}: {:?}",
                strict(never)
            );
        }
        // Shapes some bucket has.
        for ok in [
            "*",
            "??*",
            "a*",
            "*a",
            "ab?",
            "?-?",
            "a.*",
            "*.b",
            "192.168.1.?",
            "1.2.3.*",
            "*-*",
            "?.?",
            &"*".repeat(1000),
        ] {
            assert!(strict(ok).is_ok(), "{ok}: {:?}", strict(ok));
        }
    }

    #[test]
    fn legacy_globs_are_case_sensitive() {
        let legacy = |p: &str| BucketGlob::for_names(p, BucketNames::Legacy);
        let g = legacy("Data_*").unwrap();
        assert!(g.matches("Data_2019"));
        assert!(!g.matches("data_2019"));
        assert!(legacy("_x*").is_err());
        assert!(legacy("ab").is_err());
        assert!(legacy("a~b").is_err());
        assert!(legacy(&"A".repeat(255)).is_ok());
        assert_eq!(legacy(&"A".repeat(256)), Err(GlobError::TooLong(255)));
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

    /// Every valid bucket name of `a 1 . -` up to 7 characters.
    fn short_buckets() -> &'static [String] {
        static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| {
            let mut out = Vec::new();
            let mut level = vec![String::new()];
            for _ in 0..7 {
                level = level
                    .iter()
                    .flat_map(|s| ['a', '1', '.', '-'].map(|c| format!("{s}{c}")))
                    .collect();
                out.extend(level.iter().filter(|n| is_bucket_name(n)).cloned());
            }
            out
        })
    }

    proptest! {
        #[test]
        fn agrees_with_naive_matcher(p in "[ab*?]{1,8}", s in "[ab]{0,10}") {
            prop_assert_eq!(glob_matches(p.as_bytes(), s.as_bytes()), naive(p.as_bytes(), s.as_bytes()));
        }

        /// A glob is accepted exactly when some valid bucket name matches it (checked by
        /// enumerating every short name for short patterns).
        #[test]
        fn accepted_exactly_when_some_bucket_matches(p in "[a1.*?-]{1,5}") {
            let exists = short_buckets()
                .iter()
                .any(|n| glob_matches(p.as_bytes(), n.as_bytes()));
            prop_assert_eq!(BucketGlob::new(&p).is_ok(), exists, "{}", p);
        }
    }
}
