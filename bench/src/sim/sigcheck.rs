//! Optional SigV4 checking in the simulator, so a bench can show that what a proxy signs
//! (or passes on) is a valid signature, with code that shares nothing with the proxy's.
//!
//! A node checks only requests signed by an access key it holds a secret for
//! (`weir-sim --check-sigv4 KEY=SECRET`, `SimOptions::sigv4_secrets`, or at run time
//! `POST /_sim/sigv4?access_key=KEY&secret=SECRET`, `POST /_sim/sigv4?clear`); with none
//! (the default) it accepts any `Authorization`, as before. For such a request it checks
//! the header signature (canonical request from the method, path, query, the signed
//! headers and `x-amz-content-sha256`) and, for a streaming-signed upload
//! (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), every chunk signature as the bytes arrive.
//! Hashing every body byte of a streaming upload costs the node a SHA-256 per byte, so
//! turn it on for correctness passes, not for timed load.
//!
//! Not checked: the request time against the clock, presigned URLs, the `-TRAILER`
//! variants' chunks and trailers (their head is checked), the region.

use std::collections::HashMap;

use crate::auth::percent_decode;
use crate::sigv4::{self, ChunkChain, Sha256};

/// The outcome of checking a request head.
pub enum HeadCheck {
    /// Not signed (in the header) by a key the node holds a secret for.
    NotChecked,
    /// The signature holds; for a streaming-signed upload, the checker of its chunks.
    Valid(Option<ChunkCheck>),
    /// Why it does not.
    Invalid(String),
}

/// Checks the header signature of a request (`path` and `query` as received, `headers`
/// as received) against `secrets` (access key → secret).
pub fn check_head(
    secrets: &HashMap<String, String>,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
) -> HeadCheck {
    let header = |name: &str| -> Option<&str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let Some(rest) =
        header("authorization").and_then(|a| a.trim().strip_prefix("AWS4-HMAC-SHA256"))
    else {
        return HeadCheck::NotChecked;
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let Some(credential) = credential else {
        return HeadCheck::NotChecked;
    };
    let Some((access_key, scope)) = credential.split_once('/') else {
        return HeadCheck::NotChecked;
    };
    let Some(secret) = secrets.get(access_key) else {
        return HeadCheck::NotChecked;
    };
    let invalid = |why: &str| HeadCheck::Invalid(why.to_string());
    let scope_parts: Vec<&str> = scope.split('/').collect();
    let [date, region, service, "aws4_request"] = scope_parts[..] else {
        return invalid("malformed credential scope");
    };
    let (Some(signed), Some(signature)) = (signed, signature) else {
        return invalid("no SignedHeaders or Signature");
    };
    let Some(amz_date) = header("x-amz-date") else {
        return invalid("no x-amz-date");
    };
    if !amz_date.starts_with(date) || amz_date.len() != 16 {
        return invalid("x-amz-date is not of the credential's date");
    }
    let Some(payload) = header("x-amz-content-sha256") else {
        return invalid("no x-amz-content-sha256");
    };
    let mut values = Vec::new();
    for name in signed.split(';') {
        let joined: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if joined.is_empty() {
            return HeadCheck::Invalid(format!("signed header {name} is missing"));
        }
        values.push((name, joined.join(",")));
    }
    let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let Some(decoded_path) = percent_decode(path) else {
        return invalid("bad escape in the path");
    };
    let Some(query) = canonical_query(query) else {
        return invalid("bad escape in the query");
    };
    let request = sigv4::canonical_request(
        method,
        &sigv4::uri_encode_path(&decoded_path),
        &query,
        &pairs,
        signed,
        payload,
    );
    let key = sigv4::signing_key(secret, date, region, service);
    let expected = sigv4::request_signature(&key, amz_date, scope, &request);
    if expected != signature {
        return HeadCheck::Invalid(format!(
            "the signature of {access_key} does not match (SignedHeaders={signed})"
        ));
    }
    let chunks = (payload == sigv4::STREAMING_PAYLOAD)
        .then(|| ChunkCheck::new(ChunkChain::new(key, amz_date, scope, signature)));
    HeadCheck::Valid(chunks)
}

/// Checks the chunk signatures of one streaming-signed upload: feed it every size line
/// and every data byte in order, then [`ChunkCheck::finish`].
pub struct ChunkCheck {
    chain: ChunkChain,
    /// The signature the current chunk claims.
    pending: Option<String>,
    hasher: Sha256,
    checked: u64,
}

impl ChunkCheck {
    fn new(chain: ChunkChain) -> Self {
        Self {
            chain,
            pending: None,
            hasher: Sha256::new(),
            checked: 0,
        }
    }

    /// A chunk's size line (no CRLF): closes the previous chunk, opens this one.
    pub fn size_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.close_pending()?;
        let text = std::str::from_utf8(line).map_err(|_| "a chunk size line is not UTF-8")?;
        let signature = text
            .split_once(';')
            .and_then(|(_, ext)| ext.strip_prefix("chunk-signature="))
            .ok_or_else(|| format!("chunk {} has no chunk-signature", self.checked + 1))?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "chunk {} has a malformed signature",
                self.checked + 1
            ));
        }
        self.pending = Some(signature.to_string());
        Ok(())
    }

    /// Data of the current chunk.
    pub fn data(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    fn close_pending(&mut self) -> Result<(), String> {
        let Some(claimed) = self.pending.take() else {
            return Ok(());
        };
        let hash = std::mem::take(&mut self.hasher).finish();
        if self.chain.next(&hash) != claimed {
            return Err(format!(
                "the signature of chunk {} does not match",
                self.checked + 1
            ));
        }
        self.checked += 1;
        Ok(())
    }

    /// After the last (empty) chunk: checks it; the number of chunk signatures checked.
    pub fn finish(mut self) -> Result<u64, String> {
        self.close_pending()?;
        Ok(self.checked)
    }
}

