//! Live reload (docs/design.md, "Configuration"): read, validate and resolve the file once
//! (everything that can fail happens here), stage the new config on every core, then
//! commit it on all of them. Staging itself cannot fail; the two phases exist so that no
//! core uses the new epoch before every core holds it (a node's state change sent under
//! the new epoch must find it on every core). If a core cannot be reached (its inbox is
//! full) or does not answer in time, the reload is abandoned on all cores. A bad file
//! leaves the running config untouched and says why (log, metric, and the admin reply).
//! Keys that shape the process itself (cores, listeners, metrics address) need a restart
//! and are refused with that reason.
//!
//! The resolver thread (`crate::dns`) uses the same two phases when a node name's
//! addresses change ([`Reloader::follow_addresses`]): the running config, new node lists.
//!
//! SIGHUP reloads run on a thread of their own ([`spawn_hup_thread`]): a reload can wait
//! seconds (a config file on a slow disk, a core that does not answer), and the signal
//! thread must stay free to start a drain at once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{Bus, Msg};
use crate::dns::Dns;
use crate::metrics::Registry;
use crate::settings::Settings;
use weir_policy::config::{restart_needed, KeyPath};

/// How long the coordinator waits for every core to stage a config.
const STAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serialises reloads (SIGHUP and the admin endpoint may race) and remembers the epoch.
pub struct Reloader {
    path: PathBuf,
    bus: Bus,
    registry: Registry,
    dns: Dns,
    state: Mutex<(u64, Arc<Settings>)>,
    /// The last reload's outcome, for the status page.
    last: Mutex<Option<LastReload>>,
}

/// How the last reload went.
#[derive(Debug, Clone)]
pub struct LastReload {
    /// When it finished.
    pub at: std::time::SystemTime,
    /// What changed (`Ok`) or why nothing did (`Err`).
    pub outcome: Result<String, String>,
}

impl Reloader {
    /// A reloader for the config at `path`, currently running `settings` as epoch 0;
    /// `dns` resolves the node names of every file it loads.
    pub fn new(
        path: PathBuf,
        bus: Bus,
        registry: Registry,
        dns: Dns,
        settings: Arc<Settings>,
    ) -> Self {
        Reloader {
            path,
            bus,
            registry,
            dns,
            state: Mutex::new((0, settings)),
            last: Mutex::new(None),
        }
    }

