//! The `identity` scenario: what SigV4 verification at the edge and re-signing for the
//! storage cost weir per GB of a large GET and a large PUT.
//!
//! Three weir processes over the same simulator nodes, started here from
//! `bench/peers/weir-identity.toml`, each with a metrics listener:
//!
//! - **bare**: no `[auth]`, the pool has no credentials; bodies splice through;
//! - **verify**: `[auth] mode = "verify"` against a tenant secrets file, the pool has no
//!   credentials (the client's signatures go on to the nodes);
//! - **verify + re-sign**: the same, and the pool has `credentials`, so every request is
//!   signed again for the node with the pool's key.
//!
//! The client (the in-process load generator) signs every request for real with the
//! tenant's key (`crate::sigv4`), in three ways, one cell each:
//!
//! 1. GET, header-signed (`UNSIGNED-PAYLOAD`);
//! 2. PUT, header-signed (`UNSIGNED-PAYLOAD`: the body is not part of the signature);
//! 3. PUT, streaming-signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, aws-chunked, 64 KiB
//!    chunks, each signed): verifying it means hashing every body byte in user space, and
//!    re-signing means computing every chunk signature again.
//!
//! A correctness pass per cell comes first, with the simulators checking every signature
//! they receive (the tenant's and the pool's, headers and every chunk: `sim::sigcheck`,
//! turned off again for the timed rounds): GET bodies checked byte by byte, PUT ETags
//! against the MD5 of the bytes sent, the nodes' per-access-key counters showing whose
//! signature reached them. A weir that refuses a cell outright (501 `NotImplemented`,
//! `streaming_resign`, from weirs that do not re-sign chunks) is reported as such and
//! left out of the timed rounds. A streaming PUT with one tampered chunk signature then
//! shows which weir checks chunks (and whether the object reached a node). The timed
//! rounds interleave the three weirs per cell, the order rotated each round; weir's CPU
//! (user + system from `/proc`) per GB is the number.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::peers::{self, Binaries, Kind};
use super::procs::{self, CpuSnapshot, Managed};
use super::report::{self, RunMeta};
use super::show_errors;
use super::stats::{ratio, show, Spread};
use super::svg::{self, BarPanel, Panel, Series};
use crate::load::{self, ErrorCounts, LoadConfig, Summary};
use crate::sigv4::{self, Credentials, Signer};
use crate::{http, pattern, SimStats, Synthetic};

/// `bench/peers/weir-identity.toml`.
pub const WEIR_IDENTITY_TEMPLATE: &str = include_str!("../../peers/weir-identity.toml");

/// Port offset of this scenario's first weir from the runner's base port (tls-get uses
/// +60..+67, the SeaweedFS cluster +80..+91).
const PORT_OFFSET: u16 = 70;
/// Pause between cells, so one cell's closing connections do not overlap the next.
const SETTLE: Duration = Duration::from_millis(300);
/// Data bytes per chunk of the streaming-signed PUTs (what the AWS SDKs use).
pub const CHUNK_BYTES: u64 = 64 << 10;
/// The tenant's access key: what the client signs with.
pub const TENANT_ACCESS_KEY: &str = "WEIRBENCHTENANT00001";
/// The tenant's secret (in the secrets file weir verifies against).
pub const TENANT_SECRET: &str = "weir-bench-tenant-secret-000000000000000";
/// The pool's access key: what weir re-signs with.
pub const POOL_ACCESS_KEY: &str = "WEIRBENCHPOOL0000001";
/// The pool's secret.
pub const POOL_SECRET: &str = "weir-bench-pool-secret-00000000000000000";
/// Region of both keys' credential scopes.
pub const REGION: &str = "us-east-1";
/// Object size of the tampered-chunk probe: four 64 KiB chunks.
const TAMPER_BYTES: u64 = 4 * CHUNK_BYTES;
/// The chunk (0-based) whose signature the probe spoils.
const TAMPERED_CHUNK: usize = 2;

/// How the client signs, and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// GET, header-signed.
    Get,
    /// PUT, header-signed with `UNSIGNED-PAYLOAD`.
    Put,
    /// PUT, streaming-signed (aws-chunked, every chunk signed).
    PutStreaming,
}

impl Op {
    /// Every op, in table order.
    pub const ALL: [Op; 3] = [Op::Get, Op::Put, Op::PutStreaming];

    /// Short name in tables, plots and records.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::PutStreaming => "PUT streaming",
        }
    }

    /// What the client sends.
    pub fn describe(self) -> String {
        match self {
            Op::Get => "GET, header-signed (`x-amz-content-sha256: UNSIGNED-PAYLOAD`)".into(),
            Op::Put => "PUT, header-signed (`UNSIGNED-PAYLOAD`: the body is not signed)".into(),
            Op::PutStreaming => format!(
                "PUT, streaming-signed (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, aws-chunked, \
                 {} KiB chunks, each signed)",
                CHUNK_BYTES >> 10
            ),
        }
    }

    fn load_op(self) -> load::Op {
        match self {
            Op::Get => load::Op::Get,
            Op::Put | Op::PutStreaming => load::Op::Put,
        }
    }
}

/// Which weir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// No `[auth]`, no pool credentials.
    Bare,
    /// `[auth] mode = "verify"`, no pool credentials.
    Verify,
    /// `[auth] mode = "verify"` and pool credentials.
    VerifyResign,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 3] = [Variant::Bare, Variant::Verify, Variant::VerifyResign];

    /// Name in tables, plots and records.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Verify => "verify",
            Variant::VerifyResign => "verify + re-sign",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Verify => "verify",
            Variant::VerifyResign => "resign",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Variant::Bare => Kind::Weir.colour(),
            Variant::Verify => "#ff9f1c",
            Variant::VerifyResign => Kind::Haproxy.colour(),
        }
    }

    fn verifies(self) -> bool {
        self != Variant::Bare
    }

    fn resigns(self) -> bool {
        self == Variant::VerifyResign
    }
}

