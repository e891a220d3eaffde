//! One shard per core: its listeners, its upstream pools, its pipes, its view of the nodes
//! and its counters. Nothing here is shared with another core; cross-core state is the
//! read-only config of each epoch, the metric registry (one writer per core) and messages.
//!
//! Config epochs: a reload stages a new `Epoch` on every core, then commits it everywhere
//! (or aborts everywhere). A request takes the current epoch when it starts and keeps it to
//! the end, so transfers in flight finish on the config they started with. What must
//! survive a reload is keyed by node address, not by config position: in-flight counts,
//! idle upstream connections, and (carried over by `Health::new`) node states.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use weir_io::pipe::PipePool;
use weir_io::upstream::UpstreamPool;
use weir_policy::rand::SplitMix64;
use weir_policy::retry::RetryBudget;

use crate::bus::{Bus, Msg};
use crate::flows::{AccessLog, Flows};
use crate::health::{self, Health};
use crate::metrics::{CoreMetrics, Registry};
use crate::protect::{self, Protect};
use crate::proxy;
use crate::settings::Settings;
use crate::stats::{NodeKey, Stats};

/// One config epoch as a core runs it.
pub struct Epoch {
    /// Epoch number (0 at start, +1 per committed reload).
    pub id: u64,
    /// The config.
    pub settings: Arc<Settings>,
    /// Node states (this core's copy) and owned nodes' state machines.
    pub health: Rc<Health>,
    /// In-flight request counters per pool per node (shared by address across epochs).
    pub inflight: Vec<Vec<Rc<Cell<u32>>>>,
    /// Retries this core may still spend.
    pub retry_budget: RefCell<RetryBudget>,
    /// This core's pool+bucket concurrency limits (beside the per-node ones in `health`).
    pub buckets: crate::buckets::Buckets,
    /// Metric labels of each node, built once per epoch.
    pub node_keys: Vec<Vec<NodeKey>>,
    /// Tenant names (metric labels), by `TenantId`.
    pub tenant_names: Vec<Arc<str>>,
    /// Class names (metric labels), by `ClassId`.
    pub class_names: Vec<Arc<str>>,
    /// Caps, token buckets and class queues.
    pub protect: Protect,
    /// Derived SigV4 signing keys (tenants' and pools'), per epoch so a reload that
    /// rotates a secret drops the old keys.
    pub keys: crate::identity::KeyCache,
}

/// A core's state, shared by the connection tasks running on that core.
pub struct Shard {
    /// Core index.
    pub id: usize,
    /// Keep-alive connections to nodes (by address: they survive reloads).
    pub upstream: UpstreamPool,
    /// Pipes for splice.
    pub pipes: Rc<PipePool>,
    /// Balancer randomness, seeded per core.
    pub rng: RefCell<SplitMix64>,
    /// Request-id sequence.
    pub next_request: Cell<u64>,
    /// Live transfers on this core.
    pub flows: Flows,
    /// Labeled statistics (per node), collected at scrape time.
    pub stats: Stats,
    /// Where finished requests are logged, if anywhere.
    pub access_log: Option<AccessLog>,
    epoch: RefCell<Rc<Epoch>>,
    staged: RefCell<Option<Rc<Epoch>>>,
    /// Dropped when a drain starts: every accept loop of this core holds a receiver, which
    /// then wakes, and the loop closes its listener.
    accepting: RefCell<Option<flume::Sender<()>>>,
    inflight: RefCell<HashMap<SocketAddr, Rc<Cell<u32>>>>,
    bus: Bus,
    registry: Registry,
}

impl Shard {
    /// This core's counters.
    pub fn metrics(&self) -> &CoreMetrics {
        self.registry.core(self.id)
    }

    /// The current config epoch; a request holds it until it ends.
    pub fn epoch(&self) -> Rc<Epoch> {
        self.epoch.borrow().clone()
    }

    /// A fresh request id (core-prefixed so ids are unique across cores without sharing).
    pub fn request_id(&self) -> String {
        let n = self.next_request.get();
        self.next_request.set(n + 1);
        format!("{:02X}{:014X}", self.id, n)
    }

