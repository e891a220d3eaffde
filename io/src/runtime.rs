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

/// `count` listening sockets on `addr` bound with `SO_REUSEPORT` (one per core), sharing
/// the address with no one else: `SO_REUSEPORT` lets any process of the same user join a
/// group and take a share of its connections, so a taken address must fail the start
/// (`io::ErrorKind::AddrInUse`) instead of being quietly split with a stranger.
///
/// Two checks: before binding, a probe socket without `SO_REUSEPORT` binds the address
/// (the kernel refuses it while anyone listens there, or on an overlapping wildcard);
/// after binding, the kernel's socket table must show no listener on the address but
/// ours, which catches another process that bound between the probe and the group.
/// A deliberate hand-over of listeners to a new process does not come through here: it
/// adopts the sockets it is given.
pub fn exclusive_listener_group(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<std::net::TcpListener>> {
    let in_use = |why: String| io::Error::new(io::ErrorKind::AddrInUse, why);
    {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // A previous run's TIME_WAIT connections must not fail the start; a listener must.
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => in_use(format!(
                "{addr} is already in use (another process listens on it)"
            )),
            _ => e,
        })?;
    }
    verified_group(addr, count, backlog)
}

/// The group of [`exclusive_listener_group`], bound, then checked against the kernel's
/// socket table.
fn verified_group(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<std::net::TcpListener>> {
    let in_use = |why: String| io::Error::new(io::ErrorKind::AddrInUse, why);
    let group = (0..count.max(1))
        .map(|_| reuseport_listener(addr, backlog))
        .collect::<io::Result<Vec<_>>>()?;
    let ours: Vec<u64> = group.iter().filter_map(|l| socket_inode(l).ok()).collect();
    // Without /proc the probe alone stands guard.
    if let Ok(others) = foreign_listeners(addr, &ours) {
        if others > 0 {
            return Err(in_use(format!(
                "{addr} is already in use ({others} listening socket(s) of another process \
                 joined it with SO_REUSEPORT)"
            )));
        }
    }
    Ok(group)
}

/// The inode number of a socket, as `/proc/net/tcp` lists it.
fn socket_inode(listener: &std::net::TcpListener) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: fstat writes into a zeroed stat we own; the fd is valid for the borrow.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(listener.as_raw_fd(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        st
    };
    Ok(st.st_ino)
}

/// Listening TCP sockets in this network namespace whose address overlaps `addr` (the
/// same port, and the same address or a wildcard on either side) and whose inode is not
/// in `ours`.
fn foreign_listeners(addr: SocketAddr, ours: &[u64]) -> io::Result<usize> {
    let table = if addr.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table)?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(parse_proc_net_tcp_line)
        .filter(|(local, state, inode)| {
            *state == TCP_LISTEN
                && local.port() == addr.port()
                && (local.ip() == addr.ip()
                    || local.ip().is_unspecified()
                    || addr.ip().is_unspecified())
                && !ours.contains(inode)
        })
        .count())
}

/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: u8 = 0x0A;

