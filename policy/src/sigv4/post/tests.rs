//! Form scanning, verification, policy and re-signing, against hand-built forms and
//! properties.

use super::super::key::SigningKey;
use super::super::time::Date;
use super::policy::Condition;
use super::*;
use crate::s3code::S3Code;
use proptest::prelude::*;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SKEW: Duration = Duration::from_secs(900);
const BOUNDARY: &str = "----weirFormBoundary7MA4YWxkTrZu0gW";

/// AWS's example POST policy ("Example: Browser-Based Upload using HTTP POST (Using
/// AWS Signature Version 4)"), with the CRLF line ends its base64 was made from.
const AWS_POLICY: &str = "{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n  \"conditions\": [\r\n    {\"bucket\": \"sigv4examplebucket\"},\r\n    [\"starts-with\", \"$key\", \"user/user1/\"],\r\n    {\"acl\": \"public-read\"},\r\n    {\"success_action_redirect\": \"http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html\"},\r\n    [\"starts-with\", \"$Content-Type\", \"image/\"],\r\n    {\"x-amz-meta-uuid\": \"14365123651274\"},\r\n    {\"x-amz-server-side-encryption\": \"AES256\"},\r\n    [\"starts-with\", \"$x-amz-meta-tag\", \"\"],\r\n\r\n    {\"x-amz-credential\": \"AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request\"},\r\n    {\"x-amz-algorithm\": \"AWS4-HMAC-SHA256\"},\r\n    {\"x-amz-date\": \"20151229T000000Z\" }\r\n  ]\r\n}";
/// The example's base64 policy, as published.
const AWS_POLICY_B64: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
/// The example's published signature.
const AWS_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";

fn lookup(access_key: &str) -> Option<&'static str> {
    (access_key == AKID).then_some(SECRET)
}

/// `2015-12-29T00:00:00Z` (the example's x-amz-date) plus `secs`.
fn at(secs: i64) -> SystemTime {
    Timestamp::from_unix_secs(
        Timestamp::parse_amz("20151229T000000Z")
            .unwrap()
            .unix_secs()
            + secs,
    )
    .unwrap()
    .to_system_time()
}

