//! Protecting the storage on one core: the caps, token buckets, class queues and byte
//! pacing of `weir_policy::limits` and `weir_policy::qos`, driven for real requests. The
//! cross-core rebalance of their shares is `crate::rebalance`.
//!
//! The decisions are policy's; this module holds the per-core state of one config epoch
//! and makes requests wait (for their tokens, or in their class's queue for a slot). A
//! request's way (docs/limits.md):
//!
//! 1. accept: [`Protect::connect`] — the global and per-client-IP connection caps;
//! 2. [`Protect::admit`]: the tenant's in-flight cap (wait in the class queue for a slot)
//!    and the token buckets (wait for reserved tokens, or `SlowDown`);
//! 3. the balancer only picks nodes with room under `node_inflight_max`; with every
//!    routable node full, the request waits in its class queue ([`Protect::wait_turn`]);
//! 4. bodies of rate-limited transfers move in quanta the byte buckets grant
//!    (`crate::shard::BytePacer`).
//!
//! Slots are handed over in queue order: whoever frees one wakes the next waiter (weighted
//! fair queueing over the classes, `weir_policy::qos`), and while anyone waits for a node,
//! newcomers queue behind them instead of taking a slot first — so under contention the
//! classes are served in proportion to their weights. Room can also appear without a
//! release (a rebalance grants a bigger share, a node's concurrency limit grows), so each
//! core also wakes its next waiter every few milliseconds (`crate::worker`). A woken waiter
//! that finds no room goes to the back of its class queue.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use weir_policy::classify::Classified;
use weir_policy::config::{ClassId, Config};
use weir_policy::limits::{
    Admit, ByteGrant, CapGrant, CapReport, Caps, Dir, KeyGrant, KeyUsage, Limiter, RejectReason,
};
use weir_policy::qos::Scheduler;

use crate::flows::Waited;

/// `Retry-After` for refusals that do not come with their own (queue full or timed out):
/// the header has whole seconds, and 0 invites an instant retry.
const RETRY_AFTER_QUEUE: Duration = Duration::from_secs(1);

/// What a queued request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Room under its tenant's `inflight_max`.
    Tenant,
    /// A node with room (its concurrency limit and `node_inflight_max`).
    Node,
}

/// Why a request is refused with `SlowDown`, and when it may come back.
#[derive(Debug, Clone, Copy)]
pub struct Shed {
    /// Which limit refused (a metric label).
    pub reason: RejectReason,
    /// For the `Retry-After` header (whole seconds, at least 1).
    pub retry_after: Duration,
}

/// One core's protection state for one config epoch.
pub struct Protect {
    limiter: RefCell<Limiter>,
    caps: RefCell<Caps>,
    /// Requests waiting for a tenant in-flight slot, by class, served by weight.
    tenant_queue: RefCell<Scheduler<flume::Sender<()>>>,
    /// Requests waiting for a node, by class, served by weight.
    node_queue: RefCell<Scheduler<flume::Sender<()>>>,
    /// Requests waiting for reserved tokens, by class (they count against `queue_max`).
    waiting_tokens: Vec<Cell<usize>>,
    queue_max: Vec<usize>,
    queue_timeout: Vec<Duration>,
}

impl Protect {
    /// Core `core`'s (of `cores`) protection state for `config` whose pools have
    /// `node_counts` nodes (names resolved): every share even, every bucket full.
    pub fn new(
        config: &Config,
        node_counts: &[usize],
        cores: usize,
        core: usize,
        now: Instant,
    ) -> Self {
        let mut caps = Caps::new(config, cores, core);
        caps.size_nodes(node_counts, config.limits.node_inflight_max);
        Protect {
            limiter: RefCell::new(Limiter::new(config, cores, now)),
            caps: RefCell::new(caps),
            tenant_queue: RefCell::new(Scheduler::new(&config.classes)),
            node_queue: RefCell::new(Scheduler::new(&config.classes)),
            waiting_tokens: config.classes.iter().map(|_| Cell::new(0)).collect(),
            queue_max: config.classes.iter().map(|c| c.queue_max).collect(),
            queue_timeout: config.classes.iter().map(|c| c.queue_timeout).collect(),
        }
    }