    fn build_epoch(&self, id: u64, settings: Arc<Settings>, previous: Option<&Health>) -> Epoch {
        let health = Rc::new(Health::new(
            self.id,
            id,
            self.bus.clone(),
            &settings,
            previous,
            Instant::now(),
        ));
        let inflight = {
            let mut counters = self.inflight.borrow_mut();
            settings
                .nodes
                .iter()
                .map(|pool| {
                    pool.iter()
                        .map(|addr| {
                            counters
                                .entry(*addr)
                                .or_insert_with(|| Rc::new(Cell::new(0)))
                                .clone()
                        })
                        .collect()
                })
                .collect()
        };
        let retry_budget = RefCell::new(RetryBudget::for_core(
            &settings.config.upstream,
            settings.cores,
        ));
        let node_keys = settings
            .config
            .pools
            .iter()
            .map(|pool| {
                let name: Arc<str> = Arc::from(pool.name.as_str());
                pool.nodes
                    .iter()
                    .map(|n| NodeKey {
                        pool: name.clone(),
                        node: Arc::from(n.to_string().as_str()),
                    })
                    .collect()
            })
            .collect();
        let cfg = &settings.config;
        let protect = Protect::new(cfg, settings.cores, self.id, Instant::now());
        let buckets = crate::buckets::Buckets::new(cfg, settings.cores);
        Epoch {
            id,
            keys: crate::identity::KeyCache::default(),
            tenant_names: cfg
                .tenants
                .iter()
                .map(|t| Arc::from(t.name.as_str()))
                .collect(),
            class_names: cfg
                .classes
                .iter()
                .map(|c| Arc::from(c.name.as_str()))
                .collect(),
            protect,
            settings,
            health,
            inflight,
            retry_budget,
            buckets,
            node_keys,
        }
    }

    /// Handles a message from another core or the reload coordinator.
    fn on_message(&self, msg: Msg) {
        match msg {
            Msg::Stage {
                epoch,
                settings,
                reply,
            } => {
                let current = self.epoch();
                let staged = self.build_epoch(epoch, settings, Some(&current.health));
                *self.staged.borrow_mut() = Some(Rc::new(staged));
                let _ = reply.try_send(Ok(()));
            }
            Msg::Commit { epoch } => {
                let staged = self.staged.borrow_mut().take();
                match staged {
                    Some(next) if next.id == epoch => {
                        // Open connections outlive the reload: the new caps count them.
                        next.protect.carry_connections(&self.epoch().protect);
                        let old = self.epoch.replace(next.clone());
                        old.health.retire();
                        health::spawn_probes(next.health.clone(), next.settings.clone());
                        self.upstream.reconfigure(
                            next.settings.config.upstream.idle_connections_per_node_max,
                            next.settings.config.upstream.pool_idle_timeout,
                            next.settings.config.upstream.connect_timeout,
                        );
                        // Idle connections to nodes no longer configured go now; those
                        // to unchanged nodes stay.
                        let keep: Vec<SocketAddr> =
                            next.settings.nodes.iter().flatten().copied().collect();
                        self.upstream.retain_nodes(|a| keep.contains(a));
                        tracing::info!(core = self.id, epoch, "config epoch committed");
                    }
                    _ => tracing::error!(
                        core = self.id,
                        epoch,
                        "commit for an epoch that is not staged"
                    ),
                }
            }
            Msg::QueryFlows(reply) => {
                let _ = reply.try_send(self.flows.report());
            }
            Msg::QueryStats(reply) => {
                let _ = reply.try_send(self.stats.snapshot());
            }
            Msg::LimitsReport(reply) => protect::on_report(self, &reply),
            Msg::LimitsGrant { epoch, keys, caps } => {
                protect::on_grant(self, epoch, &keys, &caps);
            }
            Msg::Drain => {
                if self.accepting.borrow_mut().take().is_some() {
                    tracing::info!(core = self.id, "draining: listeners closing");
                }
            }
            Msg::Abort { epoch } => {
                let mut staged = self.staged.borrow_mut();
                if staged.as_ref().is_some_and(|s| s.id == epoch) {
                    *staged = None;
                }
            }
            msg => {
                let current = self.epoch();
                match msg.epoch() {
                    Some(e) if e != current.id => {
                        // A transition sent under an epoch this core has only staged:
                        // apply it there so it is not lost at commit.
                        let staged = self.staged.borrow().clone();
                        if let Some(staged) = staged.filter(|s| s.id == e) {
                            staged
                                .health
                                .on_message(msg, |n| staged.inflight[n.pool][n.node].get());
                        }
                    }
                    _ => current
                        .health
                        .on_message(msg, |n| current.inflight[n.pool][n.node].get()),
                }
            }
        }
    }
}

/// A listening socket of one core and whether it speaks HTTPS.
pub struct Listener {
    /// The bound socket (SO_REUSEPORT: every core has its own).
    pub socket: std::net::TcpListener,
    /// HTTPS (`[tls] listen`): a TLS handshake comes before the first request.
    pub tls: bool,
}

