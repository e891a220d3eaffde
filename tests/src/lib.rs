//! Shared helpers of weir's end-to-end tests: real S3 servers (s3s-fs, SeaweedFS) as storage
//! nodes, real S3 clients (boto3, AWS CLI, s5cmd, curl) in front, weir in between.
//!
//! One module per concern, each owning its processes (killed on drop, logs kept in a temp
//! folder and quoted in failure messages):
//!
//! - [`ports`]: loopback ports that are free now and not handed out twice in this process.
//! - [`tools`]: where the installed tools live (`scripts/test-deps.sh` puts them there); a
//!   missing tool is a loud failure, never a skip.
//! - [`process`]: a child process guard (kill on drop, log capture, readiness waits).
//! - [`netns`]: a network namespace behind a veth pair, for `tc netem` on one node's path.
//! - [`nodes`]: storage nodes: s3s-fs instances (one data folder each) and a SeaweedFS
//!   cluster with several S3 gateways over one filer.
//! - [`weir`]: the weir binary under test, its config, its metrics.
//! - [`tcp`]: a [`tcp::Canary`] that never answers and a counting [`tcp::Relay`], both
//!   counting what reached them.
//! - [`clients`]: boto3 scripts from `tests/py/`, the AWS CLI, s5cmd, curl `--aws-sigv4`.
//! - [`data`]: deterministic test data and SHA-256 helpers.
//! - [`raw`]: raw HTTP/1.1 over TCP for the malformed-request corpus.
//! - [`hostile`]: the bench's hostile storage node, and a raw client telling FIN from RST.
//! - [`sim`]: the bench simulator's in-process nodes (synthetic objects, fault injection).
//! - [`strace`]: bytes moved by splice(2), from strace output (the zero-copy proof).
//! - [`transfer`]: background curl GETs/PUTs checked by SHA-256, synthetic-object hashes,
//!   polling with a deadline.

pub mod certs;
pub mod clients;
pub mod data;
pub mod hostile;
pub mod netns;
pub mod nodes;
pub mod ports;
pub mod process;
pub mod raw;
pub mod sim;
pub mod strace;
pub mod tcp;
pub mod tools;
pub mod transfer;
pub mod weir;

/// Access key every storage node in the tests accepts.
pub const ACCESS_KEY: &str = "WEIRTESTACCESSKEY000";
/// Secret key that goes with [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "weir-test-secret-key-0000000000000000000";
/// A second identity SeaweedFS accepts: a tenant of its own in the protection tests.
pub const FLOOD_ACCESS_KEY: &str = "WEIRTESTFLOODKEY0000";
/// Secret key that goes with [`FLOOD_ACCESS_KEY`].
pub const FLOOD_SECRET_KEY: &str = "weir-test-flood-secret-00000000000000000";
/// Region the clients sign for.
pub const REGION: &str = "us-east-1";
