//! Messages between cores. Cores share no mutable state; what one core must tell another
//! travels here: passive health observations to a node's owner, node state changes from
//! the owner to every core, and admin queries. Channels are bounded: a report that does
//! not fit is dropped (and counted) rather than blocking a core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_policy::health::admin::{Change, Override};
use weir_policy::health::{NodeState, Observation};

use crate::flows::FlowReport;
use crate::settings::Settings;
use crate::stats::Snapshot;

/// Messages per core's inbox before senders start dropping.
pub const INBOX_MESSAGES_MAX: usize = 4096;

/// A node, by pool and position in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// Pool index in the config.
    pub pool: usize,
    /// Node index within the pool.
    pub node: usize,
}

/// The config one core serves (`GET /config`).
pub struct ConfigReport {
    /// The core.
    pub core: usize,
    /// Its current epoch.
    pub epoch: u64,
    /// That epoch's validated config, as `Debug` shows it (secrets redacted, the admin
    /// token too).
    pub config: String,
}

/// What one core tells another.
pub enum Msg {
    /// To a node's owner: something the request path saw.
    Observe {
        /// Config epoch whose node numbering `node` uses.
        epoch: u64,
        /// The node.
        node: NodeId,
        /// What was seen.
        obs: Observation,
        /// False for a failure that may be the request's own (`health::Blame`): the owner
        /// counts it only next to other failures of the node.
        confirmed: bool,
    },
    /// From a node's owner to every core: the node's state changed.
    State {
        /// Config epoch whose node numbering `node` uses.
        epoch: u64,
        /// The node.
        node: NodeId,
        /// Its new state.
        state: NodeState,
        /// When it entered the state (slow start counts from here).
        since: Instant,
        /// Why, for `/nodes` and the log.
        reason: Arc<str>,
    },
    /// From the admin thread: report this core's view of the nodes.
    QueryNodes(flume::Sender<Vec<NodeReport>>),
    /// From the admin thread: an operator's change to a node's override (runtime node
    /// control, docs/operations.md), applied to the current and any staged epoch; the
    /// reply is the node as this core now sees it, `None` when no node has that pool
    /// and address.
    Admin {
        /// Pool name.
        pool: Arc<str>,
        /// Node address.
        addr: std::net::SocketAddr,
        /// What to set.
        change: Change,
        /// Who asked, and when.
        by: SetBy,
        /// Where to answer.
        reply: flume::Sender<Option<NodeReport>>,
    },
    /// From the metrics thread: this core's labeled statistics.
    QueryStats(flume::Sender<Snapshot>),
    /// From the admin thread: report this core's live transfers.
    QueryFlows(flume::Sender<Vec<FlowReport>>),
    /// From the admin thread: report the config epoch this core serves.
    QueryConfig(flume::Sender<ConfigReport>),
    /// From the reload coordinator: prepare `settings` as epoch `epoch` (do not use it yet)
    /// and answer once it is staged. Staging cannot fail (the file was validated and
    /// resolved before); the answer tells the coordinator this core holds the epoch, so a
    /// commit can go out.
    Stage {
        /// The new epoch's number.
        epoch: u64,
        /// The validated, resolved config.
        settings: Arc<Settings>,
        /// Where to answer.
        reply: flume::Sender<()>,
    },
    /// From the reload coordinator: every core staged `epoch`; switch to it.
    Commit {
        /// The epoch to switch to.
        epoch: u64,
    },
    /// From the reload coordinator: some core could not be reached or did not answer in
    /// time; drop `epoch`.
    Abort {
        /// The epoch to drop.
        epoch: u64,
    },
    /// From the signal thread: a drain started; close this core's listeners (requests in
    /// flight go on).
    Drain,
    /// From the drain at its timeout: log every request still in flight as cut by the
    /// drain (the process exits next); answer how many lines were queued.
    DrainCut(flume::Sender<usize>),
    /// From the limits coordinator: report this core's usage of every limit and cap.
    LimitsReport(flume::Sender<LimitsUsage>),
    /// From the limits coordinator: this core's new shares, computed for `epoch`.
    LimitsGrant {
        /// The config epoch the reports were made on.
        epoch: u64,
        /// Rate-limit shares.
        keys: Vec<weir_policy::limits::KeyGrant>,
        /// Cap shares.
        caps: Vec<weir_policy::limits::CapGrant>,
    },
}

