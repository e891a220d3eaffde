//! The control plane: the metrics and admin listeners (`appliance.metrics`,
//! `appliance.admin`) as a small HTTP/1.1 server of their own. The metrics port is often
//! bound to 0.0.0.0 for Prometheus, so this server expects hostile clients: what each
//! port trusts is in docs/operations.md ("Ports"), its keys in docs/config.md.
//!
//! How it holds up, and why:
//!
//! - **Own threads, concurrent connections.** Each listener runs a single-threaded monoio
//!   executor (the detected driver) on a thread of its own, never on a data-path core,
//!   with one task per connection: a slow client delays nobody else, and an attack on the
//!   metrics port does not reach the admin port's slots (or the reverse).
//! - **Bounded heads.** A head is read into a fixed buffer of [`conn::HEAD_BYTES_MAX`]
//!   (8 KiB) and parsed by weir-io's strict parser with at most [`conn::HEADERS_MAX`] (32)
//!   fields: Prometheus, curl, kubelet probes and browsers send far less. Too big is 431,
//!   malformed 400, and the connection closes. A method S3 does not use is 501 (the
//!   parser's answer: not implemented anywhere here), a known one on a path without it
//!   405 with `Allow`, an unknown path 404.
//!   Bodies are per route ([`routes`]): up to its `body_max` with `Content-Length`
//!   (chunked is 411, more is 413); a body is never read before its route has been found
//!   and allowed.
//! - **Deadlines.** `control_head_timeout` runs from the moment a connection waits for a
//!   request (accept, or the end of the previous answer on keep-alive) until its head and
//!   body are in: a byte dripped every few seconds does not extend it.
//!   `control_connection_timeout` bounds the whole connection, answers included, so every
//!   write is timed too.
//! - **Token first.** On the admin port with `admin_token`, `Authorization: Bearer` is
//!   compared in constant time right after the head parses: no body is read and no answer
//!   computed before it passes (401 and close otherwise). GET and HEAD also take
//!   `Authorization: Basic` with the token as the password (any user name), so a browser
//!   opens the status page through its own login prompt; a browser re-sends those
//!   credentials by itself, even on requests another site makes it send, so they never
//!   authorize a change (`POST /reload` needs Bearer).
//! - **The status page** ([`status`]) polls once a second; every poll on a listener
//!   shares one round of questions to the cores per refresh, so open pages do not
//!   multiply the cores' cost.
//! - **Caps.** `control_connections_max` connections per listener,
//!   `control_client_ip_connections_max` per client address (IPv6: per /64). At a cap the
//!   newcomer takes the slot of the connection that has waited longest on its client —
//!   reading a head or body, idle between requests, waiting for its turn at the cores,
//!   reading its answer slowly — among the same address's connections at the per-address
//!   cap, among all at the global cap; the evicted one is closed without an answer. Only
//!   when every candidate is busy computing an answer is the newcomer closed at once (never
//!   more than a couple are: see the gate below). Evicting rather
//!   than refusing is what keeps probes answering: a slow client holds a slot for free,
//!   while a probe's request arrives in its first packet and is answered at once; an
//!   address at its cap only competes with itself; attackers spread over many addresses
//!   must keep reopening connections, and each new one pushes out their own oldest.
//! - **Nothing blocks the executor.** Questions to the cores go through their inboxes and
//!   the replies are awaited with flume's async receive under one deadline; blocking work
//!   (`POST /reload`, which waits for every core to stage the config) runs on the
//!   listener's [`worker::Worker`] thread and is awaited. Rendering is plain CPU work.
//!   Answers that question the cores take turns ([`routes::CoreGate`]): a crowd of
//!   scrapers costs the data-path cores no more than one scraper in a loop did.
//! - **accept errors back off.** EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected
//!   sleep [`ACCEPT_BACKOFF`] before the next accept, instead of spinning on the error.
//! - **Answers** carry `Content-Length`; HEAD gets the head only. Keep-alive follows the
//!   request (HTTP/1.1 default, HTTP/1.0 opt-in) when the request was read whole and the
//!   answer is not a 401; otherwise `Connection: close`, and when bytes of the request were
//!   left unread the close lingers briefly so the answer is not destroyed by a reset.
//!
//! Caps and deadlines are config keys because they depend on the deployment (how many
//! scrapers and operators, how slow their network); the head limits are constants because
//! they depend only on what HTTP clients send.
//!
//! Adding an endpoint is a row in [`routes::ROUTES`] and a [`routes::Handler`] arm. A
//! streaming endpoint (server-sent events) will need an exemption from the connection
//! deadline with a write deadline per event instead; none exists yet.

mod conn;
mod cores;
mod routes;
mod status;
mod worker;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use weir_io::runtime::{self, Driver};
use weir_policy::config::Control;

use crate::bus::Bus;
use crate::metrics::Registry;
use crate::reload::Reloader;