/// What the scenario needs from the runner.
pub struct Setup<'a> {
    /// weir (the peers are not used).
    pub binaries: &'a Binaries,
    /// The simulator nodes (running, serving `get_keys` and declaring `put_keys`).
    pub nodes: &'a [SocketAddr],
    /// The simulators' processes (their CPU is recorded beside weir's).
    pub sim_pids: Vec<u32>,
    /// The run's scratch folder (configurations, the secrets file, logs).
    pub run_dir: &'a Path,
    /// The runner's base port.
    pub base_port: u16,
    /// Rounds per cell.
    pub rounds: usize,
    /// Load duration of one timed cell.
    pub duration: Duration,
    /// Load duration of one correctness cell.
    pub correctness_duration: Duration,
    /// Connections of every timed cell.
    pub streams: usize,
    /// The objects GET.
    pub get_keys: Synthetic,
    /// The objects PUT (declared on the nodes, so a correct PUT shares their copy).
    pub put_keys: Synthetic,
    /// Check every GET body byte in the timed cells too.
    pub verify_get: bool,
}

/// One timed cell.
#[derive(Clone)]
pub struct IdMeasurement {
    /// What the client did.
    pub op: Op,
    /// Which weir.
    pub variant: Variant,
    /// Round (0-based).
    pub round: usize,
    /// Position in the round (0 = ran first).
    pub position: usize,
    /// What the load generator saw.
    pub summary: Summary,
    /// weir's CPU-seconds during the cell.
    pub weir_cpu_s: f64,
    /// weir's peak RSS during the cell, bytes.
    pub weir_peak_rss_bytes: u64,
    /// The simulators' CPU-seconds.
    pub sims_cpu_s: f64,
    /// The load generator's CPU-seconds (this process).
    pub client_cpu_s: f64,
    /// Requests the nodes counted under the tenant's and the pool's access key.
    pub at_nodes: KeyCounts,
    /// 1-minute load average when the cell started.
    pub load_average: f64,
}

impl IdMeasurement {
    fn per_gb(&self, cpu_s: f64) -> Option<f64> {
        let gb = self.summary.bytes as f64 / 1e9;
        (gb > 0.0).then(|| cpu_s / gb)
    }

    /// weir's CPU-seconds per GB (10^9 bytes) moved.
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        self.per_gb(self.weir_cpu_s)
    }

    /// The raw record.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"scenario\":\"identity\",\"op\":\"{}\",\"target\":\"{}\",\"round\":{},\"position\":{},\"proxy_cpu_s\":{:.4},\"proxy_peak_rss_bytes\":{},\"sims_cpu_s\":{:.3},\"client_cpu_s\":{:.3},\"tenant_at_nodes\":{},\"pool_at_nodes\":{},\"load_average\":{:.2},\"load\":{}}}",
            self.op.name(),
            self.variant.name(),
            self.round,
            self.position,
            self.weir_cpu_s,
            self.weir_peak_rss_bytes,
            self.sims_cpu_s,
            self.client_cpu_s,
            self.at_nodes.tenant,
            self.at_nodes.pool,
            self.load_average,
            self.summary.to_json()
        )
    }
}

/// What the nodes' signature checks saw (while they were on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigCounts {
    /// Requests whose header signature was checked.
    pub checked: u64,
    /// Chunk signatures checked and valid.
    pub chunks: u64,
    /// Requests refused for a bad signature.
    pub failures: u64,
}

/// Requests the nodes counted by access key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Under [`TENANT_ACCESS_KEY`] (the client's signature reached the node).
    pub tenant: u64,
    /// Under [`POOL_ACCESS_KEY`] (weir re-signed).
    pub pool: u64,
}

/// The correctness pass of one cell.
#[derive(Clone, Debug)]
pub struct Correctness {
    /// What the client did.
    pub op: Op,
    /// Which weir.
    pub variant: Variant,
    /// Requests completed.
    pub requests: u64,
    /// Failed requests by cause.
    pub errors: ErrorCounts,
    /// Whose signatures the nodes saw.
    pub at_nodes: KeyCounts,
    /// What the nodes' signature checks found.
    pub signatures: SigCounts,
    /// Why weir refused the cell outright (then it is not timed).
    pub refused: Option<String>,
}

/// A streaming PUT with one spoiled chunk signature, through one weir.
#[derive(Clone, Debug)]
pub struct TamperProbe {
    /// Which weir.
    pub variant: Variant,
    /// weir's answer (status and S3 code), or how the connection ended.
    pub answer: String,
    /// Whether any node holds the object afterwards.
    pub stored: bool,
    /// Requests the nodes refused for a bad signature meanwhile (the node, not weir,
    /// caught it).
    pub node_failures: u64,
}

impl Correctness {
    /// Chunk signatures of one upload: one per [`CHUNK_BYTES`] and the final one.
    fn chunks_per_request(&self, object_bytes: u64) -> u64 {
        match self.op {
            Op::PutStreaming => object_bytes.div_ceil(CHUNK_BYTES) + 1,
            Op::Get | Op::Put => 0,
        }
    }

    /// What the pass shows, in words; `Err` when something is wrong.
    pub fn verdict(&self, object_bytes: u64) -> Result<String, String> {
        if let Some(r) = &self.refused {
            return Ok(format!("refused: {r}"));
        }
        if self.errors.total() > 0 {
            return Err("**failed requests**".into());
        }
        let arrived = self.at_nodes.tenant + self.at_nodes.pool;
        let keys_ok = if self.variant.resigns() {
            self.at_nodes.tenant == 0 && self.at_nodes.pool > 0
        } else {
            self.at_nodes.pool == 0 && self.at_nodes.tenant > 0
        };
        if !keys_ok {
            return Err("**keys at the nodes not as expected**".into());
        }
        let s = &self.signatures;
        if s.failures > 0 || s.checked != arrived {
            return Err(format!(
                "**the nodes checked {} of {arrived} signatures, {} failed**",
                s.checked, s.failures
            ));
        }
        let chunks = self.chunks_per_request(object_bytes) * arrived;
        if s.chunks != chunks {
            return Err(format!(
                "**the nodes checked {} chunk signatures, expected {chunks}**",
                s.chunks
            ));
        }
        let whose = if self.variant.resigns() {
            "weir's re-signed"
        } else {
            "the client's"
        };
        let chunk_note = if chunks > 0 {
            format!(" and all {chunks} chunk signatures")
        } else {
            String::new()
        };
        Ok(format!(
            "ok: {whose} signature of every request held at the nodes{chunk_note}"
        ))
    }
}

