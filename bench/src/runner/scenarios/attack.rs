//! The attack scenario over fresh simulator nodes with proxies of its own (weir,
//! weir-protected and HAProxy, those of them `--targets` names); everything but the wiring
//! is `runner::attack`.

use anyhow::Result;

use crate::runner::attack::{self, AttackRun};
use crate::runner::harness::{Harness, SMALL_KEYS};
use crate::runner::report::RunMeta;
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::units::parse_duration;
use crate::Synthetic;

/// Innocent 4 KiB GETs alone and beside an attack on the client side (slowloris, slow
/// bodies, idle connections, header bombs, a connection flood) through weir and HAProxy:
/// what each proxy holds and what the innocents lose.
#[derive(Default)]
pub struct Attack {
    run: Option<AttackRun>,
}

impl Scenario for Attack {
    fn name(&self) -> &'static str {
        "attack"
    }

    fn title(&self) -> &'static str {
        attack::TITLE
    }

    fn needs(&self) -> Needs {
        Needs::Simulators
    }

    fn run(&mut self, bench: &mut Harness, _meta: &mut RunMeta) -> Result<()> {
        let setup = attack::Setup {
            binaries: &bench.binaries,
            nodes: &bench.node_addrs,
            run_dir: &bench.run_dir,
            base_port: bench.cli.base_port,
            rounds: bench.cli.rounds,
            calm: bench.duration,
            attacked: parse_duration(&bench.cli.attack_duration)?,
            kinds: bench.kinds.clone(),
            mix: if bench.cli.smoke {
                attack::Mix::smoke()
            } else {
                attack::Mix::full()
            },
            keys: Synthetic::parse(SMALL_KEYS)?,
            innocent_connections: if bench.cli.smoke { 4 } else { 16 },
        };
        self.run = Some(attack::run(&setup, &mut bench.records)?);
        Ok(())
    }

    fn page(&self, meta: &RunMeta, _rounds: &Rounds) -> Option<(String, String)> {
        self.run.as_ref().map(|run| attack::page(meta, run))
    }
}