/// Runs shard `id` on the current thread until the process exits.
pub async fn run(
    id: usize,
    settings: Arc<Settings>,
    listeners: Vec<Listener>,
    registry: Registry,
    bus: Bus,
    inbox: flume::Receiver<Msg>,
    access_log: Option<AccessLog>,
) {
    let cfg = &settings.config;
    let placeholder = Rc::new(Epoch {
        id: 0,
        settings: settings.clone(),
        health: Rc::new(Health::new(
            id,
            0,
            bus.clone(),
            &settings,
            None,
            Instant::now(),
        )),
        inflight: Vec::new(),
        retry_budget: RefCell::new(RetryBudget::for_core(&cfg.upstream, settings.cores)),
        buckets: crate::buckets::Buckets::new(cfg, settings.cores),
        node_keys: Vec::new(),
        tenant_names: Vec::new(),
        class_names: Vec::new(),
        protect: Protect::new(cfg, settings.cores, id, Instant::now()),
        keys: crate::identity::KeyCache::default(),
    });
    let (accepting, stop_accepting) = flume::bounded::<()>(1);
    let shard = Rc::new(Shard {
        id,
        upstream: UpstreamPool::new(
            cfg.upstream.idle_connections_per_node_max,
            cfg.upstream.pool_idle_timeout,
            cfg.upstream.connect_timeout,
            cfg.http.header_bytes_max + 1024,
        ),
        pipes: Rc::new(PipePool::new(cfg.appliance.pipe_bytes, 64)),
        rng: RefCell::new(SplitMix64::new(0x5745_4952 ^ (id as u64) << 32)),
        next_request: Cell::new(0),
        flows: Flows::default(),
        stats: Stats::default(),
        access_log,
        epoch: RefCell::new(placeholder),
        staged: RefCell::new(None),
        accepting: RefCell::new(Some(accepting)),
        inflight: RefCell::new(HashMap::new()),
        bus,
        registry,
    });
    let first = Rc::new(shard.build_epoch(0, settings.clone(), None));
    health::spawn_probes(first.health.clone(), settings.clone());
    *shard.epoch.borrow_mut() = first;
    {
        let shard = shard.clone();
        monoio::spawn(async move {
            while let Ok(msg) = inbox.recv_async().await {
                shard.on_message(msg);
            }
        });
    }
    monoio::spawn(protect::tick(shard.clone()));
    if id == 0 && settings.cores > 1 {
        monoio::spawn(protect::coordinate(shard.clone(), shard.bus.clone()));
    }
    for Listener {
        socket: std_listener,
        tls,
    } in listeners
    {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(core = id, error = %e, "cannot adopt listener");
                continue;
            }
        };
        let shard = shard.clone();
        let stop = stop_accepting.clone();
        monoio::spawn(async move {
            loop {
                // A drain cancels the accept in flight (dropping its future) and ends the
                // loop, which drops the listener: the kernel refuses new connections.
                let accepted = monoio::select! {
                    accepted = listener.accept() => Some(accepted),
                    _ = stop.recv_async() => None,
                };
                let Some(accepted) = accepted else {
                    return;
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning on the error.
                        tracing::warn!(core = shard.id, error = %e, "accept failed");
                        monoio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The cheap, early refusal: closed before any byte is read.
                if let Err(reason) = shard.epoch().protect.connect(peer.ip()) {
                    let per_client = reason.label() == "client_ip_connections";
                    shard.metrics().connection_refused(per_client);
                    drop(stream);
                    continue;
                }
                let shard = shard.clone();
                monoio::spawn(async move {
                    shard.metrics().connection_opened();
                    if tls {
                        serve_tls_client(&shard, stream, peer).await;
                    } else {
                        proxy::serve_client(&shard, stream.into(), &[], peer, None).await;
                    }
                    shard.metrics().connection_closed();
                    // The current epoch's caps hold the connection (carried over at
                    // every reload since it opened).
                    shard.epoch().protect.disconnect(peer.ip());
                });
            }
        });
    }
    // Housekeeping: expire idle upstream connections so nodes are not left holding them.
    loop {
        monoio::time::sleep(Duration::from_secs(1)).await;
        shard.upstream.sweep(Instant::now());
    }
}

/// An HTTPS connection: the handshake with the current epoch's certificates (a reload
/// swaps them for new connections only), then the same request loop as plain HTTP on the
/// plaintext socket. A failed handshake is counted and closed; nothing reaches a node.
async fn serve_tls_client(shard: &Shard, stream: monoio::net::TcpStream, peer: SocketAddr) {
    let Some(tls) = shard.epoch().settings.server_tls.clone() else {
        return; // the listener exists only when [tls] does, and tls.listen needs a restart
    };
    match weir_io::tls::accept(stream, &tls).await {
        Ok(accepted) => {
            shard.metrics().tls_connection(0, accepted.path.label());
            let name = accepted.client_name.as_deref();
            proxy::serve_client(shard, accepted.socket, &accepted.prefix, peer, name).await;
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
