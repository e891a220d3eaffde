//! weir-bench-run's command line: what to run, against what, for how long, and where the
//! pages go.

use std::path::{Path, PathBuf};

use clap::Parser;

/// Benchmark runner: the same workload direct, through weir and through HAProxy, nginx
/// and Envoy, in interleaved rounds; writes Markdown tables and SVG plots.
#[derive(Parser, Debug)]
#[command(name = "weir-bench-run", version)]
pub struct Cli {
    /// The weir binary.
    #[arg(long, default_value = "target/ci/weir")]
    pub weir: PathBuf,
    /// What to call this weir on the result pages (e.g. its commit and build profile).
    #[arg(long)]
    pub weir_label: Option<String>,
    /// The weir-sim binary (default: next to this executable).
    #[arg(long)]
    pub sim: Option<PathBuf>,
    /// HAProxy binary.
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    pub haproxy: PathBuf,
    /// nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// Envoy binary (scripts/bench-deps.sh installs it here).
    #[arg(long, default_value = ".cache/bench-venv/bin/envoy")]
    pub envoy: PathBuf,
    /// Ports used: base+1..=base+3 nodes, base+10.. targets (every port below base+100).
    #[arg(long, default_value_t = 27000)]
    pub base_port: u16,
    /// Rounds per cell (targets interleaved within a round, order rotated per round).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Load duration of one cell.
    #[arg(long, default_value = "5s")]
    pub duration: String,
    /// Scenarios to run (comma-separated; default: every one): large-get, small-get,
    /// large-put, noisy-neighbour, failover, tls-get, identity, attack, seaweed. They run in
    /// that order whatever the order given; their pages are written in the order given.
    /// bench/results/README.md (the index) is rewritten only by a run of all of them; a
    /// partial run leaves its index in the raw folder.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// SeaweedFS' weed binary for the seaweed scenario (default: .cache/bench-venv/bin/weed,
    /// then .cache/venv/bin/weed, then PATH).
    #[arg(long)]
    pub weed: Option<PathBuf>,
    /// Targets (comma-separated): direct, weir, weir-protected, haproxy, nginx, envoy.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,weir,weir-protected,haproxy,nginx,envoy"
    )]
    pub targets: Vec<String>,
    /// Stream counts of the large-GET scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub streams: Vec<usize>,
    /// Connections of every timed cell of the identity scenario.
    #[arg(long, default_value_t = 8)]
    pub identity_streams: usize,
    /// Stream counts of the tls-get scenario (parallel curl processes).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub tls_streams: Vec<usize>,
    /// Check every body byte in the timed large-GET cells too (costs the client
    /// ~0.3 CPU-s/GB on the same cores).
    #[arg(long)]
    pub verify_large: bool,
    /// Length of the attack scenario's attacked phase (its calm phase lasts --duration).
    #[arg(long, default_value = "15s")]
    pub attack_duration: String,
    /// Length of each noisy-neighbour phase (training alone, then beside the flood).
    #[arg(long, default_value = "8s")]
    pub noisy_duration: String,
    /// Failover run length and kill time.
    #[arg(long, default_value = "12s")]
    pub failover_duration: String,
    /// When the failover scenario SIGKILLs node 2.
    #[arg(long, default_value = "5s")]
    pub failover_kill_at: String,
    /// Wait after restarting the killed node, so every target's health checks see it
    /// up again before the next target's run.
    #[arg(long, default_value = "8s")]
    pub failover_recover: String,
    /// Where result pages go (raw records, configs and logs under OUT/raw/).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// A quick run that keeps the harness from rotting: 1 round of 1 s cells, 1 and 16
    /// streams, 2 s noisy-neighbour phases, a short failover; pages go to
    /// bench/results/raw/smoke unless --out is set.
    #[arg(long)]
    pub smoke: bool,
}

impl Cli {
    /// `--smoke`: 1 round of 1 s cells, 1 and 16 streams, 2 s noisy-neighbour and attack
    /// phases, a short failover; pages under bench/results/raw/smoke unless --out is set.
    pub fn apply_smoke(&mut self) {
        if !self.smoke {
            return;
        }
        self.rounds = 1;
        self.duration = "1s".into();
        self.streams = vec![1, 16];
        self.noisy_duration = "2s".into();
        self.failover_duration = "5s".into();
        self.failover_kill_at = "2s".into();
        self.failover_recover = "5s".into();
        self.attack_duration = "2s".into();
        if self.out == Path::new("bench/results") {
            self.out = PathBuf::from("bench/results/raw/smoke");
        }
    }
}
