//! Node health, sharded across cores (docs/design.md, "Thread-per-core, shared-nothing").
//! Node *g* (numbered across all pools) is owned by core *g mod N*: the owner runs the
//! node's active probe, merges the passive observations other cores send it, runs the
//! node's state machine (`weir_policy::health::NodeHealth`) and broadcasts transitions.
//! Every core routes from its own copy of the states, so the request path reads only
//! core-local memory, and a failover costs one message per core.
//!
//! Each core also keeps, per node, what only it needs: its latency EWMA (its own samples)
//! and its AIMD concurrency limit (its share of the node's capacity under throttling).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_policy::aimd::Aimd;
use weir_policy::forwarded::SendClientAddress;
use weir_policy::health::admin::{self, Change, Override};
use weir_policy::health::{
    slow_start_weight, NodeHealth, NodeState, Observation, ProbeResult, Transition,
};

use crate::bus::{AdminSet, Bus, Msg, NodeId, NodeReport, SetBy};
use crate::metrics::Registry;
use crate::probe;
use crate::settings::Settings;

/// Passive successes are reported to a remote owner at most this often per node and
/// core: they only matter to reset failure streaks and refresh latency, and sending one
/// per request would put a cross-core message on every request.
const SUCCESS_REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// A core's latency EWMA of a node older than this no longer steers the balancer.
const LATENCY_STALE_AFTER: Duration = Duration::from_secs(2);

/// Weight of a new latency sample in a core's EWMA.
const EWMA_ALPHA: f64 = 0.2;

/// A core's view of one node.
pub struct NodeView {
    state: Cell<NodeState>,
    since: Cell<Instant>,
    reason: RefCell<Arc<str>>,
    latency_ewma: Cell<Option<Duration>>,
    /// When this core last measured the node's latency.
    latency_at: Cell<Option<Instant>>,
    aimd: RefCell<Aimd>,
    last_success_report: Cell<Option<Instant>>,
    /// When the node last came back up from down or draining (slow start counts from it).
    recovered_at: Cell<Option<Instant>>,
    /// The operator's override (runtime node control), carried across reloads by pool
    /// name and address; health never sets it.
    admin: RefCell<Option<AdminSet>>,
}

impl NodeView {
    /// The node's state as this core knows it.
    pub fn state(&self) -> NodeState {
        self.state.get()
    }

    /// When the node entered its current state.
    pub fn since(&self) -> Instant {
        self.since.get()
    }

    /// This core's latency EWMA of the node.
    pub fn latency_ewma(&self) -> Option<Duration> {
        self.latency_ewma.get()
    }

    /// The latency the balancer should use: the EWMA while it is fresh. A node the
    /// balancer avoided for being slow gets no new samples, so an old EWMA would keep it
    /// avoided forever after it recovered; once stale, the node counts as unknown (costed
    /// at its peers' mean), gets a request, and is measured again.
    pub fn latency_for_balancing(&self, now: Instant) -> Option<Duration> {
        let fresh = self
            .latency_at
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < LATENCY_STALE_AFTER);
        if fresh {
            self.latency_ewma.get()
        } else {
            None
        }
    }

    /// This core's concurrency limit for the node.
    pub fn limit(&self) -> u32 {
        self.aimd.borrow().limit()
    }

    /// The operator's override (the default when none was set).
    pub fn admin(&self) -> Override {
        self.admin
            .borrow()
            .as_ref()
            .map_or_else(Override::default, |a| a.set)
    }

    /// Whether new requests may go to the node: its health and the override agree.
    pub fn routable(&self) -> bool {
        admin::routing_state(self.state(), self.admin()).is_routable()
    }
}

/// A core's health state: its view of all nodes, and the state machines of the nodes it owns.
pub struct Health {
    core: usize,
    /// Config epoch this health state belongs to; messages of other epochs are dropped.
    epoch: u64,
    bus: Bus,
    /// Node addresses, per pool (to carry state over a reload by address).
    addrs: Vec<Vec<SocketAddr>>,
    /// Pool names, for admin reports.
    pool_names: Vec<Arc<str>>,
    /// The DNS name each node is an address of (`None`: a literal), for admin reports.
    node_names: Vec<Vec<Option<Arc<str>>>>,
    /// Set when a newer config epoch replaced this one: probe loops stop.
    retired: Cell<bool>,
    /// Global node numbering: `first[pool] + node`.
    first: Vec<usize>,
    views: Vec<Vec<NodeView>>,
    owned: RefCell<HashMap<NodeId, NodeHealth>>,
}

