//! weir's decisions: configuration schema and validation, request classification and
//! routing, node health, balancing across failover chains, throttling (AIMD), retries,
//! mid-body resume, protecting the storage (token buckets, caps, QoS queues), client
//! addresses behind proxies (`forwarded`), and SigV4
//! verification and re-signing.
//!
//! This crate is pure by design (docs/design.md, "Layout and dependency direction"): it
//! does no I/O, never reads the clock and spawns nothing. Time and randomness are passed in
//! by the caller (the appliance), so every decision can be unit-tested, property-tested and
//! replayed in a seeded simulation. `clippy.toml` beside this crate bans the clock reads.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Panics on input-dependent paths would take a whole shard down; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod aimd;
pub mod attempt;
pub mod balance;
pub mod classify;
pub mod config;
pub mod forwarded;
pub mod health;
pub mod limits;
pub mod qos;
pub mod rand;
pub mod resume;
pub mod retry;
pub mod route;
pub mod s3code;
pub mod s3op;
pub mod sigv4;

mod dns;
mod percent;
