//! Mid-body GET resume (docs/design.md, "Failure is a normal state"): when a node dies
//! after the client got N body bytes, weir fetches the rest from another node and keeps
//! writing into the same client response, so the client sees one clean response.
//!
//! Driven by the appliance when a GET's upstream fails mid-body:
//! 1. [`plan_resume`] from the first response's status, `Content-Range`, length and the
//!    bytes already delivered. If `Range` is signed (in SigV4 `SignedHeaders`,
//!    [`signed_headers`]), the request cannot be changed: resend it as is and discard
//!    the first N body bytes ([`ResumePlan::ResendSkip`]). Otherwise ask for the rest
//!    ([`ResumePlan::Rewrite`]). Either way add `If-Match: <ETag>` when allowed
//!    ([`may_add_if_match`]).
//! 2. [`check_resumed`] on the new response head: same strong ETag, the expected status
//!    and `Content-Range`. weir checks these itself because some servers (s3s-fs) ignore
//!    `If-Match`. Any mismatch closes the client connection: never a short or spliced
//!    body dressed as complete.
//!
//! Only length-delimited responses with a strong ETag are resumable; the caller bounds
//! resumes per request (`upstream.resume_max`).

/// What to send to another node to finish a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumePlan {
    /// Send the request with `Range` set to `range` (replacing the client's, if any).
    Rewrite {
        /// The `Range` value, `bytes=a-b`.
        range: String,
    },
    /// `Range` is signed: resend the identical request and discard the first `skip`
    /// body bytes of the answer (costs the node those bytes again).
    ResendSkip {
        /// Body bytes to discard.
        skip: u64,
    },
    /// Resuming is not possible; the reason is for logs.
    Impossible(&'static str),
}

/// Plans the resume of a GET whose first response (`first_status`, its
/// `first_content_range` and its body length `first_length`) broke after `delivered`
/// body bytes reached the client. `client_range` is the client's `Range` header, and
/// `signed_headers` the lowercase SigV4 signed header names (empty when unsigned).
pub fn plan_resume<S: AsRef<str>>(
    client_range: Option<&str>,
    signed_headers: &[S],
    first_status: u16,
    first_content_range: Option<&str>,
    first_length: u64,
    delivered: u64,
) -> ResumePlan {
    if client_range.is_some_and(|r| r.contains(',')) {
        return ResumePlan::Impossible("multi-range request");
    }
    let (start, end) = match first_window(first_status, first_content_range, first_length) {
        Ok(window) => window,
        Err(why) => return ResumePlan::Impossible(why),
    };
    if delivered >= first_length {
        return ResumePlan::Impossible("nothing left to resume");
    }
    if is_signed(signed_headers, "range") {
        return ResumePlan::ResendSkip { skip: delivered };
    }
    // start + delivered <= end because delivered < first_length = end - start + 1.
    ResumePlan::Rewrite {
        range: format!("bytes={}-{end}", start + delivered),
    }
}

/// Checks a resumed response head against the plan: `status` and `content_range` must
/// be those expected for `expected_start..=expected_end` (object byte offsets, from
/// [`ResumePlan::expected_window`]), and the ETag must be the first response's.
pub fn check_resumed(
    plan: &ResumePlan,
    etag_first: &str,
    etag_now: Option<&str>,
    status: u16,
    content_range: Option<&str>,
    expected_start: u64,
    expected_end: u64,
) -> Result<(), &'static str> {
    if matches!(plan, ResumePlan::Impossible(_)) {
        return Err("no resume was planned");
    }
    let etag_first = etag_first.trim();
    if etag_first.is_empty() || etag_first.starts_with("W/") {
        return Err("first response had no strong ETag");
    }
    if status == 412 {
        return Err("object changed (412 Precondition Failed)");
    }
    match etag_now.map(str::trim) {
        None | Some("") => return Err("resumed response has no ETag"),
        Some(now) if now != etag_first => return Err("object changed (ETag differs)"),
        Some(_) => {}
    }
    let window_matches = || {
        content_range
            .and_then(parse_content_range)
            .is_some_and(|(s, e, _)| s == expected_start && e == expected_end)
    };
    match (plan, status) {
        (ResumePlan::Rewrite { .. } | ResumePlan::ResendSkip { .. }, 206) => {
            if window_matches() {
                Ok(())
            } else {
                Err("Content-Range differs from the range asked for")
            }
        }
        (ResumePlan::Rewrite { .. }, 200) => Err("node ignored Range (200 instead of 206)"),
        // The whole object again; its length is pinned by the (equal) ETag.
        (ResumePlan::ResendSkip { .. }, 200) => {
            if content_range.is_none() && expected_start == 0 {
                Ok(())
            } else {
                Err("200 where a partial response was expected")
            }
        }
        _ => Err("unexpected status for a resumed GET"),
    }
}

