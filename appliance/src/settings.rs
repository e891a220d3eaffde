//! The validated config plus what the appliance resolved from it at load time (node
//! addresses, core count, the secrets the config names). Built once per load — start-up
//! and every reload, so rotated secrets are picked up — and held read-only by shards.
//! A node given by name is a group of nodes, one per address the name has
//! (`crate::dns`); when those change, the same config is built again with the new
//! addresses ([`Settings::with_addresses`]).

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use weir_io::tls::{ClientCerts, ClientTls, LoadError, PemIdentity, ServerTls};
use weir_io::upstream::TlsTarget;
use weir_policy::config::{
    parse_secrets, AuthMode, ClientAuth, Config, ConfigError, KeyPath, NodeAddr, PoolCredentials,
    Secret, SecretSource, Secrets, SECRETS_FILE_BYTES_MAX,
};

use crate::dns::Dns;

/// Largest config file read. A config is a few KiB; the bound stops a link to
/// `/dev/zero` or a runaway generator from filling memory before the parser says no.
pub const CONFIG_FILE_BYTES_MAX: u64 = 4 << 20;

/// The text a config was loaded from, kept to place what is found wrong after validation
/// (a file it names, a node name, an address taken) at its file, line and key.
#[derive(Clone)]
pub struct Source {
    /// The file, as named on the command line.
    pub origin: String,
    /// Its text.
    pub text: String,
}

impl Source {
    /// `origin:line: key: message` for a problem with `key`.
    pub fn error(&self, key: &KeyPath, message: impl Into<String>) -> anyhow::Error {
        ConfigError::at(&self.text, &self.origin, key, message).into()
    }
}

/// Config as the shards use it.
pub struct Settings {
    /// The validated config.
    pub config: Config,
    /// Node addresses, per pool: each configured entry in order, a literal as one node,
    /// a name as one node per address it has now (none while it resolves to nothing).
    pub nodes: Vec<Vec<SocketAddr>>,
    /// The configured entry (index into the pool's `nodes`) each node comes from.
    pub entries: Vec<Vec<usize>>,
    /// Number of shards (cores) running.
    pub cores: usize,
    /// Tenants' secrets by access key (`auth.secrets_file`); empty when auth is off.
    pub tenant_secrets: Secrets,
    /// Each pool's re-signing identity (`credentials`, secret resolved), by pool index.
    pub pool_identities: Vec<Option<PoolIdentity>>,
    /// Tenants' own identities for some pools (`[[tenant]] pool_credentials`), by
    /// (tenant index, pool index); they outrank the pool's.
    pub tenant_pool_identities: HashMap<(usize, usize), PoolIdentity>,
    /// The HTTPS listeners' certificates and client policy (`[tls]`), read from the PEM
    /// files at this load.
    pub server_tls: Option<Arc<ServerTls>>,
    /// Each pool's TLS client config (`tls`), by pool index.
    pub pool_tls: Vec<Option<Arc<ClientTls>>>,
    /// The config file's name and text.
    pub source: Source,
}

/// Where upstream TLS finds CA roots when a pool names none (Debian's bundle, which the
/// appliance image ships too).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Largest PEM file read (a CA bundle is ~200 KiB).
const PEM_FILE_BYTES_MAX: u64 = 4 << 20;

/// A pool's identity with its secret read.
#[derive(Debug, Clone)]
pub struct PoolIdentity {
    /// The pool's access key id.
    pub access_key: String,
    /// Its secret.
    pub secret: Secret,
    /// The region its nodes expect.
    pub region: String,
}

impl Settings {
    /// Reads, validates and resolves the config at `path`. Every error names the file,
    /// and the line and key when one is at fault.
    /// Names the running resolver has not seen yet are looked up first, on this thread
    /// (never a core's); a name that does not resolve leaves its nodes out, not an error.
    pub fn load(path: &std::path::Path, dns: &Dns) -> anyhow::Result<Settings> {
        let origin = path.display().to_string();
        let text = read_text_file(path, CONFIG_FILE_BYTES_MAX)
            .map_err(|e| anyhow::anyhow!("{}", e.placed(&origin)))?;
        let config = Config::from_toml_str(&text, &origin)?;
        let base = path.parent().unwrap_or(Path::new("."));
        dns.learn(&config.dns, &names(&config));
        let book = |host: &str| dns.addresses(host);
        let mut settings = Settings::resolve_from(config, Source { origin, text }, &book)?;
        settings.load_secrets(base)?;
        settings.load_tls(base)?;
        Ok(settings)
    }

