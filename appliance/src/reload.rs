//! Live reload (docs/design.md, "Configuration"): read and validate the file once, stage
//! the new config on every core, then commit it on all of them — or, if any core cannot
//! stage it, abort on all. A bad file leaves the running config untouched and says why
//! (log, metric, and the admin reply). Keys that shape the process itself (cores,
//! listeners, metrics address) need a restart and are refused with that reason.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bus::{Bus, Msg};
use crate::metrics::Registry;
use crate::settings::Settings;
use weir_policy::config::KeyPath;

/// How long the coordinator waits for every core to stage a config.
const STAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serialises reloads (SIGHUP and the admin endpoint may race) and remembers the epoch.
pub struct Reloader {
    path: PathBuf,
    bus: Bus,
    registry: Registry,
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
    /// A reloader for the config at `path`, currently running `settings` as epoch 0.
    pub fn new(path: PathBuf, bus: Bus, registry: Registry, settings: Arc<Settings>) -> Self {
        Reloader {
            path,
            bus,
            registry,
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
        let next = Settings::load(&self.path).map_err(|e| format!("{e:#}"))?;
        let current = &state.1;
        let (old, new) = (&current.config.appliance, &next.config.appliance);
        // Keys that shape the process; a change is placed at its key in the new file.
        let restart = |key: KeyPath, what: &str| {
            Err(format!(
                "{}",
                next.source
                    .error(&key, format!("{what} changed: needs a restart"))
            ))
        };
        let appliance = KeyPath::root().key("appliance");
        if next.cores != current.cores {
            return restart(appliance.key("cores"), "the number of cores");
        }
        if old.listen != new.listen {
            return restart(appliance.key("listen"), "the listen addresses");
        }
        let tls_listen = |s: &Settings| {
            s.config
                .tls
                .as_ref()
                .map(|t| t.listen.clone())
                .unwrap_or_default()
        };
        if tls_listen(current) != tls_listen(&next) {
            return restart(
                KeyPath::root().key("tls").key("listen"),
                "the TLS listen addresses",
            );
        }
        if old.metrics != new.metrics {
            return restart(appliance.key("metrics"), "the metrics address");
        }
        // Read once at start too: a reload that "took" them would be a lie (an admin
        // token thought rotated would still open the admin port).
        if old.admin != new.admin {
            return restart(appliance.key("admin"), "the admin address");
        }
        if old.admin_token != new.admin_token {
            return restart(appliance.key("admin_token"), "the admin token");
        }
        if old.access_log != new.access_log {
            return restart(appliance.key("access_log"), "the access log");
        }
        if old.access_log_lines_max != new.access_log_lines_max {
            return restart(
                appliance.key("access_log_lines_max"),
                "the access-log buffer",
            );
        }
        // The control listeners read their caps and deadlines once, at start.
        let (was, now) = (&old.control, &new.control);
        let control_key = if was.connections_max != now.connections_max {
            Some("control_connections_max")
        } else if was.client_ip_connections_max != now.client_ip_connections_max {
            Some("control_client_ip_connections_max")
        } else if was.head_timeout != now.head_timeout {
            Some("control_head_timeout")
        } else if was.connection_timeout != now.connection_timeout {
            Some("control_connection_timeout")
        } else {
            None
        };
        if let Some(key) = control_key {
            return restart(
                appliance.key(key),
                "the control listeners' caps and deadlines",
            );
        }
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
        for _ in 0..cores {
            match rx.recv_timeout(STAGE_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    self.abort(epoch);
                    return Err(format!("a core could not stage the config: {why}"));
                }
                Err(_) => {
                    self.abort(epoch);
                    return Err("a core did not stage the config in time".into());
                }
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
        Ok(format!(
            "config epoch {epoch} committed from {}: {} pools, {} nodes, {} routes",
            self.path.display(),
            next.config.pools.len(),
            next.nodes.iter().map(Vec::len).sum::<usize>(),
            next.config.routes.len()
        ))
    }

    fn abort(&self, epoch: u64) {
        for core in 0..self.bus.cores() {
            let _ = self.bus.send(core, Msg::Abort { epoch });
        }
    }
}
