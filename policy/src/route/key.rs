//! Key-prefix routing within a bucket (`[[route]] key_prefix`, docs/config.md,
//! "Per-route settings"): which object key a request is routed by, and the comparison
//! that cannot be escaped by spelling a key differently.
//!
//! A route must be a function of the key *as the node stores it*: were `checkpoints%2Fx`
//! routed apart from `checkpoints/x`, a client could write an object into one pool and
//! read it back from another (or place it where the operator did not want it). So the
//! key is compared in a canonical form that merges every spelling some node could read as
//! the same key:
//!
//! - percent-escapes are decoded (`%2F` is `/`);
//! - `+` is read as a space (a query's form encoding, and some nodes' paths);
//! - `\` is read as `/` (some nodes take it for a separator);
//! - runs of `/` count as one, and leading `/` go (nodes that collapse `//`);
//! - a segment's part from `;` on is left out (nodes that drop path parameters).
//!
//! Merging spellings never splits an object across pools: both its writes and its reads
//! take the same route, whichever spelling they use. Dot segments (`./`, `../`) never get
//! here: the request target is refused before routing (`s3_target`). Configured prefixes
//! are checked to be canonical already ([`KeyPrefix::new`]).

use std::fmt;

/// Longest `key_prefix` (S3's longest key is 1024 bytes).
const KEY_PREFIX_LEN_MAX: usize = 1024;

/// A validated `key_prefix`, in canonical form (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix {
    prefix: String,
}

/// Why a `key_prefix` was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPrefixError {
    /// Empty: a route without `key_prefix` takes the whole bucket.
    #[error("empty prefix (leave key_prefix out to take the whole bucket)")]
    Empty,
    /// Longer than any S3 key.
    #[error("longer than {0} bytes, the longest S3 key")]
    TooLong(usize),
    /// A byte requests are compared without (see the module docs), or a control byte.
    #[error("{0:?} cannot occur in a key prefix: {1}")]
    BadChar(char, &'static str),
    /// A leading `/` or an empty segment (`//`), which requests are compared without.
    #[error(
        "a leading \"/\" or an empty segment (\"//\"): keys are compared with those collapsed"
    )]
    EmptySegment,
    /// A `.` or `..` segment: requests with one are refused, so it could never match.
    #[error("a \".\" or \"..\" segment: requests with one are refused, so it never matches")]
    DotSegment,
}

impl KeyPrefix {
    /// Validates a configured prefix: non-empty, at most 1024 bytes, and canonical
    /// (written as a client's key is compared, so no `%`, `+`, `\`, `;`, control byte, leading
    /// `/`, `//` or dot segment).
    pub fn new(text: &str) -> Result<Self, KeyPrefixError> {
        if text.is_empty() {
            return Err(KeyPrefixError::Empty);
        }
        if text.len() > KEY_PREFIX_LEN_MAX {
            return Err(KeyPrefixError::TooLong(KEY_PREFIX_LEN_MAX));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(KeyPrefixError::BadChar(c, "a control character"));
        }
        for (c, why) in [
            ('%', "write the character itself, not its escape"),
            ('+', "clients' encodings read it as a space; write a space"),
            ('\\', "some nodes read it as \"/\"; write \"/\""),
            (';', "some nodes drop a segment's part from \";\" on"),
        ] {
            if text.contains(c) {
                return Err(KeyPrefixError::BadChar(c, why));
            }
        }
        if text.starts_with('/') || text.contains("//") {
            return Err(KeyPrefixError::EmptySegment);
        }
        // Only whole segments (followed by `/`): `a/.` may still match `a/.hidden`.
        let mut segments: Vec<&str> = text.split('/').collect();
        segments.pop();
        if segments.iter().any(|s| {
            matches!(
                s.trim_matches(|c: char| c.is_ascii_whitespace()),
                "." | ".."
            )
        }) {
            return Err(KeyPrefixError::DotSegment);
        }
        Ok(KeyPrefix {
            prefix: text.to_owned(),
        })
    }

    /// The prefix as written (already canonical).
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// Whether a canonical routing key ([`RoutingKey`]) starts with this prefix.
    pub fn contains(&self, key: &RoutingKey) -> bool {
        key.0.starts_with(self.prefix.as_bytes())
    }