impl ResumePlan {
    /// The object byte window (`start..=end`) the resumed response must carry, given the
    /// first response; `None` for [`ResumePlan::Impossible`].
    pub fn expected_window(
        &self,
        first_status: u16,
        first_content_range: Option<&str>,
        first_length: u64,
    ) -> Option<(u64, u64)> {
        match self {
            ResumePlan::Rewrite { range } => {
                let spec = range.strip_prefix("bytes=")?;
                let (a, b) = spec.split_once('-')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            }
            ResumePlan::ResendSkip { .. } => {
                first_window(first_status, first_content_range, first_length).ok()
            }
            ResumePlan::Impossible(_) => None,
        }
    }
}

/// Whether weir may add its own `If-Match` to the resumed request: not when the client
/// signed one (a second value would change the signed header and break the signature;
/// the client's own precondition then stays, and weir's ETag check still guards).
pub fn may_add_if_match<S: AsRef<str>>(signed_headers: &[S]) -> bool {
    !is_signed(signed_headers, "if-match")
}

/// The lowercase header names a request's SigV4 signature covers: `SignedHeaders=` of an
/// `AWS4-HMAC-SHA256` `Authorization`, else `X-Amz-SignedHeaders` of a presigned URL's
/// query. Empty when unsigned or signed another way (SigV2 never signs `Range`). Input
/// size is bounded by the request head limit.
pub fn signed_headers(authorization: Option<&str>, query: Option<&str>) -> Vec<String> {
    if let Some(list) = authorization.and_then(authorization_signed_headers) {
        return split_names(list);
    }
    if let Some(list) = query.and_then(query_signed_headers) {
        return split_names(&list);
    }
    Vec::new()
}

/// `SignedHeaders=a;b;c` from `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
fn authorization_signed_headers(authorization: &str) -> Option<&str> {
    let rest = authorization
        .trim_start()
        .strip_prefix("AWS4-HMAC-SHA256")?;
    rest.split(',')
        .find_map(|part| part.trim().strip_prefix("SignedHeaders="))
}

/// The percent-decoded `X-Amz-SignedHeaders` query parameter.
fn query_signed_headers(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case("X-Amz-SignedHeaders")
            .then(|| percent_decode(value))
    })
}