    /// Reads the PEM files `[tls]` and the pools' `tls` tables name and builds the rustls
    /// configs; a bad file fails the load (and so a reload) with the file named.
    fn load_tls(&mut self, base: &Path) -> anyhow::Result<()> {
        let source = &self.source;
        if let Some(tls) = &self.config.tls {
            let at = KeyPath::root().key("tls");
            let mut pems = Vec::with_capacity(tls.certificates.len());
            for (i, c) in tls.certificates.iter().enumerate() {
                let item = at.key("certificate").index(i);
                let (cert, key) = (resolve_path(base, &c.cert), resolve_path(base, &c.key));
                pems.push((
                    format!("{} + {}", cert.display(), key.display()),
                    read_named(source, &item.key("cert"), &cert, PEM_FILE_BYTES_MAX)?,
                    read_named(source, &item.key("key"), &key, PEM_FILE_BYTES_MAX)?,
                ));
            }
            let identities: Vec<PemIdentity<'_>> = pems
                .iter()
                .map(|(origin, cert, key)| PemIdentity {
                    origin: origin.clone(),
                    cert_pem: cert.as_bytes(),
                    key_pem: key.as_bytes(),
                })
                .collect();
            let ca = match &tls.client_ca {
                Some(file) => {
                    let path = resolve_path(base, file);
                    Some((
                        path.display().to_string(),
                        read_named(source, &at.key("client_ca"), &path, PEM_FILE_BYTES_MAX)?,
                    ))
                }
                None => None,
            };
            let clients = ca.as_ref().map(|(origin, pem)| ClientCerts {
                ca_pem: pem.as_bytes(),
                origin: origin.clone(),
                required: tls.client_auth == ClientAuth::Required,
            });
            let server = ServerTls::new(&identities, clients, tls.handshake_timeout, tls.ktls)
                .map_err(|e| {
                    // Point at the certificate or CA the material came from.
                    let what = load_error_item(&e);
                    let key = pems
                        .iter()
                        .position(|(origin, _, _)| origin == what)
                        .map(|i| at.key("certificate").index(i))
                        .or_else(|| {
                            ca.as_ref()
                                .filter(|(origin, _)| origin == what)
                                .map(|_| at.key("client_ca"))
                        })
                        .unwrap_or_else(|| at.clone());
                    source.error(&key, e.to_string())
                })?;
            self.server_tls = Some(Arc::new(server));
        }
        let mut pool_tls = Vec::with_capacity(self.config.pools.len());
        for (i, pool) in self.config.pools.iter().enumerate() {
            let Some(t) = &pool.tls else {
                pool_tls.push(None);
                continue;
            };
            let at = KeyPath::root().key("pool").index(i).key("tls");
            let ca = if !t.verify {
                tracing::warn!(pool = %pool.name, "tls.verify = false: the nodes' certificates are not checked");
                None
            } else {
                let path = t.ca.as_ref().map_or_else(
                    || PathBuf::from(SYSTEM_CA_BUNDLE),
                    |file| resolve_path(base, file),
                );
                Some((
                    path.display().to_string(),
                    read_named(source, &at.key("ca"), &path, PEM_FILE_BYTES_MAX)?,
                ))
            };
            let client = ClientTls::new(
                ca.as_ref().map(|(o, p)| (o.as_str(), p.as_bytes())),
                t.server_name.as_deref(),
                self.config
                    .upstream
                    .connect_timeout
                    .max(std::time::Duration::from_secs(1)),
            )
            .map_err(|e| {
                let key = match load_error_item(&e) {
                    "pool tls.server_name" => at.key("server_name"),
                    what if ca.as_ref().is_some_and(|(origin, _)| origin == what) => at.key("ca"),
                    _ => at.clone(),
                };
                source.error(&key, e.to_string())
            })?;
            pool_tls.push(Some(Arc::new(client)));
        }
        self.pool_tls = pool_tls;
        Ok(())
    }