    /// Whether every key under `other` is also under this prefix.
    pub fn covers(&self, other: &KeyPrefix) -> bool {
        other.prefix.starts_with(&self.prefix)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

/// A request's object key (or a listing's `prefix`) in canonical form (see the module
/// docs): what `key_prefix` routes compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingKey(Vec<u8>);

impl RoutingKey {
    /// The routing key of an object key as it appears in the path (percent-encoded);
    /// `None` for an empty key or a malformed escape (which `s3_target` refuses first).
    pub fn of_path_key(encoded: &str) -> Option<Self> {
        let decoded = crate::percent::decode(encoded.as_bytes())?;
        Some(Self::canonical(&decoded)).filter(|k| !k.0.is_empty())
    }

    /// The routing key of a bucket-level GET or HEAD: its `prefix` query parameter
    /// (ListObjects, ListObjectsV2, ListObjectVersions, ListMultipartUploads), decoded.
    /// `None` without one, with more than one (nodes differ on which counts), or when it
    /// is malformed: the request then takes the bucket's route without `key_prefix`.
    pub fn of_listing(method: &str, query: Option<&str>) -> Option<Self> {
        if !matches!(method, "GET" | "HEAD") {
            return None;
        }
        let mut values = query?.split('&').filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name == "prefix").then_some(value)
        });
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let decoded = crate::percent::decode(value.as_bytes())?;
        Some(Self::canonical(&decoded)).filter(|k| !k.0.is_empty())
    }

    /// The canonical form of a decoded key (see the module docs).
    fn canonical(decoded: &[u8]) -> Self {
        let mut out = Vec::with_capacity(decoded.len());
        let mut params = false;
        for &b in decoded {
            let b = match b {
                b'\\' => b'/',
                b'+' => b' ',
                b => b,
            };
            if b == b'/' {
                params = false;
                if out.last().is_none_or(|&l| l == b'/') {
                    continue;
                }
            } else if params || b == b';' {
                params = true;
                continue;
            }
            out.push(b);
        }
        RoutingKey(out)
    }

    /// The canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix(s: &str) -> KeyPrefix {
        KeyPrefix::new(s).unwrap()
    }

    fn key(s: &str) -> RoutingKey {
        RoutingKey::of_path_key(s).unwrap()
    }

    #[test]
    fn every_spelling_of_a_key_under_the_prefix_matches() {
        let p = prefix("checkpoints/");
        for spelled in [
            "checkpoints/a.bin",
            "checkpoints%2Fa.bin",
            "checkpoints%2fa.bin",
            "%63heckpoints/a.bin",
            "checkpoints//a.bin",
            "/checkpoints/a.bin",
            "//checkpoints%2F%2Fa.bin",
            "checkpoints\\a.bin",
            "checkpoints%5Ca.bin",
            "checkpoints;v=1/a.bin",
            "checkpoints%3Bx/a.bin",
        ] {
            assert!(p.contains(&key(spelled)), "{spelled} escaped the prefix");
        }
        for other in [
            "checkpoint/a",
            "checkpoints",
            "Checkpoints/a",
            "x/checkpoints/a",
        ] {
            assert!(!p.contains(&key(other)), "{other} taken by the prefix");
        }
    }

    #[test]
    fn a_space_and_a_plus_are_one_character() {
        let p = prefix("my data/");
        assert!(p.contains(&key("my%20data/x")));
        assert!(p.contains(&key("my+data/x")));
        assert!(p.contains(&key("my%2Bdata/x")));
        assert!(!p.contains(&key("mydata/x")));
    }

    #[test]
    fn a_listing_routes_by_its_prefix_parameter() {
        let p = prefix("checkpoints/");
        let list = |q: &str| RoutingKey::of_listing("GET", Some(q));
        assert!(p.contains(&list("list-type=2&prefix=checkpoints%2F2024").unwrap()));
        assert!(p.contains(&list("prefix=checkpoints/&delimiter=/").unwrap()));
        // Not within the prefix: the bucket's route without key_prefix.
        assert!(!p.contains(&list("prefix=check").unwrap()));
        assert_eq!(list("list-type=2"), None);
        assert_eq!(list("prefix="), None);
        assert_eq!(list("prefix=checkpoints/&prefix=x"), None, "ambiguous");
        assert_eq!(list("prefix=%zz"), None);
        assert_eq!(list("xprefix=checkpoints/"), None);
        assert_eq!(
            RoutingKey::of_listing("DELETE", Some("prefix=checkpoints/")),
            None
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let cases = [
            ("", KeyPrefixError::Empty),
            ("a%2F", KeyPrefixError::BadChar('%', "")),
            ("a+b/", KeyPrefixError::BadChar('+', "")),
            ("a\\b", KeyPrefixError::BadChar('\\', "")),
            ("a;b/", KeyPrefixError::BadChar(';', "")),
            ("a\tb", KeyPrefixError::BadChar('\t', "")),
            ("/a/", KeyPrefixError::EmptySegment),
            ("a//b", KeyPrefixError::EmptySegment),
            ("./a", KeyPrefixError::DotSegment),
            ("a/../b/", KeyPrefixError::DotSegment),
        ];
        for (text, want) in cases {
            let got = KeyPrefix::new(text).unwrap_err();
            let same = std::mem::discriminant(&got) == std::mem::discriminant(&want);
            assert!(same, "{text:?}: {got:?}, wanted {want:?}");
            if let (KeyPrefixError::BadChar(g, _), KeyPrefixError::BadChar(w, _)) = (&got, &want) {
                assert_eq!(g, w);
            }
        }
        assert_eq!(
            KeyPrefix::new(&"a".repeat(1025)),
            Err(KeyPrefixError::TooLong(1024))
        );
        assert!(KeyPrefix::new("a/.hidden").is_ok());
        assert!(KeyPrefix::new("datasets/ünïcode/").is_ok());
    }

    proptest! {
        /// Encoding any byte of a key never moves it across a prefix.
        #[test]
        fn encoding_never_changes_the_route(k in "[a-z/ .+_-]{1,24}", mask in any::<u32>()) {
            let p = prefix("ab/");
            let mut encoded = String::new();
            for (i, c) in k.chars().enumerate() {
                if mask >> (i % 32) & 1 == 1 {
                    encoded.push_str(&format!("%{:02X}", c as u32));
                } else {
                    encoded.push(c);
                }
            }
            let plain = RoutingKey::of_path_key(&k);
            let enc = RoutingKey::of_path_key(&encoded);
            prop_assert_eq!(
                plain.as_ref().is_some_and(|k| p.contains(k)),
                enc.as_ref().is_some_and(|k| p.contains(k))
            );
        }
    }
}
