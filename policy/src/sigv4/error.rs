//! Why a request failed authentication, as the S3 error the client should get.
//!
//! Every variant is a client-side failure that retrying unchanged cannot fix, except
//! [`SigV4Error::Unsignable`], which is weir's own (re-signing misuse) and answers 500.

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
    /// weir was asked to sign something it cannot (a bad header name, a key for another
    /// day): a bug or misconfiguration on weir's side.
    #[error("cannot sign the request: {0}")]
    Unsignable(&'static str),
}

impl SigV4Error {
    /// The HTTP status and S3 error `Code` to answer the client with.
    pub fn s3_status(&self) -> (u16, &'static str) {
        match self {
            Self::AuthorizationHeaderMalformed(_) => (400, "AuthorizationHeaderMalformed"),
            Self::AuthorizationQueryParametersError(_) => {
                (400, "AuthorizationQueryParametersError")
            }
            Self::UnsupportedAlgorithm | Self::MissingContentSha256 => (400, "InvalidRequest"),
            Self::MalformedChunk(_) | Self::DecodedLengthMismatch => (400, "IncompleteBody"),
            Self::ChunkTooLarge { .. } => (400, "InvalidRequest"),
            Self::MultipleAuthMechanisms | Self::InvalidContentSha256 => (400, "InvalidArgument"),
            Self::InvalidUri => (400, "InvalidURI"),
            Self::InvalidAccessKeyId => (403, "InvalidAccessKeyId"),
            Self::SignatureDoesNotMatch | Self::ChunkSignatureDoesNotMatch => {
                (403, "SignatureDoesNotMatch")
            }
            Self::RequestTimeTooSkewed => (403, "RequestTimeTooSkewed"),
            Self::Expired
            | Self::NotYetValid
            | Self::MissingAuthentication
            | Self::MissingDate
            | Self::HeadersNotSigned => (403, "AccessDenied"),
            Self::Unsignable(_) => (500, "InternalError"),
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
            Self::Unsignable(_) => "unsignable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SigV4Error;

    #[test]
    fn codes_are_those_s3_answers() {
        assert_eq!(
            SigV4Error::SignatureDoesNotMatch.s3_status(),
            (403, "SignatureDoesNotMatch")
        );
        assert_eq!(
            SigV4Error::InvalidAccessKeyId.s3_status(),
            (403, "InvalidAccessKeyId")
        );
        assert_eq!(
            SigV4Error::RequestTimeTooSkewed.s3_status(),
            (403, "RequestTimeTooSkewed")
        );
        assert_eq!(SigV4Error::Expired.s3_status(), (403, "AccessDenied"));
        assert_eq!(SigV4Error::Expired.to_string(), "request has expired");
        assert_eq!(
            SigV4Error::AuthorizationHeaderMalformed("x").s3_status(),
            (400, "AuthorizationHeaderMalformed")
        );
        assert_eq!(
            SigV4Error::AuthorizationQueryParametersError("x").s3_status(),
            (400, "AuthorizationQueryParametersError")
        );
    }
}
