//! Binary upgrade without downtime (docs/operations.md, "Upgrade without downtime"). A
//! running weir offers its listening sockets on a unix socket (`appliance.upgrade_socket`);
//! a new weir started with `--upgrade-from PATH` takes them (`SCM_RIGHTS`), serves on them,
//! and only then tells the old one, which stops accepting, finishes what it has in flight
//! and exits 0. The sockets themselves never close, so the connections queued on them
//! carry over: nothing is refused, nothing dropped.
//!
//! The exchange, one `SOCK_SEQPACKET` message each (text, at most [`MESSAGE_MAX`] bytes):
//! - new → old: `weir-upgrade 1`
//! - old → new: `socket <kind> <address>`, with the socket's descriptor attached, once per
//!   listening socket; then `end <count> <pid>`
//! - new → old: `serving <pid>`, once every core of the new process runs
//! - old → new: `draining`
//!
//! A new process that goes away before `serving` (a bad config, a crash) abandons the
//! upgrade: the old one never stopped accepting and serves on. Anyone who can connect to
//! the socket gets every listener of the process, so it is created mode 0600 and a peer
//! whose uid is neither ours nor root is refused (`SO_PEERCRED`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

/// Largest message of the exchange.
const MESSAGE_MAX: usize = 256;
/// First message of a new process, naming the version of the exchange.
const HELLO: &str = "weir-upgrade 1";
/// How long either side waits for the other's next message before giving up. The old
/// process waits this long for `serving` while the new one loads its config and starts
/// its cores; giving up only abandons the upgrade.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a peer that connected has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a handed-over socket was in the process that offered it (for logs; the new
/// process matches sockets to its own config by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain-HTTP data listener (`appliance.listen`), one per core.
    Http,
    /// An HTTPS data listener (`tls.listen`), one per core.
    Https,
    /// The metrics port (`appliance.metrics`).
    Metrics,
    /// The admin port (`appliance.admin`).
    Admin,
}

impl Kind {
    /// The name on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Metrics => "metrics",
            Kind::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Http, Kind::Https, Kind::Metrics, Kind::Admin]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The sockets this process offers: duplicates of its listeners' descriptors, dropped
/// when the listeners close (a stop, or a hand-over) so that they keep no socket open.
static OFFERED: Mutex<Option<Vec<(Kind, OwnedFd)>>> = Mutex::new(None);

/// Set by a hand-over: the control listeners stop accepting (see [`control_stop`]).
static CONTROL_STOP: Mutex<Option<flume::Sender<()>>> = Mutex::new(None);
static CONTROL_STOPPED: std::sync::OnceLock<flume::Receiver<()>> = std::sync::OnceLock::new();

/// A future-ready signal for the metrics and admin accept loops: it fires (the channel
/// disconnects) once a new process has taken over their ports.
pub fn control_stop() -> flume::Receiver<()> {
    CONTROL_STOPPED
        .get_or_init(|| {
            let (tx, rx) = flume::bounded(1);
            *lock(&CONTROL_STOP) = Some(tx);
            rx
        })
        .clone()
}

/// Tells the control listeners to stop accepting (after a hand-over).
fn stop_control() {
    let _ = control_stop();
    lock(&CONTROL_STOP).take();
}

