//! The validated config plus what the appliance resolved from it at load time (node
//! addresses, core count). Built once per load; shards hold it read-only.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};
use weir_policy::config::Config;

/// Config as the shards use it.
pub struct Settings {
    /// The validated config.
    pub config: Config,
    /// Resolved node addresses, per pool, in config order.
    pub nodes: Vec<Vec<SocketAddr>>,
    /// Number of shards (cores) running.
    pub cores: usize,
}

impl Settings {
    /// Reads, validates and resolves the config at `path`.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let origin = path.display().to_string();
        let config = Config::from_toml_str(&text, &origin).map_err(|e| anyhow::anyhow!("{e}"))?;
        Settings::resolve(config)
    }

    /// Resolves node names and the core count.
    pub fn resolve(config: Config) -> anyhow::Result<Settings> {
        let mut nodes = Vec::with_capacity(config.pools.len());
        for pool in &config.pools {
            let mut addrs = Vec::with_capacity(pool.nodes.len());
            for node in &pool.nodes {
                let text = node.to_string();
                let addr = text
                    .to_socket_addrs()
                    .with_context(|| format!("pool {:?}: resolving node {text}", pool.name))?
                    .next();
                match addr {
                    Some(a) => addrs.push(a),
                    None => bail!("pool {:?}: node {text} resolves to no address", pool.name),
                }
            }
            nodes.push(addrs);
        }
        let online = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cores = if config.appliance.cores == 0 {
            online
        } else {
            config.appliance.cores
        };
        Ok(Settings {
            config,
            nodes,
            cores,
        })
    }
}
