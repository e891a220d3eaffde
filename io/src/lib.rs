//! weir-io: every mechanism of the data path — HTTP/1.1 head codec and body framing
//! (`http`), zero-copy splice relay with a copy fallback (`splice`, `relay`), upstream
//! keep-alive pools (`upstream`), and executor/listener set-up (`runtime`).
//!
//! It knows nothing of tenants, pools or policy: the appliance asks `weir-policy` what to do
//! and uses this crate to move the bytes.

pub mod http;
