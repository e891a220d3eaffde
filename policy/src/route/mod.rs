//! Request classification for routing: which bucket a request addresses, what kind of S3
//! operation it is, which client block it comes from, and (in `config`) which pool serves
//! that bucket.
//!
//! Driven by the appliance once per request, after the head is parsed and before
//! admission; everything here works on borrowed head fields and does not allocate except
//! where a `String` is returned.

mod cidr;
mod glob;
mod s3;

pub use cidr::{Cidr, CidrError};
pub use glob::{BucketGlob, GlobError};
pub use s3::{
    bucket_of, is_bucket_name, op_class, s3_target, virtual_host_bucket, OpClass, S3Target,
};