/// Closes this process's duplicates of its listeners: from now on nothing is offered, and
/// a stop's closed listeners are really closed. Called when a stop starts.
pub fn withdraw() {
    lock(&OFFERED).take();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The unix socket of `appliance.upgrade_socket`, bound (mode 0600) under a temporary
/// name next to its path, not yet reachable there: [`Prepared::publish`] puts it in place
/// once this process serves. Preparing first lets everything that can fail do so before
/// any core accepts a connection.
pub struct Prepared {
    socket: Socket,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
}

/// Prepares the upgrade socket at `path`. `upgrading`: this process takes its sockets from
/// one that still holds `path` (the new socket replaces it there at publish); otherwise a
/// live socket at `path` means another weir runs, and the start fails rather than take its
/// path.
pub fn prepare(path: &Path, upgrading: bool) -> io::Result<Prepared> {
    if !upgrading && connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{}: another process (a running weir?) accepts connections there",
                path.display()
            ),
        ));
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    socket.bind(&SockAddr::unix(&tmp)?)?;
    // Made private before it listens: no one can connect while it is looser.
    let private = (|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        socket.listen(4)
    })();
    if let Err(e) = private {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Prepared {
        socket,
        tmp,
        path: path.to_path_buf(),
    })
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Only a socket that was never published leaves its temporary name behind.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl Prepared {
    /// Puts the socket in place (replacing an old process's at the path at once) and
    /// offers `sockets` on it from a thread of its own; `on_handover` runs once, with the
    /// new process's pid, when a new process serves on them.
    pub fn publish(
        self,
        sockets: Vec<(Kind, OwnedFd)>,
        on_handover: impl FnOnce(u32) + Send + 'static,
    ) -> io::Result<()> {
        std::fs::rename(&self.tmp, &self.path)?;
        *lock(&OFFERED) = Some(sockets);
        let shown = self.path.display().to_string();
        let listener = self.socket.try_clone()?;
        std::thread::Builder::new()
            .name("weir-upgrade".into())
            .spawn(move || {
                let mut on_handover = Some(on_handover);
                loop {
                    let (peer, _) = match listener.accept() {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(socket = %shown, error = %e, "upgrade socket: accept failed");
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    };
                    match hand_over(&peer) {
                        Ok(pid) => {
                            if let Some(f) = on_handover.take() {
                                f(pid);
                            }
                            // One hand-over per process: the new one offers from now on.
                            return;
                        }
                        Err(e) => tracing::warn!(
                            socket = %shown,
                            error = %e,
                            "upgrade abandoned: still serving on our listeners"
                        ),
                    }
                }
            })?;
        Ok(())
    }
}

/// One hand-over with the process at the other end of `peer`: its pid once it serves.
fn hand_over(peer: &Socket) -> io::Result<u32> {
    let (pid, uid) = peer_credentials(peer)?;
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    if uid != ours && uid != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("pid {pid} of uid {uid} may not take our listeners (uid {ours} or root only)"),
        ));
    }
    peer.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let hello = receive(peer)?.0;
    if hello != HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("pid {pid} said {hello:?}, not {HELLO:?}"),
        ));
    }
    let count = {
        let offered = lock(&OFFERED);
        let Some(sockets) = offered.as_ref() else {
            return Err(io::Error::other("stopping: the listeners are closing"));
        };
        for (kind, fd) in sockets {
            let addr = socket2::SockRef::from(fd)
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("a listener without an IP address"))?;
            send(peer, &format!("socket {} {addr}", kind.as_str()), Some(fd))?;
        }
        sockets.len()
    };
    send(peer, &format!("end {count} {}", std::process::id()), None)?;
    tracing::info!(
        pid,
        sockets = count,
        "upgrade: handed our listeners to a new process; serving on until it serves"
    );
    peer.set_read_timeout(Some(STEP_TIMEOUT))?;
    let said = receive(peer)?.0;
    let Some(new_pid) = said
        .strip_prefix("serving ")
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("pid {pid} said {said:?}, not \"serving <pid>\""),
        ));
    };
    withdraw();
    stop_control();
    send(peer, "draining", None)?;
    Ok(new_pid)
}

/// The pid and uid of the process at the other end of a unix socket.
fn peer_credentials(peer: &Socket) -> io::Result<(i32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes into the ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            peer.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid))
}

fn connect(path: &Path) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    socket.connect(&SockAddr::unix(path)?)?;
    Ok(socket)
}

/// Sends one message, with `fd` attached when given.
fn send(socket: &Socket, text: &str, fd: Option<&OwnedFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: text.as_ptr() as *mut libc::c_void,
        iov_len: text.len(),
    };
    let mut control = [0u64; 4]; // 32 bytes, aligned: room for one descriptor's cmsg
                                 // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) };
        msg.msg_control = control.as_mut_ptr().cast();
        // `as _`: the field is usize on glibc, socklen_t on musl (the image's build).
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds `space` bytes (checked by the assert), so the
        // first header and its data fit; CMSG_* only compute addresses inside it.
        unsafe {
            assert!(space as usize <= std::mem::size_of_val(&control));
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        }
    }
    // SAFETY: msg points to live buffers; MSG_NOSIGNAL turns a gone peer into EPIPE.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message and the descriptor attached to it, if any (close-on-exec).
