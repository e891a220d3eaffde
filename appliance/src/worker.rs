//! What runs on each core: its accept loops (one per listener, each connection a task of
//! `crate::proxy`), its inbox (messages from the other cores, the reload coordinator and
//! the admin plane, applied to the core's `Shard`), the queue tick of `crate::protect`,
//! and the housekeeping of idle upstream connections. The state these loops drive is
//! `crate::shard`'s.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use weir_io::proxy_protocol;
use weir_io::runtime;
use weir_policy::forwarded::ProxyProtocol;

use crate::access_log::AccessLog;
use crate::bus::{Bus, Msg};
use crate::client_address::Origin;
use crate::health;
use crate::metrics::{Refused, Registry};
use crate::protect::Slot;
use crate::proxy;
use crate::rebalance;
use crate::settings::Settings;
use crate::shard::Shard;

/// How often each core wakes its next waiters without a release (room can come from a
/// rebalance or a node's concurrency limit growing, which wake nobody).
const QUEUE_TICK: Duration = Duration::from_millis(10);
/// How often idle upstream connections past their idle timeout are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long an accept loop backs off after a failed accept (EMFILE and friends), instead
/// of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A listening socket of one core and whether it speaks HTTPS.
pub struct Listener {
    /// The bound socket (SO_REUSEPORT: every core has its own).
    pub socket: std::net::TcpListener,
    /// HTTPS (`[tls] listen`): a TLS handshake comes before the first request.
    pub tls: bool,
}

/// Runs core `id` on the current thread until the process exits.
pub async fn run(
    id: usize,
    settings: Arc<Settings>,
    listeners: Vec<Listener>,
    registry: Registry,
    bus: Bus,
    inbox: flume::Receiver<Msg>,
    access_log: Option<AccessLog>,
) {
    let (shard, stop_accepting) =
        Shard::new(id, settings.clone(), registry.clone(), bus, access_log);
    health::spawn_probes(shard.epoch().health.clone(), settings.clone(), registry);
    {
        let shard = shard.clone();
        monoio::spawn(async move {
            while let Ok(msg) = inbox.recv_async().await {
                on_message(&shard, msg);
            }
        });
    }
    monoio::spawn(tick(shard.clone()));
    if id == 0 && settings.cores > 1 {
        monoio::spawn(rebalance::coordinate(shard.clone(), shard.bus().clone()));
    }
    for Listener { socket, tls } in listeners {
        // The address as configured (`0.0.0.0:9000`), which names the listener in
        // `[[client_address]]`; an accepted socket's own local address would not.
        let Ok(bound) = socket.local_addr() else {
            tracing::error!(core = id, "listener without a local address");
            continue;
        };
        let listener = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(core = id, error = %e, "cannot adopt listener");
                continue;
            }
        };
        monoio::spawn(accept_loop(
            shard.clone(),
            listener,
            tls,
            bound,
            stop_accepting.clone(),
        ));
    }
    // Housekeeping: expire idle upstream connections so nodes are not left holding them.
    loop {
        monoio::time::sleep(SWEEP_INTERVAL).await;
        shard.upstream.sweep(Instant::now());
    }
}

/// Handles a message from another core, the reload coordinator or the admin plane.
fn on_message(shard: &Shard, msg: Msg) {
    match msg {
        Msg::Stage {
            epoch,
            settings,
            reply,
        } => {
            shard.stage(epoch, settings);
            let _ = reply.try_send(());
        }
        Msg::Commit { epoch } => shard.commit(epoch),
        Msg::Abort { epoch } => shard.abort(epoch),
        Msg::QueryFlows(reply) => {
            let _ = reply.try_send(shard.flows.report());
        }
        Msg::QueryStats(reply) => {
            let _ = reply.try_send(shard.stats.snapshot());
        }
        Msg::LimitsReport(reply) => rebalance::on_report(shard, &reply),
        Msg::LimitsGrant { epoch, keys, caps } => {
            rebalance::on_grant(shard, epoch, &keys, &caps);
        }
        Msg::Drain => shard.stop_accepting(),
        Msg::DrainCut(reply) => {
            let logged = match &shard.access_log {
                Some(log) => shard.flows.log_cut_by_drain(log, &shard.epoch().settings),
                None => 0,
            };
            let _ = reply.try_send(logged);
        }
        Msg::Admin {
            pool,
            addr,
            change,
            by,
            reply,
        } => {
            let _ = reply.try_send(shard.on_admin(&pool, addr, change, by));
        }
        Msg::QueryConfig(reply) => {
            let ep = shard.epoch();
            let mut config = ep.settings.config.clone();
            if config.appliance.admin_token.is_some() {
                config.appliance.admin_token = Some("<redacted>".into());
            }
            let report = crate::bus::ConfigReport {
                core: shard.id,
                epoch: ep.id,
                config: format!("{config:#?}"),
            };
            let _ = reply.try_send(report);
        }
        msg => shard.on_health(msg),
    }
}