/// The canonical query: `name=value` pairs, each part decoded and encoded again (every
/// byte but `A-Z a-z 0-9 - _ . ~` as `%XX`), sorted; `None` on a bad escape.
fn canonical_query(query: &str) -> Option<String> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((
            encode_strict(&percent_decode(name)?),
            encode_strict(&percent_decode(value)?),
        ));
    }
    pairs.sort();
    let parts: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    Some(parts.join("&"))
}

fn encode_strict(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ChunkEvent, ChunkedDecoder};
    use crate::sigv4::{Credentials, Signer};
    use std::time::{Duration, UNIX_EPOCH};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn secrets() -> HashMap<String, String> {
        HashMap::from([("AKIAIOSFODNN7EXAMPLE".to_string(), SECRET.to_string())])
    }

    fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_aws_get_object_example_checks() {
        // AWS's "GET Object" example, as a node would receive it.
        let empty = sigv4::EMPTY_SHA256_HEX;
        let mut headers = owned(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", empty),
            ("x-amz-date", "20130524T000000Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ]);
        assert!(matches!(
            check_head(&secrets(), "GET", "/test.txt", "", &headers),
            HeadCheck::Valid(None)
        ));
        // Another key: not this node's business.
        assert!(matches!(
            check_head(&HashMap::new(), "GET", "/test.txt", "", &headers),
            HeadCheck::NotChecked
        ));
        // A changed signed header, path or method breaks it.
        headers[1].1 = "bytes=0-10".into();
        assert!(matches!(
            check_head(&secrets(), "GET", "/test.txt", "", &headers),
            HeadCheck::Invalid(_)
        ));
        headers[1].1 = "bytes=0-9".into();
        assert!(matches!(
            check_head(&secrets(), "GET", "/test.txt2", "", &headers),
            HeadCheck::Invalid(_)
        ));
        assert!(matches!(
            check_head(&secrets(), "HEAD", "/test.txt", "", &headers),
            HeadCheck::Invalid(_)
        ));
        // A signed header that did not arrive.
        headers.remove(1);
        match check_head(&secrets(), "GET", "/test.txt", "", &headers) {
            HeadCheck::Invalid(why) => assert!(why.contains("range"), "{why}"),
            _ => panic!("a missing signed header must not check"),
        }
    }

    #[test]
    fn queries_are_canonical() {
        assert_eq!(canonical_query("").unwrap(), "");
        assert_eq!(
            canonical_query("prefix=a%2Fb&list-type=2&acl").unwrap(),
            "acl=&list-type=2&prefix=a%2Fb"
        );
        assert_eq!(canonical_query("k=a b").unwrap(), "k=a%20b");
        assert!(canonical_query("k=%zz").is_none());
    }

    /// A streaming upload as the bench's signer makes it, fed to the checker through the
    /// simulator's decoder; `tamper` spoils chunk `tamper` (1-based) when set.
    fn streaming(tamper: Option<usize>) -> Result<u64, String> {
        let mut signer = Signer::new(Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: SECRET.into(),
            region: "us-east-1".into(),
        });
        let at = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let data = vec![b'a'; 66_560];
        let (lines, mut chain) =
            signer.streaming_header_lines("PUT", "/b/k", "node:1", 66_560, 65_536, at);
        let mut headers = vec![("Host".to_string(), "node:1".to_string())];
        headers.extend(
            lines
                .split("\r\n")
                .filter_map(|l| l.split_once(": "))
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        let HeadCheck::Valid(Some(mut check)) = check_head(&secrets(), "PUT", "/b/k", "", &headers)
        else {
            return Err("the head did not check".into());
        };
        let mut body = Vec::new();
        for (i, piece) in data.chunks(65_536).chain([&[][..]]).enumerate() {
            let mut signature = chain.next(&sigv4::sha256(piece)).to_string();
            if tamper == Some(i + 1) {
                signature.replace_range(..1, if signature.starts_with('0') { "1" } else { "0" });
            }
            body.extend_from_slice(sigv4::chunk_header(piece.len() as u64, &signature).as_bytes());
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        let mut decoder = ChunkedDecoder::new();
        let mut failure = None;
        for piece in body.chunks(1000) {
            decoder
                .feed_events(piece, &mut |event| {
                    match event {
                        ChunkEvent::SizeLine(line) => {
                            if let Err(why) = check.size_line(line) {
                                failure.get_or_insert(why);
                            }
                        }
                        ChunkEvent::Data(data) => check.data(data),
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
        }
        assert!(decoder.is_done());
        match failure {
            Some(why) => Err(why),
            None => check.finish(),
        }
    }

    #[test]
    fn every_chunk_signature_is_checked() {
        assert_eq!(streaming(None), Ok(3));
        for chunk in 1..=3 {
            let why = streaming(Some(chunk)).unwrap_err();
            assert!(why.contains(&format!("chunk {chunk}")), "{why}");
        }
    }
}