    /// Takes over the previous epoch's token buckets and rate-limit shares, for an epoch
    /// of the same config (only node addresses moved, `crate::dns`): a name that moves
    /// every few seconds must not refill every bucket each time.
    pub fn carry_limits(&self, old: &Protect) {
        self.limiter.swap(&old.limiter);
    }

    /// Takes over the previous epoch's open client connections (they outlive a reload).
    pub fn carry_connections(&self, old: &Protect) {
        self.caps.borrow_mut().carry_connections(&old.caps.borrow());
    }

    /// A new client connection: `Err` means close it at once.
    pub fn connect(&self, ip: IpAddr) -> Result<(), RejectReason> {
        self.caps.borrow_mut().connect(ip)
    }

    /// A client connection admitted by [`Protect::connect`] (on this or an earlier epoch
    /// of this core) closed.
    pub fn disconnect(&self, ip: IpAddr) {
        self.caps.borrow_mut().disconnect(ip);
    }

    /// Admits a request: its tenant's in-flight cap (waiting in its class queue for a
    /// slot) and every token bucket that applies (waiting for reserved tokens). The
    /// returned ticket holds the tenant slot until dropped.
    pub async fn admit<'a>(
        &'a self,
        c: &Classified,
        waited: &mut Waited,
    ) -> Result<Ticket<'a>, Shed> {
        let deadline = Instant::now() + self.queue_timeout(c.class);
        if self.caps.borrow_mut().start_request(c.tenant).is_err() {
            waited.for_slot = true;
            let tenant = c.tenant;
            self.wait_turn(Slot::Tenant, c.class, deadline, || {
                self.caps.borrow_mut().start_request(tenant).ok()
            })
            .await?;
        }
        let ticket = Ticket {
            protect: self,
            tenant: c.tenant,
        };
        let admit = self
            .limiter
            .borrow_mut()
            .admit(c, c.client_ip, Instant::now());
        match admit {
            Admit::Go => {}
            Admit::Reject {
                reason,
                retry_after,
            } => {
                return Err(Shed {
                    reason,
                    retry_after,
                })
            }
            Admit::Wait { until, class } => {
                let waiting = &self.waiting_tokens[class.0];
                if self.queued(class) >= self.queue_max[class.0] {
                    self.limiter
                        .borrow_mut()
                        .refund_request(c, c.client_ip, Instant::now());
                    return Err(Shed {
                        reason: RejectReason::QueueFull,
                        retry_after: RETRY_AFTER_QUEUE,
                    });
                }
                waited.for_tokens = true;
                waiting.set(waiting.get() + 1);
                monoio::time::sleep(until.saturating_duration_since(Instant::now())).await;
                waiting.set(waiting.get() - 1);
            }
        }
        Ok(ticket)
    }

    /// Waits in `class`'s queue for `slot` until `take` finds room when woken, or
    /// refuses: `queue_full` when the class queue is full, `queue_timeout` past
    /// `deadline`.
    pub async fn wait_turn<T>(
        &self,
        slot: Slot,
        class: ClassId,
        deadline: Instant,
        mut take: impl FnMut() -> Option<T>,
    ) -> Result<T, Shed> {
        let shed = |reason| Shed {
            reason,
            retry_after: RETRY_AFTER_QUEUE,
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(shed(RejectReason::QueueTimeout));
            }
            if self.queued(class) >= self.queue_max.get(class.0).copied().unwrap_or(0) {
                return Err(shed(RejectReason::QueueFull));
            }
            let (tx, rx) = flume::bounded(1);
            if self
                .queue(slot)
                .borrow_mut()
                .push(class, tx, deadline)
                .is_err()
            {
                return Err(shed(RejectReason::QueueFull));
            }
            let woken = monoio::time::timeout(deadline - now, rx.recv_async()).await;
            if !matches!(woken, Ok(Ok(()))) {
                // Past the deadline; the queue entry is dropped when it is reached.
                return Err(shed(RejectReason::QueueTimeout));
            }
            if let Some(t) = take() {
                return Ok(t);
            }
        }
    }

    /// Whether requests wait for a node on this core: a newcomer then queues behind them.
    pub fn nodes_contended(&self) -> bool {
        !self.node_queue.borrow().is_empty()
    }

    fn queue(&self, slot: Slot) -> &RefCell<Scheduler<flume::Sender<()>>> {
        match slot {
            Slot::Tenant => &self.tenant_queue,
            Slot::Node => &self.node_queue,
        }
    }

    /// A `slot` was freed: the next waiter for it (by class weight) looks for room.
    pub fn wake_one(&self, slot: Slot) {
        let mut queue = self.queue(slot).borrow_mut();
        if queue.is_empty() {
            return;
        }
        let now = Instant::now();
        // Expired entries' owners time out by themselves.
        drop(queue.expire(now));
        while let Some(tx) = queue.pop(now) {
            // A waiter that left (timed out) has dropped its end.
            if tx.try_send(()).is_ok() {
                return;
            }
        }
    }

    /// Requests of `class` waiting on this core (for tokens or a slot).
    fn queued(&self, class: ClassId) -> usize {
        self.tenant_queue.borrow().len(class)
            + self.node_queue.borrow().len(class)
            + self.waiting_tokens.get(class.0).map_or(0, Cell::get)
    }

    /// How long a request of `class` may wait at admission in all.
    pub fn queue_timeout(&self, class: ClassId) -> Duration {
        self.queue_timeout
            .get(class.0)
            .copied()
            .unwrap_or(Duration::ZERO)
    }

    /// Whether node `node` of `pool` has room under `node_inflight_max` on this core.
    pub fn node_has_room(&self, pool: usize, node: usize) -> bool {
        self.caps.borrow().node_has_room(pool, node)
    }

    /// A request is sent to a node (the balancer checked its room).
    pub fn start_node(&self, pool: usize, node: usize) {
        // Room was checked by the pick on this same turn of the executor (no await in
        // between, so no rebalance or other request can take it), so this cannot fail.
        let started = self.caps.borrow_mut().start_node(pool, node);
        debug_assert!(
            started.is_ok(),
            "start_node without room on node {node} of pool {pool}"
        );
    }

    /// A request is done with a node.
    pub fn end_node(&self, pool: usize, node: usize) {
        self.caps.borrow_mut().end_node(pool, node);
        self.wake_one(Slot::Node);
    }

    /// Whether bodies of `c` in `dir` are rate-limited (and must be paced).
    pub fn shapes_bytes(&self, c: &Classified, dir: Dir) -> bool {
        self.limiter.borrow().shapes_bytes(c, dir)
    }

    /// Byte tokens for `want` bytes of `c`'s body in `dir` (a byte pacer's grant).
    pub fn bytes(&self, c: &Classified, dir: Dir, want: u64) -> ByteGrant {
        self.limiter
            .borrow_mut()
            .bytes(c, dir, want, Instant::now())
    }

    /// Gives back byte tokens granted by [`Protect::bytes`] that were not used.
    pub fn return_bytes(&self, c: &Classified, dir: Dir, bytes: u64) {
        self.limiter
            .borrow_mut()
            .return_bytes(c, dir, bytes, Instant::now());
    }

    /// This core's usage report for the coordinator.
    pub fn report(&self) -> (Vec<KeyUsage>, Vec<CapReport>) {
        let keys = self.limiter.borrow_mut().usage(Instant::now());
        let caps = self.caps.borrow().usage();
        (keys, caps)
    }

    /// Takes the coordinator's grants.
    pub fn apply(&self, keys: &[KeyGrant], caps: &[CapGrant]) {
        self.limiter.borrow_mut().apply(keys, Instant::now());
        self.caps.borrow_mut().apply(caps);
        // Grown shares may have room for waiters.
        self.wake_one(Slot::Tenant);
        self.wake_one(Slot::Node);
    }
}

/// A request's tenant slot; dropping it frees the slot and wakes the next waiter.
pub struct Ticket<'a> {
    protect: &'a Protect,
    tenant: weir_policy::config::TenantId,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.protect.caps.borrow_mut().end_request(self.tenant);
        self.protect.wake_one(Slot::Tenant);
    }
}
