//! A reference reading of `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1), written
//! to be obviously correct rather than fast, for the `chunked` target to compare
//! `weir_io::http::ChunkedDecoder` against.
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG                     ; weir: at most 16 digits
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! field-line     = field-name ":" OWS field-value OWS
//! ```
//!
//! What weir adds to the grammar, and so does this reading: a line ends at CRLF only, and
//! a bare LF or a CR followed by anything but LF is an error as soon as it is seen (even
//! in a line that is not complete yet); a line is judged once its CRLF is there, not
//! before; the total payload must fit in 64 bits; a trailer may not be a hop-by-hop
//! field, `Host`, or a framing field (also spelled with `_`), and may not be folded.
//!
//! Limits are not applied here: the reading reports what they would be measured against
//! ([`Measure`]), and the target predicts from that what a decoder with limits must do.

use crate::{is_tchar, is_token, is_value_byte, HOP_BY_HOP};

/// One framing item as the decoder reports it, at an absolute offset in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Where the framing of this item starts (the CRLF ending the previous chunk's data).
    pub start: usize,
    /// Framing bytes the item covers from `start`.
    pub consumed: usize,
    /// The payload bytes that follow (`Some(n)`, n > 0), or `None` for the last chunk,
    /// trailer section and final CRLF.
    pub data: Option<u64>,
}

/// How reading a body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body is complete; its framing ends at this offset.
    Done(usize),
    /// The body breaks the grammar.
    Reject,
    /// The input ends before the body does, and nothing seen so far is wrong.
    Incomplete,
}

/// What the decoder's limits are measured against, over the part of the body read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measure {
    /// Longest chunk-size line, extensions included, CRLF excluded.
    pub size_line_max: usize,
    /// The trailer section: every trailer line with its CRLF, and the final CRLF.
    pub trailer_bytes: usize,
    /// Trailer field lines.
    pub trailers: usize,
    /// Total payload announced.
    pub payload: u128,
}

/// The whole reading of one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Every item, in order.
    pub steps: Vec<Step>,
    /// How it ended.
    pub outcome: Outcome,
    /// The sizes limits apply to.
    pub measure: Measure,
}

/// What is at `body[from..]` as far as lines go.
enum Line {
    /// A complete line ending (CRLF excluded) at this offset.
    Ends(usize),
    /// No line end yet, and nothing wrong so far.
    Open,
    /// A bare LF, or a CR followed by something else.
    Broken,
}

fn line_at(body: &[u8], from: usize) -> Line {
    for (i, &b) in body.iter().enumerate().skip(from) {
        match b {
            b'\n' => return Line::Broken,
            b'\r' => {
                return match body.get(i + 1) {
                    None => Line::Open,
                    Some(b'\n') => Line::Ends(i),
                    Some(_) => Line::Broken,
                }
            }
            _ => {}
        }
    }
    Line::Open
}

/// Reads `body` from its first byte to the end of the chunked framing.
pub fn read(body: &[u8]) -> Reading {
    let mut reading = Reading {
        steps: Vec::new(),
        outcome: Outcome::Incomplete,
        measure: Measure::default(),
    };
    reading.outcome = read_into(body, &mut reading.steps, &mut reading.measure);
    reading
}

fn read_into(body: &[u8], steps: &mut Vec<Step>, measure: &mut Measure) -> Outcome {
    let mut pos = 0usize;
    loop {
        let start = pos;
        if !steps.is_empty() {
            // The CRLF that ends the previous chunk's data.
            match &body[pos..] {
                [b'\r', b'\n', ..] => pos += 2,
                [] | [b'\r'] => return Outcome::Incomplete,
                _ => return Outcome::Reject,
            }
        }
        let end = match line_at(body, pos) {
            Line::Ends(end) => end,
            Line::Open => return Outcome::Incomplete,
            Line::Broken => return Outcome::Reject,
        };
        let line = &body[pos..end];
        measure.size_line_max = measure.size_line_max.max(line.len());
        let Some(size) = size_line(line) else {
            return Outcome::Reject;
        };
        pos = end + 2;
        if size > 0 {
            measure.payload += u128::from(size);
            if measure.payload > u128::from(u64::MAX) {
                return Outcome::Reject;
            }
            steps.push(Step {
                start,
                consumed: pos - start,
                data: Some(size),
            });
            let after = pos as u128 + u128::from(size);
            if after > body.len() as u128 {
                return Outcome::Incomplete;
            }
            pos = after as usize;
            continue;
        }
        let trailer_start = pos;
        loop {
            let end = match line_at(body, pos) {
                Line::Ends(end) => end,
                Line::Open => return Outcome::Incomplete,
                Line::Broken => return Outcome::Reject,
            };
            let line = &body[pos..end];
            pos = end + 2;
            if line.is_empty() {
                break;
            }
            measure.trailers += 1;
            if !trailer_line(line) {
                return Outcome::Reject;
            }
        }
        measure.trailer_bytes = pos - trailer_start;
        steps.push(Step {
            start,
            consumed: pos - start,
            data: None,
        });
        return Outcome::Done(pos);
    }
}

/// `chunk-size [ chunk-ext ]`: the size, if the line is well formed.
pub fn size_line(line: &[u8]) -> Option<u64> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if !(1..=16).contains(&digits) {
        return None;
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
    extensions(&line[digits..]).then_some(size)
}

