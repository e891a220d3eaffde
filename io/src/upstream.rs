//! A core's keep-alive connections to storage nodes. Each node has a bounded stack of idle
//! connections (most recently used first, so the rest age out); a connection is checked for
//! a close or stray bytes before reuse, and expires after the idle timeout — storage nodes
//! close idle connections too, and a request sent on a connection the node just closed
//! would fail for no reason.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::conn::Conn;
use crate::error::{Error, Kind, Side};
use crate::tls::ClientTls;

/// How to encrypt to a node: its pool's TLS settings and the host name it was
/// configured by (the SNI and certificate name unless the pool names another).
#[derive(Clone, Copy)]
pub struct TlsTarget<'a> {
    /// The pool's client config.
    pub tls: &'a ClientTls,
    /// The node's host as written in the config.
    pub host: &'a str,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The key of a stack of idle connections: the node, and for connections that began with
/// a PROXY header the client it named (such a connection is reused for that client only).
type IdleKey = (SocketAddr, Option<SocketAddr>);

/// Per-core pool of idle upstream connections, keyed by node address (and owner).
pub struct UpstreamPool {
    idle: RefCell<HashMap<IdleKey, Vec<Idle>>>,
    idle_per_node_max: Cell<usize>,
    idle_timeout: Cell<Duration>,
    connect_timeout: Cell<Duration>,
    buf_bytes: usize,
}

/// An upstream connection and whether it came from the pool (a reused connection may have
/// been closed by the node in the meantime, which makes a failure on it retryable).
pub struct Checkout {
    /// The connection.
    pub conn: Conn,
    /// True when taken from the idle pool.
    pub reused: bool,
}

impl UpstreamPool {
    /// A pool keeping at most `idle_per_node_max` idle connections per node for
    /// `idle_timeout`; new connections give up after `connect_timeout`.
    pub fn new(
        idle_per_node_max: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
        buf_bytes: usize,
    ) -> Self {
        UpstreamPool {
            idle: RefCell::new(HashMap::new()),
            idle_per_node_max: Cell::new(idle_per_node_max),
            idle_timeout: Cell::new(idle_timeout),
            connect_timeout: Cell::new(connect_timeout),
            buf_bytes,
        }
    }

    /// Applies new limits (config reload); idle connections stay.
    pub fn reconfigure(
        &self,
        idle_per_node_max: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) {
        self.idle_per_node_max.set(idle_per_node_max);
        self.idle_timeout.set(idle_timeout);
        self.connect_timeout.set(connect_timeout);
    }

    /// Drops idle connections to nodes `keep` rejects (removed by a reload).
    pub fn retain_nodes(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.idle.borrow_mut().retain(|(addr, _), _| keep(addr));
    }

    /// A live idle connection to `node` (when `reuse` allows one), or a new one
    /// (encrypted when `tls` says so; config validation keeps a node spoken to one way,
    /// so idle ones match). A request that just lost a reused connection asks for a new
    /// one: the node may have closed its other idle ones too.
    pub async fn checkout(
        &self,
        node: SocketAddr,
        tls: Option<TlsTarget<'_>>,
        now: Instant,
        reuse: bool,
    ) -> Result<Checkout, Error> {
        if let Some(conn) = reuse.then(|| self.take_idle((node, None), now)).flatten() {
            return Ok(Checkout { conn, reused: true });
        }
        let conn = self.connect(node, tls).await?;
        Ok(Checkout {
            conn,
            reused: false,
        })
    }

    /// Like [`UpstreamPool::checkout`], for a connection that speaks for `source`: an idle
    /// one that began with a PROXY v2 header naming it, or a new one that begins with
    /// one (`source` the client, `destination` the address it reached weir at), written
    /// before anything else, TLS included.
    pub async fn checkout_proxied(
        &self,
        node: SocketAddr,
        tls: Option<TlsTarget<'_>>,
        now: Instant,
        reuse: bool,
        source: SocketAddr,
        destination: SocketAddr,
    ) -> Result<Checkout, Error> {
        let idle = reuse.then(|| self.take_idle((node, Some(source)), now));
        if let Some(conn) = idle.flatten() {
            return Ok(Checkout { conn, reused: true });
        }
        let header = crate::proxy_protocol::encode_v2(source, destination);
        let mut conn = self.connect_with(node, tls, &header).await?;
        conn.set_owner(source);
        Ok(Checkout {
            conn,
            reused: false,
        })
    }

