//! Request classification for routing: which bucket a request addresses (exactly the one
//! the node will act on, or a refusal: docs/identity.md, "Request targets"), what kind of S3
//! operation it is, which client block it comes from, and (in `config`) which pool serves
//! that bucket.
//!
//! Driven by the appliance once per request, after the head is parsed and before
//! admission; everything here works on borrowed head fields and does not allocate except
//! for a virtual-host bucket (lower-cased) and where a `String` is returned.

mod cidr;
mod glob;
mod key;
mod s3;

pub use cidr::{Cidr, CidrError};
pub use glob::{BucketGlob, GlobError};
pub use key::{KeyPrefix, KeyPrefixError, RoutingKey};
pub use s3::{
    check_key_text, copy_source_bucket, is_access_key, is_bucket_name, op_class, s3_target,
    BucketNames, OpClass, S3Target, TargetError,
};
