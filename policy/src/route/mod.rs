//! Request classification for routing: which bucket a request addresses, what kind of S3
//! operation it is, and (in `config`) which pool serves that bucket.
//!
//! Driven by the appliance once per request, after the head is parsed and before
//! admission; everything here works on borrowed head fields and does not allocate except
//! where a `String` is returned.

mod glob;
mod s3;

pub use glob::{BucketGlob, GlobError};
pub use s3::{bucket_of, is_bucket_name, op_class, s3_target, OpClass, S3Target};