    fn take_idle(&self, key: IdleKey, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.get_mut(&key)?;
        while let Some(entry) = stack.pop() {
            if now.saturating_duration_since(entry.since) < self.idle_timeout.get()
                && !entry.conn.is_stale()
            {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Opens a new connection to `node`, with a TLS handshake when `tls` is given.
    pub async fn connect(
        &self,
        node: SocketAddr,
        tls: Option<TlsTarget<'_>>,
    ) -> Result<Conn, Error> {
        self.connect_with(node, tls, &[]).await
    }

    /// [`UpstreamPool::connect`], sending `preamble` (a PROXY header) first.
    async fn connect_with(
        &self,
        node: SocketAddr,
        tls: Option<TlsTarget<'_>>,
        preamble: &[u8],
    ) -> Result<Conn, Error> {
        let stream =
            match monoio::time::timeout(self.connect_timeout.get(), TcpStream::connect(node)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(Error::new(
                        Side::Upstream,
                        Kind::Connect,
                        format!("connect {node}: {e}"),
                    ))
                }
                Err(_) => {
                    return Err(Error::new(
                        Side::Upstream,
                        Kind::Timeout,
                        format!("connect {node}: timed out"),
                    ))
                }
            };
        if !preamble.is_empty() {
            write_preamble(&stream, preamble)
                .await
                .map_err(|e| Error::new(Side::Upstream, Kind::Connect, format!("{node}: {e}")))?;
        }
        let socket = match tls {
            None => stream.into(),
            Some(t) => t.tls.connect(stream, t.host).await.map_err(|e| {
                let mut err = Error::new(Side::Upstream, Kind::Connect, format!("{node}: {e}"));
                err.tls_failure = Some(e.failure);
                err
            })?,
        };
        Conn::new(socket, self.buf_bytes).map_err(|e| Error::from_io(Side::Internal, &e))
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn checkin(&self, node: SocketAddr, conn: Conn, now: Instant) {
        if !conn.buffered().is_empty() {
            return; // stray bytes after a complete response: the stream is out of sync
        }
        let mut idle = self.idle.borrow_mut();
        let owned = conn.owner().is_some();
        if owned && !idle.contains_key(&(node, conn.owner())) {
            // Clients' own connections count together against the node's idle cap: a
            // client that connects once and leaves must not leave a socket to the node
            // for every visit until the idle timeout. The longest idle goes first.
            let max = self.idle_per_node_max.get();
            loop {
                let owned_here = idle.iter().filter(|((n, o), _)| *n == node && o.is_some());
                if owned_here.clone().count() < max {
                    break;
                }
                let oldest = owned_here
                    .min_by_key(|(_, stack)| stack.first().map(|e| e.since))
                    .map(|(key, _)| *key);
                match oldest {
                    Some(key) => {
                        idle.remove(&key);
                    }
                    None => break,
                }
            }
            if max == 0 {
                return;
            }
        }
        let stack = idle.entry((node, conn.owner())).or_default();
        // A client's own connection: one idle is all it can use (its requests come one
        // at a time), and there may be as many such stacks as client connections.
        if owned && !stack.is_empty() && self.idle_per_node_max.get() > 0 {
            stack.clear();
        }
        if stack.len() >= self.idle_per_node_max.get() {
            if self.idle_per_node_max.get() == 0 {
                return;
            }
            stack.remove(0); // the oldest goes: it is the likeliest to be closed by the node
        }
        stack.push(Idle { conn, since: now });
    }

    /// Drops connections idle longer than the timeout (called periodically by the core).
    pub fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        for stack in idle.values_mut() {
            stack.retain(|e| now.saturating_duration_since(e.since) < self.idle_timeout.get());
        }
        idle.retain(|_, s| !s.is_empty());
    }

    /// Idle connections held for `node`.
    pub fn idle_count(&self, node: SocketAddr) -> usize {
        self.idle.borrow().get(&(node, None)).map_or(0, Vec::len)
    }
}

/// Writes `bytes` on a fresh socket before any other byte (and before TLS).
async fn write_preamble(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        match crate::sys::send(stream.as_raw_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable(false).await?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
