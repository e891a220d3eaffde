//! Why a request failed authentication, as the S3 error the client should get.
//!
//! Every variant is a client-side failure that retrying unchanged cannot fix, except
//! [`SigV4Error::Unsignable`], which is weir's own (re-signing misuse) and answers 500.

use crate::s3code::S3Code;

/// A SigV4 verification, parsing or signing failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The `Authorization` header does not have SigV4's shape (the reason says where).
    #[error("malformed Authorization header: {0}")]
    AuthorizationHeaderMalformed(&'static str),
    /// The presigned-URL query parameters are missing or malformed.
    #[error("malformed presigned query parameters: {0}")]
    AuthorizationQueryParametersError(&'static str),
    /// The request uses an authentication scheme other than `AWS4-HMAC-SHA256`
    /// (SigV2, SigV4a, bearer tokens…).
    #[error("unsupported authorization mechanism; use AWS4-HMAC-SHA256")]
    UnsupportedAlgorithm,
    /// Both an `Authorization` header and presigned query parameters are present.
    #[error("only one auth mechanism allowed")]
    MultipleAuthMechanisms,
    /// Neither an `Authorization` header nor presigned query parameters are present.
    #[error("the request is not signed")]
    MissingAuthentication,
    /// The access key id is not one weir knows.
    #[error("the access key id does not exist in our records")]
    InvalidAccessKeyId,
    /// The signature computed from the request and the secret differs from the one sent.
    #[error("the request signature does not match the signature provided")]
    SignatureDoesNotMatch,
    /// A streaming (`aws-chunked`) chunk or trailer signature does not match.
    #[error("a chunk signature does not match")]
    ChunkSignatureDoesNotMatch,
    /// The request time is further from weir's clock than the configured skew bound.
    #[error("the difference between the request time and the current time is too large")]
    RequestTimeTooSkewed,
    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error("request has expired")]
    Expired,
    /// A presigned URL used before its `X-Amz-Date` (beyond the skew bound).
    #[error("request is not valid yet")]
    NotYetValid,
    /// Neither `x-amz-date` nor `Date` holds a valid time for a header-signed request.
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    /// `x-amz-*` headers are present but not covered by the signature.
    #[error("there were headers present in the request which were not signed")]
    HeadersNotSigned,
    /// A header-signed request without `x-amz-content-sha256`.
    #[error("missing required header for this request: x-amz-content-sha256")]
    MissingContentSha256,
    /// `x-amz-content-sha256` is neither a known literal nor 64 lower-case hex digits.
    #[error("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value, or a valid sha256 value")]
    InvalidContentSha256,
    /// The path or query has a broken percent-escape or is not origin-form.
    #[error("couldn't parse the specified URI")]
    InvalidUri,
    /// An `aws-chunked` chunk header or trailer line is malformed (the reason says how).
    #[error("malformed aws-chunked body: {0}")]
    MalformedChunk(&'static str),
    /// A chunk larger than weir holds to check it (`auth.chunk_bytes_max`).
    #[error("an aws-chunked chunk is larger than this endpoint accepts ({max} bytes)")]
    ChunkTooLarge {
        /// The bound, in bytes.
        max: u64,
    },
    /// The chunks do not add up to `x-amz-decoded-content-length`.
    #[error("the chunk sizes do not add up to x-amz-decoded-content-length")]
    DecodedLengthMismatch,
    /// A browser-form upload's body is not the `multipart/form-data` S3 reads (the
    /// reason says where).
    #[error("the body of your POST request is not well-formed multipart/form-data: {0}")]
    MalformedPostRequest(&'static str),
    /// The form fields before the file are larger than S3 reads before the file (20 KiB),
    /// as sent (`resigned: false`) or once re-signed for a pool's identity.
    #[error("{}", if *.resigned {
        "your POST request fields preceding the upload file would be too large once re-signed for the storage's identity"
    } else {
        "your POST request fields preceding the upload file were too large"
    })]
    PostPreDataTooLarge {
        /// Whether weir's re-signing made them too large.
        resigned: bool,
    },
    /// A form upload without a file part (or whose body ended before it).
    #[error("POST requires exactly one file upload per request")]
    PostFileMissing,
    /// A form upload without a field S3 needs before the file.
    #[error("Bucket POST must contain a field named '{0}'. If it is specified, please check the order of the fields.")]
    PostFieldMissing(&'static str),
    /// A form field S3 reads is malformed (the reason says which and how).
    #[error("invalid form field: {0}")]
    PostFieldInvalid(&'static str),
    /// The POST policy is not base64 JSON with an `expiration` and known `conditions`.
    #[error("Invalid Policy: {0}")]
    InvalidPolicyDocument(&'static str),
    /// The POST policy's `expiration` has passed.
    #[error("Invalid according to Policy: Policy expired.")]
    PolicyExpired,
    /// A POST policy condition does not hold for the form (the condition, as JSON).
    #[error("Invalid according to Policy: Policy Condition failed: {0}")]
    PolicyConditionFailed(String),
    /// A form field that no POST policy condition names.
    #[error("Invalid according to Policy: Extra input fields: {0}")]
    PolicyExtraField(String),
    /// The upload cannot reach the POST policy's `content-length-range` minimum.
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    /// weir was asked to sign something it cannot (a bad header name, a key for another
    /// day): a bug or misconfiguration on weir's side.
    #[error("cannot sign the request: {0}")]
    Unsignable(&'static str),
}

impl SigV4Error {
    /// The HTTP status and S3 error `Code` to answer the client with.
    pub fn s3_status(&self) -> (u16, S3Code) {
        match self {
            Self::AuthorizationHeaderMalformed(_) => (400, S3Code::AuthorizationHeaderMalformed),
            Self::AuthorizationQueryParametersError(_) => {
                (400, S3Code::AuthorizationQueryParametersError)
            }
            Self::UnsupportedAlgorithm | Self::MissingContentSha256 => {
                (400, S3Code::InvalidRequest)
            }
            Self::MalformedChunk(_) | Self::DecodedLengthMismatch => (400, S3Code::IncompleteBody),
            Self::ChunkTooLarge { .. } => (400, S3Code::InvalidRequest),
            Self::MultipleAuthMechanisms | Self::InvalidContentSha256 => {
                (400, S3Code::InvalidArgument)
            }
            Self::InvalidUri => (400, S3Code::InvalidURI),
            Self::InvalidAccessKeyId => (403, S3Code::InvalidAccessKeyId),
            Self::SignatureDoesNotMatch | Self::ChunkSignatureDoesNotMatch => {
                (403, S3Code::SignatureDoesNotMatch)
            }
            Self::RequestTimeTooSkewed => (403, S3Code::RequestTimeTooSkewed),
            Self::Expired
            | Self::NotYetValid
            | Self::MissingAuthentication
            | Self::MissingDate
            | Self::HeadersNotSigned => (403, S3Code::AccessDenied),
            Self::MalformedPostRequest(_) => (400, S3Code::MalformedPOSTRequest),
            Self::PostPreDataTooLarge { .. } => (400, S3Code::MaxPostPreDataLengthExceeded),
            Self::PostFileMissing => (400, S3Code::IncorrectNumberOfFilesInPostRequest),
            Self::PostFieldMissing(_) | Self::PostFieldInvalid(_) => (400, S3Code::InvalidArgument),
            Self::InvalidPolicyDocument(_) => (400, S3Code::InvalidPolicyDocument),
            Self::PolicyExpired | Self::PolicyConditionFailed(_) | Self::PolicyExtraField(_) => {
                (403, S3Code::AccessDenied)
            }
            Self::EntityTooSmall => (400, S3Code::EntityTooSmall),
            Self::Unsignable(_) => (500, S3Code::InternalError),
        }
    }

    /// A short, stable label for metrics (`reason` label of the auth-failure counter).
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::AuthorizationHeaderMalformed(_) => "header_malformed",
            Self::AuthorizationQueryParametersError(_) => "query_malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MultipleAuthMechanisms => "multiple_auth",
            Self::MissingAuthentication => "unsigned",
            Self::InvalidAccessKeyId => "unknown_key",
            Self::SignatureDoesNotMatch => "bad_signature",
            Self::ChunkSignatureDoesNotMatch => "bad_chunk_signature",
            Self::RequestTimeTooSkewed => "skewed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingDate => "missing_date",
            Self::HeadersNotSigned => "headers_not_signed",
            Self::MissingContentSha256 => "missing_content_sha256",
            Self::InvalidContentSha256 => "invalid_content_sha256",
            Self::InvalidUri => "invalid_uri",
            Self::MalformedChunk(_) => "malformed_chunk",
            Self::ChunkTooLarge { .. } => "chunk_too_large",
            Self::DecodedLengthMismatch => "decoded_length_mismatch",
            Self::MalformedPostRequest(_)
            | Self::PostFileMissing
            | Self::PostFieldMissing(_)
            | Self::PostFieldInvalid(_) => "form_malformed",
            Self::PostPreDataTooLarge { resigned: false } => "form_too_large",
            Self::PostPreDataTooLarge { resigned: true } => "form_not_resignable",
            Self::InvalidPolicyDocument(_) => "policy_malformed",
            Self::PolicyExpired => "policy_expired",
            Self::PolicyConditionFailed(_) | Self::PolicyExtraField(_) | Self::EntityTooSmall => {
                "policy_condition"
            }
            Self::Unsignable(_) => "unsignable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SigV4Error;
    use crate::s3code::S3Code;

    #[test]
    fn codes_are_those_s3_answers() {
        assert_eq!(
            SigV4Error::SignatureDoesNotMatch.s3_status(),
            (403, S3Code::SignatureDoesNotMatch)
        );
        assert_eq!(
            SigV4Error::InvalidAccessKeyId.s3_status(),
            (403, S3Code::InvalidAccessKeyId)
        );
        assert_eq!(
            SigV4Error::RequestTimeTooSkewed.s3_status(),
            (403, S3Code::RequestTimeTooSkewed)
        );
        assert_eq!(SigV4Error::Expired.s3_status(), (403, S3Code::AccessDenied));
        assert_eq!(SigV4Error::Expired.to_string(), "request has expired");
        assert_eq!(
            SigV4Error::AuthorizationHeaderMalformed("x").s3_status(),
            (400, S3Code::AuthorizationHeaderMalformed)
        );
        assert_eq!(
            SigV4Error::AuthorizationQueryParametersError("x").s3_status(),
            (400, S3Code::AuthorizationQueryParametersError)
        );
        // Browser-form uploads (post.rs), with S3's messages.
        assert_eq!(
            SigV4Error::MalformedPostRequest("x").s3_status(),
            (400, S3Code::MalformedPOSTRequest)
        );
        assert_eq!(
            SigV4Error::PostFileMissing.s3_status(),
            (400, S3Code::IncorrectNumberOfFilesInPostRequest)
        );
        assert_eq!(
            SigV4Error::InvalidPolicyDocument("Invalid JSON.").s3_status(),
            (400, S3Code::InvalidPolicyDocument)
        );
        assert_eq!(
            SigV4Error::PolicyExpired.s3_status(),
            (403, S3Code::AccessDenied)
        );
        assert_eq!(
            SigV4Error::PolicyExpired.to_string(),
            "Invalid according to Policy: Policy expired."
        );
        assert_eq!(
            SigV4Error::PolicyExtraField("x-amz-meta-a".into()).to_string(),
            "Invalid according to Policy: Extra input fields: x-amz-meta-a"
        );
        assert_eq!(
            SigV4Error::EntityTooSmall.s3_status(),
            (400, S3Code::EntityTooSmall)
        );
        assert_eq!(
            SigV4Error::PostPreDataTooLarge { resigned: true }.metric_reason(),
            "form_not_resignable"
        );
    }
}
