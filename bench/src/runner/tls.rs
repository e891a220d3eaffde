//! The `tls-get` scenario: what terminating TLS costs per GB of a large GET.
//!
//! One run, interleaved rounds, the same client for every variant: `curl` (a real TLS
//! client, OpenSSL underneath), one process per 64 MiB GET, on 1 and several parallel
//! streams, against
//!
//! - the simulator nodes directly over plain HTTP (the floor);
//! - weir over plain HTTP and over HTTPS with `ktls = false` (rustls in user space,
//!   the bridge task), one process with both listeners;
//! - weir over HTTPS with `ktls = true`, a second process: the kernel encrypts when it
//!   has the `tls` ULP; weir's `weir_tls_connections_total{side="client",path=...}` says
//!   which path ran, and a fallback is reported as such, never as a kTLS number;
//! - HAProxy over plain HTTP and over HTTPS (`bind ... ssl crt`), one process with the
//!   configuration of the other scenarios (`bench/peers/haproxy.cfg`: splice and 1 MiB
//!   pipes on the upstream side) plus an `ssl` bind line.
//!
//! Certificates are generated per run with rcgen: one self-signed certificate for
//! 127.0.0.1 (IP SAN) that the clients trust directly.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::peers::{self, Binaries, Kind};
use super::procs::{self, CpuSnapshot, Managed};
use super::report::{self, RunMeta};
use super::show_errors;
use super::stats::{ratio, show, Spread};
use super::svg::{self, BarPanel, Panel, Series};
use crate::load::ErrorCounts;
use crate::{pattern, Synthetic};

/// Port offset of the first listener of this scenario from the runner's base port (the
/// other targets stop before it starts; every port stays below base + 100).
const PORT_OFFSET: u16 = 60;
/// Pause between cells, so one cell's closing connections do not overlap the next.
const SETTLE: Duration = Duration::from_millis(300);
/// Longest a single 64 MiB GET may take before it counts as a timeout.
const GET_TIMEOUT_S: u64 = 60;

/// What one cell's GETs go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// The simulator nodes, plain HTTP.
    Direct,
    /// weir, plain HTTP.
    WeirHttp,
    /// weir, HTTPS, `ktls = false`: rustls in user space.
    WeirRustls,
    /// weir, HTTPS, `ktls = true`: kTLS where the kernel has it.
    WeirKtls,
    /// HAProxy, plain HTTP.
    HaproxyHttp,
    /// HAProxy, HTTPS (OpenSSL).
    HaproxyTls,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 6] = [
        Variant::Direct,
        Variant::WeirHttp,
        Variant::WeirRustls,
        Variant::WeirKtls,
        Variant::HaproxyHttp,
        Variant::HaproxyTls,
    ];

    /// Name in tables and records.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Direct => "direct (http)",
            Variant::WeirHttp => "weir http",
            Variant::WeirRustls => "weir https, rustls (ktls = false)",
            Variant::WeirKtls => "weir https, ktls = true",
            Variant::HaproxyHttp => "haproxy http",
            Variant::HaproxyTls => "haproxy https",
        }
    }

    /// Plot colour.
    fn colour(self) -> &'static str {
        match self {
            Variant::Direct => Kind::Direct.colour(),
            Variant::WeirHttp => Kind::WeirProtected.colour(),
            Variant::WeirRustls => Kind::Weir.colour(),
            Variant::WeirKtls => "#17becf",
            Variant::HaproxyHttp => "#f4a6a6",
            Variant::HaproxyTls => Kind::Haproxy.colour(),
        }
    }

    fn https(self) -> bool {
        matches!(
            self,
            Variant::WeirRustls | Variant::WeirKtls | Variant::HaproxyTls
        )
    }
}

/// What the scenario needs from the runner.
pub struct Setup<'a> {
    /// weir and HAProxy.
    pub binaries: &'a Binaries,
    /// The simulator nodes (running, serving `keys`).
    pub nodes: &'a [SocketAddr],
    /// The run's scratch folder (certificates, configurations, logs).
    pub run_dir: &'a Path,
    /// The runner's base port.
    pub base_port: u16,
    /// Rounds per cell.
    pub rounds: usize,
    /// Load duration of one cell.
    pub duration: Duration,
    /// Stream counts, one cell each.
    pub streams: &'a [usize],
    /// The large objects.
    pub keys: Synthetic,
}