/// Where the extension automaton stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// Right after the size, or after a whole extension: end, BWS or `;`.
    Between,
    /// In BWS before a `;`.
    SpaceBeforeSemi,
    /// After `;` (and maybe BWS): BWS or the name.
    AfterSemi,
    /// In a name: more name, BWS, `=`, `;` or end.
    Name,
    /// In BWS after a name: more BWS, `=` or `;`.
    SpaceAfterName,
    /// After `=` (and maybe BWS): BWS, a token or a quote.
    AfterEquals,
    /// In a token value: more value, BWS, `;` or end.
    Value,
    /// Inside a quoted string.
    Quoted,
    /// After a backslash inside a quoted string.
    Escaped,
}

/// `chunk-ext` as a finite automaton over bytes: a different way to read the same
/// grammar than weir's scanner, so the two cannot share a slip.
pub fn extensions(s: &[u8]) -> bool {
    use Ext::*;
    let ows = |b: u8| b == b' ' || b == b'\t';
    let qdtext = |b: u8| matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff);
    let escapable = |b: u8| matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff);
    let mut state = Between;
    for &b in s {
        state = match (state, b) {
            (Between | SpaceBeforeSemi | Value, b) if ows(b) => SpaceBeforeSemi,
            (Between | SpaceBeforeSemi | Name | SpaceAfterName | Value, b';') => AfterSemi,
            (AfterSemi, b) if ows(b) => AfterSemi,
            (AfterSemi | Name, b) if is_tchar(b) => Name,
            (Name | SpaceAfterName, b) if ows(b) => SpaceAfterName,
            (Name | SpaceAfterName, b'=') => AfterEquals,
            (AfterEquals, b) if ows(b) => AfterEquals,
            (AfterEquals, b'"') => Quoted,
            (AfterEquals | Value, b) if is_tchar(b) => Value,
            (Quoted, b'"') => Between,
            (Quoted, b'\\') => Escaped,
            (Quoted, b) if qdtext(b) => Quoted,
            (Escaped, b) if escapable(b) => Quoted,
            _ => return false,
        };
    }
    matches!(state, Between | Name | Value)
}

/// `field-name ":" OWS field-value OWS`, not folded, and a field allowed in trailers.
pub fn trailer_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) || !value.iter().copied().all(is_value_byte) {
        return false;
    }
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    let forbidden = ["host", "content-length", "transfer-encoding"];
    if HOP_BY_HOP.contains(&lower.as_str()) || forbidden.contains(&lower.as_str()) {
        return false;
    }
    // Some servers read `_` as `-`: a disguised framing field.
    let dashed = lower.replace('_', "-");
    !(dashed == "content-length" || dashed == "transfer-encoding")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(body: &[u8]) -> Outcome {
        read(body).outcome
    }

    #[test]
    fn bodies() {
        let r = read(b"5\r\nhello\r\n6;a=\"b\"\r\n world\r\n0\r\nX: y\r\n\r\nGET");
        assert_eq!(r.outcome, Outcome::Done(38));
        assert_eq!(
            r.steps,
            [
                Step {
                    start: 0,
                    consumed: 3,
                    data: Some(5)
                },
                Step {
                    start: 8,
                    consumed: 11,
                    data: Some(6)
                },
                Step {
                    start: 25,
                    consumed: 13,
                    data: None
                },
            ]
        );
        assert_eq!(
            r.measure,
            Measure {
                size_line_max: 7,
                trailer_bytes: 8,
                trailers: 1,
                payload: 11
            }
        );
        assert_eq!(outcome(b"0\r\n\r\n"), Outcome::Done(5));
        assert_eq!(outcome(b"000;x\r\n\r\n"), Outcome::Done(9));
    }

    #[test]
    fn incomplete_and_broken() {
        for body in [
            &b""[..],
            b"5",
            b"5\r",
            b"zz",
            b"5\r\nhel",
            b"5\r\nhello\r",
            b"0\r\nX: y\r\n",
        ] {
            assert_eq!(outcome(body), Outcome::Incomplete, "{body:?}");
        }
        for body in [
            &b"5\nhello"[..],
            b"5\rx",
            b"zz\r\n",
            b"5\r\nhelloX",
            b"0\r\nX: y\n",
            b"0\r\n X: y\r\n\r\n",
            b"0\r\nHost: h\r\n\r\n",
            b"0\r\nTransfer_Encoding: x\r\n\r\n",
            b"0\r\nProxy-Authorization: x\r\n\r\n",
            b"0\r\nX : y\r\n\r\n",
            b"0\r\nX: a\x7f\r\n\r\n",
            b"00000000000000000\r\n\r\n",
        ] {
            assert_eq!(outcome(body), Outcome::Reject, "{body:?}");
        }
    }

    #[test]
    fn extension_grammar() {
        for ok in [
            "",
            ";a",
            ";a=b",
            " ;a=b",
            "\t; a = b",
            ";a=\"x y\\\"z\"",
            ";a=b;c;d=\"\"",
            ";a ;b",
            ";a=\"\\\u{80}\"",
        ] {
            assert!(extensions(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            " ",
            ";",
            "; ",
            ";a ",
            ";a=",
            ";a b",
            ";a=\"x",
            ";a=\"\x01\"",
            " a",
            ";=x",
            ";a=b c",
            ";a;",
            ",a",
            ";a=\"x\"y",
            ";a=\"\\\x7f\"",
        ] {
            assert!(!extensions(bad.as_bytes()), "{bad:?}");
        }
    }
}
