//! The validated config plus what the appliance resolved from it at load time (node
//! addresses, core count, the secrets the config names). Built once per load — start-up
//! and every reload, so rotated secrets are picked up — and held read-only by shards.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{bail, Context};
use weir_io::tls::{ClientCerts, ClientTls, PemIdentity, ServerTls};
use weir_io::upstream::TlsTarget;
use weir_policy::config::{
    parse_secrets, AuthMode, ClientAuth, Config, PoolCredentials, Secret, SecretSource, Secrets,
    SECRETS_FILE_BYTES_MAX,
};

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
    /// Reads, validates and resolves the config at `path`.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let origin = path.display().to_string();
        let config = Config::from_toml_str(&text, &origin).map_err(|e| anyhow::anyhow!("{e}"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut settings = Settings::resolve(config)?;
        settings.load_secrets(base)?;
        settings.load_tls(base)?;
        Ok(settings)
    }

    /// Reads the PEM files `[tls]` and the pools' `tls` tables name and builds the rustls
    /// configs; a bad file fails the load (and so a reload) with the file named.
    fn load_tls(&mut self, base: &Path) -> anyhow::Result<()> {
        if let Some(tls) = &self.config.tls {
            let mut pems = Vec::with_capacity(tls.certificates.len());
            for c in &tls.certificates {
                let (cert, key) = (resolve_path(base, &c.cert), resolve_path(base, &c.key));
                pems.push((
                    format!("{} + {}", cert.display(), key.display()),
                    read_bounded(&cert, PEM_FILE_BYTES_MAX)?,
                    read_bounded(&key, PEM_FILE_BYTES_MAX)?,
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
                        read_bounded(&path, PEM_FILE_BYTES_MAX)?,
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
                .map_err(|e| anyhow::anyhow!("[tls]: {e}"))?;
            self.server_tls = Some(Arc::new(server));
        }
        let mut pool_tls = Vec::with_capacity(self.config.pools.len());
        for pool in &self.config.pools {
            let Some(t) = &pool.tls else {
                pool_tls.push(None);
                continue;
            };
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
                    read_bounded(&path, PEM_FILE_BYTES_MAX)?,
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
            .map_err(|e| anyhow::anyhow!("pool {:?} tls: {e}", pool.name))?;
            pool_tls.push(Some(Arc::new(client)));
        }
        self.pool_tls = pool_tls;
        Ok(())
    }

    /// Reads the secrets the config names: the tenants' file (when auth verifies) and
    /// each pool's `secret_file`. Relative paths are taken from the config's folder.
    /// Messages name the file and line, never a secret.
    fn load_secrets(&mut self, base: &Path) -> anyhow::Result<()> {
        let auth = &self.config.auth;
        if auth.mode == AuthMode::Verify {
            if let Some(file) = &auth.secrets_file {
                let path = resolve_path(base, file);
                let text = read_secret_file(&path)?;
                self.tenant_secrets = parse_secrets(&text, &path.display().to_string())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                tracing::info!(
                    keys = self.tenant_secrets.len(),
                    file = %path.display(),
                    "tenant secrets loaded"
                );
            }
        }
        let mut identities = Vec::with_capacity(self.config.pools.len());
        for pool in &self.config.pools {
            let identity = pool
                .credentials
                .as_ref()
                .map(|c| load_identity(base, c, &format!("pool {:?} credentials", pool.name)))
                .transpose()?;
            identities.push(identity);
        }
        let mut tenant_identities = HashMap::new();
        for (t, tenant) in self.config.tenants.iter().enumerate() {
            for (pool, creds) in &tenant.pool_credentials {
                let what = format!(
                    "tenant {:?} pool_credentials.{}",
                    tenant.name, self.config.pools[*pool].name
                );
                tenant_identities.insert((t, *pool), load_identity(base, creds, &what)?);
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
        })
    }
}

/// An identity with its secret read (`what` names it in errors, never the secret).
fn load_identity(base: &Path, creds: &PoolCredentials, what: &str) -> anyhow::Result<PoolIdentity> {
    let secret = match &creds.secret {
        SecretSource::Inline(s) => s.clone(),
        SecretSource::File(file) => {
            let path = resolve_path(base, file);
            let text = read_secret_file(&path)?;
            Secret::new(text.trim())
                .map_err(|why| anyhow::anyhow!("{}: {what}.secret_file: {why}", path.display()))?
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

/// Reads a secrets file, bounded in size.
fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    read_bounded(path, SECRETS_FILE_BYTES_MAX)
}

/// Reads a text file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > max {
        bail!("{}: larger than {max} bytes", path.display());
    }
    Ok(text)
}