/// The example form's fields, in its order (before the file).
fn aws_fields() -> Vec<(String, String)> {
    [
        ("key", "user/user1/${filename}"),
        ("acl", "public-read"),
        (
            "success_action_redirect",
            "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
        ),
        ("Content-Type", "image/jpeg"),
        ("x-amz-meta-uuid", "14365123651274"),
        ("x-amz-server-side-encryption", "AES256"),
        (
            "X-Amz-Credential",
            "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
        ),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Date", "20151229T000000Z"),
        ("x-amz-meta-tag", ""),
        ("Policy", AWS_POLICY_B64),
        ("X-Amz-Signature", AWS_SIGNATURE),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

/// A multipart body: `fields`, then the file part with `file`, then `after` fields.
fn body(fields: &[(String, String)], file: &[u8], after: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(file);
    for (name, value) in after {
        out.extend_from_slice(
            format!(
                "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn scanned(bytes: &[u8]) -> FormPrefix {
    scan(bytes, BOUNDARY, true).unwrap().unwrap()
}

fn verify_at(
    fields: &[(String, String)],
    bucket: &str,
    now: SystemTime,
) -> Result<VerifiedForm, SigV4Error> {
    scanned(&body(fields, b"\xff\xd8 jpeg", &[])).verify(bucket, &mut lookup, now, SKEW)
}

fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(f) => f.1 = value.to_string(),
        None => fields.push((name.to_string(), value.to_string())),
    }
}

/// Signs `policy` JSON with the example key on the example day: (base64, signature).
fn signed(policy: &str) -> (String, String) {
    let b64 = base64_encode(policy.as_bytes());
    let key = SigningKey::derive(
        SECRET.as_bytes(),
        Scope::new(Date::new(2015, 12, 29).unwrap(), "us-east-1", "s3"),
    );
    let sig = key.sign(&[b64.as_bytes()]).to_string();
    (b64, sig)
}

/// The example form with its policy's conditions replaced by `conditions` (JSON
/// array items), plus the signature fields, re-signed.
fn form_with(conditions: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let policy = format!(
        "{{\"expiration\": \"2015-12-30T12:00:00Z\", \"conditions\": [{conditions}, \
         {{\"x-amz-credential\": \"{AKID}/20151229/us-east-1/s3/aws4_request\"}}, \
         {{\"x-amz-algorithm\": \"AWS4-HMAC-SHA256\"}}, {{\"x-amz-date\": \"20151229T000000Z\"}}]}}"
    );
    let (b64, sig) = signed(&policy);
    let mut fields: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for (n, v) in [
        (
            "x-amz-credential",
            format!("{AKID}/20151229/us-east-1/s3/aws4_request"),
        ),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256".into()),
        ("x-amz-date", "20151229T000000Z".into()),
        ("policy", b64),
        ("x-amz-signature", sig),
    ] {
        fields.push((n.to_string(), v));
    }
    fields
}

#[test]
fn aws_example_policy_and_signature() {
    assert_eq!(base64_encode(AWS_POLICY.as_bytes()), AWS_POLICY_B64);
    assert_eq!(
        base64_decode(AWS_POLICY_B64).as_deref(),
        Some(AWS_POLICY.as_bytes())
    );
    let (_, sig) = signed(AWS_POLICY);
    assert_eq!(sig, AWS_SIGNATURE);

    let v = verify_at(&aws_fields(), "sigv4examplebucket", at(0)).unwrap();
    assert_eq!(v.access_key, AKID);
    assert_eq!(v.scope.to_string(), "20151229/us-east-1/s3/aws4_request");
    assert_eq!(v.key, "user/user1/${filename}");
    assert_eq!(v.expiration.to_string(), "20151230T120000Z");
    assert_eq!(v.length_range, None);
    assert_eq!(v.security_token, None);
    // Valid up to the last second before the expiration.
    let last = 36 * 3600 - 1;
    assert!(verify_at(&aws_fields(), "sigv4examplebucket", at(last)).is_ok());
}

#[test]
fn expiry_skew_and_signature_are_enforced() {
    let fields = aws_fields();
    let bucket = "sigv4examplebucket";
    assert_eq!(
        verify_at(&fields, bucket, at(36 * 3600)).unwrap_err(),
        SigV4Error::PolicyExpired
    );
    // x-amz-date more than skew_max ahead of weir's clock.
    assert_eq!(
        verify_at(&fields, bucket, at(-901)).unwrap_err(),
        SigV4Error::NotYetValid
    );
    assert!(verify_at(&fields, bucket, at(-900)).is_ok());
    // A tampered policy (one base64 character) or signature.
    let mut tampered = fields.clone();
    set(
        &mut tampered,
        "policy",
        &AWS_POLICY_B64.replacen("eyAi", "eyBi", 1),
    );
    assert_eq!(
        verify_at(&tampered, bucket, at(0)).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
    let mut tampered = fields.clone();
    set(
        &mut tampered,
        "x-amz-signature",
        &AWS_SIGNATURE.replace('8', "9"),
    );
    assert_eq!(
        verify_at(&tampered, bucket, at(0)).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
    set(
        &mut tampered,
        "x-amz-signature",
        &AWS_SIGNATURE.to_uppercase(),
    );
    assert_eq!(
        verify_at(&tampered, bucket, at(0)).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
    // Another key id, and the example key signing a policy it did not sign.
    let mut other = fields.clone();
    set(
        &mut other,
        "x-amz-credential",
        "AKIDUNKNOWN000000000/20151229/us-east-1/s3/aws4_request",
    );
    assert_eq!(
        verify_at(&other, bucket, at(0)).unwrap_err(),
        SigV4Error::InvalidAccessKeyId
    );
    let mut region = fields.clone();
    set(
        &mut region,
        "x-amz-credential",
        &format!("{AKID}/20151229/eu-west-1/s3/aws4_request"),
    );
    assert_eq!(
        verify_at(&region, bucket, at(0)).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
    let mut date = fields.clone();
    set(&mut date, "x-amz-date", "20151230T000000Z");
    assert!(matches!(
        verify_at(&date, bucket, at(0)).unwrap_err(),
        SigV4Error::PostFieldInvalid(_)
    ));
}

#[test]
fn a_key_that_climbs_out_of_the_bucket_is_refused() {
    let bucket = "sigv4examplebucket";
    for key in [
        "../bench/x",
        "user/user1/../../bench/x",
        "user/user1/..\\x",
        "a/./b",
        "a\0b",
    ] {
        let mut fields = aws_fields();
        set(&mut fields, "key", key);
        assert!(
            matches!(
                verify_at(&fields, bucket, at(0)),
                Err(SigV4Error::PostFieldInvalid(m)) if m.starts_with("key:")
            ),
            "{key:?}"
        );
    }
    // `${filename}` is put in before the check: the file name cannot climb either.
    let text = String::from_utf8(body(&aws_fields(), b"x", &[])).unwrap();
    let climbing = text.replacen("filename=\"photo.jpg\"", "filename=\"../../bench/x\"", 1);
    assert!(matches!(
        scanned(climbing.as_bytes()).verify(bucket, &mut lookup, at(0), SKEW),
        Err(SigV4Error::PostFieldInvalid(m)) if m.starts_with("key:")
    ));
    // Dots inside a segment are a name, not a climb.
    let mut fields = aws_fields();
    set(&mut fields, "key", "user/user1/..photo..jpg");
    assert!(!matches!(
        verify_at(&fields, bucket, at(0)),
        Err(SigV4Error::PostFieldInvalid(_))
    ));
}

#[test]
fn the_policy_conditions_hold_for_the_fields() {
    let bucket = "sigv4examplebucket";
    // A key outside the policy's starts-with.
    let mut fields = aws_fields();
    set(&mut fields, "key", "user/user2/photo.jpg");
    let err = verify_at(&fields, bucket, at(0)).unwrap_err();
    assert_eq!(
        err,
        SigV4Error::PolicyConditionFailed(r#"["starts-with","$key","user/user1/"]"#.into())
    );
    assert_eq!(err.s3_status(), (403, S3Code::AccessDenied));
    assert_eq!(
        err.to_string(),
        r#"Invalid according to Policy: Policy Condition failed: ["starts-with","$key","user/user1/"]"#
    );
    // An exact match (object form) that does not hold; Content-Type starts-with.
    let mut fields = aws_fields();
    set(&mut fields, "acl", "private");
    assert_eq!(
        verify_at(&fields, bucket, at(0)).unwrap_err(),
        SigV4Error::PolicyConditionFailed(r#"["eq","$acl","public-read"]"#.into())
    );
    let mut fields = aws_fields();
    set(&mut fields, "content-type", "text/html");
    assert!(matches!(
        verify_at(&fields, bucket, at(0)).unwrap_err(),
        SigV4Error::PolicyConditionFailed(_)
    ));
    // The bucket condition is the request's bucket; a bucket field must agree.
    assert_eq!(
        verify_at(&aws_fields(), "otherbucket", at(0)).unwrap_err(),
        SigV4Error::PolicyConditionFailed(r#"["eq","$bucket","sigv4examplebucket"]"#.into())
    );
    // A field no condition names; x-ignore- fields need none.
    let mut fields = aws_fields();
    set(&mut fields, "x-amz-meta-extra", "1");
    assert_eq!(
        verify_at(&fields, bucket, at(0)).unwrap_err(),
        SigV4Error::PolicyExtraField("x-amz-meta-extra".into())
    );
    let mut fields = aws_fields();
    set(&mut fields, "x-ignore-anything", "1");
    assert!(verify_at(&fields, bucket, at(0)).is_ok());
    // "starts-with" "" matches any value, and a missing field.
    let mut fields = aws_fields();
    fields.retain(|(n, _)| n != "x-amz-meta-tag");
    assert!(verify_at(&fields, bucket, at(0)).is_ok());

    // ["eq", …], case-insensitive field names, content-length-range, bucket field.
    let fields = form_with(
        r#"["eq", "$Key", "exact/key"], ["content-length-range", 10, 20], {"bucket": "b1"}, ["starts-with", "$bucket", "b"]"#,
        &[("key", "exact/key"), ("BUCKET", "b1")],
    );
    let v = verify_at(&fields, "b1", at(0)).unwrap();
    assert_eq!(v.length_range, Some((10, 20)));
    assert_eq!(
        verify_at(&fields, "b2", at(0)).unwrap_err(),
        SigV4Error::PostFieldInvalid("the bucket field names another bucket than the request")
    );
    let mut wrong = fields.clone();
    set(&mut wrong, "key", "exact/key2");
    assert_eq!(
        verify_at(&wrong, "b1", at(0)).unwrap_err(),
        SigV4Error::PolicyConditionFailed(r#"["eq","$Key","exact/key"]"#.into())
    );
    // Every content-length-range holds: the tightest one counts.
    let fields = form_with(
        r#"["content-length-range", 10, 20], ["content-length-range", "15", "30"], ["starts-with", "$key", ""]"#,
        &[("key", "k")],
    );
    let v = verify_at(&fields, "b1", at(0)).unwrap();
    assert_eq!(v.length_range, Some((15, 20)));
    assert_eq!(v.check_room(Some(14)), Err(SigV4Error::EntityTooSmall));
    assert_eq!(v.check_room(Some(15)), Ok(()));
    assert!(v.check_room(None).is_err());
}

#[test]
fn policy_documents_are_parsed_strictly() {
    for (policy, why) in [
        ("not json", "Invalid JSON."),
        (r#"{"conditions": []}"#, "Policy missing expiration."),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z"}"#,
            "Policy missing conditions.",
        ),
        (
            r#"{"expiration": "tomorrow", "conditions": []}"#,
            "Invalid 'expiration' value.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "expiration": "2099-12-30T12:00:00Z", "conditions": []}"#,
            "a policy element appears twice.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [], "x": 1}"#,
            "Unexpected policy element.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["ends-with", "$key", "x"]]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["eq", "key", "x"]]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["eq", "$key"]]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{"key": 1}]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{"key": "a", "key": "b"}]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{}]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": ["key"]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["content-length-range", 5, 1]]}"#,
            "Invalid Condition.",
        ),
        (
            r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["content-length-range", -1, 1]]}"#,
            "Invalid Condition.",
        ),
    ] {
        assert_eq!(
            Policy::decode(&base64_encode(policy.as_bytes())),
            Err(SigV4Error::InvalidPolicyDocument(why)),
            "{policy}"
        );
    }
    for not_base64 in ["e30", "e30=\n", "e3 0=", "e31="] {
        assert_eq!(
            Policy::decode(not_base64),
            Err(SigV4Error::InvalidPolicyDocument(
                "the policy is not base64"
            )),
            "{not_base64:?}"
        );
    }
    // An object may hold several exact matches.
    let p = Policy::decode(&base64_encode(
        br#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{"acl": "private", "key": "k"}]}"#,
    ))
    .unwrap();
    assert_eq!(p.conditions.len(), 2);
}

#[test]
fn signed_v2_and_anonymous_forms_are_refused() {
    let v2 = vec![
        ("key".to_string(), "k".to_string()),
        ("AWSAccessKeyId".to_string(), AKID.to_string()),
        ("policy".to_string(), "e30=".to_string()),
        ("signature".to_string(), "abc=".to_string()),
    ];
    assert_eq!(
        verify_at(&v2, "b", at(0)).unwrap_err(),
        SigV4Error::UnsupportedAlgorithm
    );
    let anonymous = vec![("key".to_string(), "k".to_string())];
    assert_eq!(
        verify_at(&anonymous, "b", at(0)).unwrap_err(),
        SigV4Error::MissingAuthentication
    );
    let mut both = aws_fields();
    set(&mut both, "AWSAccessKeyId", AKID);
    assert_eq!(
        verify_at(&both, "sigv4examplebucket", at(0)).unwrap_err(),
        SigV4Error::MultipleAuthMechanisms
    );
    let mut no_key = aws_fields();
    no_key.retain(|(n, _)| n != "key");
    assert_eq!(
        verify_at(&no_key, "sigv4examplebucket", at(0)).unwrap_err(),
        SigV4Error::PostFieldMissing("key")
    );
    let mut sigv4a = aws_fields();
    set(&mut sigv4a, "x-amz-algorithm", "AWS4-ECDSA-P256-SHA256");
    assert_eq!(
        verify_at(&sigv4a, "sigv4examplebucket", at(0)).unwrap_err(),
        SigV4Error::UnsupportedAlgorithm
    );
    let mut token = aws_fields();
    set(&mut token, "x-amz-security-token", "FQoG");
    // The token field is named by no condition of the example policy.
    assert_eq!(
        verify_at(&token, "sigv4examplebucket", at(0)).unwrap_err(),
        SigV4Error::PolicyExtraField("x-amz-security-token".into())
    );
    let fields = form_with(
        r#"{"x-amz-security-token": "FQoG"}, ["starts-with", "$key", ""]"#,
        &[("key", "k"), ("x-amz-security-token", "FQoG")],
    );
    let v = verify_at(&fields, "b", at(0)).unwrap();
    assert_eq!(v.security_token.as_deref(), Some("FQoG"));
}

#[test]
fn only_the_fields_before_the_file_count() {
    let bytes = body(
        &aws_fields(),
        b"data\r\n--not-the-boundary\r\n",
        &[
            ("submit", "Upload"),
            ("x-amz-meta-late", "1"),
            ("key", "elsewhere"),
        ],
    );
    let prefix = scanned(&bytes);
    assert_eq!(prefix.fields().len(), 12);
    assert_eq!(prefix.file_name(), Some("photo.jpg"));
    assert_eq!(
        &bytes[prefix.file_start()..prefix.file_start() + 4],
        b"data"
    );
    let v = prefix
        .verify("sigv4examplebucket", &mut lookup, at(0), SKEW)
        .unwrap();
    assert_eq!(v.key, "user/user1/${filename}");
    // The file's room: the body minus the prefix and CRLF--boundary--.
    let whole = scanned(&body(&aws_fields(), b"0123456789", &[]));
    let len = body(&aws_fields(), b"0123456789", &[]).len() as u64;
    assert_eq!(whole.file_bytes_max(len), Some(10 + 2));
    assert_eq!(whole.file_bytes_max(whole.file_start() as u64), None);
}

#[test]
fn scanning_is_incremental_and_bounded() {
    let bytes = body(&aws_fields(), b"file", &[]);
    let whole = scanned(&bytes);
    for cut in 0..whole.file_start() {
        assert_eq!(
            scan(&bytes[..cut], BOUNDARY, false),
            Ok(None),
            "cut at {cut}"
        );
        assert!(scan(&bytes[..cut], BOUNDARY, true).is_err(), "cut at {cut}");
    }
    assert_eq!(
        scan(&bytes[..whole.file_start()], BOUNDARY, false),
        Ok(Some(whole.clone()))
    );
    // 20 KiB of fields before the file is too much, however it is read.
    let mut big = aws_fields();
    set(&mut big, "x-ignore-padding", &"p".repeat(PREFIX_BYTES_MAX));
    let bytes = body(&big, b"file", &[]);
    assert_eq!(
        scan(&bytes, BOUNDARY, true),
        Err(SigV4Error::PostPreDataTooLarge { resigned: false })
    );
    assert_eq!(
        scan(&bytes[..PREFIX_BYTES_MAX - 1], BOUNDARY, false),
        Ok(None)
    );
    assert_eq!(
        SigV4Error::PostPreDataTooLarge { resigned: false }.s3_status(),
        (400, S3Code::MaxPostPreDataLengthExceeded)
    );
    // Just under the bound is fine.
    let mut fits = vec![("key".to_string(), "k".to_string())];
    let overhead = body(&fits, b"", &[]).len() - 2 - BOUNDARY.len() - 6;
    let field_overhead =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x-ignore-p\"\r\n\r\n\r\n")
            .len();
    set(
        &mut fits,
        "x-ignore-p",
        &"p".repeat(PREFIX_BYTES_MAX - overhead - field_overhead),
    );
    let bytes = body(&fits, b"", &[]);
    assert_eq!(scanned(&bytes).file_start(), PREFIX_BYTES_MAX);
}

#[test]
fn malformed_forms_are_refused() {
    let malformed = |bytes: &[u8]| scan(bytes, BOUNDARY, true);
    let good = body(&aws_fields(), b"file", &[]);
    let text = String::from_utf8(good.clone()).unwrap();
    // Bare LF: in a part header, after a boundary line, ending the header block.
    for (from, to) in [
        ("form-data; name=\"acl\"\r\n", "form-data; name=\"acl\"\n"),
        (
            &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\""),
            &format!("--{BOUNDARY}\nContent-Disposition: form-data; name=\"key\""),
        ),
        ("name=\"acl\"\r\n\r\n", "name=\"acl\"\r\n\n"),
    ] {
        let bad = text.replacen(from, to, 1);
        assert!(
            matches!(
                malformed(bad.as_bytes()),
                Err(SigV4Error::MalformedPostRequest(_))
            ),
            "{to:?}"
        );
    }
    // A duplicate field, by case-insensitive name.
    let bad = text.replacen("name=\"acl\"", "name=\"KEY\"", 1);
    assert_eq!(
        malformed(bad.as_bytes()),
        Err(SigV4Error::MalformedPostRequest(
            "a form field appears more than once"
        ))
    );
    // A preamble, a missing Content-Disposition, a transfer encoding, no file.
    let bad = format!("preamble\r\n{text}");
    assert!(malformed(bad.as_bytes()).is_err());
    let bad = text.replacen(
        "Content-Disposition: form-data; name=\"acl\"",
        "Content-Type: text/plain",
        1,
    );
    assert!(malformed(bad.as_bytes()).is_err());
    let bad = text.replacen(
        "name=\"acl\"\r\n",
        "name=\"acl\"\r\nContent-Transfer-Encoding: base64\r\n",
        1,
    );
    assert_eq!(
        malformed(bad.as_bytes()),
        Err(SigV4Error::MalformedPostRequest(
            "a part with a Content-Transfer-Encoding"
        ))
    );
    let no_file = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{BOUNDARY}--\r\n"
    );
    assert_eq!(
        malformed(no_file.as_bytes()),
        Err(SigV4Error::PostFileMissing)
    );
    let two_files = text.replacen("name=\"acl\"", "name=\"other\"; filename=\"a\"", 1);
    assert_eq!(
        malformed(two_files.as_bytes()),
        Err(SigV4Error::PostFileMissing)
    );
    // Boundary followed by something else than CRLF or --.
    let bad = text.replacen(
        &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"acl\""),
        &format!("--{BOUNDARY}  \r\nContent-Disposition: form-data; name=\"acl\""),
        1,
    );
    assert!(malformed(bad.as_bytes()).is_err());
    // An escape in a field name is refused: nodes read it differently.
    let escaped = text.replacen("name=\"acl\"", "name=\"a\\cl\"", 1);
    assert_eq!(
        malformed(escaped.as_bytes()),
        Err(SigV4Error::MalformedPostRequest(
            "a field name with a backslash escape"
        ))
    );
    // A quoted file name with an escape, a token name, and a trailing ';' are fine.
    let ok = text.replacen("name=\"acl\"", "name=acl;", 1).replacen(
        "filename=\"photo.jpg\"",
        "filename=\"a\\\"b.jpg\"",
        1,
    );
    let p = scanned(ok.as_bytes());
    assert_eq!(p.file_name(), Some("a\"b.jpg"));
    assert_eq!(p.field("acl"), Some("public-read"));
}

#[test]
fn content_type_boundaries() {
    let b = |ct: &str| form_boundary(ct.as_bytes());
    assert_eq!(
        b("multipart/form-data; boundary=abc"),
        Ok(Some("abc".into()))
    );
    assert_eq!(
        b("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'c\""),
        Ok(Some("a b'c".into()))
    );
    assert_eq!(b("application/octet-stream"), Ok(None));
    assert_eq!(b("multipart/mixed; boundary=abc"), Ok(None));
    for bad in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"abc",
        "multipart/form-data; boundary=ab\"c",
        "multipart/form-data; boundary=abc; boundary=abc",
        "multipart/form-data; boundary=\"abc \"",
        &format!("multipart/form-data; boundary={}", "x".repeat(71)),
        "multipart/form-data; boundary",
    ] {
        assert!(b(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_resigned_form_verifies_with_the_new_identity_and_keeps_the_rest() {
    let bytes = body(&aws_fields(), b"JPEGDATA", &[]);
    let prefix = scanned(&bytes);
    let verified = prefix
        .verify("sigv4examplebucket", &mut lookup, at(0), SKEW)
        .unwrap();
    let now = at(3600);
    let pool_key = SigningKey::derive(
        b"pool-secret",
        Scope::new(Date::new(2015, 12, 29).unwrap(), "eu-west-1", "s3"),
    );
    let identity = Identity {
        access_key: "POOLKEY000000000001",
        key: &pool_key,
    };
    let new_prefix = verified.resign(&prefix, &bytes, &identity, now).unwrap();
    let mut new_bytes = new_prefix.clone();
    new_bytes.extend_from_slice(&bytes[prefix.file_start()..]);
    let again = scanned(&new_bytes);
    assert_eq!(again.file_start(), new_prefix.len());
    assert_eq!(
        again.field("x-amz-credential"),
        Some("POOLKEY000000000001/20151229/eu-west-1/s3/aws4_request")
    );
    assert_eq!(again.field("x-amz-date"), Some("20151229T010000Z"));
    // Every other field, and the file, as the client sent them.
    for (name, value) in aws_fields() {
        if ![
            "x-amz-credential",
            "x-amz-date",
            "policy",
            "x-amz-signature",
        ]
        .contains(&name.to_ascii_lowercase().as_str())
        {
            assert_eq!(again.field(&name), Some(value.as_str()), "{name}");
        }
    }
    assert_eq!(
        &new_bytes[again.file_start()..again.file_start() + 8],
        b"JPEGDATA"
    );
    let mut pool = |k: &str| (k == "POOLKEY000000000001").then_some("pool-secret");
    let v = again
        .verify("sigv4examplebucket", &mut pool, now, SKEW)
        .unwrap();
    assert_eq!(v.access_key, "POOLKEY000000000001");
    assert_eq!(v.expiration, verified.expiration);
    // The client's key no longer verifies it, and the conditions still bind: the
    // re-signed policy is the client's (a key outside user/user1/ still fails).
    assert_eq!(
        again
            .verify("sigv4examplebucket", &mut lookup, now, SKEW)
            .unwrap_err(),
        SigV4Error::InvalidAccessKeyId
    );
    assert_eq!(v.policy.conditions.len(), verified.policy.conditions.len());
    assert!(v.policy.conditions.contains(&Condition::StartsWith {
        field: "key".into(),
        prefix: "user/user1/".into()
    }));
    // A key for another day, and a prefix that would outgrow 20 KiB, are refused.
    assert!(matches!(
        verified.resign(&prefix, &bytes, &identity, at(86_400)),
        Err(SigV4Error::Unsignable(_))
    ));
    let long = "P".repeat(128);
    // (x-ignore- fields need no condition.)
    let mut near = aws_fields();
    let base = body(&near, b"", &[]).len();
    set(
        &mut near,
        "x-ignore-pad",
        &"p".repeat(PREFIX_BYTES_MAX - base - 80),
    );
    let bytes = body(&near, b"", &[]);
    let prefix = scanned(&bytes);
    let verified = prefix
        .verify("sigv4examplebucket", &mut lookup, at(0), SKEW)
        .unwrap();
    let long_id = Identity {
        access_key: &long,
        key: &pool_key,
    };
    assert_eq!(
        verified.resign(&prefix, &bytes, &long_id, now),
        Err(SigV4Error::PostPreDataTooLarge { resigned: true })
    );
    assert!(verified.resign(&prefix, &bytes, &identity, now).is_ok());
}

#[test]
fn base64_round_trips() {
    for len in 0..40 {
        let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let enc = base64_encode(&data);
        assert_eq!(base64_decode(&enc), Some(data), "{enc}");
    }
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_decode("Zm9=vYmFy"), None);
    assert_eq!(base64_decode("Zm9"), None);
}

proptest! {
    #[test]
    fn scan_and_boundary_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
        let _ = form_boundary(&bytes);
        let _ = scan(&bytes, BOUNDARY, cut % 2 == 0);
        // Near-valid input: a real form cut and corrupted at one byte.
        let mut form = body(&aws_fields(), b"x", &[]);
        let i = cut.min(form.len() - 1);
        form[i] = bytes.first().copied().unwrap_or(b'\n');
        if let Ok(Some(p)) = scan(&form, BOUNDARY, true) {
            let _ = p.verify("sigv4examplebucket", &mut lookup, at(0), SKEW);
        }
        let _ = base64_decode(&String::from_utf8_lossy(&bytes));
    }
}