fn receive(socket: &Socket) -> io::Result<(String, Option<OwnedFd>)> {
    let mut buf = [0u8; MESSAGE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // `as _`: the field is usize on glibc, socklen_t on musl (the image's build).
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points to live buffers of the lengths it states.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of our buffer; CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk only inside them. An SCM_RIGHTS descriptor is ours to own.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    // Every descriptor received is owned (and so closed) even when more
                    // than the one expected arrive.
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message longer than the exchange allows",
        ));
    }
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the other process went away",
        ));
    }
    let text = std::str::from_utf8(&buf[..n as usize])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a message that is not text"))?;
    Ok((text.to_string(), fd))
}

/// The sockets taken from a running weir, until each is claimed by an address of the new
/// config; then [`Taken::serving`] tells the old process to drain.
pub struct Taken {
    conn: Socket,
    old_pid: u32,
    sockets: Vec<(Kind, SocketAddr, std::net::TcpListener)>,
}

/// Connects to the old process's upgrade socket at `path` and takes its listeners.
pub fn take(path: &Path) -> io::Result<Taken> {
    let conn = connect(path)?;
    // Only a process of our own user (or root) may hand us the sockets we will serve on.
    let (pid, uid) = peer_credentials(&conn)?;
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    if uid != ours && uid != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the process at the socket (pid {pid}) runs as uid {uid}, not {ours} or root"),
        ));
    }
    conn.set_read_timeout(Some(STEP_TIMEOUT))?;
    send(&conn, HELLO, None)?;
    let mut sockets = Vec::new();
    loop {
        let (text, fd) = receive(&conn)?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {text:?}"));
        let mut words = text.split(' ');
        match (words.next(), words.next(), words.next(), fd) {
            (Some("socket"), Some(kind), Some(_), Some(fd)) => {
                let kind = Kind::parse(kind).ok_or_else(bad)?;
                let listener = weir_io::runtime::listener_from_fd(fd)?;
                let addr = listener.local_addr()?;
                sockets.push((kind, addr, listener));
            }
            (Some("end"), Some(count), Some(pid), None) => {
                if count.parse::<usize>().ok() != Some(sockets.len()) {
                    return Err(bad());
                }
                let old_pid = pid.parse().map_err(|_| bad())?;
                tracing::info!(
                    old_pid,
                    sockets = sockets.len(),
                    "upgrade: took the listening sockets of the running weir"
                );
                return Ok(Taken {
                    conn,
                    old_pid,
                    sockets,
                });
            }
            _ => return Err(bad()),
        }
    }
}

impl Taken {
    /// The pid of the process the sockets came from.
    pub fn old_pid(&self) -> u32 {
        self.old_pid
    }

    /// Every taken socket bound to `addr` (a listener group: one per core of the old
    /// process), in the order the old process offered them; none for a port-0 address.
    pub fn claim(&mut self, addr: SocketAddr) -> Vec<std::net::TcpListener> {
        if addr.port() == 0 {
            return Vec::new();
        }
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(_, a, _)| *a == addr);
        self.sockets = rest;
        mine.into_iter().map(|(_, _, l)| l).collect()
    }

    /// This process serves: closes the taken sockets no address of the new config
    /// claimed (connections queued on them are lost: the address was removed), then tells
    /// the old process to drain and waits for its answer.
    pub fn serving(self) -> io::Result<()> {
        for (kind, addr, _) in &self.sockets {
            tracing::warn!(
                kind = kind.as_str(),
                %addr,
                "upgrade: the new config has no listener on this address: closing it"
            );
        }
        drop(self.sockets);
        send(&self.conn, &format!("serving {}", std::process::id()), None)?;
        let said = receive(&self.conn)?.0;
        if said != "draining" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the old process said {said:?}, not \"draining\""),
            ));
        }
        tracing::info!(
            old_pid = self.old_pid,
            "upgrade: serving; the old process drains"
        );
        Ok(())
    }
}