/// Accepts connections on `listener` until a drain starts (`stop` wakes), each one a task
/// of its own.
async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    tls: bool,
    bound: SocketAddr,
    stop: flume::Receiver<()>,
) {
    loop {
        // A drain cancels the accept in flight and ends the loop, which closes this
        // process's descriptor of the listener: after a plain stop the kernel refuses new
        // connections; after an upgrade the new process, which holds the same socket,
        // takes them all (docs/operations.md, "Upgrade without downtime"). A connection
        // the cancelled accept took anyway is served like any other.
        let Some(accepted) = runtime::accept_unless(&listener, stop.recv_async()).await else {
            return;
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(core = shard.id, error = %e, "accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // A PROXY header names the client: the connection caps apply to it, once read.
        let proxied = match proxy_header_expected(&shard, bound, peer) {
            Ok(expected) => expected,
            Err(()) => {
                shard.metrics().connection_refused(Refused::ProxyUntrusted);
                drop(stream);
                continue;
            }
        };
        if let Some(required) = proxied {
            let shard = shard.clone();
            monoio::spawn(async move {
                let Some((client, reached)) =
                    read_proxy_header(&shard, &stream, peer, required).await
                else {
                    return;
                };
                if let Err(reason) = shard.epoch().protect.connect(client.ip()) {
                    shard.metrics().connection_refused(refused(reason.label()));
                    return;
                }
                serve(&shard, stream, client, reached, bound, tls).await;
            });
            continue;
        }
        // The cheap, early refusal: closed before any byte is read.
        if let Err(reason) = shard.epoch().protect.connect(peer.ip()) {
            shard.metrics().connection_refused(refused(reason.label()));
            drop(stream);
            continue;
        }
        let shard = shard.clone();
        monoio::spawn(async move { serve(&shard, stream, peer, None, bound, tls).await });
    }
}

/// Serves an admitted connection from `client` (its TCP peer, or the client a PROXY
/// header named; `reached`: the address that header says the client reached, e.g. a
/// balancer's VIP) and releases its place under the caps.
async fn serve(
    shard: &Shard,
    stream: monoio::net::TcpStream,
    client: SocketAddr,
    reached: Option<SocketAddr>,
    bound: SocketAddr,
    tls: bool,
) {
    shard.metrics().connection_opened();
    let origin = Origin {
        peer: client,
        local: reached.unwrap_or_else(|| stream.local_addr().unwrap_or(bound)),
        bound,
        tls,
    };
    if tls {
        serve_tls_client(shard, stream, origin).await;
    } else {
        proxy::serve_client(shard, stream.into(), &[], origin, None).await;
    }
    shard.metrics().connection_closed();
    // The current epoch's caps hold the connection (carried over at every reload
    // since it opened).
    shard.epoch().protect.disconnect(client.ip());
}

/// Whether a connection on listener `bound` from `peer` starts with a PROXY header
/// (docs/client-address.md): `Ok(None)` no, `Ok(Some(required))` read one first, `Err`
/// refuse it now (a listener that requires the header, and a peer it does not trust).
fn proxy_header_expected(
    shard: &Shard,
    bound: SocketAddr,
    peer: SocketAddr,
) -> Result<Option<bool>, ()> {
    let ep = shard.epoch();
    let Some(trust) = ep.settings.config.client_trust(bound) else {
        return Ok(None);
    };
    match (trust.proxy_protocol, trust.trusts(peer.ip())) {
        (ProxyProtocol::Off, _) => Ok(None),
        (ProxyProtocol::Required, false) => {
            tracing::debug!(%peer, listener = %bound, "PROXY header required from an untrusted peer: refused");
            Err(())
        }
        // An untrusted peer's header is not read: it reaches the HTTP parser, which
        // answers 400 (a PROXY line is not a request).
        (ProxyProtocol::Optional, false) => Ok(None),
        (p, true) => Ok(Some(p == ProxyProtocol::Required)),
    }
}

/// Reads the PROXY header of a trusted peer within the head deadline: the client it
/// names, the peer for `UNKNOWN`/`LOCAL` or no header (when optional), `None` when the
/// connection is to be closed.
async fn read_proxy_header(
    shard: &Shard,
    stream: &monoio::net::TcpStream,
    peer: SocketAddr,
    required: bool,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let deadline = Instant::now() + shard.epoch().settings.config.http.head_timeout;
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    match proxy_protocol::read_header(stream, deadline, required).await {
        Ok(header) => Some(header.and_then(|h| h.addresses).map_or((peer, None), |a| {
            (canonical(a.source), Some(canonical(a.destination)))
        })),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "PROXY header refused");
            shard.metrics().connection_refused(Refused::ProxyHeader);
            None
        }
    }
}

/// Wakes each queue's next waiter every few milliseconds on `shard`, for room that no
/// release announces (runs for the life of the shard).
async fn tick(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(QUEUE_TICK).await;
        let ep = shard.epoch();
        ep.protect.wake_one(Slot::Tenant);
        ep.protect.wake_one(Slot::Node);
    }
}

/// An HTTPS connection: the handshake with the current epoch's certificates (a reload
/// swaps them for new connections only), then the same request loop as plain HTTP on the
/// plaintext socket. A failed handshake is counted and closed; nothing reaches a node.
async fn serve_tls_client(shard: &Shard, stream: monoio::net::TcpStream, origin: Origin) {
    let peer = origin.peer;
    let Some(tls) = shard.epoch().settings.server_tls.clone() else {
        return; // the listener exists only when [tls] does, and tls.listen needs a restart
    };
    match weir_io::tls::accept(stream, &tls).await {
        Ok(accepted) => {
            shard.metrics().tls_connection(0, accepted.path.label());
            let name = accepted.client_name.as_deref();
            proxy::serve_client(shard, accepted.socket, &accepted.prefix, origin, name).await;
        }
        Err(e) => {
            shard.metrics().tls_failure(0, e.failure.label());
            if e.failure == weir_io::tls::Failure::Ktls {
                // The kernel passed the probe but refused a session's keys: worth a look.
                tracing::warn!(%peer, error = %e, "kernel TLS refused the session keys");
            } else {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
        }
    }
}

/// The refusal a connection cap's label stands for.
fn refused(cap: &str) -> Refused {
    if cap == "client_ip_connections" {
        Refused::ClientIpConnections
    } else {
        Refused::Connections
    }
}