/// One measured cell.
#[derive(Clone, Debug)]
pub struct TlsMeasurement {
    /// Target.
    pub variant: Variant,
    /// Parallel curl streams.
    pub streams: usize,
    /// Round (0-based).
    pub round: usize,
    /// Position in the round (0 = ran first).
    pub position: usize,
    /// Body bytes received by the clients.
    pub bytes: u64,
    /// GETs completed (successful or not).
    pub requests: u64,
    /// Wall time of the cell (until the last GET ended).
    pub elapsed: Duration,
    /// Failed GETs by cause.
    pub errors: ErrorCounts,
    /// Proxy CPU-seconds (none for direct).
    pub proxy_cpu_s: Option<f64>,
    /// Proxy peak RSS in bytes (none for direct).
    pub proxy_peak_rss_bytes: Option<u64>,
    /// 1-minute load average when the cell started.
    pub load_average: f64,
}

impl TlsMeasurement {
    /// GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }

    /// Proxy CPU-seconds per GB.
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        let gb = self.bytes as f64 / 1e9;
        self.proxy_cpu_s.filter(|_| gb > 0.0).map(|cpu| cpu / gb)
    }

    /// The raw record.
    pub fn to_json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |v| format!("{v:.4}"));
        format!(
            "{{\"scenario\":\"tls-get\",\"target\":\"{}\",\"streams\":{},\"round\":{},\"position\":{},\"bytes\":{},\"requests\":{},\"elapsed_s\":{:.3},\"errors\":{},\"proxy_cpu_s\":{},\"proxy_peak_rss_bytes\":{},\"load_average\":{:.2}}}",
            self.variant.name(),
            self.streams,
            self.round,
            self.position,
            self.bytes,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.errors.total(),
            opt(self.proxy_cpu_s),
            self.proxy_peak_rss_bytes
                .map_or_else(|| "null".to_string(), |v| v.to_string()),
            self.load_average
        )
    }
}

/// What weir with `ktls = true` did, from its metrics after the correctness pass.
#[derive(Clone, Debug, Default)]
pub struct KtlsFinding {
    /// `/proc/sys/net/ipv4/tcp_available_ulp`.
    pub available_ulp: String,
    /// Client-side TLS connections that took the kTLS path.
    pub ktls: u64,
    /// Client-side TLS connections that stayed in user space.
    pub userspace: u64,
}

impl KtlsFinding {
    /// Whether the kTLS path ran (then the variant is measured like the others).
    pub fn used(&self) -> bool {
        self.ktls > 0 && self.userspace == 0
    }
}

/// Everything the page shows.
#[derive(Clone, Debug, Default)]
pub struct TlsRun {
    /// The timed cells.
    pub measurements: Vec<TlsMeasurement>,
    /// Stream counts, in cell order.
    pub streams: Vec<usize>,
    /// Variants in the timed rounds.
    pub variants: Vec<Variant>,
    /// weir with `ktls = true`.
    pub ktls: KtlsFinding,
    /// Per variant: the verified GET of the correctness pass and the negotiated TLS.
    pub correctness: Vec<(Variant, String)>,
    /// curl's version and TLS library.
    pub curl: String,
    /// Object size in bytes.
    pub object_bytes: u64,
    /// Things to know.
    pub notes: Vec<String>,
}

/// A running proxy of this scenario.
struct Proxy {
    process: Managed,
    /// Plain HTTP listener.
    http: SocketAddr,
    /// HTTPS listener.
    https: SocketAddr,
    /// weir's metrics listener.
    metrics: Option<SocketAddr>,
}

/// The page's title.
pub const TITLE: &str = "Large GET over TLS: 64 MiB objects, rustls vs kTLS vs HAProxy";

