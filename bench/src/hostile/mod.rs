//! The hostile peers of weir, for tests and benchmarks that prove its hardening:
//!
//! - [`node`]: a storage node that misbehaves on request — 1xx floods, bodies cut by an
//!   RST, early final answers to uploads, oversized and malformed heads, wrong
//!   `Content-Length`s, bytes on an idle connection, connections closed on a "query of
//!   death" — chosen per request by its target ([`script`]), mixed freely with
//!   well-behaved answers, recording everything it received;
//! - [`attack`]: a client fleet that holds a proxy's resources — slowloris heads, slow
//!   bodies, idle connections — and hammers it with header bombs and connection floods,
//!   from configurable source addresses.
//!
//! weir-sim (`crate::sim`) stays the well-behaved node; nothing here shares weir's codec.

pub mod attack;
pub mod node;
pub mod script;

pub use node::{
    early_answer_body, spawn_hostile_nodes, Connection, HostileNode, HostileOptions, Received,
};
pub use script::{expected_body, Script, SMUGGLED_BODY};