impl Health {
    /// Core `core`'s health state for config `epoch`. Nodes that `previous` (the epoch
    /// being replaced) knew, by address, keep their state, latency and limit; new nodes
    /// start up (optimistic: the first probes correct it within `fall` intervals).
    pub fn new(
        core: usize,
        epoch: u64,
        bus: Bus,
        settings: &Settings,
        previous: Option<&Health>,
        now: Instant,
    ) -> Health {
        let cfg = &settings.config;
        let cores = bus.cores();
        let mut first = Vec::with_capacity(cfg.pools.len());
        let mut views = Vec::with_capacity(cfg.pools.len());
        let mut owned = HashMap::new();
        let mut next = 0;
        for (p, pool) in cfg.pools.iter().enumerate() {
            first.push(next);
            // A node name is as many nodes as it has addresses (`Settings::nodes`).
            let count = settings.nodes[p].len();
            let mut nodes = Vec::with_capacity(count);
            for n in 0..count {
                let aimd = Aimd::for_node(&cfg.upstream);
                // Each core holds its share of the node's concurrency.
                let (min, max) = aimd.bounds();
                let share = (max / cores as u32).max(min);
                nodes.push(NodeView {
                    state: Cell::new(NodeState::Up),
                    since: Cell::new(now),
                    reason: RefCell::new(Arc::from("start")),
                    latency_ewma: Cell::new(None),
                    latency_at: Cell::new(None),
                    aimd: RefCell::new(Aimd::new(share, min.min(share), share)),
                    last_success_report: Cell::new(None),
                    recovered_at: Cell::new(None),
                    admin: RefCell::new(None),
                });
                let addr = settings.nodes[p][n];
                let before = previous.and_then(|h| h.find(addr));
                if let (Some(old), Some(view)) = (
                    previous.and_then(|h| h.find_in(&pool.name, addr)),
                    nodes.last(),
                ) {
                    *view.admin.borrow_mut() = old.admin.borrow().clone();
                }
                if let (Some(old), Some(view)) = (before, nodes.last()) {
                    view.state.set(old.state.get());
                    view.since.set(old.since.get());
                    *view.reason.borrow_mut() = old.reason.borrow().clone();
                    view.latency_ewma.set(old.latency_ewma.get());
                    view.latency_at.set(old.latency_at.get());
                    view.recovered_at.set(old.recovered_at.get());
                }
                if (next + n) % cores == core {
                    let machine = match before {
                        Some(old) => NodeHealth::restore(
                            &pool.health,
                            old.state.get(),
                            old.since.get(),
                            &old.reason.borrow(),
                        ),
                        None => NodeHealth::new(&pool.health, now),
                    };
                    owned.insert(NodeId { pool: p, node: n }, machine);
                }
            }
            next += count;
            views.push(nodes);
        }
        Health {
            core,
            epoch,
            bus,
            addrs: settings.nodes.clone(),
            node_names: settings
                .nodes
                .iter()
                .enumerate()
                .map(|(p, nodes)| {
                    (0..nodes.len())
                        .map(|n| settings.node_name(p, n).map(Arc::from))
                        .collect()
                })
                .collect(),
            pool_names: cfg
                .pools
                .iter()
                .map(|p| Arc::from(p.name.as_str()))
                .collect(),
            retired: Cell::new(false),
            first,
            views,
            owned: RefCell::new(owned),
        }
    }

    fn find(&self, addr: SocketAddr) -> Option<&NodeView> {
        self.addrs.iter().enumerate().find_map(|(p, nodes)| {
            nodes
                .iter()
                .position(|a| *a == addr)
                .map(|n| &self.views[p][n])
        })
    }

    /// The node of pool `pool` at `addr`: an override belongs to a node of a pool (the
    /// same address in two pools is two nodes).
    fn find_in(&self, pool: &str, addr: SocketAddr) -> Option<&NodeView> {
        self.id_of(pool, addr).map(|id| self.view(id))
    }

    fn id_of(&self, pool: &str, addr: SocketAddr) -> Option<NodeId> {
        let p = self.pool_names.iter().position(|n| &**n == pool)?;
        let n = self.addrs[p].iter().position(|a| *a == addr)?;
        Some(NodeId { pool: p, node: n })
    }

    /// Applies an operator's change to the node of `pool` at `addr`; its id, or `None`
    /// when this epoch has no such node.
    pub fn set_admin(
        &self,
        pool: &str,
        addr: SocketAddr,
        change: Change,
        by: SetBy,
    ) -> Option<NodeId> {
        let id = self.id_of(pool, addr)?;
        let view = self.view(id);
        let set = view.admin().apply(change);
        tracing::warn!(pool, node = %addr, state = set.state.as_str(), weight = set.weight, client = %by.client, "node override set");
        *view.admin.borrow_mut() = Some(AdminSet { set, by });
        Some(id)
    }