/// Everything the page shows.
#[derive(Clone, Default)]
pub struct IdentityRun {
    /// The timed cells.
    pub measurements: Vec<IdMeasurement>,
    /// The correctness pass, per op and variant.
    pub correctness: Vec<Correctness>,
    /// The tampered-chunk probe, per variant.
    pub tamper: Vec<TamperProbe>,
    /// weir's identity counters after the run (non-zero lines), per variant.
    pub counters: Vec<(Variant, Vec<String>)>,
    /// Connections per timed cell.
    pub streams: usize,
    /// Object size, bytes.
    pub object_bytes: u64,
    /// Whether GET bodies were checked byte by byte in the timed cells.
    pub verify_get: bool,
    /// Things to know.
    pub notes: Vec<String>,
}

impl IdentityRun {
    fn of(&self, op: Op, variant: Variant) -> Vec<&IdMeasurement> {
        self.measurements
            .iter()
            .filter(|m| m.op == op && m.variant == variant)
            .collect()
    }

    fn refused(&self, op: Op, variant: Variant) -> Option<&str> {
        self.correctness
            .iter()
            .find(|c| c.op == op && c.variant == variant)
            .and_then(|c| c.refused.as_deref())
    }

    /// weir's CPU-s/GB of `variant` over `bare`'s, round by round (the two ran in the same
    /// round of the same cell, minutes apart at most).
    pub fn per_round_ratio(&self, op: Op, variant: Variant) -> Option<Spread> {
        let ratios: Vec<f64> = self
            .of(op, variant)
            .iter()
            .filter_map(|m| {
                let bare = self
                    .of(op, Variant::Bare)
                    .into_iter()
                    .find(|b| b.round == m.round)?
                    .cpu_s_per_gb()?;
                (bare > 0.0).then(|| m.cpu_s_per_gb().map(|c| c / bare))?
            })
            .collect();
        Spread::of(&ratios)
    }
}

fn tenant() -> Credentials {
    Credentials {
        access_key: TENANT_ACCESS_KEY.into(),
        secret_key: TENANT_SECRET.into(),
        region: REGION.into(),
    }
}

/// A running weir of this scenario.
struct Weir {
    variant: Variant,
    process: Managed,
    listen: SocketAddr,
    metrics: SocketAddr,
}

/// The page's title.
pub const TITLE: &str = "Identity at the edge: SigV4 verify and re-sign, 64 MiB GET and PUT";

/// Runs the scenario: the three weirs, a correctness pass, the tampered-chunk probe, the
/// timed rounds. `records` gets one JSON line per cell.
pub fn run(setup: &Setup, records: &mut dyn std::io::Write) -> Result<IdentityRun> {
    if !setup.binaries.weir.exists() {
        bail!(
            "{} not found (the identity scenario needs weir)",
            setup.binaries.weir.display()
        );
    }
    if setup.streams == 0 {
        bail!("the identity scenario needs at least one stream");
    }
    let dir = setup.run_dir.join("identity");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("tenants.secrets"),
        format!("# the identity scenario's tenant\n{TENANT_ACCESS_KEY} = {TENANT_SECRET}\n"),
    )?;
    let mut weirs = Vec::new();
    for (i, variant) in Variant::ALL.into_iter().enumerate() {
        let port = setup.base_port + PORT_OFFSET + 2 * i as u16;
        weirs.push(start_weir(setup, &dir, variant, port)?);
    }
    let mut run = IdentityRun {
        streams: setup.streams,
        object_bytes: setup.get_keys.size_bytes,
        verify_get: setup.verify_get,
        ..IdentityRun::default()
    };

    // Correctness: every cell once, with every byte (GET) or ETag (PUT) and, at the nodes,
    // every signature checked.
    node_checks(setup.nodes, true)?;
    for op in Op::ALL {
        for weir in &weirs {
            let c = correctness(setup, weir, op)?;
            println!(
                "correctness identity {:<13} {:<16} {} requests, errors {}, at the nodes: tenant {} / pool {}; {}",
                op.name(),
                weir.variant.name(),
                c.requests,
                show_errors(&c.errors),
                c.at_nodes.tenant,
                c.at_nodes.pool,
                c.verdict(setup.put_keys.size_bytes)
                    .unwrap_or_else(|e| e)
                    .replace("**", "")
            );
            run.correctness.push(c);
        }
    }
    for weir in &weirs {
        let probe = tamper_probe(setup, weir)?;
        println!(
            "identity tampered chunk via {:<16} {} (stored on a node: {}; refused by a node: {})",
            weir.variant.name(),
            probe.answer,
            if probe.stored { "yes" } else { "no" },
            probe.node_failures
        );
        run.tamper.push(probe);
    }
    node_checks(setup.nodes, false)?;

    // The timed rounds: per round and op every (admitted) weir once, the order rotated.
    let cells: Vec<(Op, Vec<usize>)> = Op::ALL
        .into_iter()
        .map(|op| {
            let admitted = (0..weirs.len())
                .filter(|&i| run.refused(op, weirs[i].variant).is_none())
                .collect();
            (op, admitted)
        })
        .collect();
    let total: usize = setup.rounds * cells.iter().map(|(_, w)| w.len()).sum::<usize>();
    let mut done = 0;
    for round in 0..setup.rounds {
        for (op, admitted) in &cells {
            let n = admitted.len();
            for position in 0..n {
                let weir = &mut weirs[admitted[(position + round) % n]];
                if let Some(status) = weir.process.exited() {
                    bail!(
                        "weir ({}) exited ({status}); its log:\n{}",
                        weir.variant.name(),
                        weir.process.log_tail(30)
                    );
                }
                done += 1;
                let m = cell(setup, weir, *op, round, position)?;
                println!(
                    "[{done:>3}/{total}] round {} identity {:<13} {:<16} {:>5.2} GB/s  weir {:.2} CPU-s ({})  errors {}",
                    round + 1,
                    op.name(),
                    weir.variant.name(),
                    m.summary.gbps(),
                    m.weir_cpu_s,
                    m.cpu_s_per_gb()
                        .map_or_else(|| "—".to_string(), |c| format!("{c:.3}/GB")),
                    m.summary.errors.total()
                );
                writeln!(records, "{}", m.to_json())?;
                run.measurements.push(m);
                std::thread::sleep(SETTLE);
            }
        }
    }
    for weir in &mut weirs {
        run.counters
            .push((weir.variant, identity_counters(weir.metrics)));
        if weir.process.exited().is_some() {
            run.notes.push(format!(
                "weir ({}) exited during the run; see its log in the raw folder (identity/)",
                weir.variant.name()
            ));
        }
    }
    Ok(run)
}

