//! One shard per core: the state a core's tasks share — its upstream pools, its pipes, its
//! view of the nodes, its counters and its config epochs. The loops that drive it (accept,
//! inbox, housekeeping) are `crate::worker`'s. Nothing here is shared with another core;
//! cross-core state is the read-only config of each epoch, the metric registry (one writer
//! per core) and messages.
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
use std::time::Instant;

use weir_io::pipe::PipePool;
use weir_io::relay::{Pace, Pacer};
use weir_io::upstream::UpstreamPool;
use weir_policy::balance::{node_id, PoolState};
use weir_policy::classify::Classified;
use weir_policy::limits::{ByteGrant, Dir};
use weir_policy::rand::SplitMix64;
use weir_policy::retry::RetryBudget;

use crate::access_log::AccessLog;
use crate::bus::{Bus, Msg};
use crate::flows::Flows;
use crate::health::{self, Health};
use crate::metrics::{CoreMetrics, Registry};
use crate::protect::Protect;
use crate::settings::Settings;
use crate::stats::{NodeKey, Stats};

/// Pipes each core keeps for splice: one pair serves one direction of one transfer at a
/// time, so 64 covers 32 concurrent relays per core before a pipe is created (and closed)
/// per transfer; each pooled pair pins `pipe_bytes` of kernel memory.
const PIPES_POOLED: usize = 64;

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
    /// This core's balancing state per pool (round-robin positions; docs/design.md,
    /// "Balancing").
    pub balance: Vec<PoolState>,
    /// Each node's identity for placement by key, per pool (a hash of its address).
    pub node_ids: Vec<Vec<u64>>,
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
        // The node label is the address (a name's nodes are its addresses; for a literal
        // it reads as written).
        let node_keys = settings
            .config
            .pools
            .iter()
            .zip(&settings.nodes)
            .map(|(pool, addrs)| {
                let name: Arc<str> = Arc::from(pool.name.as_str());
                addrs
                    .iter()
                    .map(|a| NodeKey {
                        pool: name.clone(),
                        node: Arc::from(a.to_string().as_str()),
                    })
                    .collect()
            })
            .collect();
        let cfg = &settings.config;
        let counts: Vec<usize> = settings.nodes.iter().map(Vec::len).collect();
        let protect = Protect::new(cfg, &counts, settings.cores, self.id, Instant::now());
        let buckets = crate::buckets::Buckets::new(cfg, &node_counts(&settings), settings.cores);
        // Cores start their round robins on different nodes.
        let balance = cfg
            .pools
            .iter()
            .map(|_| PoolState::starting_at(self.id as u64))
            .collect();
        // By address: for a literal the same text as written (`NodeAddr` keeps IPv6 in
        // canonical form, as `IpAddr` prints it).
        let node_ids = settings
            .nodes
            .iter()
            .map(|addrs| {
                addrs
                    .iter()
                    .map(|a| node_id(&a.ip().to_string(), a.port()))
                    .collect()
            })
            .collect();
        Epoch {
            id,
            balance,
            node_ids,
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

    /// The bus to the other cores.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Core `id`'s state, running `settings` as epoch 0, and the receiver every accept
    /// loop of the core holds (it wakes when a drain starts).
    pub fn new(
        id: usize,
        settings: Arc<Settings>,
        registry: Registry,
        bus: Bus,
        access_log: Option<AccessLog>,
    ) -> (Rc<Shard>, flume::Receiver<()>) {
        let cfg = &settings.config;
        // Replaced below by the real epoch 0, which needs the shard (its node counters).
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
            buckets: crate::buckets::Buckets::new(cfg, &node_counts(&settings), settings.cores),
            node_keys: Vec::new(),
            tenant_names: Vec::new(),
            class_names: Vec::new(),
            protect: Protect::new(cfg, &[], settings.cores, id, Instant::now()),
            keys: crate::identity::KeyCache::default(),
            balance: Vec::new(),
            node_ids: Vec::new(),
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
            pipes: Rc::new(PipePool::new(cfg.appliance.pipe_bytes, PIPES_POOLED)),
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
        let first = Rc::new(shard.build_epoch(0, settings, None));
        *shard.epoch.borrow_mut() = first;
        (shard, stop_accepting)
    }

    /// Prepares `settings` as epoch `epoch` beside the current one (a reload's first
    /// phase): node states carry over, nothing uses it until [`Shard::commit`].
    pub fn stage(&self, epoch: u64, settings: Arc<Settings>) {
        let current = self.epoch();
        let staged = self.build_epoch(epoch, settings, Some(&current.health));
        *self.staged.borrow_mut() = Some(Rc::new(staged));
    }

    /// Switches to the staged epoch `epoch` (a reload's second phase): new requests take
    /// it, requests in flight keep theirs.
    pub fn commit(&self, epoch: u64) {
        let staged = self.staged.borrow_mut().take();
        match staged {
            Some(next) if next.id == epoch => {
                // Open connections outlive the reload: the new caps count them.
                next.protect.carry_connections(&self.epoch().protect);
                if next.settings.config == self.epoch().settings.config {
                    next.protect.carry_limits(&self.epoch().protect);
                }
                let old = self.epoch.replace(next.clone());
                old.health.retire();
                health::spawn_probes(
                    next.health.clone(),
                    next.settings.clone(),
                    self.registry.clone(),
                );
                self.upstream.reconfigure(
                    next.settings.config.upstream.idle_connections_per_node_max,
                    next.settings.config.upstream.pool_idle_timeout,
                    next.settings.config.upstream.connect_timeout,
                );
                // Idle connections to nodes no longer configured go now; those to
                // unchanged nodes stay.
                let keep: Vec<SocketAddr> = next.settings.nodes.iter().flatten().copied().collect();
                self.upstream.retain_nodes(|a| keep.contains(a));
                // So do their series and in-flight counters (one no request holds): a DNS
                // name whose answers keep moving must not grow them without bound.
                let keys: Vec<&NodeKey> = next.node_keys.iter().flatten().collect();
                self.stats.retain_nodes(|k| keys.contains(&k));
                self.inflight
                    .borrow_mut()
                    .retain(|a, c| Rc::strong_count(c) > 1 || keep.contains(a));
                tracing::info!(core = self.id, epoch, "config epoch committed");
            }
            _ => tracing::error!(
                core = self.id,
                epoch,
                "commit for an epoch that is not staged"
            ),
        }
    }

    /// Drops the staged epoch `epoch` (the reload was abandoned).
    pub fn abort(&self, epoch: u64) {
        let mut staged = self.staged.borrow_mut();
        if staged.as_ref().is_some_and(|s| s.id == epoch) {
            *staged = None;
        }
    }

    /// An operator's change to a node's override (docs/operations.md, "Runtime
    /// control"): applied to the staged epoch too, so a reload in progress does not lose
    /// it. Disabling a node also closes this core's idle connections to it. The node as
    /// this core now sees it, or `None` when the current epoch has no such node.
    pub fn on_admin(
        &self,
        pool: &str,
        addr: SocketAddr,
        change: weir_policy::health::admin::Change,
        by: crate::bus::SetBy,
    ) -> Option<crate::bus::NodeReport> {
        if let Some(staged) = self.staged.borrow().as_ref() {
            staged.health.set_admin(pool, addr, change, by.clone());
        }
        let current = self.epoch();
        let id = current.health.set_admin(pool, addr, change, by)?;
        if current.health.view(id).admin().state == weir_policy::health::admin::AdminState::Disabled
        {
            self.upstream.retain_nodes(|a| *a != addr);
        }
        let inflight = current.inflight[id.pool][id.node].get();
        Some(current.health.report_node(id, inflight, Instant::now()))
    }

    /// A drain started: every accept loop of this core wakes and closes its listener.
    pub fn stop_accepting(&self) {
        if self.accepting.borrow_mut().take().is_some() {
            tracing::info!(core = self.id, "draining: listeners closing");
        }
    }

    /// A health message (an observation for a node this core owns, or a node's new
    /// state), applied to the epoch whose node numbering it uses.
    pub fn on_health(&self, msg: Msg) {
        let current = self.epoch();
        match msg.epoch() {
            Some(e) if e != current.id => {
                // A transition sent under an epoch this core has only staged: apply it
                // there so it is not lost at commit.
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

/// Paces one direction of one request's body by the byte buckets that apply to it.
pub struct BytePacer {
    /// The epoch the request runs on (its limiter).
    pub ep: Rc<Epoch>,
    /// The request's classification.
    pub classified: Rc<Classified>,
    /// Which body.
    pub dir: Dir,
}

impl Pacer for BytePacer {
    fn grant(&self, want: u64) -> Pace {
        match self.ep.protect.bytes(&self.classified, self.dir, want) {
            ByteGrant::Go(n) => Pace::Go(n),
            ByteGrant::Wait(d) => Pace::Wait(d),
        }
    }

    fn unused(&self, bytes: u64) {
        self.ep
            .protect
            .return_bytes(&self.classified, self.dir, bytes);
    }
}

/// Nodes per pool as resolved (a DNS name is one node per address).
fn node_counts(settings: &Settings) -> Vec<usize> {
    settings.nodes.iter().map(Vec::len).collect()
}
