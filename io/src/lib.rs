//! weir-io: every mechanism of the data path — HTTP/1.1 head codec and body framing
//! (`http`), connections with read-ahead (`conn`), the zero-copy splice relay with a copy
//! fallback (`relay`, `pipe`), upstream keep-alive pools (`upstream`), TLS termination and origination with kTLS or a
//! user-space fallback (`tls`), the PROXY protocol (`proxy_protocol`), and executor and
//! listener set-up (`runtime`).
//!
//! It knows nothing of tenants, pools or policy: the appliance asks `weir-policy` what to do
//! and uses this crate to move the bytes.

pub mod conn;
pub mod error;
pub mod http;
pub mod pipe;
pub mod proxy_protocol;
pub mod relay;
pub mod runtime;
pub mod sys;
pub mod tls;
pub mod upstream;

pub use error::{Error, Kind, Side};