    /// Reloads the file; `Ok` says what changed, `Err` why nothing did.
    pub fn reload(&self) -> Result<String, String> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = self.try_reload(&mut state);
        self.registry.reload(result.is_ok());
        match &result {
            Ok(msg) => tracing::info!("{msg}"),
            Err(why) => tracing::error!("config reload rejected: {why}"),
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(LastReload {
                at: std::time::SystemTime::now(),
                outcome: result.clone(),
            });
        }
        result
    }

    /// The running epoch and config, unless a reload holds them right now (the caller
    /// must not wait: it may be an executor thread).
    pub fn current(&self) -> Option<(u64, Arc<Settings>)> {
        let state = self.state.try_lock().ok()?;
        Some((state.0, state.1.clone()))
    }

    /// The last reload's outcome, if any ran.
    pub fn last(&self) -> Option<LastReload> {
        self.last.try_lock().ok().and_then(|l| l.clone())
    }

    fn try_reload(&self, state: &mut (u64, Arc<Settings>)) -> Result<String, String> {
        let next = Settings::load(&self.path, &self.dns).map_err(|e| format!("{e:#}"))?;
        let current = &state.1;
        // Keys that shape the process; a change is placed at its key in the new file.
        let restart = |key: KeyPath, what: &str| {
            Err(format!(
                "{}",
                next.source
                    .error(&key, format!("{what} changed: needs a restart"))
            ))
        };
        // The core count as resolved against this machine (`cores = 0`: all of them).
        if next.cores != current.cores {
            return restart(
                KeyPath::root().key("appliance").key("cores"),
                "the number of cores",
            );
        }
        if let Some((key, what)) = restart_needed(&current.config, &next.config) {
            return restart(key, what);
        }
        let (epoch, next) = self.install(state, next)?;
        Ok(format!(
            "config epoch {epoch} committed from {}: {} pools, {} nodes, {} routes",
            self.path.display(),
            next.config.pools.len(),
            next.nodes.iter().map(Vec::len).sum::<usize>(),
            next.config.routes.len()
        ))
    }

    /// Builds a new epoch from the running config with the node addresses `dns` has now,
    /// when they differ from the running epoch's (a name moved, gained or lost an
    /// address, or resolved for the first time): `Ok(Some(epoch))` when one was
    /// committed, `Ok(None)` when nothing changed, `Err` when a core did not take it (the
    /// caller tries again).
    pub fn follow_addresses(&self, dns: &Dns) -> Result<Option<u64>, String> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let book = |host: &str| dns.addresses(host);
        let Some(next) = state.1.with_addresses(&book) else {
            return Ok(None);
        };
        let before = state.1.clone();
        let (epoch, next) = self.install(&mut state, next)?;
        for (p, pool) in next.config.pools.iter().enumerate() {
            let (was, now) = (&before.nodes[p], &next.nodes[p]);
            let added: Vec<String> = now
                .iter()
                .filter(|a| !was.contains(a))
                .map(|a| a.to_string())
                .collect();
            let removed: Vec<String> = was
                .iter()
                .filter(|a| !now.contains(a))
                .map(|a| a.to_string())
                .collect();
            if !added.is_empty() || !removed.is_empty() {
                tracing::warn!(
                    epoch,
                    pool = %pool.name,
                    added = %added.join(","),
                    removed = %removed.join(","),
                    nodes = now.len(),
                    "dns: node addresses changed; new epoch committed"
                );
            }
        }
        Ok(Some(epoch))
    }

    /// Stages `next` on every core, then commits it everywhere: the new epoch's number
    /// and config, or why no core switched.
    fn install(
        &self,
        state: &mut (u64, Arc<Settings>),
        next: Settings,
    ) -> Result<(u64, Arc<Settings>), String> {
        let epoch = state.0 + 1;
        let next = Arc::new(next);
        let cores = self.bus.cores();
        let (tx, rx) = flume::bounded(cores);
        for core in 0..cores {
            let msg = Msg::Stage {
                epoch,
                settings: next.clone(),
                reply: tx.clone(),
            };
            if !self.bus.send(core, msg) {
                self.abort(epoch);
                return Err(format!("core {core} is too busy to stage the config"));
            }
        }
        let deadline = std::time::Instant::now() + STAGE_TIMEOUT;
        for _ in 0..cores {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            if rx.recv_timeout(wait).is_err() {
                self.abort(epoch);
                return Err(format!(
                    "a core did not stage the config within {}s",
                    STAGE_TIMEOUT.as_secs()
                ));
            }
        }
        for core in 0..cores {
            // Every core staged; a full inbox here would split the cores across epochs,
            // so wait for room rather than drop the commit.
            let mut msg = Msg::Commit { epoch };
            while let Err(flume::TrySendError::Full(back)) = self.bus.try_send(core, msg) {
                msg = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        *state = (epoch, next.clone());
        Ok((epoch, next))
    }

    /// Drops the staged `epoch` on every core.
    fn abort(&self, epoch: u64) {
        for core in 0..self.bus.cores() {
            let _ = self.bus.send(core, Msg::Abort { epoch });
        }
    }
}

/// Starts the thread that runs SIGHUP reloads and returns what the signal thread calls on
/// each SIGHUP: it only asks, and never waits for the reload.
pub fn spawn_hup_thread(reloader: Arc<Reloader>) -> std::io::Result<impl Fn() + Send + 'static> {
    // One request waiting is enough: a reload reads the file when it starts, so SIGHUPs
    // that come while one waits are served by that one.
    let (tx, rx) = flume::bounded::<()>(1);
    std::thread::Builder::new()
        .name("weir-reload".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let _ = reloader.reload();
            }
        })?;
    Ok(move || {
        let _ = tx.try_send(());
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use weir_policy::config::Config;

    /// `weir_config_reloads_total{outcome="rejected"}`.
    fn rejected(registry: &Registry) -> u64 {
        let text = registry.render();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("weir_config_reloads_total{outcome=\"rejected\"} "))
            .unwrap();
        line.trim().parse().unwrap()
    }

    /// The signal thread only asks for a reload: while one is held up (here by the test
    /// holding the reload lock, as a reload in progress would), SIGHUPs return at once, so
    /// a SIGTERM that follows is taken at once; the held-up reload runs when it can.
    #[test]
    fn a_sighup_never_waits_for_a_reload() {
        let text = "[[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\n";
        let settings = Settings::resolve(Config::from_toml_str(text, "t").unwrap()).unwrap();
        let (bus, _inboxes) = Bus::new(1);
        let registry = Registry::new(1, "test");
        let reloader = Arc::new(Reloader::new(
            PathBuf::from("/nonexistent/weir.toml"),
            bus,
            registry.clone(),
            Dns::new(Default::default()).unwrap(),
            Arc::new(settings),
        ));
        let on_hup = spawn_hup_thread(reloader.clone()).unwrap();
        let held = reloader.state.lock().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..3 {
                on_hup();
            }
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "a SIGHUP waited for the reload in progress"
        );
        assert_eq!(
            rejected(&registry),
            0,
            "no reload ran while the lock was held"
        );
        drop(held);
        // The file does not exist: the reload that ran is rejected, and counted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while rejected(&registry) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // One or two: SIGHUPs that came while one waited are served by it.
        let runs = rejected(&registry);
        assert!(
            (1..=2).contains(&runs),
            "{runs} reloads ran for three SIGHUPs"
        );
    }
}
