//! Loopback ports for the servers a test starts.
//!
//! Ports come from 20000..32000 (below Linux's default ephemeral range, so an outgoing
//! connection cannot take one between our check and the server's bind). Each test process
//! starts at an offset derived from its pid and never hands out a port twice; a port is only
//! returned after a bind to it succeeded, so ports held by other processes are skipped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const PORT_FIRST: u32 = 20_000;
const PORT_COUNT: u32 = 12_000;

fn counter() -> &'static AtomicU32 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    NEXT.get_or_init(|| AtomicU32::new((std::process::id().wrapping_mul(7919)) % PORT_COUNT))
}

/// A loopback port that is free right now and was not handed out before in this process.
pub fn free_port() -> u16 {
    for _ in 0..PORT_COUNT {
        let n = counter().fetch_add(1, Ordering::Relaxed) % PORT_COUNT;
        let port = (PORT_FIRST + n) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port in {PORT_FIRST}..{}",
        PORT_FIRST + PORT_COUNT
    );
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}
