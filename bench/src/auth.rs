//! Access keys on the wire, without secrets: the load generator stamps its requests with a
//! syntactically valid SigV4 `Authorization` header carrying an access key id and a dummy
//! signature (fixed date), and the simulator reads the key id of a request back to count
//! requests per tenant. Neither side signs or verifies anything: weir classifies tenants
//! by the key id alone (docs/limits.md), and the simulator accepts any `Authorization`.

/// The date of the dummy credential scope (`YYYYMMDD`).
pub const SCOPE_DATE: &str = "20260101";
/// `x-amz-date` sent with the dummy signature (the start of [`SCOPE_DATE`]).
pub const AMZ_DATE: &str = "20260101T000000Z";
/// Region of the dummy credential scope.
pub const REGION: &str = "us-east-1";
/// Headers the dummy signature claims to sign (sorted, lower case, as SigV4 lists them).
pub const SIGNED_HEADERS: &str = "host;x-amz-content-sha256;x-amz-date";
/// The dummy signature: 64 hex digits, as long as a real HMAC-SHA256 in hex.
pub const DUMMY_SIGNATURE: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The `Authorization` value of a SigV4 header-signed S3 request by `access_key`, with
/// the dummy signature.
pub fn sigv4_authorization(access_key: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{SCOPE_DATE}/{REGION}/s3/aws4_request, \
         SignedHeaders={SIGNED_HEADERS}, Signature={DUMMY_SIGNATURE}"
    )
}

/// The header lines (each ending in CRLF) that make a request look SigV4-signed by
/// `access_key`: `Authorization`, `x-amz-content-sha256: UNSIGNED-PAYLOAD` and
/// `x-amz-date`, the headers the signature claims to cover besides `Host`.
pub fn sigv4_header_lines(access_key: &str) -> String {
    format!(
        "Authorization: {}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: {AMZ_DATE}\r\n",
        sigv4_authorization(access_key)
    )
}

/// The access key id of a request, from its `Authorization` header (SigV4
/// `Credential=KEY/…` or SigV2 `AWS KEY:signature`) or, for presigned URLs, from its query
/// (`X-Amz-Credential=KEY%2F…` or `AWSAccessKeyId=KEY`). `None` when there is none.
pub fn access_key(authorization: Option<&str>, query: &str) -> Option<String> {
    if let Some(value) = authorization.map(str::trim) {
        if let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256") {
            let credential = rest
                .split(',')
                .map(str::trim)
                .find_map(|part| part.strip_prefix("Credential="))?;
            let key = credential.split('/').next().unwrap_or("");
            return (!key.is_empty()).then(|| key.to_string());
        }
        if let Some(rest) = value.strip_prefix("AWS ") {
            let key = rest.trim().split(':').next().unwrap_or("");
            return (!key.is_empty()).then(|| key.to_string());
        }
    }
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.eq_ignore_ascii_case("X-Amz-Credential") {
            let decoded = percent_decode(value)?;
            let key = decoded.split('/').next().unwrap_or("");
            return (!key.is_empty()).then(|| key.to_string());
        }
        if name == "AWSAccessKeyId" {
            let key = percent_decode(value)?;
            return (!key.is_empty()).then_some(key);
        }
    }
    None
}

/// `%XX` decoding of a path or query value (`+` left alone); `None` on a bad escape or
/// non-UTF-8. The simulator's request parsing and signature checks use it too.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sigv4_header_is_well_formed() {
        let value = sigv4_authorization("TRAINKEY0000EXAMPLE1");
        assert_eq!(
            value,
            "AWS4-HMAC-SHA256 Credential=TRAINKEY0000EXAMPLE1/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=0000000000000000000000000000000000000000000000000000000000000000"
        );
        // The parts a SigV4 parser looks for: algorithm, a five-part scope, signed
        // headers sorted, a 64-hex-digit signature.
        let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").unwrap();
        let parts: Vec<&str> = rest.split(", ").collect();
        assert_eq!(parts.len(), 3);
        let scope: Vec<&str> = parts[0]
            .strip_prefix("Credential=")
            .unwrap()
            .split('/')
            .collect();
        assert_eq!(scope.len(), 5);
        assert_eq!(scope[1].len(), 8);
        assert!(AMZ_DATE.starts_with(scope[1]));
        assert_eq!(scope[4], "aws4_request");
        let signed: Vec<&str> = parts[1]
            .strip_prefix("SignedHeaders=")
            .unwrap()
            .split(';')
            .collect();
        let mut sorted = signed.clone();
        sorted.sort_unstable();
        assert_eq!(signed, sorted);
        let signature = parts[2].strip_prefix("Signature=").unwrap();
        assert_eq!(signature.len(), 64);
        assert!(signature.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn header_lines_are_crlf_terminated_and_name_every_signed_header() {
        let lines = sigv4_header_lines("K");
        assert!(lines.ends_with("\r\n"));
        assert_eq!(lines.matches("\r\n").count(), 3);
        assert!(!lines.replace("\r\n", "").contains('\n'));
        for name in SIGNED_HEADERS.split(';').filter(|h| *h != "host") {
            assert!(lines.contains(&format!("\r\n{name}: ")), "{name}");
        }
    }

    #[test]
    fn access_keys_are_read_back() {
        let header = sigv4_authorization("FLOODKEY0000EXAMPLE1");
        assert_eq!(
            access_key(Some(&header), "").as_deref(),
            Some("FLOODKEY0000EXAMPLE1")
        );
        assert_eq!(
            access_key(Some("AWS AKIDV2:c2lnbmF0dXJl"), "").as_deref(),
            Some("AKIDV2")
        );
        assert_eq!(
            access_key(
                None,
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=PRESIGNED%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=00"
            )
            .as_deref(),
            Some("PRESIGNED")
        );
        assert_eq!(
            access_key(None, "AWSAccessKeyId=V2KEY&Expires=1&Signature=x").as_deref(),
            Some("V2KEY")
        );
        assert_eq!(access_key(None, ""), None);
        assert_eq!(access_key(Some("Bearer x"), "a=b"), None);
        assert_eq!(access_key(Some("AWS4-HMAC-SHA256 Credential=/x"), ""), None);
        assert_eq!(access_key(None, "X-Amz-Credential=%zz"), None);
    }
}
