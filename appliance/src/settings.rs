//! The validated config plus what the appliance resolved from it at load time (node
//! addresses, core count, the secrets the config names). Built once per load — start-up
//! and every reload, so rotated secrets are picked up — and held read-only by shards.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use weir_io::tls::{ClientCerts, ClientTls, LoadError, PemIdentity, ServerTls};
use weir_io::upstream::TlsTarget;
use weir_policy::config::{
    parse_secrets, AuthMode, ClientAuth, Config, ConfigError, KeyPath, PoolCredentials, Secret,
    SecretSource, Secrets, SECRETS_FILE_BYTES_MAX,
};

/// Largest config file read. A config is a few KiB; the bound stops a link to
/// `/dev/zero` or a runaway generator from filling memory before the parser says no.
pub const CONFIG_FILE_BYTES_MAX: u64 = 4 << 20;

/// The text a config was loaded from, kept to place what is found wrong after validation
/// (a file it names, a node name, an address taken) at its file, line and key.
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
    /// Resolved node addresses, per pool, in config order.
    pub nodes: Vec<Vec<SocketAddr>>,
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
    pub fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
        let origin = path.display().to_string();
        let text = read_text_file(path, CONFIG_FILE_BYTES_MAX)
            .map_err(|e| anyhow::anyhow!("{}", e.placed(&origin)))?;
        let config = Config::from_toml_str(&text, &origin)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut settings = Settings::resolve_from(config, Source { origin, text })?;
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
        let host = &self.config.pools.get(pool)?.nodes.get(node)?.host;
        Some(TlsTarget { tls, host })
    }

    /// Resolves node names and the core count of a config that comes from no file.
    #[cfg(test)]
    pub fn resolve(config: Config) -> anyhow::Result<Settings> {
        Settings::resolve_from(
            config,
            Source {
                origin: "config".into(),
                text: String::new(),
            },
        )
    }

    /// Resolves node names and the core count; a name that does not resolve is an error
    /// at its key (`pool[1].nodes[2]`).
    fn resolve_from(config: Config, source: Source) -> anyhow::Result<Settings> {
        let mut nodes = Vec::with_capacity(config.pools.len());
        for (p, pool) in config.pools.iter().enumerate() {
            let mut addrs = Vec::with_capacity(pool.nodes.len());
            for (n, node) in pool.nodes.iter().enumerate() {
                let key = KeyPath::root().key("pool").index(p).key("nodes").index(n);
                let text = node.to_string();
                let addr = text
                    .to_socket_addrs()
                    .map_err(|e| source.error(&key, format!("cannot resolve {text}: {e}")))?
                    .next();
                match addr {
                    Some(a) => addrs.push(a),
                    None => {
                        return Err(source.error(&key, format!("{text} resolves to no address")))
                    }
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
        let pool_identities = vec![None; config.pools.len()];
        let pool_tls = vec![None; config.pools.len()];
        Ok(Settings {
            server_tls: None,
            pool_tls,
            config,
            nodes,
            cores,
            tenant_secrets: Secrets::new(),
            pool_identities,
            tenant_pool_identities: HashMap::new(),
            source,
        })
    }
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
