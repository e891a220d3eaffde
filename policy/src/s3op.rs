//! The S3 operation a request asks for, by its API name (`GetObject`, `PutObject`,
//! `ListObjectsV2`, `CreateMultipartUpload` …), as the access log names it
//! (docs/operations.md, "Access log"). Finer than [`crate::route::OpClass`], which groups
//! operations for limits and metrics; like it, read from the method, whether the target
//! names a bucket and a key, and the query's parameter names (decoded, as nodes read
//! them). A request no name fits is `Unknown`: the log never guesses.

/// Bucket sub-resources and the operations their GET, PUT and DELETE name (`?acl` →
/// `GetBucketAcl`); the first of a request's parameters found here names it.
const BUCKET_SUBRESOURCES: &[(&str, [&str; 3])] = &[
    (
        "accelerate",
        [
            "GetBucketAccelerateConfiguration",
            "PutBucketAccelerateConfiguration",
            "Unknown",
        ],
    ),
    ("acl", ["GetBucketAcl", "PutBucketAcl", "Unknown"]),
    (
        "analytics",
        [
            "GetBucketAnalyticsConfiguration",
            "PutBucketAnalyticsConfiguration",
            "DeleteBucketAnalyticsConfiguration",
        ],
    ),
    (
        "cors",
        ["GetBucketCors", "PutBucketCors", "DeleteBucketCors"],
    ),
    (
        "encryption",
        [
            "GetBucketEncryption",
            "PutBucketEncryption",
            "DeleteBucketEncryption",
        ],
    ),
    (
        "intelligent-tiering",
        [
            "GetBucketIntelligentTieringConfiguration",
            "PutBucketIntelligentTieringConfiguration",
            "DeleteBucketIntelligentTieringConfiguration",
        ],
    ),
    (
        "inventory",
        [
            "GetBucketInventoryConfiguration",
            "PutBucketInventoryConfiguration",
            "DeleteBucketInventoryConfiguration",
        ],
    ),
    (
        "lifecycle",
        [
            "GetBucketLifecycleConfiguration",
            "PutBucketLifecycleConfiguration",
            "DeleteBucketLifecycle",
        ],
    ),
    ("location", ["GetBucketLocation", "Unknown", "Unknown"]),
    (
        "logging",
        ["GetBucketLogging", "PutBucketLogging", "Unknown"],
    ),
    (
        "metrics",
        [
            "GetBucketMetricsConfiguration",
            "PutBucketMetricsConfiguration",
            "DeleteBucketMetricsConfiguration",
        ],
    ),
    (
        "notification",
        [
            "GetBucketNotificationConfiguration",
            "PutBucketNotificationConfiguration",
            "Unknown",
        ],
    ),
    (
        "object-lock",
        [
            "GetObjectLockConfiguration",
            "PutObjectLockConfiguration",
            "Unknown",
        ],
    ),
    (
        "ownershipControls",
        [
            "GetBucketOwnershipControls",
            "PutBucketOwnershipControls",
            "DeleteBucketOwnershipControls",
        ],
    ),
    (
        "policy",
        ["GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"],
    ),
    (
        "publicAccessBlock",
        [
            "GetPublicAccessBlock",
            "PutPublicAccessBlock",
            "DeletePublicAccessBlock",
        ],
    ),
    (
        "replication",
        [
            "GetBucketReplication",
            "PutBucketReplication",
            "DeleteBucketReplication",
        ],
    ),
    (
        "requestPayment",
        [
            "GetBucketRequestPayment",
            "PutBucketRequestPayment",
            "Unknown",
        ],
    ),
    (
        "tagging",
        [
            "GetBucketTagging",
            "PutBucketTagging",
            "DeleteBucketTagging",
        ],
    ),
    (
        "versioning",
        ["GetBucketVersioning", "PutBucketVersioning", "Unknown"],
    ),
    (
        "website",
        [
            "GetBucketWebsite",
            "PutBucketWebsite",
            "DeleteBucketWebsite",
        ],
    ),
];

/// The S3 API name of a request: `method` as sent, whether its target names a bucket and
/// an object key, its raw query (without `?`), and whether it carries
/// `x-amz-copy-source` (CopyObject, UploadPartCopy).
pub fn operation(
    method: &str,
    has_bucket: bool,
    has_key: bool,
    query: Option<&str>,
    copy_source: bool,
) -> &'static str {
    let query = query.unwrap_or("");
    let has = |name: &str| query_has(query, name);
    if !has_bucket {
        return match method {
            "GET" => "ListBuckets",
            _ => "Unknown",
        };
    }
    if has_key {
        return object_operation(method, &has, copy_source);
    }
    if let Some(op) = bucket_subresource(method, &has) {
        return op;
    }
    match method {
        "GET" if has("uploads") => "ListMultipartUploads",
        "GET" if has("versions") => "ListObjectVersions",
        "GET" if query_value(query, "list-type") == Some("2") => "ListObjectsV2",
        "GET" => "ListObjects",
        "HEAD" => "HeadBucket",
        "PUT" => "CreateBucket",
        "DELETE" => "DeleteBucket",
        "POST" if has("delete") => "DeleteObjects",
        "POST" => "PostObject",
        _ => "Unknown",
    }
}