    /// Reads the secrets the config names: the tenants' file (when auth verifies) and
    /// each pool's `secret_file`. Relative paths are taken from the config's folder.
    /// Messages name the file and line, never a secret.
    fn load_secrets(&mut self, base: &Path) -> anyhow::Result<()> {
        let source = &self.source;
        let auth = &self.config.auth;
        if auth.mode == AuthMode::Verify {
            if let Some(file) = &auth.secrets_file {
                let path = resolve_path(base, file);
                let key = KeyPath::root().key("auth").key("secrets_file");
                let text = read_named(source, &key, &path, SECRETS_FILE_BYTES_MAX)?;
                // Its own lines are named in its own file.
                self.tenant_secrets = parse_secrets(&text, &path.display().to_string())?;
                tracing::info!(
                    keys = self.tenant_secrets.len(),
                    file = %path.display(),
                    "tenant secrets loaded"
                );
            }
        }
        let mut identities = Vec::with_capacity(self.config.pools.len());
        for (i, pool) in self.config.pools.iter().enumerate() {
            let key = KeyPath::root().key("pool").index(i).key("credentials");
            let identity = pool
                .credentials
                .as_ref()
                .map(|c| load_identity(source, base, c, &key))
                .transpose()?;
            identities.push(identity);
        }
        let mut tenant_identities = HashMap::new();
        for (t, tenant) in self.config.tenants.iter().enumerate() {
            for (pool, creds) in &tenant.pool_credentials {
                let key = KeyPath::root()
                    .key("tenant")
                    .index(t)
                    .key("pool_credentials")
                    .key(&self.config.pools[*pool].name);
                tenant_identities.insert((t, *pool), load_identity(source, base, creds, &key)?);
            }
        }
        self.pool_identities = identities;
        self.tenant_pool_identities = tenant_identities;
        Ok(())
    }

    /// How to encrypt to node `node` of pool `pool`, if that pool speaks TLS.
    pub fn tls_target(&self, pool: usize, node: usize) -> Option<TlsTarget<'_>> {
        let tls = self.pool_tls.get(pool)?.as_deref()?;
        let host = &self.node_entry(pool, node)?.host;
        Some(TlsTarget { tls, host })
    }

    /// The configured entry node `node` of pool `pool` comes from (its name or literal,
    /// with the port): the `Host` and TLS name requests to it carry.
    pub fn node_entry(&self, pool: usize, node: usize) -> Option<&NodeAddr> {
        let entry = *self.entries.get(pool)?.get(node)?;
        self.config.pools.get(pool)?.nodes.get(entry)
    }

    /// The DNS name node `node` of pool `pool` is an address of; `None` for a literal.
    pub fn node_name(&self, pool: usize, node: usize) -> Option<&str> {
        self.node_entry(pool, node)
            .filter(|e| e.ip().is_none())
            .map(|e| e.host.as_str())
    }

    /// The configured names that have no address in `book`, at their keys
    /// (`pool[1].nodes[2]`): their nodes are left out until they resolve.
    pub fn unresolved<'a>(
        config: &'a Config,
        book: &dyn Fn(&str) -> Vec<IpAddr>,
    ) -> Vec<(KeyPath, &'a NodeAddr)> {
        let mut out = Vec::new();
        for (p, pool) in config.pools.iter().enumerate() {
            for (n, node) in pool.nodes.iter().enumerate() {
                if node.ip().is_none() && book(&node.host).is_empty() {
                    out.push((
                        KeyPath::root().key("pool").index(p).key("nodes").index(n),
                        node,
                    ));
                }
            }
        }
        out
    }

    /// The same config with the addresses `book` gives its names now; `None` when every
    /// pool's node list would stay as it is. Secrets, TLS and the rest are shared, not
    /// read again: only the node lists move.
    pub fn with_addresses(&self, book: &dyn Fn(&str) -> Vec<IpAddr>) -> Option<Settings> {
        let (nodes, entries) = place_nodes(&self.config, book);
        if nodes == self.nodes {
            return None;
        }
        Some(Settings {
            config: self.config.clone(),
            nodes,
            entries,
            cores: self.cores,
            tenant_secrets: self.tenant_secrets.clone(),
            pool_identities: self.pool_identities.clone(),
            tenant_pool_identities: self.tenant_pool_identities.clone(),
            server_tls: self.server_tls.clone(),
            pool_tls: self.pool_tls.clone(),
            source: self.source.clone(),
        })
    }

    /// The node lists and core count of a config that comes from no file; names have
    /// no address.
    #[cfg(test)]
    pub fn resolve(config: Config) -> anyhow::Result<Settings> {
        Settings::resolve_from(
            config,
            Source {
                origin: "config".into(),
                text: String::new(),
            },
            &|_| Vec::new(),
        )
    }

    /// Places the nodes (names by the addresses `book` has for them) and resolves the
    /// core count.
    fn resolve_from(
        config: Config,
        source: Source,
        book: &dyn Fn(&str) -> Vec<IpAddr>,
    ) -> anyhow::Result<Settings> {
        let (nodes, entries) = place_nodes(&config, book);
        let online = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cores = if config.appliance.cores == 0 {
            online
        } else {
            config.appliance.cores
        };
        let pool_identities = vec![None; config.pools.len()];
        let pool_tls = vec![None; config.pools.len()];
        Ok(Settings {
            server_tls: None,
            pool_tls,
            config,
            nodes,
            entries,
            cores,
            tenant_secrets: Secrets::new(),
            pool_identities,
            tenant_pool_identities: HashMap::new(),
            source,
        })
    }
}

