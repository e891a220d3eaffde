//! Config errors that name the file, the line and the dotted key.
//!
//! Two kinds of failure reach the operator: the TOML parser's and serde's (syntax, unknown
//! keys, wrong types — these come with a byte span) and validation's (bounds, duplicates,
//! references — these come with a key path). Both are resolved against the span tree of
//! the document ([`toml::de::DeTable`]), so every message reads `file:line: key: message`.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A rejected configuration: where (file, line, dotted key) and why.
///
/// Displays as `origin:line: key: message`; the line is left out when the problem is the
/// absence of something (e.g. no `[[pool]]` at all), the key when the file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {}{message}", LinePart(*.line), KeyPart(.key))]
pub struct ConfigError {
    /// The file name (or other origin) the text came from, as given by the caller.
    pub origin: String,
    /// 1-based line of the offending key or value, when it exists in the text.
    pub line: Option<usize>,
    /// Dotted key in TOML spelling, e.g. `pool[1].nodes[0]`; empty if unknown.
    pub key: String,
    /// What is wrong, and where useful what would be accepted.
    pub message: String,
}

/// Renders `:line` or nothing.
struct LinePart(Option<usize>);

impl fmt::Display for LinePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// Renders `key: ` or nothing.
struct KeyPart<'a>(&'a str);

impl fmt::Display for KeyPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

// === impl KeyPath ===

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// `name` in `a.name`.
    Key(String),
    /// `3` in `a[3]`.
    Index(usize),
}

/// A dotted key such as `pool[1].nodes[0]`: built while validating, and by the appliance
/// to place what it finds wrong after validation (a file the config names, a node name
/// that does not resolve) with [`ConfigError::at`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a table key.
    pub fn key(&self, name: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(name.to_owned()));
        next
    }

    /// This path extended by an array index.
    pub fn index(&self, i: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(i));
        next
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// A problem found after validation, placed at `key` of the config `text` read from
    /// `origin`: the line is that of the deepest part of `key` written in the text (none
    /// when the text does not parse, which validated text always does).
    pub fn at(text: &str, origin: &str, key: &KeyPath, message: impl Into<String>) -> Self {
        let invalid = Invalid::new(key, message);
        match DeTable::parse(text) {
            Ok(root) => SpanIndex::new(text, origin, root.get_ref()).invalid(invalid),
            Err(_) => ConfigError {
                origin: origin.to_owned(),
                line: None,
                key: key.to_string(),
                message: invalid.message,
            },
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(name) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(name) {
                        f.write_str(name)?;
                    } else {
                        write!(f, "{name:?}")?;
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// Whether TOML would accept `name` unquoted, so the path reads as the operator wrote it.
fn is_bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A validation failure before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// The key at fault.
    pub(crate) path: KeyPath,
    /// Why.
    pub(crate) message: String,
}

impl Invalid {
    /// A failure at `path`.
    pub(crate) fn new(path: &KeyPath, message: impl Into<String>) -> Self {
        Self {
            path: path.clone(),
            message: message.into(),
        }
    }
}

// === impl SpanIndex ===

/// The parsed document's spans, used to turn byte offsets into key paths and key paths
/// into lines.
pub(crate) struct SpanIndex<'a> {
    text: &'a str,
    origin: &'a str,
    root: &'a DeTable<'a>,
}

impl<'a> SpanIndex<'a> {
    /// An index over `root`, which was parsed from `text`.
    pub(crate) fn new(text: &'a str, origin: &'a str, root: &'a DeTable<'a>) -> Self {
        Self { text, origin, root }
    }

    /// Places a parser or serde error: its span gives the line, and the innermost key or
    /// value containing the span gives the dotted key.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let (line, key) = match error.span() {
            Some(span) if error.message().starts_with("duplicate key") => (
                Some(line_of(self.text, span.start)),
                self.duplicate_key(span).to_string(),
            ),
            Some(span) => {
                let mut path = Vec::new();
                find_in_table(self.root, span.start, &mut path);
                (
                    Some(line_of(self.text, span.start)),
                    KeyPath(path).to_string(),
                )
            }
            None => (None, String::new()),
        };
        ConfigError {
            origin: self.origin.to_owned(),
            line,
            key,
            message: operator_wording(error.message().trim_end()),
        }
    }

    /// The full path of a key written twice, `span` being the second spelling. The parser
    /// stops there, so the key is not in the tree: its path is the table it was written
    /// in (the last header before it, or the inline table around it) plus the dotted name
    /// as written (`a.b = 1` in `[t]` is `t.a.b`). A header written twice (`[t]`) names
    /// its path from the root.
    fn duplicate_key(&self, span: Range<usize>) -> KeyPath {
        let text = self.text;
        let (start, end) = (span.start.min(text.len()), span.end.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let before = text.get(line_start..start).unwrap_or("");
        let written = text.get(start..end).unwrap_or("");
        let header = before.trim_start();
        if header.starts_with('[') {
            let dotted = format!("{}{written}", header.trim_start_matches('['));
            return dotted_key(&dotted)
                .or_else(|| dotted_key(written))
                .unwrap_or_else(|| KeyPath::root().key(written));
        }
        let mut path = innermost_table(self.text, self.root, start, &mut Vec::new())
            .map_or_else(KeyPath::root, |(_, p)| p);
        // The key expression starts after the line start, an inline table's `{` or `,`.
        let expr = before
            .rfind(['{', ','])
            .map_or(before, |i| &before[i + 1..]);
        let name = dotted_key(&format!("{expr}{written}"))
            .or_else(|| dotted_key(written))
            .unwrap_or_else(|| KeyPath::root().key(written));
        path.0.extend(name.0);
        path
    }

    /// Places a validation failure: the line of the deepest part of its key path that is
    /// present in the text (a defaulted key has no line of its own, its table may).
    pub(crate) fn invalid(&self, invalid: Invalid) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line: self
                .span_of(&invalid.path)
                .map(|s| line_of(self.text, s.start)),
            key: invalid.path.to_string(),
            message: invalid.message,
        }
    }

    /// The span of the deepest node along `path` that exists in the document.
    fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut found = None;
        let mut table = Some(self.root);
        let mut value: Option<&DeValue<'_>> = None;
        for segment in &path.0 {
            let next = match (segment, table, value) {
                (Segment::Key(name), Some(t), _) => t.get(name.as_str()),
                (Segment::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            found = Some(next.span());
            value = Some(next.get_ref());
            table = match next.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        found
    }
}

/// The path a dotted key as written (`a."b c".d`) spells, read by the TOML parser itself
/// so quoting and escapes are TOML's; `None` if `written` is not a key.
fn dotted_key(written: &str) -> Option<KeyPath> {
    let probe = format!("{} = 0", written.trim());
    let root = DeTable::parse(&probe).ok()?;
    let mut path = KeyPath::root();
    let mut table = root.get_ref();
    loop {
        let mut entries = table.iter();
        let (key, value) = entries.next()?;
        if entries.next().is_some() {
            return None;
        }
        path = path.key(key.get_ref());
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return Some(path),
        }
    }
}