fn object_operation(method: &str, has: &impl Fn(&str) -> bool, copy_source: bool) -> &'static str {
    match method {
        "GET" if has("uploadId") => "ListParts",
        "GET" if has("tagging") => "GetObjectTagging",
        "GET" if has("acl") => "GetObjectAcl",
        "GET" if has("attributes") => "GetObjectAttributes",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "PUT" if has("uploadId") && copy_source => "UploadPartCopy",
        "PUT" if has("uploadId") => "UploadPart",
        "PUT" if has("tagging") => "PutObjectTagging",
        "PUT" if has("acl") => "PutObjectAcl",
        "PUT" if copy_source => "CopyObject",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("select") => "SelectObjectContent",
        "POST" if has("restore") => "RestoreObject",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" if has("tagging") => "DeleteObjectTagging",
        "DELETE" => "DeleteObject",
        _ => "Unknown",
    }
}

fn bucket_subresource(method: &str, has: &impl Fn(&str) -> bool) -> Option<&'static str> {
    let (_, ops) = BUCKET_SUBRESOURCES.iter().find(|(p, _)| has(p))?;
    match method {
        "GET" => Some(ops[0]),
        "PUT" => Some(ops[1]),
        "DELETE" => Some(ops[2]),
        _ => None,
    }
}

/// Whether the query has a parameter `name` (with or without a value), names decoded.
fn query_has(query: &str, name: &str) -> bool {
    query.split('&').any(|pair| {
        let raw = pair.split_once('=').map_or(pair, |(n, _)| n);
        crate::percent::decode(raw.as_bytes()).is_some_and(|n| *n == *name.as_bytes())
    })
}

/// The raw value of the first parameter called `name` (plain spelling only: only used to
/// tell `list-type=2` apart, which clients never escape).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::operation;

    #[test]
    fn names_common_operations() {
        /// method, names a bucket, names a key, query, copy source, the name.
        type Case = (
            &'static str,
            bool,
            bool,
            Option<&'static str>,
            bool,
            &'static str,
        );
        let cases: &[Case] = &[
            ("GET", false, false, None, false, "ListBuckets"),
            ("GET", true, true, None, false, "GetObject"),
            ("GET", true, true, Some("partNumber=2"), false, "GetObject"),
            ("HEAD", true, true, None, false, "HeadObject"),
            ("PUT", true, true, None, false, "PutObject"),
            ("PUT", true, true, None, true, "CopyObject"),
            (
                "PUT",
                true,
                true,
                Some("partNumber=1&uploadId=u"),
                false,
                "UploadPart",
            ),
            (
                "PUT",
                true,
                true,
                Some("partNumber=1&uploadId=u"),
                true,
                "UploadPartCopy",
            ),
            (
                "POST",
                true,
                true,
                Some("uploads"),
                false,
                "CreateMultipartUpload",
            ),
            (
                "POST",
                true,
                true,
                Some("uploadId=u"),
                false,
                "CompleteMultipartUpload",
            ),
            (
                "DELETE",
                true,
                true,
                Some("uploadId=u"),
                false,
                "AbortMultipartUpload",
            ),
            ("GET", true, true, Some("uploadId=u"), false, "ListParts"),
            ("DELETE", true, true, None, false, "DeleteObject"),
            (
                "GET",
                true,
                false,
                Some("list-type=2&prefix=a"),
                false,
                "ListObjectsV2",
            ),
            ("GET", true, false, None, false, "ListObjects"),
            (
                "GET",
                true,
                false,
                Some("uploads"),
                false,
                "ListMultipartUploads",
            ),
            (
                "GET",
                true,
                false,
                Some("versions"),
                false,
                "ListObjectVersions",
            ),
            (
                "GET",
                true,
                false,
                Some("location"),
                false,
                "GetBucketLocation",
            ),
            (
                "PUT",
                true,
                false,
                Some("versioning"),
                false,
                "PutBucketVersioning",
            ),
            (
                "DELETE",
                true,
                false,
                Some("policy"),
                false,
                "DeleteBucketPolicy",
            ),
            ("POST", true, false, Some("delete"), false, "DeleteObjects"),
            (
                "POST",
                true,
                false,
                Some("%64elete"),
                false,
                "DeleteObjects",
            ),
            ("PUT", true, false, None, false, "CreateBucket"),
            ("HEAD", true, false, None, false, "HeadBucket"),
            ("DELETE", true, false, None, false, "DeleteBucket"),
            ("PUT", false, false, None, false, "Unknown"),
        ];
        for &(method, bucket, key, query, copy, want) in cases {
            assert_eq!(
                operation(method, bucket, key, query, copy),
                want,
                "{method} bucket={bucket} key={key} {query:?}"
            );
        }
    }
}