/// The node names of `config` (hosts that are no IP literal), each once.
pub fn names(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for node in config.pools.iter().flat_map(|p| &p.nodes) {
        if node.ip().is_none() && !out.contains(&node.host) {
            out.push(node.host.clone());
        }
    }
    out
}

/// Whether `a` is one of weir's own listeners (client, HTTPS, metrics, admin), or a
/// loopback address on the port of one bound to all addresses: an address a name resolves to there is no storage node — a
/// hostile or mistaken DNS answer would have weir proxy to itself (a loop), or hand
/// clients' requests to its own admin port.
fn is_own_listener(config: &Config, a: SocketAddr) -> bool {
    let app = &config.appliance;
    let tls = config.tls.iter().flat_map(|t| t.listen.iter());
    app.listen
        .iter()
        .chain(tls)
        .chain(app.metrics.iter())
        .chain(app.admin.iter())
        .any(|l| {
            *l == a || (l.port() == a.port() && l.ip().is_unspecified() && a.ip().is_loopback())
        })
}

/// Each pool's nodes and the entry each comes from: a literal is one node, exactly as
/// written; a name is one node per address in `book` (in the order given), with the
/// entry's port, leaving out weir's own listeners ([`is_own_listener`]). An address a
/// pool already has (a literal, or an earlier name's) is not added twice: the same node
/// must not weigh double.
fn place_nodes(
    config: &Config,
    book: &dyn Fn(&str) -> Vec<IpAddr>,
) -> (Vec<Vec<SocketAddr>>, Vec<Vec<usize>>) {
    let mut nodes = Vec::with_capacity(config.pools.len());
    let mut entries = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        let literals: Vec<SocketAddr> = pool
            .nodes
            .iter()
            .filter_map(|n| n.ip().map(|ip| SocketAddr::new(ip, n.port)))
            .collect();
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(pool.nodes.len());
        let mut from: Vec<usize> = Vec::with_capacity(pool.nodes.len());
        for (e, node) in pool.nodes.iter().enumerate() {
            match node.ip() {
                Some(ip) => {
                    addrs.push(SocketAddr::new(ip, node.port));
                    from.push(e);
                }
                None => {
                    for ip in book(&node.host) {
                        let a = SocketAddr::new(ip, node.port);
                        if !literals.contains(&a)
                            && !addrs.contains(&a)
                            && !is_own_listener(config, a)
                        {
                            addrs.push(a);
                            from.push(e);
                        }
                    }
                }
            }
        }
        nodes.push(addrs);
        entries.push(from);
    }
    (nodes, entries)
}