/// Pause after a failed accept: long enough not to spin on EMFILE while descriptors are
/// short, short enough that scrapes resume as soon as one is free.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A failed accept is logged at most this often (the others are counted into the next).
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// io_uring entries of a control executor: a few dozen connections, not thousands.
const RING_ENTRIES: u32 = 256;

/// When the first control listener started: the status page's uptime (within
/// milliseconds of the process's).
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// What every control listener shares with the rest of weir.
#[derive(Clone)]
pub struct Plane {
    /// Counters to render (and the control listeners' own).
    pub registry: Registry,
    /// The cores' inboxes, for their view of nodes, flows and statistics.
    pub bus: Bus,
    /// Applies `POST /reload`.
    pub reloader: Arc<Reloader>,
    /// The executor driver the cores use.
    pub driver: Driver,
    /// Caps and deadlines (`appliance.control_*`).
    pub limits: Control,
}

/// Which endpoints a listener serves, and to whom.
#[derive(Clone)]
pub enum Role {
    /// The metrics port: `/metrics`, `/healthz`, `/readyz` to anyone; `/nodes` and
    /// `/flows` to loopback clients; `POST /reload` to loopback clients when no admin
    /// listener is configured.
    Metrics {
        /// Whether this port also takes reloads (no admin port configured).
        reload: bool,
    },
    /// The admin port: everything but `/metrics`, behind the bearer token when one is set.
    Admin {
        /// Required `Authorization: Bearer` token.
        token: Option<String>,
    },
}

impl Role {
    /// Index of this listener in the control metrics' `listener` label.
    fn index(&self) -> usize {
        match self {
            Role::Metrics { .. } => 0,
            Role::Admin { .. } => 1,
        }
    }

    /// Name for threads and logs.
    fn name(&self) -> &'static str {
        match self {
            Role::Metrics { .. } => "metrics",
            Role::Admin { .. } => "admin",
        }
    }

    fn is_admin(&self) -> bool {
        matches!(self, Role::Admin { .. })
    }

    fn token(&self) -> Option<&str> {
        match self {
            Role::Admin { token } => token.as_deref(),
            Role::Metrics { .. } => None,
        }
    }
}

/// Binds a control listener's address (a taken port fails the start). Kept apart from
/// [`serve`] so that every address of the process is bound before any thread waits on
/// one: an io_uring accept in flight holds its socket past the process's exit, so a
/// start that fails on a later address would leave this one taken for a moment.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

/// Serves `role` on `socket` ([`bind`]) on a thread of its own from then on.
pub fn serve(
    socket: std::net::TcpListener,
    role: Role,
    plane: Plane,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let started = *STARTED.get_or_init(Instant::now);
    let worker = worker::Worker::start(role.name())?;
    std::thread::Builder::new()
        .name(format!("weir-{}", role.name()))
        .spawn(move || {
            let driver = plane.driver;
            let name = role.name();
            let listener = Rc::new(Listener {
                role,
                plane,
                worker,
                cores: routes::CoreGate::new(),
                status: RefCell::new(status::Status::new(started)),
                slots: RefCell::new(Vec::new()),
            });
            let result = runtime::block_on(driver, RING_ENTRIES, || accept_loop(listener, socket));
            if let Err(e) = result {
                tracing::error!(listener = name, error = %e, "cannot start the control executor");
                std::process::exit(1);
            }
        })
}

/// One listener's state on its executor.
struct Listener {
    role: Role,
    plane: Plane,
    worker: worker::Worker,
    /// One answer at a time that questions the cores.
    cores: routes::CoreGate,
    /// The status page's shared model and history.
    status: RefCell<status::Status>,
    /// Open connections, in no particular order (a few dozen: scans are cheap).
    slots: RefCell<Vec<Rc<Slot>>>,
}

/// One open connection as the caps see it.
struct Slot {
    /// Client address as the per-address cap counts it ([`client_key`]).
    ip: IpAddr,
    /// Since when the connection has been waiting on its client; `None` while weir
    /// computes an answer (then it cannot be evicted).
    waiting_since: Cell<Option<Instant>>,
    /// Chosen to make room: its task ends at its next poll.
    evicted: Cell<bool>,
    /// Wakes the connection's task when it is evicted.
    waker: Cell<Option<Waker>>,
}

impl Slot {
    /// The connection now waits on its client (and may be evicted).
    fn wait(&self) {
        self.waiting_since.set(Some(Instant::now()));
    }

    /// weir now computes an answer for the connection.
    fn work(&self) {
        self.waiting_since.set(None);
    }
}

impl Listener {
    /// Counts a connection closed for `reason` (a `weir_control_connections_dropped_total`
    /// label).
    fn dropped(&self, reason: &str) {
        self.plane
            .registry
            .control()
            .dropped(self.role.index(), reason);
    }

    /// Counts an answer.
    fn answered(&self, status: u16) {
        self.plane
            .registry
            .control()
            .request(self.role.index(), status);
    }