    /// What the balancer sees of a node: its state (health's, unless the override keeps
    /// new requests away) and its weight (slow start times the override's share of the
    /// pool's heaviest routable node).
    pub fn routing(&self, id: NodeId, slow_start: Duration, now: Instant) -> (NodeState, f64) {
        let view = self.view(id);
        let set = view.admin();
        let pool_max = self.views[id.pool]
            .iter()
            .filter(|v| v.routable())
            .map(|v| v.admin().weight)
            .max()
            .unwrap_or(set.weight);
        (
            admin::routing_state(view.state(), set),
            admin::balancing_weight(self.weight(id, slow_start, now), set.weight, pool_max),
        )
    }

    /// This core's report of one node for the admin API.
    pub fn report_node(&self, id: NodeId, inflight: u32, now: Instant) -> NodeReport {
        let v = self.view(id);
        NodeReport {
            pool: self.pool_names[id.pool].clone(),
            addr: self.addrs[id.pool][id.node],
            name: self.node_names[id.pool][id.node].clone(),
            owned: self.owner(id) == self.core,
            state: v.state(),
            inflight,
            limit: v.limit(),
            latency_ewma: v.latency_ewma(),
            reason: v.reason.borrow().clone(),
            since_secs: now.saturating_duration_since(v.since()).as_secs_f64(),
            admin: v.admin.borrow().clone(),
        }
    }

    /// Stops this epoch's probe loops (a newer epoch took over).
    pub fn retire(&self) {
        self.retired.set(true);
    }

    /// This core's view of a node.
    pub fn view(&self, id: NodeId) -> &NodeView {
        &self.views[id.pool][id.node]
    }

    /// This core's view of a pool's nodes.
    pub fn pool(&self, pool: usize) -> &[NodeView] {
        &self.views[pool]
    }

    fn owner(&self, id: NodeId) -> usize {
        (self.first[id.pool] + id.node) % self.bus.cores()
    }

    /// Records what the request path saw: core-local effects (latency, AIMD) now, and the
    /// observation to the node's owner.
    pub fn observe(&self, id: NodeId, obs: Observation, now: Instant) {
        let view = self.view(id);
        let mut report = true;
        match obs {
            Observation::Success { latency } => {
                // A stale average describes the node as it was (it got no traffic since,
                // typically because it was slow): the fresh sample starts it over, or a
                // recovered node would need many rare samples to shed its old latency.
                let ewma = match view.latency_for_balancing(now).and(view.latency_ewma.get()) {
                    None => latency,
                    Some(old) => old.mul_f64(1.0 - EWMA_ALPHA) + latency.mul_f64(EWMA_ALPHA),
                };
                view.latency_ewma.set(Some(ewma));
                view.latency_at.set(Some(now));
                view.aimd.borrow_mut().on_success();
                let last = view.last_success_report.get();
                report = self.owner(id) == self.core
                    || last.is_none_or(|t| {
                        now.saturating_duration_since(t) >= SUCCESS_REPORT_INTERVAL
                    });
                if report {
                    view.last_success_report.set(Some(now));
                }
            }
            Observation::Throttled { .. } => {
                view.aimd.borrow_mut().on_throttle(now);
            }
            _ => {}
        }
        if !report {
            return;
        }
        self.report(id, obs, true, now);
    }

    /// Records a failure that may be the request's rather than the node's (see
    /// `weir_policy::health::Blame`): only the owner's state machine sees it, and counts it
    /// only next to other failed requests of the node.
    pub fn observe_unconfirmed(&self, id: NodeId, obs: Observation, now: Instant) {
        self.report(id, obs, false, now);
    }

    /// Hands an observation to the node's owner (this core, or by message).
    fn report(&self, id: NodeId, obs: Observation, confirmed: bool, now: Instant) {
        let owner = self.owner(id);
        if owner == self.core {
            self.apply(id, |h| merge(h, &obs, confirmed, now), now);
        } else {
            let _ = self.bus.send(
                owner,
                Msg::Observe {
                    epoch: self.epoch,
                    node: id,
                    obs,
                    confirmed,
                },
            );
        }
    }

    /// Runs an owned node's state machine step and broadcasts a transition.
    fn apply(
        &self,
        id: NodeId,
        step: impl FnOnce(&mut NodeHealth) -> Option<Transition>,
        now: Instant,
    ) {
        let transition = {
            let mut owned = self.owned.borrow_mut();
            match owned.get_mut(&id) {
                Some(h) => step(h),
                None => None,
            }
        };
        let Some(t) = transition else { return };
        let (pool, node) = (&*self.pool_names[id.pool], self.addrs[id.pool][id.node]);
        tracing::warn!(pool, %node, from = %t.from, to = %t.to, reason = %t.reason, "node state");
        let reason: Arc<str> = Arc::from(t.reason.as_str());
        for core in 0..self.bus.cores() {
            if core == self.core {
                self.set_state(id, t.to, now, reason.clone());
            } else {
                let msg = Msg::State {
                    epoch: self.epoch,
                    node: id,
                    state: t.to,
                    since: now,
                    reason: reason.clone(),
                };
                if !self.bus.send(core, msg) {
                    tracing::error!(core, "inbox full: node state change not delivered");
                }
            }
        }
    }

