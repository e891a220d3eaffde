//! The throughput scenarios of the shared fleet: large GET, small GET, large PUT. They are
//! only cells in the fleet's interleaved rounds; their pages read those rounds.

use anyhow::{bail, Result};

use crate::load::Op;
use crate::runner::cli::Cli;
use crate::runner::harness::{
    Cell, LARGE_KEYS, PUT_KEYS, PUT_STREAMS, SMALL_CONNECTIONS, SMALL_KEYS,
};
use crate::runner::report::{self, RunMeta};
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::Synthetic;

/// 64 MiB GETs at several stream counts (`--streams`): GB/s and CPU-s/GB.
pub struct LargeGet;

impl Scenario for LargeGet {
    fn name(&self) -> &'static str {
        "large-get"
    }

    fn title(&self) -> &'static str {
        "Large GET: 64 MiB objects"
    }

    fn needs(&self) -> Needs {
        Needs::Fleet
    }

    fn cells(&self, cli: &Cli) -> Result<Vec<Cell>> {
        let large = Synthetic::parse(LARGE_KEYS)?;
        let mut out = Vec::new();
        for &streams in &cli.streams {
            if streams == 0 {
                bail!("--streams must be at least 1");
            }
            out.push(Cell {
                scenario: self.name(),
                label: format!("{streams} stream{}", if streams == 1 { "" } else { "s" }),
                connections: streams,
                keys: large.clone(),
                op: Op::Get,
                verify: cli.verify_large,
            });
        }
        Ok(out)
    }

    fn page(&self, meta: &RunMeta, rounds: &Rounds) -> Option<(String, String)> {
        let (labels, mine) = rounds.of(self.name());
        Some(report::throughput_page(
            meta,
            self.title(),
            Op::Get,
            &labels,
            &mine,
        ))
    }
}

/// 4 KiB GETs on 64 connections (and on 1, for latency without queueing).
pub struct SmallGet;

impl Scenario for SmallGet {
    fn name(&self) -> &'static str {
        "small-get"
    }

    fn title(&self) -> &'static str {
        "Small GET: 4 KiB objects"
    }

    fn needs(&self) -> Needs {
        Needs::Fleet
    }

    fn cells(&self, _cli: &Cli) -> Result<Vec<Cell>> {
        let small = Synthetic::parse(SMALL_KEYS)?;
        Ok([SMALL_CONNECTIONS, 1]
            .into_iter()
            .map(|connections| Cell {
                scenario: self.name(),
                label: format!(
                    "{connections} connection{}",
                    if connections == 1 { "" } else { "s" }
                ),
                connections,
                keys: small.clone(),
                op: Op::Get,
                verify: true,
            })
            .collect())
    }

    fn page(&self, meta: &RunMeta, rounds: &Rounds) -> Option<(String, String)> {
        let (labels, mine) = rounds.of(self.name());
        Some(report::small_get_page(meta, self.title(), &labels, &mine))
    }
}

/// 64 MiB PUTs on 16 streams: GB/s and CPU-s/GB.
pub struct LargePut;

impl Scenario for LargePut {
    fn name(&self) -> &'static str {
        "large-put"
    }

    fn title(&self) -> &'static str {
        "Large PUT: 64 MiB objects, 16 streams"
    }

    fn needs(&self) -> Needs {
        Needs::Fleet
    }

    fn cells(&self, _cli: &Cli) -> Result<Vec<Cell>> {
        Ok(vec![Cell {
            scenario: self.name(),
            label: format!("{PUT_STREAMS} streams"),
            connections: PUT_STREAMS,
            keys: Synthetic::parse(PUT_KEYS)?,
            op: Op::Put,
            verify: true,
        }])
    }

    fn page(&self, meta: &RunMeta, rounds: &Rounds) -> Option<(String, String)> {
        let (labels, mine) = rounds.of(self.name());
        Some(report::throughput_page(
            meta,
            self.title(),
            Op::Put,
            &labels,
            &mine,
        ))
    }
}
