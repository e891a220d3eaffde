//! The tls-get scenario over fresh simulator nodes with proxies of its own; everything but
//! the wiring is `runner::tls`.

use anyhow::{bail, Result};

use crate::runner::harness::{Harness, LARGE_KEYS};
use crate::runner::report::RunMeta;
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::runner::tls::{self, TlsRun};
use crate::Synthetic;

/// 64 MiB GETs over HTTPS (curl) through weir's rustls and kTLS paths and HAProxy, beside
/// the same over plain HTTP: proxy CPU-s/GB of TLS termination.
#[derive(Default)]
pub struct TlsGet {
    run: Option<TlsRun>,
}

impl Scenario for TlsGet {
    fn name(&self) -> &'static str {
        "tls-get"
    }

    fn title(&self) -> &'static str {
        tls::TITLE
    }

    fn needs(&self) -> Needs {
        Needs::Simulators
    }

    fn run(&mut self, bench: &mut Harness, _meta: &mut RunMeta) -> Result<()> {
        if bench.cli.tls_streams.is_empty() || bench.cli.tls_streams.contains(&0) {
            bail!("--tls-streams must be at least 1");
        }
        let setup = tls::Setup {
            binaries: &bench.binaries,
            nodes: &bench.node_addrs,
            run_dir: &bench.run_dir,
            base_port: bench.cli.base_port,
            rounds: bench.cli.rounds,
            duration: bench.duration,
            streams: &bench.cli.tls_streams,
            keys: Synthetic::parse(LARGE_KEYS)?,
        };
        self.run = Some(tls::run(&setup, &mut bench.records)?);
        Ok(())
    }

    fn page(&self, meta: &RunMeta, _rounds: &Rounds) -> Option<(String, String)> {
        self.run.as_ref().map(|run| tls::page(meta, run))
    }
}