/// The configuration of `variant` (listening on `port`, metrics on `port + 1`).
fn config_text(
    setup: &Setup,
    variant: Variant,
    listen: SocketAddr,
    metrics: SocketAddr,
) -> Result<String> {
    let servers: Vec<String> = setup.nodes.iter().map(|n| format!("\"{n}\"")).collect();
    let credentials = if variant.resigns() {
        format!(
            "credentials = {{ access_key = \"{POOL_ACCESS_KEY}\", secret = \"{POOL_SECRET}\", region = \"{REGION}\" }}"
        )
    } else {
        String::new()
    };
    let auth = if variant.verifies() {
        "\n[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\nskew_max = \"15m\""
            .to_string()
    } else {
        String::new()
    };
    peers::render(
        WEIR_IDENTITY_TEMPLATE,
        &[
            ("LISTEN", listen.to_string()),
            ("METRICS", metrics.to_string()),
            ("SERVERS", servers.join(", ")),
            ("CREDENTIALS", credentials),
            ("AUTH", auth),
        ],
    )
}

fn start_weir(setup: &Setup, dir: &Path, variant: Variant, port: u16) -> Result<Weir> {
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let metrics = SocketAddr::from(([127, 0, 0, 1], port + 1));
    let name = format!("weir-identity-{}", variant.slug());
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config_text(setup, variant, listen, metrics)?)?;
    let command = peers::command(Kind::Weir, setup.binaries, &path, dir)?;
    let mut process = Managed::spawn(&name, command, &dir.join(format!("{name}.log")))?;
    process.wait_accepting(listen, Duration::from_secs(30))?;
    // Accepting is not serving: wait for a signed GET to come back through it.
    let mut signer = Signer::new(tenant());
    let started = Instant::now();
    let object = setup.get_keys.path(0);
    loop {
        let headers = signer.headers("HEAD", &object, &listen.to_string(), SystemTime::now());
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let outcome = http::request(
            listen,
            "HEAD",
            &object,
            &headers,
            b"",
            Duration::from_secs(2),
        );
        match outcome {
            Ok(response) if response.status == 200 => break,
            outcome if started.elapsed() > Duration::from_secs(20) => bail!(
                "{name} does not answer a signed HEAD after 20 s ({:?}); its log:\n{}",
                outcome.map(|r| r.status),
                process.log_tail(30)
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    println!(
        "{name:<24} up on {listen} (pid {}, config {})",
        process.pid(),
        path.display()
    );
    Ok(Weir {
        variant,
        process,
        listen,
        metrics,
    })
}

fn load_config(
    setup: &Setup,
    weir: &Weir,
    op: Op,
    connections: usize,
    duration: Duration,
) -> LoadConfig {
    let keys = match op {
        Op::Get => setup.get_keys.clone(),
        Op::Put | Op::PutStreaming => setup.put_keys.clone(),
    };
    let mut config = LoadConfig::new(vec![weir.listen], vec![keys]);
    config.connections = connections;
    config.duration = duration;
    config.op = op.load_op();
    config.check_put_etag = op != Op::Get;
    config.credentials = Some(tenant());
    config.streaming_chunk_bytes = (op == Op::PutStreaming).then_some(CHUNK_BYTES);
    config.timeout_base = Duration::from_secs(10);
    config
}

/// Every node's counters (`GET /_sim/stats`, not counted as a request).
fn node_stats(nodes: &[SocketAddr]) -> Result<Vec<SimStats>> {
    nodes
        .iter()
        .map(|&addr| {
            let response =
                http::request(addr, "GET", "/_sim/stats", &[], b"", Duration::from_secs(5))
                    .with_context(|| format!("stats of node {addr}"))?;
            if response.status != 200 {
                bail!("stats of node {addr}: status {}", response.status);
            }
            SimStats::from_json(&response.text()).with_context(|| format!("stats of node {addr}"))
        })
        .collect()
}

fn key_counts(before: &[SimStats], after: &[SimStats]) -> KeyCounts {
    let delta = |key: &str| -> u64 {
        after
            .iter()
            .zip(before)
            .map(|(a, b)| a.requests_of(key).saturating_sub(b.requests_of(key)))
            .sum()
    };
    KeyCounts {
        tenant: delta(TENANT_ACCESS_KEY),
        pool: delta(POOL_ACCESS_KEY),
    }
}

/// Turns the nodes' signature checks on (for the tenant's and the pool's key) or off.
fn node_checks(nodes: &[SocketAddr], on: bool) -> Result<()> {
    let query = if on {
        format!("clear&access_key={TENANT_ACCESS_KEY}&secret={TENANT_SECRET}")
    } else {
        "clear".to_string()
    };
    for &node in nodes {
        let mut calls = vec![query.clone()];
        if on {
            calls.push(format!("access_key={POOL_ACCESS_KEY}&secret={POOL_SECRET}"));
        }
        for call in calls {
            let response = http::request(
                node,
                "POST",
                &format!("/_sim/sigv4?{call}"),
                &[],
                b"",
                Duration::from_secs(5),
            )
            .with_context(|| format!("set the signature checks of node {node}"))?;
            if response.status != 200 {
                bail!(
                    "node {node} refused /_sim/sigv4: {} {}",
                    response.status,
                    response.text().trim()
                );
            }
        }
    }
    Ok(())
}

fn sig_counts(before: &[SimStats], after: &[SimStats]) -> SigCounts {
    let sum = |f: &dyn Fn(&SimStats) -> u64| -> u64 {
        after
            .iter()
            .zip(before)
            .map(|(a, b)| f(a).saturating_sub(f(b)))
            .sum()
    };
    SigCounts {
        checked: sum(&|s| s.sigv4_checked),
        chunks: sum(&|s| s.sigv4_chunks_checked),
        failures: sum(&|s| s.sigv4_failures),
    }
}

/// `weir_auth_failures_total{reason="REASON"}` of one weir (0 when absent).
fn auth_failures(metrics: SocketAddr, reason: &str) -> Result<u64> {
    let text = http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5))
        .with_context(|| format!("scrape {metrics}"))?
        .text();
    let name = format!("weir_auth_failures_total{{reason=\"{reason}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// weir's non-zero identity counters: auth failures by reason, and any series about
/// chunks or signing.
fn identity_counters(metrics: SocketAddr) -> Vec<String> {
    match http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5)) {
        Ok(response) if response.status == 200 => response
            .text()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.starts_with("weir_auth_")
                    || l.contains("chunk")
                    || l.contains("sign")
                    || l.contains("verif")
            })
            .filter(|l| !l.ends_with(" 0"))
            .map(str::to_string)
            .collect(),
        Ok(response) => vec![format!("/metrics answered {}", response.status)],
        Err(err) => vec![format!("could not scrape /metrics: {err:#}")],
    }
}

