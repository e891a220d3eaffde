//! weir-bench: the tools that load and check weir from the outside — a storage-node
//! simulator with fault injection (`sim`), a verifying load generator (`load`), and the
//! pieces they share (the synthetic object pattern, range resolution, a latency histogram,
//! a strict chunked decoder, a one-shot HTTP client, unsigned access keys (`auth`) and real
//! SigV4 signing (`sigv4`)), the comparison runner against HAProxy, nginx and Envoy, over
//! the simulator or a SeaweedFS cluster (`runner`), and hostile peers: a misbehaving storage
//! node and an attacking client fleet (`hostile`).
//!
//! Nothing here is used by the appliance at run time, and nothing here uses weir's own
//! codec: the bench checks weir, so it must not share weir's bugs.

pub mod auth;
pub mod hist;
pub mod hostile;
pub mod http;
pub mod load;
pub mod pattern;
pub mod range;
pub mod runner;
pub mod sigv4;
pub mod sim;
pub mod units;

pub use pattern::Synthetic;
pub use sim::{spawn_nodes, spawn_nodes_at, BodyMode, Faults, Seen, SimNode, SimOptions, SimStats};