/// One core's answer to a rebalance round (`crate::rebalance`).
pub struct LimitsUsage {
    /// Reporting core.
    pub core: usize,
    /// The config epoch the report was made on (shares are per epoch).
    pub epoch: u64,
    /// Rate limits.
    pub keys: Vec<weir_policy::limits::KeyUsage>,
    /// Caps.
    pub caps: Vec<weir_policy::limits::CapReport>,
}

/// Who set a node's override, and when, as `/nodes` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetBy {
    /// The admin client's address.
    pub client: std::net::IpAddr,
    /// Whether the request carried the admin token (false: no token is configured).
    pub token: bool,
    /// Wall-clock time of the change, seconds since the Unix epoch.
    pub at_unix: f64,
}

/// A node's override and who set it last.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSet {
    /// The override in force.
    pub set: Override,
    /// Who set it, and when.
    pub by: SetBy,
}

/// One core's view of one node, for the admin API.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// Pool name (labels come from the reporting core's epoch, which may be newer than
    /// the config the process started with).
    pub pool: Arc<str>,
    /// Node address.
    pub addr: std::net::SocketAddr,
    /// The DNS name the address is one of (`None`: configured as a literal).
    pub name: Option<Arc<str>>,
    /// True when the reporting core owns the node (its state is the decided one).
    pub owned: bool,
    /// State as this core sees it.
    pub state: NodeState,
    /// Requests in flight from this core.
    pub inflight: u32,
    /// This core's concurrency limit for the node (AIMD).
    pub limit: u32,
    /// Latency EWMA as this core measured it.
    pub latency_ewma: Option<Duration>,
    /// Last transition's reason.
    pub reason: Arc<str>,
    /// Seconds since the last transition.
    pub since_secs: f64,
    /// The operator's override, if one was ever set.
    pub admin: Option<AdminSet>,
}

/// Every core's inbox sender.
#[derive(Clone)]
pub struct Bus {
    inboxes: Arc<Vec<flume::Sender<Msg>>>,
}

impl Msg {
    /// The config epoch a health message belongs to, if it is one.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Msg::Observe { epoch, .. } | Msg::State { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }
}

impl Bus {
    /// A bus for `cores` cores, and each core's receiver.
    pub fn new(cores: usize) -> (Bus, Vec<flume::Receiver<Msg>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..cores)
            .map(|_| flume::bounded(INBOX_MESSAGES_MAX))
            .unzip();
        (
            Bus {
                inboxes: Arc::new(senders),
            },
            receivers,
        )
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.inboxes.len()
    }

    /// Sends to one core without waiting, handing the message back when the inbox is full.
    pub fn try_send(&self, core: usize, msg: Msg) -> Result<(), flume::TrySendError<Msg>> {
        self.inboxes[core].try_send(msg)
    }

    /// Sends to one core without waiting; false when its inbox is full.
    pub fn send(&self, core: usize, msg: Msg) -> bool {
        self.inboxes[core].try_send(msg).is_ok()
    }

    /// Sends to one core, waiting while its inbox is full (a core empties it all the
    /// time): for the few messages that must not be dropped, from threads that are not
    /// cores. False only when the core is gone.
    pub fn send_waiting(&self, core: usize, msg: Msg) -> bool {
        self.inboxes[core].send(msg).is_ok()
    }

    /// Puts a question to every core whose inbox has room (a core whose inbox is full is
    /// left out, never waited for); each core's reply comes through its receiver, in core
    /// order. Collect them with [`gather`].
    pub fn ask<T>(&self, question: impl Fn(flume::Sender<T>) -> Msg) -> Vec<flume::Receiver<T>> {
        let mut replies = Vec::with_capacity(self.cores());
        for core in 0..self.cores() {
            let (tx, rx) = flume::bounded(1);
            if self.send(core, question(tx)) {
                replies.push(rx);
            }
        }
        replies
    }
}

/// The replies to [`Bus::ask`] that arrive within `timeout`, in core order, awaited
/// without blocking the executor: a core that does not answer in time is left out, so a
/// stuck core never holds up its askers.
pub async fn gather<T>(replies: Vec<flume::Receiver<T>>, timeout: Duration) -> Vec<T> {
    let deadline = monoio::time::Instant::from_std(Instant::now() + timeout);
    let mut out = Vec::with_capacity(replies.len());
    for rx in replies {
        if let Ok(Ok(reply)) = monoio::time::timeout_at(deadline, rx.recv_async()).await {
            out.push(reply);
        }
    }
    out
}