/// One correctness cell: 2 connections for `correctness_duration`, every GET byte and
/// PUT ETag checked; whose signature the nodes saw; whether weir refused it outright.
fn correctness(setup: &Setup, weir: &Weir, op: Op) -> Result<Correctness> {
    let mut config = load_config(setup, weir, op, 2, setup.correctness_duration);
    config.verify = true;
    let refusals_before = auth_failures(weir.metrics, "streaming_resign")?;
    let nodes_before = node_stats(setup.nodes)?;
    let summary = load::run(&config, |_| {})?;
    let nodes_after = node_stats(setup.nodes)?;
    let at_nodes = key_counts(&nodes_before, &nodes_after);
    let signatures = sig_counts(&nodes_before, &nodes_after);
    let refusals = auth_failures(weir.metrics, "streaming_resign")? - refusals_before;
    let refused = (refusals > 0 && summary.errors.total() > 0).then(|| {
        format!(
            "501 NotImplemented (`weir_auth_failures_total{{reason=\"streaming_resign\"}}` +{refusals}): \
             this weir does not re-sign streaming-signed uploads"
        )
    });
    Ok(Correctness {
        op,
        variant: weir.variant,
        requests: summary.requests,
        errors: summary.errors,
        at_nodes,
        signatures,
        refused,
    })
}