/// An identity with its secret read; `key` is its `credentials` table, named in errors
/// (never the secret).
fn load_identity(
    source: &Source,
    base: &Path,
    creds: &PoolCredentials,
    key: &KeyPath,
) -> anyhow::Result<PoolIdentity> {
    let secret = match &creds.secret {
        SecretSource::Inline(s) => s.clone(),
        SecretSource::File(file) => {
            let path = resolve_path(base, file);
            let key = key.key("secret_file");
            let text = read_named(source, &key, &path, SECRETS_FILE_BYTES_MAX)?;
            Secret::new(text.trim())
                .map_err(|why| source.error(&key, format!("{}: {why}", path.display())))?
        }
    };
    Ok(PoolIdentity {
        access_key: creds.access_key.clone(),
        secret,
        region: creds.region.clone(),
    })
}

fn resolve_path(base: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        base.join(file)
    }
}

/// The item a TLS loading error names (the origin string it was given).
fn load_error_item(e: &LoadError) -> &str {
    match e {
        LoadError::Pem { what, .. } | LoadError::Rustls { what, .. } => what,
    }
}

/// Reads the file at `path`, which the config names at `key`: errors read
/// `config:line: key: path: why`.
fn read_named(source: &Source, key: &KeyPath, path: &Path, max: u64) -> anyhow::Result<String> {
    read_text_file(path, max).map_err(|e| source.error(key, e.placed(&path.display().to_string())))
}

/// Why a file could not be read as text.
#[derive(Debug)]
pub enum FileError {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// Not a regular file (what it is instead).
    NotRegular(&'static str),
    /// Larger than the bound.
    TooLarge(u64),
    /// Not UTF-8: the 1-based line of the first bad byte.
    NotUtf8(usize),
}

impl FileError {
    /// The message with the file named: `path: why`, or `path:line: why`.
    pub fn placed(&self, path: &str) -> String {
        match self {
            FileError::Io(e) => format!("{path}: {e}"),
            FileError::NotRegular(what) => {
                format!("{path}: not a regular file ({what}); name a file")
            }
            FileError::TooLarge(max) => format!("{path}: larger than {max} bytes"),
            FileError::NotUtf8(line) => format!("{path}:{line}: not UTF-8 text"),
        }
    }
}

/// Reads a regular file of at most `max` bytes of UTF-8 text. Anything else — a FIFO
/// (whose open would wait for a writer), a device such as `/dev/zero` (endless), a
/// directory — is refused before a byte is read, so a bad path fails the load at once
/// instead of hanging it or filling memory.
pub fn read_text_file(path: &Path, max: u64) -> Result<String, FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO opens at once instead of waiting for a writer; then it is refused.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(FileError::Io)?;
    let meta = file.metadata().map_err(FileError::Io)?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if !kind.is_file() {
        Some("not a file")
    } else {
        None
    };
    if let Some(what) = not_regular {
        return Err(FileError::NotRegular(what));
    }
    if meta.len() > max {
        return Err(FileError::TooLarge(max));
    }
    let mut bytes = Vec::new();
    // Bounded again: the file may grow while it is read.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge(max));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        FileError::NotUtf8(good.iter().filter(|b| **b == b'\n').count() + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that resolves to weir's own listener (or to loopback on its port) gets no
    /// node there: weir would proxy to itself. Other addresses of the name stay.
    #[test]
    fn a_name_answered_with_weirs_own_listener_is_no_node() {
        let text = "[appliance]\nlisten = [\"0.0.0.0:9000\"]\nadmin = \"127.0.0.1:9091\"\n\
                    [[pool]]\nname = \"a\"\nnodes = [\"s3.example:9000\", \"adm.example:9091\"]\n";
        let config = Config::from_toml_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let book = |host: &str| -> Vec<IpAddr> {
            match host {
                "s3.example" => ["127.0.0.1", "127.0.0.2", "10.0.0.7"],
                // 127.0.0.2 is not the admin listener (bound to 127.0.0.1 only).
                _ => ["127.0.0.1", "127.0.0.2", "10.0.0.9"],
            }
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
        };
        let (nodes, _) = place_nodes(&config, &book);
        let want: Vec<SocketAddr> = ["10.0.0.7:9000", "127.0.0.2:9091", "10.0.0.9:9091"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nodes, vec![want]);
    }
}
