//! Resolution of node names (docs/operations.md, "DNS"), off the data path: no core ever
//! waits for DNS. A resolver thread looks each configured name up again when its answer
//! expires (its TTL within `[dns] ttl_min..=ttl_max`) with hickory-resolver on a small
//! tokio runtime of its own, and keeps the addresses in an address book. When a name's
//! address set changes, it asks the [`Reloader`] to build a new epoch from the running
//! config with the new addresses: the routing tables, balancers, metrics and health all
//! see the new node list at once, and addresses that stay keep their state (health is
//! carried over a reload by address). Requests in flight on an address that went away
//! finish on the epoch they started with; new requests no longer choose it.
//!
//! A failed lookup (timeout, SERVFAIL, NXDOMAIN, no address) keeps the name's last
//! addresses — health decides whether they still serve — and is retried sooner: after
//! 1 s, doubling up to `ttl_max`. A name that never resolved has no nodes until it does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// Retry after a failed lookup starts here and doubles up to `ttl_max`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The resolver thread looks at the book at least this often (names due, names added by
/// a reload).
const TICK_MAX: Duration = Duration::from_millis(500);
/// Most addresses one name contributes (the lowest, sorted): a hostile or broken answer
/// must not turn one line of config into thousands of nodes.
pub const ADDRESSES_PER_NAME_MAX: usize = 64;
/// How long a start, reload or check-config waits for the names it has not seen yet.
const LEARN_TIMEOUT: Duration = Duration::from_secs(5);

/// `outcome` labels of `weir_dns_resolutions_total`, in [`Counters::resolutions`] order.
pub const OUTCOMES: [&str; 3] = ["unchanged", "changed", "failed"];

/// What the resolver counts, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Lookups by outcome ([`OUTCOMES`]).
    pub resolutions: [AtomicU64; 3],
    /// Configured names that have no address.
    pub unresolved: AtomicU64,
}

/// One name in the book.
#[derive(Debug, Clone)]
struct Name {
    /// Its addresses, sorted (empty until it first resolves).
    addrs: Vec<IpAddr>,
    /// When to look it up again.
    due: Instant,
    /// Failed lookups in a row.
    failures: u32,
    /// Why the last lookup failed, if it did.
    error: Option<String>,
}

/// The resolver: an address book of node names, and the runtime that fills it. Cheap to
/// clone (shared).
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Runtime,
    /// The resolver and the `[dns]` it was built from (rebuilt when a reload changes it).
    resolver: Mutex<Option<(weir_policy::config::Dns, TokioResolver)>>,
    book: Mutex<HashMap<String, Name>>,
    counters: Arc<Counters>,
}

