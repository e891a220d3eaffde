//! The lines of an `aws-chunked` body (streaming uploads): chunk headers
//! (`hex-size;chunk-signature=<sig>`) and trailer lines (`name:value`,
//! `x-amz-trailer-signature:<sig>`).
//!
//! The input is a body; each CRLF- or LF-terminated line goes through both parsers, as a
//! relay that lost track of the framing might feed them. Checked:
//! - [`ChunkHeader::parse`] never panics, is bounded (at most 16 hex digits, then nothing
//!   or exactly `;chunk-signature=` and 64 hex digits) and what it accepts round-trips
//!   through [`ChunkHeader::write`];
//! - [`TrailerLine::parse`] never panics; a header it accepts has a token name that is a
//!   prefix of the line, a value without surrounding whitespace or control bytes (but
//!   tab); a trailer signature round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_policy::sigv4::{ChunkHeader, TrailerLine};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        chunk_header(line);
        trailer_line(line);
    }
});

fn chunk_header(line: &[u8]) {
    let Ok(header) = ChunkHeader::parse(line) else {
        return;
    };
    // 16 digits, `;chunk-signature=` (17 bytes), 64 hex digits.
    assert!(line.len() <= 16 + 17 + 64);
    assert_eq!(header.signature.is_some(), line.contains(&b';'));
    let mut out = Vec::new();
    header.write(&mut out);
    let written = out
        .strip_suffix(b"\r\n")
        .expect("write ends the line with CRLF");
    assert_eq!(ChunkHeader::parse(written), Ok(header));
}

fn trailer_line(line: &[u8]) {
    match TrailerLine::parse(line) {
        Ok(TrailerLine::Header { name, value }) => {
            assert!(!name.is_empty() && line.starts_with(name) && line[name.len()] == b':');
            assert!(!name.eq_ignore_ascii_case(b"x-amz-trailer-signature"));
            assert_eq!(value, value.trim_ascii());
            assert!(value.iter().all(|&c| c == b'\t' || !c.is_ascii_control()));
        }
        Ok(TrailerLine::Signature(signature)) => {
            let again = format!("x-amz-trailer-signature:{signature}");
            assert_eq!(
                TrailerLine::parse(again.as_bytes()),
                Ok(TrailerLine::Signature(signature))
            );
        }
        Err(_) => {}
    }
}