/// A streaming PUT of [`TAMPER_BYTES`] whose chunk [`TAMPERED_CHUNK`] carries a wrong
/// signature (the others are right), on a fresh connection; then whether any node holds
/// the object. A weir that checks chunks refuses it and cuts the upload before its last
/// chunk, so no node commits it.
fn tamper_probe(setup: &Setup, weir: &Weir) -> Result<TamperProbe> {
    let path = format!("/bench/tamper-{}", weir.variant.slug());
    let host = weir.listen.to_string();
    let mut signer = Signer::new(tenant());
    let (lines, mut chain) = signer.streaming_header_lines(
        "PUT",
        &path,
        &host,
        TAMPER_BYTES,
        CHUNK_BYTES,
        SystemTime::now(),
    );
    let seed = pattern::key_seed(&path[1..]);
    let mut body = Vec::new();
    for i in 0..(TAMPER_BYTES / CHUNK_BYTES) as usize {
        let mut data = vec![0u8; CHUNK_BYTES as usize];
        pattern::fill(seed, i as u64 * CHUNK_BYTES, &mut data);
        let mut signature = chain.next(&sigv4::sha256(&data)).to_string();
        if i == TAMPERED_CHUNK {
            // Another hex digit in the first place: well-formed, and wrong.
            let first = if signature.starts_with('0') { "1" } else { "0" };
            signature.replace_range(..1, first);
        }
        body.extend_from_slice(sigv4::chunk_header(CHUNK_BYTES, &signature).as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(sigv4::final_chunk(chain.next(&sigv4::sha256(b""))).as_bytes());
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-bench-identity\r\nConnection: close\r\n{lines}\r\n"
    );
    let nodes_before = node_stats(setup.nodes)?;
    let answer = (|| -> Result<String> {
        let mut stream = TcpStream::connect_timeout(&weir.listen, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(head.as_bytes())?;
        // weir may answer and close before the body is in: read the answer either way.
        let sent = stream.write_all(&body);
        let response = match http::read_response(&mut stream, false) {
            Ok(response) => response,
            Err(err) => {
                return Ok(match sent {
                    Ok(()) => format!("no answer, connection ended ({err:#})"),
                    Err(e) => format!("connection cut while sending the body ({e})"),
                })
            }
        };
        let text = response.text();
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| format!(" {code}"))
            .unwrap_or_default();
        Ok(format!("{}{code}", response.status))
    })()
    .unwrap_or_else(|err| format!("failed: {err:#}"));
    let mut stored = false;
    for &node in setup.nodes {
        let response = http::request(node, "HEAD", &path, &[], b"", Duration::from_secs(5))
            .with_context(|| format!("HEAD {path} on node {node}"))?;
        stored |= response.status == 200;
    }
    let node_failures = sig_counts(&nodes_before, &node_stats(setup.nodes)?).failures;
    Ok(TamperProbe {
        variant: weir.variant,
        answer,
        stored,
        node_failures,
    })
}

/// One timed cell: `setup.streams` connections for `setup.duration`; weir's, the
/// simulators' and the client's CPU around it, and the nodes' per-key counts.
fn cell(
    setup: &Setup,
    weir: &Weir,
    op: Op,
    round: usize,
    position: usize,
) -> Result<IdMeasurement> {
    let mut config = load_config(setup, weir, op, setup.streams, setup.duration);
    config.verify = op != Op::Get || setup.verify_get;
    let pids = weir.process.tree();
    let nodes_before = node_stats(setup.nodes)?;
    procs::reset_peak_rss(&pids);
    let load_average = procs::load_average();
    let weir_before = CpuSnapshot::take(&pids);
    let sims_before = CpuSnapshot::take(&setup.sim_pids);
    let client_before = procs::self_cpu_seconds();
    let summary = load::run(&config, |_| {})?;
    let client_cpu_s = procs::self_cpu_seconds() - client_before;
    let weir_cpu_s = CpuSnapshot::take(&pids).seconds_since(&weir_before);
    let sims_cpu_s = CpuSnapshot::take(&setup.sim_pids).seconds_since(&sims_before);
    let weir_peak_rss_bytes = procs::peak_rss_bytes(&pids);
    let at_nodes = key_counts(&nodes_before, &node_stats(setup.nodes)?);
    Ok(IdMeasurement {
        op,
        variant: weir.variant,
        round,
        position,
        summary,
        weir_cpu_s,
        weir_peak_rss_bytes,
        sims_cpu_s,
        client_cpu_s,
        at_nodes,
        load_average,
    })
}

/// The page (`identity.md`) and its plot.
pub fn page(meta: &RunMeta, run: &IdentityRun) -> (String, String) {
    let title = TITLE;
    let mut out = String::new();
    report::header(&mut out, meta, title);
    let _ = writeln!(
        out,
        "Three weir processes over the same three simulator nodes (`bench/peers/weir-identity.toml`): \
         **bare** (no `[auth]`, no pool credentials), **verify** (`[auth] mode = \"verify\"` \
         against a tenant secrets file; the pool has no credentials, so the client's \
         signatures go on to the nodes) and **verify + re-sign** (the same, and the pool has \
         `credentials`: every request is signed again for the node with the pool's key). \
         The load generator signs every request for real with the tenant's key (SigV4, the \
         bench's own signer, `src/sigv4.rs`), {} connections per cell, {} MiB objects:\n",
        run.streams,
        run.object_bytes >> 20
    );
    for op in Op::ALL {
        let _ = writeln!(out, "- **{}**: {}", op.name(), op.describe());
    }
    let _ = writeln!(
        out,
        "\nThe number compared is weir's CPU per GB moved: user + system time of its \
         process (all threads) from `/proc`, over the body bytes of the cell (decoded bytes \
         for the streaming PUT). Ratios are per round (each round runs the three weirs back \
         to back in the same cell, the order rotated): the median and min–max of \
         `variant ÷ bare` over the rounds. {}\n",
        if run.verify_get {
            "Every GET body byte was checked in the timed cells too."
        } else {
            "Timed GETs check lengths and framing, not every byte (the correctness pass did)."
        }
    );

    let _ = writeln!(out, "## weir CPU-s/GB\n");
    let _ = writeln!(
        out,
        "| op | bare | verify | verify + re-sign | verify ÷ bare | verify + re-sign ÷ bare | added by verify + re-sign, CPU-s/GB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let cpu = |m: &IdMeasurement| m.cpu_s_per_gb();
    let spread_of = |ms: &[&IdMeasurement], f: &dyn Fn(&IdMeasurement) -> Option<f64>| {
        Spread::of(&ms.iter().filter_map(|m| f(m)).collect::<Vec<f64>>())
    };
    for op in Op::ALL {
        let cell = |v: Variant| -> String {
            match run.refused(op, v) {
                Some(_) => "refused (501)".to_string(),
                None => show(spread_of(&run.of(op, v), &cpu), 3),
            }
        };
        let per_round = |v: Variant| -> String {
            run.per_round_ratio(op, v).map_or_else(
                || "—".to_string(),
                |s| format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max),
            )
        };
        let added = match (
            spread_of(&run.of(op, Variant::VerifyResign), &cpu),
            spread_of(&run.of(op, Variant::Bare), &cpu),
        ) {
            (Some(r), Some(b)) => format!("{:+.3}", r.median - b.median),
            _ => "—".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {added} |",
            op.name(),
            cell(Variant::Bare),
            cell(Variant::Verify),
            cell(Variant::VerifyResign),
            per_round(Variant::Verify),
            per_round(Variant::VerifyResign),
        );
    }
    let _ = writeln!(
        out,
        "\nMedians with the min–max of the rounds; \"added\" is the difference of the medians. \
         For the header-signed cells the identity work is a few HMAC-SHA256s per request \
         (weir keeps the declared `UNSIGNED-PAYLOAD`, so bodies still splice); for the \
         streaming PUT, checking chunk signatures means hashing every body byte in user \
         space, and re-signing means signing every chunk again.\n"
    );
    let refusals: Vec<String> = run
        .correctness
        .iter()
        .filter_map(|c| {
            c.refused
                .as_ref()
                .map(|r| format!("{} through weir {}: {r}", c.op.name(), c.variant.name()))
        })
        .collect();
    if !refusals.is_empty() {
        let _ = writeln!(out, "**Not measured:**\n");
        for r in refusals {
            let _ = writeln!(out, "- {r}; the cell is left out of the timed rounds.");
        }
        let _ = writeln!(out);
    }

    for op in Op::ALL {
        let _ = writeln!(out, "## {}\n", op.describe());
        let _ = writeln!(
            out,
            "| weir | GB/s | weir CPU-s/GB | × bare | weir cores busy | weir peak RSS MiB | sims CPU-s/GB | client CPU-s/GB | requests | at the nodes: tenant / pool key | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        let bare = spread_of(&run.of(op, Variant::Bare), &cpu);
        for v in Variant::ALL {
            let ms = run.of(op, v);
            if let Some(why) = run.refused(op, v) {
                let _ = writeln!(
                    out,
                    "| {} | not measured: {why} | | | | | | | | | |",
                    v.name()
                );
                continue;
            }
            if ms.is_empty() {
                continue;
            }
            let mut errors = ErrorCounts::default();
            for m in &ms {
                errors.add(&m.summary.errors);
            }
            let c = spread_of(&ms, &cpu);
            let at_tenant: u64 = ms.iter().map(|m| m.at_nodes.tenant).sum();
            let at_pool: u64 = ms.iter().map(|m| m.at_nodes.pool).sum();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {at_tenant} / {at_pool} | {} |",
                v.name(),
                show(spread_of(&ms, &|m| Some(m.summary.gbps())), 2),
                show(c, 3),
                ratio(c, bare),
                show(
                    spread_of(&ms, &|m| Some(
                        m.weir_cpu_s / m.summary.elapsed.as_secs_f64().max(1e-9)
                    )),
                    2
                ),
                show(
                    spread_of(&ms, &|m| Some(
                        m.weir_peak_rss_bytes as f64 / (1 << 20) as f64
                    )),
                    1
                ),
                show(spread_of(&ms, &|m| m.per_gb(m.sims_cpu_s)), 3),
                show(spread_of(&ms, &|m| m.per_gb(m.client_cpu_s)), 3),
                ms.iter().map(|m| m.summary.requests).sum::<u64>(),
                show_errors(&errors),
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\"× bare\" is the ratio of medians. \"weir cores busy\" is weir's CPU-seconds over the \
         cell's wall time (2 would be both cores). \"At the nodes\" counts the requests the \
         simulators saw signed by the tenant's key (the client's signature arrived) and by \
         the pool's (weir re-signed), summed over the rounds; weir's own health probes are \
         unsigned and not in either. The client signs streaming chunks from SHA-256s of the \
         pattern computed once per key (one HMAC per chunk), so it does not hash bodies.\n"
    );

    let _ = writeln!(out, "## Correctness pass\n");
    let _ = writeln!(
        out,
        "2 connections per cell before the timed rounds; GET bodies checked byte by byte, \
         every PUT answer's ETag checked against the MD5 of the bytes sent (for the streaming \
         PUT, the decoded bytes: the nodes decode aws-chunked and check \
         `x-amz-decoded-content-length`). Meanwhile the simulators checked the SigV4 \
         signature of every request signed by the tenant's or the pool's key, and every \
         chunk signature of the streaming uploads (`src/sim/sigcheck.rs`, the bench's own \
         SHA-256 and HMAC, nothing of weir's), answering 403 to any that did not hold; the \
         checks are off during the timed rounds (hashing every byte would load the nodes).\n"
    );
    let _ = writeln!(
        out,
        "| op | weir | requests | errors | at the nodes: tenant / pool key | signatures checked at the nodes: heads / chunks / failed | outcome |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for c in &run.correctness {
        let outcome = c
            .verdict(run.object_bytes)
            .unwrap_or_else(|problem| problem);
        let s = &c.signatures;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} / {} / {} | {outcome} |",
            c.op.name(),
            c.variant.name(),
            c.requests,
            show_errors(&c.errors),
            c.at_nodes.tenant,
            c.at_nodes.pool,
            s.checked,
            s.chunks,
            s.failures
        );
    }
    let _ = writeln!(out, "\n## A tampered chunk signature\n");
    let _ = writeln!(
        out,
        "One streaming-signed PUT of {} KiB in {} KiB chunks per weir, chunk {} of {} with a \
         wrong (well-formed) signature, the head and the other chunks signed correctly; then \
         a HEAD of the key on every node. The simulators check signatures during this probe \
         too, so an upload that weir passes on unchecked is refused by the node (bare weir: \
         expected); \"refused by\" says which of the two caught it.\n",
        TAMPER_BYTES >> 10,
        CHUNK_BYTES >> 10,
        TAMPERED_CHUNK + 1,
        TAMPER_BYTES / CHUNK_BYTES
    );
    let _ = writeln!(out, "| weir | answer | refused by | stored on a node |");
    let _ = writeln!(out, "|---|---|---|---|");
    for p in &run.tamper {
        let by = if p.node_failures > 0 {
            "the node"
        } else if p.answer.starts_with('2') {
            "nobody"
        } else {
            "weir"
        };
        let _ = writeln!(
            out,
            "| {} | {} | {by} | {} |",
            p.variant.name(),
            p.answer,
            if p.stored { "yes" } else { "no" }
        );
    }
    let _ = writeln!(out, "\n## weir's identity counters at the end\n");
    for (v, lines) in &run.counters {
        if lines.is_empty() {
            let _ = writeln!(out, "- {}: none non-zero", v.name());
        } else {
            let _ = writeln!(out, "- {}: `{}`", v.name(), lines.join("`, `"));
        }
    }
    let mut meta = meta.clone();
    meta.notes.extend(run.notes.iter().cloned());
    // Only weir and the simulators ran here.
    meta.versions
        .retain(|(kind, _)| matches!(kind, Kind::Direct | Kind::Weir));
    let loads: Vec<f64> = run.measurements.iter().map(|m| m.load_average).collect();
    report::footer_with_loads(&mut out, &meta, &loads);

    let groups: Vec<String> = Op::ALL.iter().map(|o| o.name().to_string()).collect();
    let series: Vec<Series> = Variant::ALL
        .iter()
        .map(|v| Series {
            name: format!("weir {}", v.name()),
            colour: v.colour().to_string(),
        })
        .collect();
    let values = |f: &dyn Fn(&IdMeasurement) -> Option<f64>| {
        Op::ALL
            .iter()
            .map(|&op| {
                Variant::ALL
                    .iter()
                    .map(|&v| spread_of(&run.of(op, v), f))
                    .collect()
            })
            .collect()
    };
    let plot = svg::render(
        title,
        &meta.plot_subtitle(),
        &[
            Panel::Bars(BarPanel {
                title: "weir CPU per GB (lower is better)".into(),
                y_label: "CPU-seconds / GB".into(),
                groups: groups.clone(),
                series: series.clone(),
                values: values(&cpu),
            }),
            Panel::Bars(BarPanel {
                title: "Throughput".into(),
                y_label: "GB/s (10^9 B/s)".into(),
                groups,
                series,
                values: values(&|m| Some(m.summary.gbps())),
            }),
        ],
    );
    (out, plot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::Histogram;

    fn summary(bytes: u64, requests: u64) -> Summary {
        Summary {
            elapsed: Duration::from_secs(2),
            bytes,
            requests,
            errors: ErrorCounts::default(),
            latency_us: Histogram::new(),
            ttfb_us: Histogram::new(),
        }
    }

    fn measurement(op: Op, variant: Variant, round: usize, weir_cpu_s: f64) -> IdMeasurement {
        IdMeasurement {
            op,
            variant,
            round,
            position: 0,
            summary: summary(2_000_000_000, 30),
            weir_cpu_s,
            weir_peak_rss_bytes: 10 << 20,
            sims_cpu_s: 0.5,
            client_cpu_s: 1.0,
            at_nodes: KeyCounts {
                tenant: if variant.resigns() { 0 } else { 30 },
                pool: if variant.resigns() { 30 } else { 0 },
            },
            load_average: 2.0,
        }
    }

    fn correctness(op: Op, variant: Variant, requests: u64) -> Correctness {
        let chunks = if op == Op::PutStreaming { 1025 } else { 0 };
        Correctness {
            op,
            variant,
            requests,
            errors: ErrorCounts::default(),
            at_nodes: KeyCounts {
                tenant: if variant.resigns() { 0 } else { requests },
                pool: if variant.resigns() { requests } else { 0 },
            },
            signatures: SigCounts {
                checked: requests,
                chunks: chunks * requests,
                failures: 0,
            },
            refused: None,
        }
    }

    #[test]
    fn each_variant_gets_its_auth_and_credentials() {
        let nodes = [SocketAddr::from(([127, 0, 0, 1], 27001))];
        let binaries = Binaries {
            weir: "weir".into(),
            haproxy: "haproxy".into(),
            nginx: "nginx".into(),
            envoy: "envoy".into(),
        };
        let setup = Setup {
            binaries: &binaries,
            nodes: &nodes,
            sim_pids: vec![],
            run_dir: Path::new("/tmp"),
            base_port: 27000,
            rounds: 1,
            duration: Duration::from_secs(1),
            correctness_duration: Duration::from_secs(1),
            streams: 8,
            get_keys: Synthetic::parse("bench/obj-:64MiB:4").unwrap(),
            put_keys: Synthetic::parse("bench/put-:64MiB:4").unwrap(),
            verify_get: false,
        };
        let listen = SocketAddr::from(([127, 0, 0, 1], 27070));
        let metrics = SocketAddr::from(([127, 0, 0, 1], 27071));
        let text = |v| config_text(&setup, v, listen, metrics).unwrap();
        let bare = text(Variant::Bare);
        assert!(!bare.contains("\n[auth]\n") && !bare.contains("credentials = "));
        assert!(bare.contains("nodes = [\"127.0.0.1:27001\"]"));
        assert!(bare.contains("metrics = \"127.0.0.1:27071\""));
        let verify = text(Variant::Verify);
        assert!(verify.contains("[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\""));
        assert!(!verify.contains("credentials = "));
        let resign = text(Variant::VerifyResign);
        assert!(resign.contains("\n[auth]\n"));
        assert!(resign.contains(&format!(
            "credentials = {{ access_key = \"{POOL_ACCESS_KEY}\", secret = \"{POOL_SECRET}\", region = \"us-east-1\" }}"
        )));
        // The credentials belong to the pool: they come before [auth].
        assert!(resign.find("credentials = ").unwrap() < resign.find("\n[auth]\n").unwrap());
        assert_eq!(TENANT_SECRET.len(), 40);
        assert_eq!(POOL_SECRET.len(), 40);
    }

    #[test]
    fn correctness_verdicts_name_what_is_wrong() {
        let object = 64 << 20;
        let ok = correctness(Op::PutStreaming, Variant::VerifyResign, 3);
        let verdict = ok.verdict(object).unwrap();
        assert!(verdict.contains("weir's re-signed"), "{verdict}");
        assert!(verdict.contains("3075 chunk signatures"), "{verdict}");
        let mut wrong_key = correctness(Op::Get, Variant::VerifyResign, 3);
        wrong_key.at_nodes.tenant = 1;
        assert!(wrong_key.verdict(object).unwrap_err().contains("keys"));
        let mut missing_chunks = correctness(Op::PutStreaming, Variant::Verify, 2);
        missing_chunks.signatures.chunks -= 1;
        assert!(missing_chunks
            .verdict(object)
            .unwrap_err()
            .contains("chunk"));
        let mut failed = correctness(Op::Put, Variant::Bare, 2);
        failed.signatures.failures = 1;
        assert!(failed.verdict(object).is_err());
        let mut refused = correctness(Op::PutStreaming, Variant::VerifyResign, 2);
        refused.errors.io = 2;
        refused.refused = Some("501 NotImplemented".into());
        assert!(refused.verdict(object).unwrap().starts_with("refused"));
    }

    #[test]
    fn the_page_gives_per_round_ratios_and_says_what_was_refused() {
        let mut run = IdentityRun {
            streams: 8,
            object_bytes: 64 << 20,
            ..IdentityRun::default()
        };
        // GET: bare 0.1 / 0.2 CPU-s/GB in rounds 0 / 1, re-sign 0.11 / 0.18.
        for (round, bare, resign) in [(0, 0.2, 0.22), (1, 0.4, 0.36)] {
            run.measurements
                .push(measurement(Op::Get, Variant::Bare, round, bare));
            run.measurements
                .push(measurement(Op::Get, Variant::VerifyResign, round, resign));
            run.measurements
                .push(measurement(Op::PutStreaming, Variant::Bare, round, bare));
            run.measurements
                .push(measurement(Op::PutStreaming, Variant::Verify, round, 2.6));
        }
        for op in Op::ALL {
            for v in Variant::ALL {
                run.correctness.push(correctness(op, v, 4));
            }
        }
        let refused = run
            .correctness
            .iter_mut()
            .find(|c| c.op == Op::PutStreaming && c.variant == Variant::VerifyResign)
            .unwrap();
        refused.refused = Some("501 NotImplemented (streaming_resign)".into());
        let ratio = run.per_round_ratio(Op::Get, Variant::VerifyResign).unwrap();
        assert!((ratio.min - 0.9).abs() < 1e-9 && (ratio.max - 1.1).abs() < 1e-9);
        let (md, svg) = page(&RunMeta::default(), &run);
        // GET: bare median 0.15, re-sign 0.145; per round 1.10 and 0.90.
        assert!(
            md.contains("| GET | 0.150 (0.100–0.200) | — | 0.145 (0.110–0.180) | — | 1.00× (0.90–1.10) | -0.005 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| PUT streaming | 0.150 (0.100–0.200) | 1.300 (1.300–1.300) | refused (501) |"
            ),
            "{md}"
        );
        assert!(md.contains("- PUT streaming through weir verify + re-sign: 501 NotImplemented"));
        assert!(md.contains("| verify + re-sign | not measured: 501 NotImplemented"));
        assert!(svg.contains("weir verify + re-sign"));
    }
}