/// Local address, state and inode of one `/proc/net/tcp{,6}` line:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`, addresses in hex as the
/// kernel stores them (each 32-bit word in host byte order).
fn parse_proc_net_tcp_line(line: &str) -> Option<(SocketAddr, u8, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    let (ip_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let words = ip_hex
        .as_bytes()
        .chunks(8)
        .map(|w| {
            std::str::from_utf8(w)
                .ok()
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<Vec<u32>>>()?;
    let ip: std::net::IpAddr = match words.as_slice() {
        [a] => std::net::Ipv4Addr::from(a.to_ne_bytes()).into(),
        [a, b, c, d] => {
            let mut octets = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                octets[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            std::net::Ipv6Addr::from(octets).into()
        }
        _ => return None,
    };
    Some((
        SocketAddr::new(ip, port),
        u8::from_str_radix(state, 16).ok()?,
        inode.parse().ok()?,
    ))
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

/// A listening TCP socket handed over by another process (docs/operations.md, "Upgrade
/// without downtime"), checked before it is trusted: a stream socket of the IPv4 or IPv6
/// family that is listening. Anything else (a unix socket, a connected stream, a file) is
/// refused with `io::ErrorKind::InvalidInput`, so a confused or hostile sender cannot make
/// a core accept on something that is not a listener.
pub fn listener_from_fd(fd: std::os::fd::OwnedFd) -> io::Result<std::net::TcpListener> {
    let socket = Socket::from(fd);
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    let domain = socket.domain()?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(invalid("not an IPv4 or IPv6 socket"));
    }
    if socket.r#type()? != Type::STREAM {
        return Err(invalid("not a stream socket"));
    }
    if !socket.is_listener()? {
        return Err(invalid("not a listening socket"));
    }
    Ok(socket.into())
}

/// The next connection on `listener`, or `None` once `stop` is ready. Stopping cancels
/// the accept in flight and waits for its outcome instead of dropping it: under io_uring a
/// dropped accept stays queued in the kernel and can still take a connection, whose
/// descriptor nobody would ever read or close. When the cancel loses the race the
/// connection comes back as `Some(Ok(..))`, for the caller to serve to its end; the next
/// call, with `stop` still ready, returns `None` without starting another accept.
pub async fn accept_unless<F: std::future::Future>(
    listener: &monoio::net::TcpListener,
    stop: F,
) -> Option<io::Result<(monoio::net::TcpStream, SocketAddr)>> {
    let canceller = monoio::io::Canceller::new();
    let accept = listener.cancelable_accept(canceller.handle());
    let mut accept = std::pin::pin!(accept);
    let stop = std::pin::pin!(stop);
    monoio::select! {
        biased;
        _ = stop => {}
        accepted = &mut accept => return Some(accepted),
    }
    let _ = canceller.cancel();
    match accept.await {
        Ok(accepted) => Some(Ok(accepted)),
        Err(_) => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_parse() {
        let v4 = "   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_proc_net_tcp_line(v4),
            Some(("127.0.0.1:9000".parse().unwrap(), TCP_LISTEN, 123456))
        );
        let v6 = "   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 42 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_proc_net_tcp_line(v6),
            Some(("[::1]:8080".parse().unwrap(), TCP_LISTEN, 42))
        );
        assert_eq!(
            parse_proc_net_tcp_line("  sl  local_address rem_address   st"),
            None
        );
    }

    /// Only a listening TCP socket is adopted from another process: a bound socket that
    /// does not listen, a connected stream and a unix socket are refused.
    #[test]
    fn only_a_listening_tcp_socket_is_adopted() {
        use std::os::fd::OwnedFd;
        let listener = reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = std::net::TcpStream::connect(addr).unwrap();
        let err = listener_from_fd(OwnedFd::from(stream)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let bound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        bound
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let err = listener_from_fd(OwnedFd::from(bound)).unwrap_err();
        assert!(err.to_string().contains("not a listening socket"), "{err}");
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = listener_from_fd(OwnedFd::from(unix)).unwrap_err();
        assert!(err.to_string().contains("not an IPv4 or IPv6"), "{err}");
        let adopted = listener_from_fd(OwnedFd::from(listener)).unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
    }

    /// A second group on an address already taken by a `SO_REUSEPORT` group (the way a
    /// second weir of the same user would join it) fails; once the first is gone the
    /// address can be taken again.
    #[test]
    fn a_taken_address_fails_the_group() {
        let first = exclusive_listener_group("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap();
        let addr = first[0].local_addr().unwrap();
        // What a stranger's reuseport socket does on its own: it joins.
        let stranger = reuseport_listener(addr, 16).unwrap();
        drop(first);
        let err = exclusive_listener_group(addr, 2, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        // A stranger that joined after the probe passed is caught by the second check.
        let err = verified_group(addr, 2, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("1 listening socket(s)"), "{err}");
        drop(stranger);
        let again = exclusive_listener_group(addr, 2, 16).unwrap();
        assert_eq!(again.len(), 2);
        // Our own group is not "another process".
        assert_eq!(
            foreign_listeners(
                addr,
                &again
                    .iter()
                    .map(|l| socket_inode(l).unwrap())
                    .collect::<Vec<_>>()
            )
            .unwrap(),
            0
        );
        // A wildcard listener of someone else overlaps a specific address.
        let wildcard = reuseport_listener(SocketAddr::new([0, 0, 0, 0].into(), addr.port()), 16);
        if let Ok(w) = wildcard {
            assert!(foreign_listeners(addr, &[]).unwrap() >= 3);
            drop(w);
        }
    }
}