/// The table in which a key at byte `pos` was written: the header table (`[t]`,
/// `[[t]]`) that starts last before `pos`, or an inline table (`{…}`) around `pos` that
/// starts later; with the byte it starts at. `None` for the root.
fn innermost_table(
    text: &str,
    table: &DeTable<'_>,
    pos: usize,
    path: &mut Vec<Segment>,
) -> Option<(usize, KeyPath)> {
    let mut best: Option<(usize, KeyPath)> = None;
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        let found = innermost_in_value(text, value.get_ref(), value.span(), pos, path);
        path.pop();
        best = later(best, found);
    }
    best
}

/// [`innermost_table`] for one value: a table is a candidate itself, and arrays and
/// tables are searched inside.
fn innermost_in_value(
    text: &str,
    value: &DeValue<'_>,
    span: Range<usize>,
    pos: usize,
    path: &mut Vec<Segment>,
) -> Option<(usize, KeyPath)> {
    match value {
        DeValue::Table(inner) => {
            let opener = text.as_bytes().get(span.start).copied();
            let here = match opener {
                Some(b'[') if span.start <= pos => Some((span.start, KeyPath(path.clone()))),
                Some(b'{') if span.contains(&pos) => Some((span.start, KeyPath(path.clone()))),
                _ => None,
            };
            later(here, innermost_table(text, inner, pos, path))
        }
        DeValue::Array(items) => {
            let mut best = None;
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                let found = innermost_in_value(text, item.get_ref(), item.span(), pos, path);
                path.pop();
                best = later(best, found);
            }
            best
        }
        _ => None,
    }
}

/// The candidate that starts later.
fn later(a: Option<(usize, KeyPath)>, b: Option<(usize, KeyPath)>) -> Option<(usize, KeyPath)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 >= a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Rewrites serde's Rust type names into TOML terms (`expected usize` means nothing to
/// an operator).
fn operator_wording(message: &str) -> String {
    message
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected a sequence", "expected an array")
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
}

/// Converts a byte offset into a 1-based line number.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |head| head.iter().filter(|b| **b == b'\n').count())
        + 1
}