    fn set_state(&self, id: NodeId, state: NodeState, since: Instant, reason: Arc<str>) {
        let view = self.view(id);
        if state == NodeState::Up
            && matches!(view.state.get(), NodeState::Down | NodeState::Draining)
        {
            view.recovered_at.set(Some(since));
        }
        view.state.set(state);
        view.since.set(since);
        *view.reason.borrow_mut() = reason;
    }

    /// Handles one message from another core.
    pub fn on_message(&self, msg: Msg, inflight: impl Fn(NodeId) -> u32) {
        let now = Instant::now();
        match msg {
            Msg::Observe {
                node,
                obs,
                confirmed,
                ..
            } => self.apply(node, |h| merge(h, &obs, confirmed, now), now),
            Msg::State {
                node,
                state,
                since,
                reason,
                ..
            } => self.set_state(node, state, since, reason),
            Msg::QueryNodes(reply) => {
                let mut out = Vec::new();
                for (p, nodes) in self.views.iter().enumerate() {
                    for n in 0..nodes.len() {
                        let id = NodeId { pool: p, node: n };
                        out.push(self.report_node(id, inflight(id), now));
                    }
                }
                let _ = reply.try_send(out);
            }
            // Config staging is the shard's business, not health's.
            Msg::Stage { .. }
            | Msg::Commit { .. }
            | Msg::Abort { .. }
            | Msg::Drain
            | Msg::DrainCut(_)
            | Msg::Admin { .. }
            | Msg::QueryFlows(_)
            | Msg::QueryConfig(_)
            | Msg::QueryStats(_)
            | Msg::LimitsReport(_)
            | Msg::LimitsGrant { .. } => {}
        }
    }

    /// Slow-start weight of a node as this core sees it (ramps after recovery).
    pub fn weight(&self, id: NodeId, slow_start: Duration, now: Instant) -> f64 {
        let recovered_for = self
            .view(id)
            .recovered_at
            .get()
            .map(|t| now.saturating_duration_since(t));
        slow_start_weight(recovered_for, slow_start)
    }
}

/// Starts the probe loops of the nodes core `health` owns; a probe's failed TLS handshake
/// counts in `weir_tls_handshake_failures_total{side="upstream"}` on `registry`.
pub fn spawn_probes(health: Rc<Health>, settings: Arc<Settings>, registry: Registry) {
    let ids: Vec<NodeId> = health.owned.borrow().keys().copied().collect();
    for id in ids {
        let health = health.clone();
        let settings = settings.clone();
        let registry = registry.clone();
        monoio::spawn(async move {
            let tls_failed = Cell::new(None);
            let params = &settings.config.pools[id.pool].health;
            let addr = settings.nodes[id.pool][id.node];
            let preamble = match settings.config.pools[id.pool].send_client_address {
                SendClientAddress::ProxyV2 => weir_io::proxy_protocol::encode_v2_local(),
                _ => Vec::new(),
            };
            // Spread the first probes so N nodes are not probed in lockstep.
            let offset = params.interval.mul_f64((id.node % 16) as f64 / 16.0);
            monoio::time::sleep(offset).await;
            while !health.retired.get() {
                let started = Instant::now();
                let tls = settings.tls_target(id.pool, id.node);
                let result = match probe::probe(
                    addr,
                    tls,
                    &preamble,
                    params.method.as_str(),
                    &params.path,
                    params.timeout,
                    &tls_failed,
                )
                .await
                {
                    Ok(answer) => params.classify(answer.status, &answer.body),
                    Err(why) => ProbeResult::Dead(why),
                };
                if let Some(f) = tls_failed.get() {
                    registry.core(health.core).tls_failure(1, f.label());
                }
                health.apply(id, |h| h.probe(result, Instant::now()), Instant::now());
                let elapsed = started.elapsed();
                monoio::time::sleep(params.interval.saturating_sub(elapsed)).await;
            }
        });
    }
}

/// One passive observation into an owned node's state machine.
fn merge(
    h: &mut NodeHealth,
    obs: &Observation,
    confirmed: bool,
    now: Instant,
) -> Option<Transition> {
    if confirmed {
        h.observe(obs, now)
    } else {
        h.observe_unconfirmed(obs, now)
    }
}