/// Runs the scenario: certificates, the proxies, a correctness pass, the timed rounds.
/// `records` gets one JSON line per cell.
pub fn run(setup: &Setup, records: &mut dyn std::io::Write) -> Result<TlsRun> {
    let dir = setup.run_dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    let cert = certificate(&dir)?;
    let port = |n: u16| SocketAddr::from(([127, 0, 0, 1], setup.base_port + PORT_OFFSET + n));
    for binary in [&setup.binaries.weir, &setup.binaries.haproxy] {
        if !binary.exists() {
            bail!(
                "{} not found (tls-get needs weir and HAProxy)",
                binary.display()
            );
        }
    }
    let mut rustls = start_weir(setup, &dir, &cert, false, [port(0), port(1), port(2)])?;
    let mut ktls = start_weir(setup, &dir, &cert, true, [port(3), port(4), port(5)])?;
    let mut haproxy = start_haproxy(setup, &dir, &cert, [port(6), port(7)])?;
    let mut run = TlsRun {
        streams: setup.streams.to_vec(),
        curl: curl_version(&Command::new("curl").arg("--version").output()?.stdout),
        object_bytes: setup.keys.size_bytes,
        ..TlsRun::default()
    };
    let target = |variant: Variant| -> (Vec<SocketAddr>, Option<&Proxy>) {
        let (proxy, addr) = match variant {
            Variant::Direct => return (setup.nodes.to_vec(), None),
            Variant::WeirHttp => (&rustls, rustls.http),
            Variant::WeirRustls => (&rustls, rustls.https),
            Variant::WeirKtls => (&ktls, ktls.https),
            Variant::HaproxyHttp => (&haproxy, haproxy.http),
            Variant::HaproxyTls => (&haproxy, haproxy.https),
        };
        (vec![addr], Some(proxy))
    };

    // Correctness: one GET per variant with every byte checked, and the TLS it spoke.
    for variant in Variant::ALL {
        let (addrs, _) = target(variant);
        let line = verified_get(variant, addrs[0], &cert, &setup.keys)
            .with_context(|| format!("correctness GET through {}", variant.name()))?;
        println!("correctness tls-get {:<34} {line}", variant.name());
        run.correctness.push((variant, line));
    }
    run.ktls = KtlsFinding {
        available_ulp: std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unreadable: {e}")),
        ..tls_paths(ktls.metrics.context("weir has metrics")?)?
    };
    let userspace = tls_paths(rustls.metrics.context("weir has metrics")?)?;
    if userspace.ktls > 0 || userspace.userspace == 0 {
        bail!(
            "weir with ktls = false did not count its TLS connection as userspace: {userspace:?}"
        );
    }
    println!(
        "tls-get: weir with ktls = true: path=ktls {}, path=userspace {} (tcp_available_ulp: {})",
        run.ktls.ktls, run.ktls.userspace, run.ktls.available_ulp
    );
    run.variants = Variant::ALL
        .into_iter()
        .filter(|v| *v != Variant::WeirKtls || run.ktls.used())
        .collect();

    // The timed rounds: per round and cell every variant once, the order rotated.
    let total = setup.rounds * setup.streams.len() * run.variants.len();
    let mut done = 0;
    for round in 0..setup.rounds {
        for &streams in setup.streams {
            let n = run.variants.len();
            for position in 0..n {
                let variant = run.variants[(position + round) % n];
                let (addrs, proxy) = target(variant);
                let pids = proxy.map(|p| p.process.tree()).unwrap_or_default();
                done += 1;
                let m = cell(
                    setup, &cert, variant, &addrs, &pids, streams, round, position,
                )?;
                println!(
                    "[{done:>3}/{total}] round {} tls-get {streams:>2} streams {:<34} {:>5.2} GB/s  proxy {}  errors {}",
                    round + 1,
                    variant.name(),
                    m.gbps(),
                    m.cpu_s_per_gb()
                        .map_or_else(|| "—".to_string(), |c| format!("{c:.3} CPU-s/GB")),
                    m.errors.total()
                );
                writeln!(records, "{}", m.to_json())?;
                run.measurements.push(m);
                std::thread::sleep(SETTLE);
            }
        }
    }
    for (name, proxy) in [
        ("weir (ktls = false)", &mut rustls),
        ("weir (ktls = true)", &mut ktls),
        ("haproxy", &mut haproxy),
    ] {
        if proxy.process.exited().is_some() {
            run.notes.push(format!(
                "{name} exited during the run; see its log in the raw folder"
            ));
        }
    }
    Ok(run)
}

