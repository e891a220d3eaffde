//! The seaweed scenario: a SeaweedFS cluster (`runner::seaweed`) instead of the simulators,
//! every `--targets` proxy started again in front of its gateways, a signed correctness
//! pass and its own timed rounds. Its page is `report::seaweed_page`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use crate::load::Op;
use crate::runner::cli::Cli;
use crate::runner::harness::{Cell, Harness, KeySet};
use crate::runner::peers;
use crate::runner::procs;
use crate::runner::report::{self, RunMeta};
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::runner::seaweed::{self, Cluster, ClusterInfo};
use crate::runner::Measurement;
use crate::Synthetic;

/// A SeaweedFS cluster with 3 S3 gateways (SigV4 verified) instead of the simulators:
/// 64 MiB GETs on 16 streams and 4 KiB GETs on 64 connections.
#[derive(Default)]
pub struct Seaweed {
    /// The `weed` binary, found by `prepare`.
    weed: PathBuf,
    /// The cluster, the seeding and the correctness pass, once the run got that far.
    info: Option<ClusterInfo>,
    /// The cells' labels, in run order.
    labels: Vec<String>,
    measurements: Vec<Measurement>,
}

impl Scenario for Seaweed {
    fn name(&self) -> &'static str {
        "seaweed"
    }

    fn title(&self) -> &'static str {
        "A real cluster: SeaweedFS with 3 S3 gateways (SigV4 verified) behind each proxy"
    }

    fn needs(&self) -> Needs {
        Needs::Nothing
    }

    fn prepare(&mut self, cli: &Cli) -> Result<()> {
        self.weed = seaweed::find_weed(cli.weed.as_deref())?;
        Ok(())
    }

    fn run(&mut self, bench: &mut Harness, _meta: &mut RunMeta) -> Result<()> {
        let cells = seaweed_cells(&bench.cli)?;
        self.labels = cells.iter().map(|c| c.label.clone()).collect();
        let (info, measurements) = run_cluster(bench, &self.weed, &cells)?;
        self.info = Some(info);
        self.measurements = measurements;
        Ok(())
    }

    fn page(&self, meta: &RunMeta, _rounds: &Rounds) -> Option<(String, String)> {
        let info = self.info.as_ref()?;
        Some(report::seaweed_page(
            meta,
            self.title(),
            info,
            &self.labels,
            &self.measurements,
        ))
    }
}

/// The seaweed scenario's cells: 64 MiB GETs on 16 streams, 4 KiB GETs on 64 connections.
fn seaweed_cells(cli: &Cli) -> Result<Vec<Cell>> {
    Ok(vec![
        Cell {
            scenario: "seaweed",
            label: format!("large GET, {} streams", seaweed::LARGE_STREAMS),
            connections: seaweed::LARGE_STREAMS,
            keys: Synthetic::parse(seaweed::LARGE_KEYS)?,
            op: Op::Get,
            verify: cli.verify_large,
        },
        Cell {
            scenario: "seaweed",
            label: format!("small GET, {} connections", seaweed::SMALL_CONNECTIONS),
            connections: seaweed::SMALL_CONNECTIONS,
            keys: Synthetic::parse(seaweed::SMALL_KEYS)?,
            op: Op::Get,
            verify: true,
        },
    ])
}

/// The seaweed scenario: start the cluster, seed it, start every target in front of
/// its gateways, a correctness pass, the timed rounds; the runner stops everything
/// afterwards.
fn run_cluster(
    bench: &mut Harness,
    weed: &Path,
    cells: &[Cell],
) -> Result<(ClusterInfo, Vec<Measurement>)> {
    let (version, version_line) = seaweed::version(weed);
    let mut info = ClusterInfo {
        version,
        version_line,
        ..ClusterInfo::default()
    };
    let started = Instant::now();
    let root = bench.run_dir.join("seaweed");
    println!(
        "seaweed: starting {} (1 weed server, {} weed s3 gateways) in {}",
        info.version,
        seaweed::GATEWAYS,
        root.display()
    );
    let mut cluster = Cluster::start(weed, &root, bench.cli.base_port)?;
    info.start_s = started.elapsed().as_secs_f64();
    info.gateways = cluster.addrs();
    cluster.create_bucket("bench")?;
    let families = [
        Synthetic::parse(seaweed::LARGE_KEYS)?,
        Synthetic::parse(seaweed::SMALL_KEYS)?,
    ];
    info.seeded = cluster.seed(&families)?;
    println!(
        "seaweed: gateways {:?} up in {:.1} s; seeded {} objects ({:.0} MiB) through the first in {:.1} s",
        info.gateways,
        info.start_s,
        info.seeded.objects,
        info.seeded.bytes as f64 / (1 << 20) as f64,
        info.seeded.seconds
    );
    info.refused = cluster.refusals("/bench/small-0")?;
    let accepted: Vec<String> = info
        .refused
        .iter()
        .filter(|(_, signed, unsigned)| *signed == 200 || *unsigned == 200)
        .map(|(addr, signed, unsigned)| format!("{addr} ({signed} / {unsigned})"))
        .collect();
    if !accepted.is_empty() {
        info.notes.push(format!(
            "Gateways {} answered 200 to a GET signed with a wrong secret or not signed \
             at all: they do not verify, so this run does not show that the proxies keep \
             signed headers intact.",
            accepted.join(", ")
        ));
    }
    if !info.seeded.etag_differs.is_empty() {
        info.notes.push(format!(
            "{} upload(s) were answered with an ETag other than the MD5 of the bytes,                  e.g. {} (the bytes are checked by the correctness pass either way).",
            info.seeded.etag_differs.len(),
            info.seeded.etag_differs[0]
        ));
    }
    bench.node_addrs = cluster.addrs();
    bench.cluster = Some(cluster);
    bench.keys = KeySet::seaweed();
    bench.credentials = Some(seaweed::credentials());
    bench.port_shift = seaweed::TARGET_PORT_SHIFT;
    bench.health_preset = peers::HEALTH_PRESET_SEAWEED;
    for kind in bench.kinds.clone() {
        let target = bench.start_target(kind)?;
        bench.targets.push(target);
    }
    for i in 0..bench.targets.len() {
        let (errors, requests) = bench.correctness(i)?;
        info.correctness
            .push((bench.targets[i].kind, errors, requests));
    }
    if bench.limits_on {
        bench.note_whether_limits_apply();
    }
    info.load_before = procs::load_average();
    let measurements = bench.rounds(cells)?;
    bench.note_exited_targets();
    if let Some(exited) = bench.cluster.as_mut().and_then(Cluster::exited) {
        info.notes.push(format!(
            "{exited} during the run; its log is in the raw folder (seaweed/)."
        ));
    }
    Ok((info, measurements))
}