/// Finds the key path of the innermost key or value containing `pos`. Children are
/// searched even outside their parent's span: a `[table]` header's span covers only the
/// header, not the keys below it.
fn find_in_table(table: &DeTable<'_>, pos: usize, path: &mut Vec<Segment>) -> bool {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        if key.span().contains(&pos) {
            return true;
        }
        if find_in_value(value.get_ref(), pos, path) || value.span().contains(&pos) {
            return true;
        }
        path.pop();
    }
    false
}

/// [`find_in_table`] for any value: descends into tables and arrays.
fn find_in_value(value: &DeValue<'_>, pos: usize, path: &mut Vec<Segment>) -> bool {
    match value {
        DeValue::Table(table) => find_in_table(table, pos, path),
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                path.push(Segment::Index(i));
                if find_in_value(item.get_ref(), pos, path) || item.span().contains(&pos) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_line_and_key() {
        let mut e = ConfigError {
            origin: "weir.toml".into(),
            line: Some(14),
            key: "pool[1].nodes[0]".into(),
            message: "\"10.0.0.1\" is not host:port".into(),
        };
        assert_eq!(
            e.to_string(),
            "weir.toml:14: pool[1].nodes[0]: \"10.0.0.1\" is not host:port"
        );
        e.line = None;
        e.key = String::new();
        assert_eq!(e.to_string(), "weir.toml: \"10.0.0.1\" is not host:port");
    }

    #[test]
    fn key_path_spelling() {
        let p = KeyPath::root().key("pool").index(1).key("nodes").index(0);
        assert_eq!(p.to_string(), "pool[1].nodes[0]");
        assert_eq!(KeyPath::root().key("a b").key("c").to_string(), "\"a b\".c");
    }

    /// A key written twice names the whole path, wherever it was written twice.
    #[test]
    fn duplicate_keys_name_their_path() {
        let cases = [
            (
                "[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\nname = \"b\"\n",
                4,
                "pool[0].name",
            ),
            (
                "[[pool]]\nname = \"a\"\n[[pool]]\nname = \"b\"\nname = \"c\"\n",
                5,
                "pool[1].name",
            ),
            (
                "[appliance]\ncores = 1\n[http]\nx = 1\n[appliance]\ny = 2\n",
                5,
                "appliance",
            ),
            ("[appliance]\ncores = 1\ncores = 2\n", 3, "appliance.cores"),
            ("a.b = 1\nc = 2\na.b = 3\n", 3, "a.b"),
            ("[t]\nx = {y = 1, y = 2}\n", 2, "t.x.y"),
            ("[t]\nx = [{y = 1}, {z = 1, z = 2}]\n", 2, "t.x[1].z"),
            ("[t]\n\"q k\" = 1\n'q k' = 2\n", 3, "t.\"q k\""),
            ("[t.u]\na = 1\n[t]\nb = 1\n[t.u]\n", 5, "t.u"),
            ("[t]\n[t.u]\na = 1\n[t.v]\na = 1\na = 2\n", 6, "t.v.a"),
            ("x = 1\nx = 2\n", 2, "x"),
        ];
        for (text, line, key) in cases {
            let error = DeTable::parse(text).expect_err(text);
            let (partial, _) = DeTable::parse_recoverable(text);
            let placed = SpanIndex::new(text, "t.toml", partial.get_ref()).toml_error(&error);
            assert_eq!(
                (placed.line, placed.key.as_str()),
                (Some(line), key),
                "{text:?}: {placed}"
            );
            assert_eq!(placed.message, "duplicate key", "{text:?}");
        }
    }

    #[test]
    fn errors_found_after_validation_are_placed_at_their_key() {
        let text = "[[pool]]\nname = \"a\"\nnodes = [\"h:1\", \"h:2\"]\n\n[pool.credentials]\naccess_key = \"K\"\nsecret_file = \"s\"\n";
        let at = |key: &KeyPath| ConfigError::at(text, "w.toml", key, "why").to_string();
        let pool = KeyPath::root().key("pool").index(0);
        assert_eq!(
            at(&pool.key("credentials").key("secret_file")),
            "w.toml:7: pool[0].credentials.secret_file: why"
        );
        assert_eq!(
            at(&pool.key("nodes").index(1)),
            "w.toml:3: pool[0].nodes[1]: why"
        );
        // A key left to its default is placed at its table.
        assert_eq!(
            at(&pool.key("tls").key("ca")),
            "w.toml:1: pool[0].tls.ca: why"
        );
        assert_eq!(
            ConfigError::at("[[", "w.toml", &pool, "why").to_string(),
            "w.toml: pool[0]: why"
        );
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
