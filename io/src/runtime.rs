//! Executors and listeners: one monoio executor per core, pinned, each with its own
//! `SO_REUSEPORT` listener so the kernel spreads connections across cores without a shared
//! accept queue. io_uring is used where the kernel allows it; containers often block it,
//! and then monoio's epoll driver runs instead — we say which.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Which monoio driver a core runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring.
    IoUring,
    /// epoll (legacy driver), when io_uring is unavailable.
    Epoll,
}

impl Driver {
    /// The driver this process can use: io_uring when the kernel lets us create a ring.
    pub fn detect() -> Driver {
        if monoio::utils::detect_uring() {
            Driver::IoUring
        } else {
            Driver::Epoll
        }
    }

    /// Name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// A listening socket bound with `SO_REUSEPORT` (one per core on the same address).
pub fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Runs `f` on a new monoio executor of the detected driver, on the current thread.
pub fn block_on<F, Fut>(driver: Driver, ring_entries: u32, f: F) -> io::Result<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future,
{
    match driver {
        Driver::IoUring => {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(ring_entries)
                .build()?;
            Ok(rt.block_on(f()))
        }
        Driver::Epoll => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok(rt.block_on(f()))
        }
    }
}
