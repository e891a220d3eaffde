//! One shard per core: its listener, its upstream pools, its pipes, its view of the nodes
//! and its counters. Nothing here is shared with another core; the only cross-core state is
//! the read-only config and the metric registry (single writer per core).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;
use weir_io::pipe::PipePool;
use weir_io::upstream::UpstreamPool;
use weir_policy::rand::SplitMix64;
use weir_policy::retry::RetryBudget;

use crate::bus::{Bus, Msg};
use crate::health::{self, Health};

use crate::metrics::{CoreMetrics, Registry};
use crate::proxy;
use crate::settings::Settings;
use crate::signals;

/// A core's state, shared by the connection tasks running on that core.
pub struct Shard {
    /// Core index.
    pub id: usize,
    /// The config this shard serves (immutable; reload swaps the whole `Rc`).
    pub settings: Arc<Settings>,
    /// In-flight requests per pool per node, for the balancer.
    pub inflight: Vec<RefCell<Vec<u32>>>,
    /// Keep-alive connections to nodes.
    pub upstream: UpstreamPool,
    /// Pipes for splice.
    pub pipes: Rc<PipePool>,
    /// Balancer randomness, seeded per core.
    pub rng: RefCell<SplitMix64>,
    /// Node states (this core's copy) and owned nodes' state machines.
    pub health: Rc<Health>,
    /// Retries this core may still spend.
    pub retry_budget: RefCell<RetryBudget>,
    /// Request-id sequence.
    pub next_request: Cell<u64>,
    registry: Registry,
}

impl Shard {
    /// This core's counters.
    pub fn metrics(&self) -> &CoreMetrics {
        self.registry.core(self.id)
    }

    /// A fresh request id (core-prefixed so ids are unique across cores without sharing).
    pub fn request_id(&self) -> String {
        let n = self.next_request.get();
        self.next_request.set(n + 1);
        format!("{:02X}{:014X}", self.id, n)
    }
}

/// Runs shard `id` on the current thread until the process exits.
pub async fn run(
    id: usize,
    settings: Arc<Settings>,
    listeners: Vec<std::net::TcpListener>,
    registry: Registry,
    bus: Bus,
    inbox: flume::Receiver<Msg>,
) {
    let cfg = &settings.config;
    let health = Rc::new(Health::new(id, bus, &settings, Instant::now()));
    let shard = Rc::new(Shard {
        id,
        health: health.clone(),
        retry_budget: RefCell::new(RetryBudget::for_core(&cfg.upstream, settings.cores)),
        inflight: settings
            .nodes
            .iter()
            .map(|n| RefCell::new(vec![0; n.len()]))
            .collect(),
        upstream: UpstreamPool::new(
            cfg.upstream.idle_connections_per_node_max,
            cfg.upstream.pool_idle_timeout,
            cfg.upstream.connect_timeout,
            cfg.http.header_bytes_max + 1024,
        ),
        pipes: Rc::new(PipePool::new(cfg.appliance.pipe_bytes, 64)),
        rng: RefCell::new(SplitMix64::new(0x5745_4952 ^ (id as u64) << 32)),
        next_request: Cell::new(0),
        settings: settings.clone(),
        registry,
    });
    health::spawn_probes(health, settings.clone());
    {
        let shard = shard.clone();
        monoio::spawn(async move {
            while let Ok(msg) = inbox.recv_async().await {
                shard
                    .health
                    .on_message(msg, |n| shard.inflight[n.pool].borrow()[n.node]);
            }
        });
    }
    let per_core_connections_max = (cfg.http.connections_max / settings.cores).max(1) as u64;
    for std_listener in listeners {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(core = id, error = %e, "cannot adopt listener");
                continue;
            }
        };
        let shard = shard.clone();
        monoio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) if signals::draining() => return, // the listener was shut down
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning on the error.
                        tracing::warn!(core = shard.id, error = %e, "accept failed");
                        monoio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if shard.metrics().connections_active() >= per_core_connections_max {
                    shard.metrics().connection_refused();
                    drop(stream);
                    continue;
                }
                let shard = shard.clone();
                monoio::spawn(async move {
                    shard.metrics().connection_opened();
                    proxy::serve_client(&shard, stream, peer).await;
                    shard.metrics().connection_closed();
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
