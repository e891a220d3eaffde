//! The identity scenario over fresh simulator nodes with weirs of its own; everything but
//! the wiring is `runner::identity`.

use std::time::Duration;

use anyhow::Result;

use crate::runner::harness::{Harness, LARGE_KEYS, PUT_KEYS};
use crate::runner::identity::{self, IdentityRun};
use crate::runner::report::RunMeta;
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::Synthetic;

/// 64 MiB GETs and PUTs (header-signed and streaming-signed) through weir bare, with SigV4
/// verification, and with verification + re-signing: weir CPU-s/GB.
#[derive(Default)]
pub struct Identity {
    run: Option<IdentityRun>,
}

impl Scenario for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn title(&self) -> &'static str {
        identity::TITLE
    }

    fn needs(&self) -> Needs {
        Needs::Simulators
    }

    fn run(&mut self, bench: &mut Harness, _meta: &mut RunMeta) -> Result<()> {
        let setup = identity::Setup {
            binaries: &bench.binaries,
            nodes: &bench.node_addrs,
            sim_pids: bench.sim_pids(),
            run_dir: &bench.run_dir,
            base_port: bench.cli.base_port,
            rounds: bench.cli.rounds,
            duration: bench.duration,
            correctness_duration: if bench.cli.smoke {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(2)
            },
            streams: bench.cli.identity_streams,
            get_keys: Synthetic::parse(LARGE_KEYS)?,
            put_keys: Synthetic::parse(PUT_KEYS)?,
            verify_get: bench.cli.verify_large,
        };
        self.run = Some(identity::run(&setup, &mut bench.records)?);
        Ok(())
    }

    fn page(&self, meta: &RunMeta, _rounds: &Rounds) -> Option<(String, String)> {
        self.run.as_ref().map(|run| identity::page(meta, run))
    }
}