impl Dns {
    /// A resolver with its own one-thread runtime; nothing is looked up yet.
    pub fn new(counters: Arc<Counters>) -> anyhow::Result<Dns> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-dns-io")
            .enable_all()
            .build()?;
        Ok(Dns {
            inner: Arc::new(Inner {
                runtime,
                resolver: Mutex::new(None),
                book: Mutex::new(HashMap::new()),
                counters,
            }),
        })
    }

    /// The addresses `host` has now, sorted; empty while it has none.
    pub fn addresses(&self, host: &str) -> Vec<IpAddr> {
        lock(&self.inner.book)
            .get(host)
            .map(|n| n.addrs.clone())
            .unwrap_or_default()
    }

    /// Looks up the names of `names` the book does not hold yet, all at once, waiting
    /// at most a few seconds (a start, a reload, `check-config`: never a core). A name
    /// that does not answer in time stays without addresses; the resolver thread goes
    /// on trying.
    pub fn learn(&self, cfg: &weir_policy::config::Dns, names: &[String]) {
        let new: Vec<String> = {
            let book = lock(&self.inner.book);
            names
                .iter()
                .filter(|n| !book.contains_key(*n))
                .cloned()
                .collect()
        };
        if !new.is_empty() {
            self.refresh(cfg, &new, LEARN_TIMEOUT);
        }
    }

    /// Why the last lookup of `host` failed, if it did.
    pub fn error(&self, host: &str) -> Option<String> {
        lock(&self.inner.book)
            .get(host)
            .and_then(|n| n.error.clone())
    }

    /// The resolver for `cfg`, built when `[dns]` is new or changed.
    fn resolver(&self, cfg: &weir_policy::config::Dns) -> Result<TokioResolver, String> {
        let mut slot = lock(&self.inner.resolver);
        if let Some((built_for, resolver)) = slot.as_ref() {
            if built_for == cfg {
                return Ok(resolver.clone());
            }
        }
        // The resolver's runtime must be current while it is built (it spawns tasks).
        let _guard = self.inner.runtime.enter();
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    let mut server = NameServerConfig::udp_and_tcp(a.ip());
                    server.connections = vec![udp, tcp];
                    server
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = cfg.timeout;
        opts.attempts = 2;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // Every lookup is a fresh question: the book is the cache, with our floor and
        // ceiling on the TTL.
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        *slot = Some((cfg.clone(), resolver.clone()));
        Ok(resolver)
    }

    /// Looks `names` up now, all at once, waiting at most `deadline`, and writes the
    /// answers into the book; true when some name's addresses changed.
    fn refresh(
        &self,
        cfg: &weir_policy::config::Dns,
        names: &[String],
        deadline: Duration,
    ) -> bool {
        let now = Instant::now();
        let answers: Vec<(String, Answer)> = match self.resolver(cfg) {
            Err(why) => names
                .iter()
                .map(|n| (n.clone(), Err(why.clone())))
                .collect(),
            Ok(resolver) => self.inner.runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for name in names {
                    let (resolver, name) = (resolver.clone(), name.clone());
                    tasks.spawn(async move {
                        let answer = lookup(&resolver, &name, deadline).await;
                        (name, answer)
                    });
                }
                let mut out = Vec::with_capacity(names.len());
                while let Some(done) = tasks.join_next().await {
                    if let Ok(answer) = done {
                        out.push(answer);
                    }
                }
                out
            }),
        };
        let mut changed = false;
        let mut book = lock(&self.inner.book);
        let counters = &self.inner.counters;
        for (name, answer) in answers {
            let entry = book.entry(name.clone()).or_insert(Name {
                addrs: Vec::new(),
                due: now,
                failures: 0,
                error: None,
            });
            match answer {
                Ok((mut addrs, ttl)) => {
                    addrs.sort();
                    addrs.dedup();
                    let keep = cfg.clamp_ttl(ttl);
                    entry.due = now + keep;
                    entry.failures = 0;
                    entry.error = None;
                    if addrs != entry.addrs {
                        tracing::warn!(
                            name = %name,
                            from = %list(&entry.addrs),
                            to = %list(&addrs),
                            ttl_secs = keep.as_secs(),
                            "dns: node name moved"
                        );
                        entry.addrs = addrs;
                        changed = true;
                        counters.resolutions[1].fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.resolutions[0].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(why) => {
                    let retry = RETRY_FIRST
                        .saturating_mul(1 << entry.failures.min(16))
                        .min(cfg.ttl_max);
                    entry.failures = entry.failures.saturating_add(1);
                    entry.due = now + retry;
                    entry.error = Some(why.clone());
                    counters.resolutions[2].fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        name = %name,
                        error = %why,
                        keeps = %list(&entry.addrs),
                        retry_secs = retry.as_secs(),
                        "dns: lookup failed"
                    );
                }
            }
        }
        changed
    }

    /// Starts the resolver thread: it looks up again, when due, the names `current`
    /// gives (with the running `[dns]` table) and, when some name's addresses changed,
    /// has `follow` build a new epoch with them (`Reloader::follow_addresses`). Handed
    /// in as functions so that the resolver depends on nothing of weir's.
    pub fn spawn(
        self,
        current: impl Fn() -> Option<(weir_policy::config::Dns, Vec<String>)> + Send + 'static,
        follow: impl Fn(&Dns) -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("weir-dns".into())
            .spawn(move || self.run(&current, &follow))
            .map(|_| ())
    }

    fn run(
        &self,
        current: &dyn Fn() -> Option<(weir_policy::config::Dns, Vec<String>)>,
        follow: &dyn Fn(&Dns) -> Result<(), String>,
    ) {
        // Set when the book changed and no epoch has its addresses yet.
        let mut pending = true;
        loop {
            let Some((cfg, names)) = current() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let cfg = &cfg;
            let now = Instant::now();
            let due: Vec<String> = {
                let mut book = lock(&self.inner.book);
                // Names no longer configured are forgotten: one added again later is
                // looked up afresh.
                book.retain(|name, _| names.contains(name));
                names
                    .iter()
                    .filter(|n| book.get(*n).is_none_or(|e| e.due <= now))
                    .cloned()
                    .collect()
            };
            if !due.is_empty() && self.refresh(cfg, &due, cfg.timeout.saturating_mul(2)) {
                pending = true;
            }
            let unresolved = names
                .iter()
                .filter(|n| self.addresses(n).is_empty())
                .count();
            self.inner
                .counters
                .unresolved
                .store(unresolved as u64, Ordering::Relaxed);
            if pending {
                match follow(self) {
                    Ok(_) => pending = false,
                    Err(why) => tracing::error!("dns: new node addresses not applied yet: {why}"),
                }
            }
            let next = {
                let book = lock(&self.inner.book);
                book.values().map(|e| e.due).min()
            };
            let wait = next
                .map_or(TICK_MAX, |t| t.saturating_duration_since(Instant::now()))
                .clamp(Duration::from_millis(50), TICK_MAX);
            std::thread::sleep(wait);
        }
    }
}

/// A lookup's addresses and their TTL, or why there are none.
type Answer = Result<(Vec<IpAddr>, Duration), String>;

/// One lookup of `name`.
async fn lookup(resolver: &TokioResolver, name: &str, deadline: Duration) -> Answer {
    match tokio::time::timeout(deadline, resolver.lookup_ip(name)).await {
        Err(_) => Err(format!("no answer within {}ms", deadline.as_millis())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(answer)) => {
            // An unspecified or multicast address is no storage node (some resolvers
            // answer 0.0.0.0 for a blocked name).
            let mut addrs: Vec<IpAddr> = answer
                .iter()
                .filter(|ip| !ip.is_unspecified() && !ip.is_multicast() && !is_broadcast(ip))
                .collect();
            if addrs.is_empty() {
                return Err("no usable A or AAAA record".into());
            }
            addrs.sort();
            addrs.dedup();
            addrs.truncate(ADDRESSES_PER_NAME_MAX);
            let ttl = answer
                .valid_until()
                .saturating_duration_since(Instant::now());
            Ok((addrs, ttl))
        }
    }
}

fn is_broadcast(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// `10.0.0.1,10.0.0.2` (or `none`), for log lines.
fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The lock, also after a panic elsewhere (the book stays consistent: every write is one
/// assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