    /// A slot for a new connection from `ip`, evicting the longest waiter when a cap is
    /// reached; the refusal reason when every candidate is busy.
    fn admit(&self, ip: IpAddr) -> Result<Rc<Slot>, &'static str> {
        let limits = &self.plane.limits;
        let mut slots = self.slots.borrow_mut();
        let live = || slots.iter().filter(|s| !s.evicted.get());
        let from_ip = live().filter(|s| s.ip == ip).count();
        if from_ip >= limits.client_ip_connections_max {
            let victim = longest_waiting(live().filter(|s| s.ip == ip));
            self.evict(victim.ok_or("client_ip_connections")?);
        } else if live().count() >= limits.connections_max {
            let victim = longest_waiting(live());
            self.evict(victim.ok_or("connections")?);
        }
        let slot = Rc::new(Slot {
            ip,
            waiting_since: Cell::new(Some(Instant::now())),
            evicted: Cell::new(false),
            waker: Cell::new(None),
        });
        slots.push(slot.clone());
        self.plane
            .registry
            .control()
            .set_active(self.role.index(), slots.len());
        Ok(slot)
    }

    fn evict(&self, victim: &Slot) {
        victim.evicted.set(true);
        if let Some(waker) = victim.waker.take() {
            waker.wake();
        }
        self.dropped("evicted");
    }

    fn release(&self, slot: &Rc<Slot>) {
        let mut slots = self.slots.borrow_mut();
        slots.retain(|s| !Rc::ptr_eq(s, slot));
        self.plane
            .registry
            .control()
            .set_active(self.role.index(), slots.len());
    }
}

/// The address a client's connections are counted under: IPv4 (IPv4-mapped IPv6 too) as
/// is, IPv6 by its /64, which one host or one subscriber line usually has whole — counted
/// per /128 an attacker would have billions of addresses to spread over.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// The connection that has waited longest on its client, if any is waiting.
fn longest_waiting<'a>(slots: impl Iterator<Item = &'a Rc<Slot>>) -> Option<&'a Rc<Slot>> {
    slots
        .filter_map(|s| s.waiting_since.get().map(|t| (t, s)))
        .min_by_key(|(t, _)| *t)
        .map(|(_, s)| s)
}

/// Runs `fut` until it ends (`Some`) or `slot` is evicted (`None`: `fut` is dropped,
/// which closes whatever it owned).
async fn until_evicted<F: Future>(slot: &Slot, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if slot.evicted.get() {
            return Poll::Ready(None);
        }
        let waker = match slot.waker.take() {
            Some(w) if w.will_wake(cx.waker()) => w,
            _ => cx.waker().clone(),
        };
        slot.waker.set(Some(waker));
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Frees a connection's slot however its task ends.
struct SlotGuard {
    listener: Rc<Listener>,
    slot: Rc<Slot>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.listener.release(&self.slot);
    }
}

async fn accept_loop(listener: Rc<Listener>, socket: std::net::TcpListener) {
    let name = listener.role.name();
    let socket = match monoio::net::TcpListener::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listener = name, error = %e, "cannot adopt the control listener");
            std::process::exit(1);
        }
    };
    let mut last_warning: Option<Instant> = None;
    let mut unreported = 0u64;
    // After an upgrade the new process serves this port (docs/operations.md, "Upgrade
    // without downtime"): stop accepting, keep answering the connections already open.
    let handed_over = crate::upgrade::control_stop();
    loop {
        let Some(accepted) = runtime::accept_unless(&socket, handed_over.recv_async()).await else {
            tracing::info!(listener = name, "handed over: no longer accepting");
            // The executor lives on for the connections still open, until the exit.
            return std::future::pending().await;
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // A connection that went away before we took it: nothing to wait for.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO)
                ) {
                    continue;
                }
                // EMFILE and friends: the connection stays queued and the same error
                // would come back at once; wait for descriptors or memory to free up.
                unreported += 1;
                if last_warning.is_none_or(|t| t.elapsed() >= ACCEPT_WARNING_INTERVAL) {
                    tracing::warn!(
                        listener = name,
                        error = %e,
                        failures = unreported,
                        "accept failed; backing off"
                    );
                    last_warning = Some(Instant::now());
                    unreported = 0;
                }
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let slot = match listener.admit(client_key(peer.ip())) {
            Ok(slot) => slot,
            Err(reason) => {
                // Closed before a byte is read: the cheapest answer there is.
                listener.dropped(reason);
                drop(stream);
                continue;
            }
        };
        let listener = listener.clone();
        monoio::spawn(async move {
            let guard = SlotGuard {
                listener: listener.clone(),
                slot: slot.clone(),
            };
            conn::serve(&listener, &slot, stream, peer).await;
            drop(guard);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::client_key;
    use std::net::IpAddr;

    #[test]
    fn client_key_groups_ipv6_by_64_and_unmaps_ipv4() {
        let key = |s: &str| client_key(s.parse::<IpAddr>().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::");
        assert_eq!(key("::1"), "::");
    }
}