/// The certificate (PEM chain, PEM key, and both in one file for HAProxy).
struct Cert {
    chain: PathBuf,
    key: PathBuf,
    combined: PathBuf,
}

/// A self-signed certificate for 127.0.0.1; the clients trust it directly.
fn certificate(dir: &Path) -> Result<Cert> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .context("generate the certificate")?;
    let out = Cert {
        chain: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        combined: dir.join("haproxy.pem"),
    };
    std::fs::write(&out.chain, cert.pem())?;
    std::fs::write(&out.key, signing_key.serialize_pem())?;
    std::fs::write(
        &out.combined,
        format!("{}{}", cert.pem(), signing_key.serialize_pem()),
    )?;
    Ok(out)
}

/// The configuration the other scenarios give `kind` (listening on `listen`).
fn rendered(setup: &Setup, kind: Kind, listen: SocketAddr, dir: &Path) -> Result<String> {
    let (text, _) = peers::config(
        kind,
        listen,
        setup.nodes,
        dir,
        false,
        peers::HEALTH_PRESET_SIMULATORS,
    )?
    .context("a proxy has a configuration")?;
    Ok(text)
}

/// weir-bare's configuration plus a metrics listener and `[tls]`; `addrs` are the
/// plain, metrics and HTTPS addresses.
fn start_weir(
    setup: &Setup,
    dir: &Path,
    cert: &Cert,
    ktls: bool,
    [http, metrics, https]: [SocketAddr; 3],
) -> Result<Proxy> {
    let text = rendered(setup, Kind::Weir, http, dir)?;
    let anchor = "[appliance]\n";
    if !text.contains(anchor) {
        bail!("bench/peers/weir-bare.toml has no [appliance] table");
    }
    let mut text = text.replacen(anchor, &format!("{anchor}metrics = \"{metrics}\"\n"), 1);
    let _ = write!(
        text,
        "\n[tls]\nlisten = [\"{https}\"]\nktls = {ktls}\n\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.chain.display(),
        cert.key.display()
    );
    let name = format!("weir-ktls-{ktls}");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    let command = peers::command(Kind::Weir, setup.binaries, &path, dir)?;
    let process = Managed::spawn(&name, command, &dir.join(format!("{name}.log")))?;
    ready(
        Proxy {
            process,
            http,
            https,
            metrics: Some(metrics),
        },
        cert,
    )
}

/// bench/peers/haproxy.cfg with a second, `ssl` bind line in the same frontend.
fn start_haproxy(
    setup: &Setup,
    dir: &Path,
    cert: &Cert,
    [http, https]: [SocketAddr; 2],
) -> Result<Proxy> {
    let text = rendered(setup, Kind::Haproxy, http, dir)?;
    let bind = format!("    bind {http}\n");
    if !text.contains(&bind) {
        bail!("bench/peers/haproxy.cfg has no line {bind:?}");
    }
    let text = text.replacen(
        &bind,
        &format!(
            "{bind}    bind {https} ssl crt {} alpn http/1.1\n",
            cert.combined.display()
        ),
        1,
    );
    let path = dir.join("haproxy-tls.cfg");
    std::fs::write(&path, text)?;
    let command = peers::command(Kind::Haproxy, setup.binaries, &path, dir)?;
    let process = Managed::spawn("haproxy-tls", command, &dir.join("haproxy-tls.log"))?;
    ready(
        Proxy {
            process,
            http,
            https,
            metrics: None,
        },
        cert,
    )
}