/// `a;b;c` → lowercase names, empty entries dropped.
fn split_names(list: &str) -> Vec<String> {
    list.split(';')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Decodes `%XX` escapes; malformed escapes stay as written (header names never
/// contain `%`, so nothing valid is lost).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `name` (lowercase) is among the signed headers.
fn is_signed<S: AsRef<str>>(signed_headers: &[S], name: &str) -> bool {
    signed_headers
        .iter()
        .any(|h| h.as_ref().eq_ignore_ascii_case(name))
}

/// The object byte window `start..=end` a first response carries.
fn first_window(
    status: u16,
    content_range: Option<&str>,
    length: u64,
) -> Result<(u64, u64), &'static str> {
    match status {
        200 => {
            if length == 0 {
                return Err("empty body");
            }
            Ok((0, length - 1))
        }
        206 => {
            let Some(text) = content_range else {
                return Err("206 without a single Content-Range (multipart?)");
            };
            let (start, end, _) = parse_content_range(text).ok_or("malformed Content-Range")?;
            if (end - start).checked_add(1) != Some(length) {
                return Err("Content-Range disagrees with the body length");
            }
            Ok((start, end))
        }
        _ => Err("only 200 and 206 responses can be resumed"),
    }
}

/// Parses `bytes a-b/total` or `bytes a-b/*` (RFC 9110 §14.4) strictly; `a <= b`.
fn parse_content_range(text: &str) -> Option<(u64, u64, Option<u64>)> {
    let text = text.trim();
    let (unit, rest) = text.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let start = parse_digits(a)?;
    let end = parse_digits(b)?;
    let total = match total {
        "*" => None,
        digits => Some(parse_digits(digits)?),
    };
    let consistent = start <= end && total.is_none_or(|t| end < t);
    consistent.then_some((start, end, total))
}

/// A non-empty run of ASCII digits as `u64` (no sign, no spaces).
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONE: &[&str] = &[];

    /// Client range, first status, first Content-Range, length, delivered, reason.
    type ImpossibleCase<'a> = (Option<&'a str>, u16, Option<&'a str>, u64, u64, &'a str);
    /// First ETag, resumed ETag, status, Content-Range, reason.
    type CheckCase<'a> = (&'a str, Option<&'a str>, u16, Option<&'a str>, &'a str);

    #[test]
    fn full_object_unsigned_range_is_rewritten() {
        let plan = plan_resume(None, &["host", "x-amz-date"], 200, None, 1000, 400);
        assert_eq!(
            plan,
            ResumePlan::Rewrite {
                range: "bytes=400-999".into()
            }
        );
        assert_eq!(plan.expected_window(200, None, 1000), Some((400, 999)));
    }

    #[test]
    fn client_range_is_composed_through_the_content_range() {
        // Client asked bytes=100-199, got 206 bytes 100-199/1000, 30 bytes delivered.
        let plan = plan_resume(
            Some("bytes=100-199"),
            NONE,
            206,
            Some("bytes 100-199/1000"),
            100,
            30,
        );
        assert_eq!(
            plan,
            ResumePlan::Rewrite {
                range: "bytes=130-199".into()
            }
        );
        // Suffix and open ranges resolve through the node's Content-Range too.
        let plan = plan_resume(
            Some("bytes=-300"),
            NONE,
            206,
            Some("bytes 700-999/1000"),
            300,
            1,
        );
        assert_eq!(
            plan,
            ResumePlan::Rewrite {
                range: "bytes=701-999".into()
            }
        );
        let plan = plan_resume(
            Some("bytes=500-"),
            NONE,
            206,
            Some("bytes 500-999/*"),
            500,
            499,
        );
        assert_eq!(
            plan,
            ResumePlan::Rewrite {
                range: "bytes=999-999".into()
            }
        );
    }

    #[test]
    fn signed_range_resends_and_skips() {
        let signed = signed_headers(
            Some("AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=abc"),
            None,
        );
        let plan = plan_resume(
            Some("bytes=100-199"),
            &signed,
            206,
            Some("bytes 100-199/1000"),
            100,
            30,
        );
        assert_eq!(plan, ResumePlan::ResendSkip { skip: 30 });
        assert_eq!(
            plan.expected_window(206, Some("bytes 100-199/1000"), 100),
            Some((100, 199))
        );
        // A node that ignored the signed Range: resend and skip within the 200.
        let plan = plan_resume(Some("bytes=0-"), &signed, 200, None, 1000, 10);
        assert_eq!(plan, ResumePlan::ResendSkip { skip: 10 });
        assert_eq!(plan.expected_window(200, None, 1000), Some((0, 999)));
    }

    #[test]
    fn impossible_cases() {
        let cases: &[ImpossibleCase<'_>] = &[
            (Some("bytes=0-1,5-9"), 206, None, 7, 1, "multi-range"),
            (None, 206, None, 10, 1, "without a single Content-Range"),
            (None, 206, Some("bytes 0-9/5"), 10, 1, "malformed"),
            (None, 206, Some("bytes 0-9/100"), 11, 1, "disagrees"),
            (None, 206, Some("items 0-9/100"), 10, 1, "malformed"),
            (None, 304, None, 0, 0, "only 200 and 206"),
            (None, 200, None, 0, 0, "empty body"),
            (None, 200, None, 100, 100, "nothing left"),
            (None, 200, None, 100, 101, "nothing left"),
        ];
        for &(range, status, cr, len, delivered, needle) in cases {
            match plan_resume(range, NONE, status, cr, len, delivered) {
                ResumePlan::Impossible(why) => assert!(why.contains(needle), "{why} vs {needle}"),
                other => panic!("{other:?} for {range:?} {status} {cr:?}"),
            }
        }
        assert_eq!(
            ResumePlan::Impossible("x").expected_window(200, None, 10),
            None
        );
    }

    #[test]
    fn check_rewrite() {
        let plan = ResumePlan::Rewrite {
            range: "bytes=400-999".into(),
        };
        let e = "\"abc\"";
        let ok = check_resumed(&plan, e, Some(e), 206, Some("bytes 400-999/1000"), 400, 999);
        assert_eq!(ok, Ok(()));
        let cases: &[CheckCase<'_>] = &[
            (
                e,
                Some("\"other\""),
                206,
                Some("bytes 400-999/1000"),
                "ETag differs",
            ),
            (e, None, 206, Some("bytes 400-999/1000"), "no ETag"),
            (e, Some(e), 412, None, "412"),
            (e, Some(e), 200, None, "ignored Range"),
            (
                e,
                Some(e),
                206,
                Some("bytes 0-999/1000"),
                "Content-Range differs",
            ),
            (e, Some(e), 206, None, "Content-Range differs"),
            (e, Some(e), 500, None, "unexpected status"),
            (
                "",
                Some(""),
                206,
                Some("bytes 400-999/1000"),
                "no strong ETag",
            ),
            (
                "W/\"abc\"",
                Some("W/\"abc\""),
                206,
                Some("bytes 400-999/1000"),
                "no strong ETag",
            ),
        ];
        for &(first, now, status, cr, needle) in cases {
            let err = check_resumed(&plan, first, now, status, cr, 400, 999).unwrap_err();
            assert!(err.contains(needle), "{err} vs {needle}");
        }
    }

    #[test]
    fn check_resend_skip() {
        let plan = ResumePlan::ResendSkip { skip: 10 };
        let e = "\"abc\"";
        assert_eq!(check_resumed(&plan, e, Some(e), 200, None, 0, 999), Ok(()));
        assert_eq!(
            check_resumed(&plan, e, Some(e), 206, Some("bytes 100-199/1000"), 100, 199),
            Ok(())
        );
        assert!(check_resumed(&plan, e, Some(e), 200, None, 100, 199).is_err());
        assert!(
            check_resumed(&plan, e, Some(e), 206, Some("bytes 100-198/1000"), 100, 199).is_err()
        );
        assert!(check_resumed(&ResumePlan::Impossible("x"), e, Some(e), 200, None, 0, 9).is_err());
    }

    #[test]
    fn signed_headers_from_authorization_and_query() {
        assert_eq!(
            signed_headers(
                Some("AWS4-HMAC-SHA256 Credential=a/b,SignedHeaders=Host;Range,Signature=s"),
                None
            ),
            ["host", "range"]
        );
        assert!(
            signed_headers(Some("AWS AKID:sig"), None).is_empty(),
            "SigV2"
        );
        assert!(signed_headers(None, None).is_empty());
        assert_eq!(
            signed_headers(None, Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host%3Brange&X-Amz-Signature=ff")),
            ["host", "range"]
        );
        assert_eq!(
            signed_headers(None, Some("x-amz-signedheaders=host")),
            ["host"]
        );
        assert_eq!(
            signed_headers(None, Some("X-Amz-SignedHeaders=host%3")),
            ["host%3"]
        );
        // Authorization wins over a query parameter.
        assert_eq!(
            signed_headers(
                Some("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=s"),
                Some("X-Amz-SignedHeaders=range")
            ),
            ["host"]
        );
    }

    #[test]
    fn if_match_only_when_not_signed() {
        assert!(may_add_if_match(&["host", "range"]));
        assert!(!may_add_if_match(&[
            "host".to_owned(),
            "if-match".to_owned()
        ]));
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        for bad in [
            "bytes 9-0/10",
            "bytes 0-10/10",
            "bytes -1-2/3",
            "bytes 0-9",
            "bytes */10",
            "bytes 0 -9/10",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Whatever was delivered, the plan asks for exactly the rest of the window,
        /// and a correct resumed response passes the check.
        #[test]
        fn plan_covers_exactly_the_rest(start in 0u64..1_000_000, len in 1u64..1_000_000, delivered_frac in 0.0f64..1.0, signed in any::<bool>()) {
            let end = start + len - 1;
            let delivered = ((len as f64) * delivered_frac) as u64;
            let cr = format!("bytes {start}-{end}/{}", end + 1);
            let headers: &[&str] = if signed { &["host", "range"] } else { &["host"] };
            let plan = plan_resume(Some("bytes=0-"), headers, 206, Some(&cr), len, delivered);
            let (s, e) = plan.expected_window(206, Some(&cr), len).unwrap();
            match &plan {
                ResumePlan::Rewrite { .. } => prop_assert_eq!((s, e), (start + delivered, end)),
                ResumePlan::ResendSkip { skip } => {
                    prop_assert_eq!(*skip, delivered);
                    prop_assert_eq!((s, e), (start, end));
                }
                ResumePlan::Impossible(why) => prop_assert!(false, "{}", why),
            }
            let resumed_cr = format!("bytes {s}-{e}/{}", end + 1);
            prop_assert_eq!(check_resumed(&plan, "\"x\"", Some("\"x\""), 206, Some(&resumed_cr), s, e), Ok(()));
        }

        #[test]
        fn parsers_never_panic(a in "\\PC{0,60}", b in proptest::option::of("\\PC{0,60}")) {
            let _ = signed_headers(Some(&a), b.as_deref());
            let _ = signed_headers(None, Some(&a));
            let _ = parse_content_range(&a);
            let _ = plan_resume(Some(&a), NONE, 206, Some(&a), 10, 3);
        }
    }
}