/// Waits until both listeners accept and a small GET comes back through the HTTPS one.
fn ready(mut proxy: Proxy, cert: &Cert) -> Result<Proxy> {
    for addr in [proxy.http, proxy.https] {
        proxy
            .process
            .wait_accepting(addr, Duration::from_secs(30))?;
    }
    let started = Instant::now();
    loop {
        let outcome = curl_get(&url(true, proxy.https, "/bench/small-0"), cert, 5);
        match outcome {
            Ok((200, _)) => break,
            outcome if started.elapsed() > Duration::from_secs(20) => bail!(
                "{} does not serve an HTTPS GET after 20 s ({outcome:?}); its log:\n{}",
                proxy.process.name(),
                proxy.process.log_tail(30)
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    println!(
        "{:<14} up on http://{} and https://{} (pid {})",
        proxy.process.name(),
        proxy.http,
        proxy.https,
        proxy.process.pid()
    );
    Ok(proxy)
}

fn url(https: bool, addr: SocketAddr, path: &str) -> String {
    format!("{}://{addr}{path}", if https { "https" } else { "http" })
}

/// One curl GET with the body thrown away: `(status, body bytes)`; a curl failure is
/// an error whose message starts with its exit code.
fn curl_get(url: &str, cert: &Cert, timeout_s: u64) -> Result<(u16, u64)> {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-o", "/dev/null", "--max-time"])
        .arg(timeout_s.to_string())
        .arg("--cacert")
        .arg(&cert.chain)
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("run curl (apt install curl)")?;
    if !out.status.success() {
        bail!(
            "{} curl: {}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let status = words.next().and_then(|w| w.parse().ok());
    let size = words.next().and_then(|w| w.parse().ok());
    match (status, size) {
        (Some(status), Some(size)) => Ok((status, size)),
        _ => bail!("curl wrote {text:?}"),
    }
}

/// One GET of object 0 with every byte checked against the pattern; returns what the
/// page says about it (bytes, and the protocol and cipher curl reports for HTTPS).
fn verified_get(
    variant: Variant,
    addr: SocketAddr,
    cert: &Cert,
    keys: &Synthetic,
) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--fail", "--http1.1", "--max-time"])
        .arg(GET_TIMEOUT_S.to_string())
        .arg("--cacert")
        .arg(&cert.chain)
        .arg(url(variant.https(), addr, &keys.path(0)))
        .stdin(Stdio::null())
        .output()
        .context("run curl (apt install curl)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "curl exited with {}: {}",
            out.status,
            stderr.lines().last().unwrap_or("")
        );
    }
    if out.stdout.len() as u64 != keys.size_bytes {
        bail!("{} bytes, expected {}", out.stdout.len(), keys.size_bytes);
    }
    if let Some(at) = pattern::verify(pattern::key_seed(&keys.key(0)), 0, &out.stdout) {
        bail!("byte {at} differs from the pattern");
    }
    let tls = stderr
        .lines()
        .find_map(|l| l.split_once("SSL connection using ").map(|(_, t)| t.trim()))
        .map(|t| format!(", {t}"))
        .unwrap_or_default();
    if variant.https() && tls.is_empty() {
        bail!("curl -v did not report a TLS connection");
    }
    Ok(format!(
        "{} bytes, every byte checked{tls}",
        out.stdout.len()
    ))
}

/// `weir_tls_connections_total{side="client",...}` from weir's metrics.
fn tls_paths(metrics: SocketAddr) -> Result<KtlsFinding> {
    let text = crate::http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5))
        .with_context(|| format!("scrape {metrics}"))?
        .text();
    let count = |path: &str| -> u64 {
        let name = format!("weir_tls_connections_total{{side=\"client\",path=\"{path}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(KtlsFinding {
        ktls: count("ktls"),
        userspace: count("userspace"),
        ..KtlsFinding::default()
    })
}

/// One timed cell: `streams` threads, each GETting the objects in turn (one curl, one
/// connection per GET) until the duration has passed; the proxy's CPU around it.
// The cell's coordinates, one argument each, as in the runner's `measure`.
#[allow(clippy::too_many_arguments)]
fn cell(
    setup: &Setup,
    cert: &Cert,
    variant: Variant,
    addrs: &[SocketAddr],
    pids: &[u32],
    streams: usize,
    round: usize,
    position: usize,
) -> Result<TlsMeasurement> {
    procs::reset_peak_rss(pids);
    let load_average = procs::load_average();
    let before = CpuSnapshot::take(pids);
    let started = Instant::now();
    let per_stream: Vec<(u64, u64, ErrorCounts)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..streams)
            .map(|s| {
                let addr = addrs[s % addrs.len()];
                scope.spawn(move || {
                    let (mut bytes, mut requests) = (0u64, 0u64);
                    let mut errors = ErrorCounts::default();
                    let mut i = s as u64;
                    while started.elapsed() < setup.duration {
                        let path = setup.keys.path(i % setup.keys.count);
                        i += 1;
                        requests += 1;
                        match curl_get(&url(variant.https(), addr, &path), cert, GET_TIMEOUT_S) {
                            Ok((200, size)) if size == setup.keys.size_bytes => bytes += size,
                            Ok((200, size)) => {
                                bytes += size;
                                errors.mismatch += 1;
                            }
                            Ok((status, _)) => {
                                errors.status += 1;
                                errors.status_503 += u64::from(status == 503);
                            }
                            Err(err) => match err.to_string().split(' ').next() {
                                Some("7") => errors.connect += 1,
                                Some("28") => errors.timeout += 1,
                                _ => errors.io += 1,
                            },
                        }
                    }
                    (bytes, requests, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed();
    let proxy_cpu_s = CpuSnapshot::take(pids).seconds_since(&before);
    let mut m = TlsMeasurement {
        variant,
        streams,
        round,
        position,
        bytes: 0,
        requests: 0,
        elapsed,
        errors: ErrorCounts::default(),
        proxy_cpu_s: (!pids.is_empty()).then_some(proxy_cpu_s),
        proxy_peak_rss_bytes: (!pids.is_empty()).then(|| procs::peak_rss_bytes(pids)),
        load_average,
    };
    for (bytes, requests, e) in per_stream {
        m.bytes += bytes;
        m.requests += requests;
        m.errors.add(&e);
    }
    Ok(m)
}

/// "curl 7.88.1, OpenSSL/3.0.19" from `curl --version`.
fn curl_version(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let words: Vec<&str> = text.lines().next().unwrap_or("?").split(' ').collect();
    let tls = words
        .iter()
        .find(|w| w.contains("SSL/") || w.contains("TLS/"));
    format!(
        "{}{}",
        words.iter().take(2).copied().collect::<Vec<_>>().join(" "),
        tls.map(|t| format!(", {t}")).unwrap_or_default()
    )
}

fn label(streams: usize) -> String {
    format!("{streams} stream{}", if streams == 1 { "" } else { "s" })
}

/// The page (`tls-get.md`) and its plot.
pub fn page(meta: &RunMeta, run: &TlsRun) -> (String, String) {
    let title = TITLE;
    let mut out = String::new();
    report::header(&mut out, meta, title);
    let _ = writeln!(
        out,
        "Every variant is driven by the same client, `curl` ({}), one process and one \
         connection per {} MiB GET, on parallel streams; HTTPS clients trust a self-signed \
         ECDSA P-256 certificate for 127.0.0.1 made by rcgen for the run. Every GET's \
         status (200) and byte count are checked; the correctness pass below checked every \
         byte of one object through each variant. The proxy's CPU is what is compared: its \
         process's user + system time from `/proc`, all threads; curl's own decryption runs \
         on the same 2 cores but is not counted.\n",
        run.curl,
        run.object_bytes >> 20
    );
    let k = &run.ktls;
    let _ = writeln!(
        out,
        "**kTLS:** {}\n",
        if run.ktls.used() {
            format!(
                "weir with `ktls = true` put {} client connection(s) on the kTLS path \
                 (`tcp_available_ulp`: {}); its cells are measured below.",
                k.ktls, k.available_ulp
            )
        } else if k.ktls == 0 {
            format!(
                "not available on this kernel (`tcp_available_ulp`: {}), fell back to user \
                 space: weir with `ktls = true` counted `weir_tls_connections_total{{side=\"client\",path=\"userspace\"}} {}` \
                 and `path=\"ktls\"` {} after the correctness pass. It is the rustls path \
                 measured below, so it has no row of its own: no kTLS number is claimed here.",
                k.available_ulp, k.userspace, k.ktls
            )
        } else {
            format!(
                "mixed: {} connection(s) on the kTLS path and {} in user space \
                 (`tcp_available_ulp`: {}); not measured separately.",
                k.ktls, k.userspace, k.available_ulp
            )
        }
    );
    let ms_of = |streams: usize, v: Variant| -> Vec<&TlsMeasurement> {
        run.measurements
            .iter()
            .filter(|m| m.streams == streams && m.variant == v)
            .collect()
    };
    let spread = |ms: &[&TlsMeasurement], f: &dyn Fn(&TlsMeasurement) -> Option<f64>| {
        Spread::of(&ms.iter().filter_map(|m| f(m)).collect::<Vec<f64>>())
    };
    let gbps = |m: &TlsMeasurement| Some(m.gbps());
    let cpu = |m: &TlsMeasurement| m.cpu_s_per_gb();
    let busy = |m: &TlsMeasurement| m.proxy_cpu_s.map(|c| c / m.elapsed.as_secs_f64().max(1e-9));
    for &streams in &run.streams {
        let _ = writeln!(out, "## {}\n", label(streams));
        let _ = writeln!(
            out,
            "| target | GB/s | × direct | proxy CPU-s/GB | × HAProxy https | TLS cost CPU-s/GB (÷ own http) | proxy cores busy | proxy peak RSS MiB | GETs | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        let direct = spread(&ms_of(streams, Variant::Direct), &gbps);
        let hap_tls = spread(&ms_of(streams, Variant::HaproxyTls), &cpu);
        for &v in &run.variants {
            let ms = ms_of(streams, v);
            if ms.is_empty() {
                continue;
            }
            let c = spread(&ms, &cpu);
            let plain = match v {
                Variant::WeirRustls | Variant::WeirKtls => Some(Variant::WeirHttp),
                Variant::HaproxyTls => Some(Variant::HaproxyHttp),
                _ => None,
            }
            .and_then(|p| spread(&ms_of(streams, p), &cpu));
            let cost = match (c, plain) {
                (Some(c), Some(p)) => {
                    format!("+{:.3} ({})", c.median - p.median, ratio(Some(c), Some(p)))
                }
                _ => "—".to_string(),
            };
            let mut errors = ErrorCounts::default();
            for m in &ms {
                errors.add(&m.errors);
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                v.name(),
                show(spread(&ms, &gbps), 2),
                ratio(spread(&ms, &gbps), direct),
                show(c, 3),
                ratio(c, hap_tls),
                cost,
                show(spread(&ms, &busy), 2),
                show(
                    spread(&ms, &|m| m
                        .proxy_peak_rss_bytes
                        .map(|b| b as f64 / (1 << 20) as f64)),
                    1
                ),
                ms.iter().map(|m| m.requests).sum::<u64>(),
                show_errors(&errors),
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\"TLS cost\" is the proxy's CPU-s/GB over HTTPS minus the same proxy's over plain \
         HTTP in the same cell (medians), with their ratio: what encrypting a GB costs it. \
         \"Proxy cores busy\" is its CPU-seconds over the cell's wall time: well below 2 means \
         something other than the proxy's CPU held the throughput (the client, the other \
         processes on the 2 cores, or waiting inside the proxy). \
         weir's plain path splices the body socket to socket; over user-space TLS every byte \
         is encrypted by rustls and crosses a Unix socket pair to the bridge task. HAProxy \
         over HTTPS cannot splice to the client either (OpenSSL encrypts in its buffers).\n"
    );
    let _ = writeln!(out, "## Correctness pass\n");
    let _ = writeln!(out, "| target | one verified GET |");
    let _ = writeln!(out, "|---|---|");
    for (v, line) in &run.correctness {
        let _ = writeln!(out, "| {} | {line} |", v.name());
    }
    let _ = writeln!(out, "\nClient: {}.", run.curl);
    let mut meta = meta.clone();
    meta.notes.extend(run.notes.iter().cloned());
    let loads: Vec<f64> = run.measurements.iter().map(|m| m.load_average).collect();
    report::footer_with_loads(&mut out, &meta, &loads);

    let groups: Vec<String> = run.streams.iter().map(|&s| label(s)).collect();
    let series_of = |vs: &[Variant]| -> Vec<Series> {
        vs.iter()
            .map(|v| Series {
                name: v.name().to_string(),
                colour: v.colour().to_string(),
            })
            .collect()
    };
    let values = |vs: &[Variant], f: &dyn Fn(&TlsMeasurement) -> Option<f64>| {
        run.streams
            .iter()
            .map(|&s| vs.iter().map(|&v| spread(&ms_of(s, v), f)).collect())
            .collect()
    };
    let proxies: Vec<Variant> = run
        .variants
        .iter()
        .copied()
        .filter(|v| *v != Variant::Direct)
        .collect();
    let plot = svg::render(
        title,
        &meta.plot_subtitle(),
        &[
            Panel::Bars(BarPanel {
                title: "Throughput (higher is better)".into(),
                y_label: "GB/s (10^9 B/s)".into(),
                groups: groups.clone(),
                series: series_of(&run.variants),
                values: values(&run.variants, &gbps),
            }),
            Panel::Bars(BarPanel {
                title: "Proxy CPU per GB (lower is better)".into(),
                y_label: "CPU-seconds / GB".into(),
                groups,
                series: series_of(&proxies),
                values: values(&proxies, &cpu),
            }),
        ],
    );
    (out, plot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(variant: Variant, streams: usize, cpu_s: Option<f64>) -> TlsMeasurement {
        TlsMeasurement {
            variant,
            streams,
            round: 0,
            position: 0,
            bytes: 2_000_000_000,
            requests: 30,
            elapsed: Duration::from_secs(4),
            errors: ErrorCounts::default(),
            proxy_cpu_s: cpu_s,
            proxy_peak_rss_bytes: cpu_s.map(|_| 10 << 20),
            load_average: 1.0,
        }
    }

    #[test]
    fn a_ktls_fallback_is_said_and_not_measured() {
        let run = TlsRun {
            measurements: vec![
                measurement(Variant::Direct, 1, None),
                measurement(Variant::WeirHttp, 1, Some(0.2)),
                measurement(Variant::WeirRustls, 1, Some(1.8)),
                measurement(Variant::HaproxyHttp, 1, Some(0.3)),
                measurement(Variant::HaproxyTls, 1, Some(2.4)),
            ],
            streams: vec![1],
            variants: vec![
                Variant::Direct,
                Variant::WeirHttp,
                Variant::WeirRustls,
                Variant::HaproxyHttp,
                Variant::HaproxyTls,
            ],
            ktls: KtlsFinding {
                available_ulp: "mptcp".into(),
                ktls: 0,
                userspace: 2,
            },
            curl: "curl 7.88.1, OpenSSL/3.0.19".into(),
            object_bytes: 64 << 20,
            ..TlsRun::default()
        };
        assert!(!run.ktls.used());
        let (md, svg) = page(&RunMeta::default(), &run);
        assert!(md.contains("not available on this kernel (`tcp_available_ulp`: mptcp)"));
        assert!(!md.contains("| weir https, ktls = true |"));
        // weir rustls: 1.8 CPU-s / 2 GB = 0.9; HAProxy https 1.2; TLS cost 0.9 - 0.1.
        assert!(md.contains("| weir https, rustls (ktls = false) | 0.50 (0.50–0.50) | 1.00× | 0.900 (0.900–0.900) | 0.75× | +0.800 (9.00×) |"), "{md}");
        assert!(svg.contains("haproxy https"));
    }

    #[test]
    fn curl_version_names_the_tls_library() {
        let out = b"curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.19 zlib/1.2.13\nRelease-Date: x\n";
        assert_eq!(curl_version(out), "curl 7.88.1, OpenSSL/3.0.19");
    }
}
