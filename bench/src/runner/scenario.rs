//! What a benchmark scenario is to the runner: a name, what must be running before it, the
//! timed cells it adds to the shared rounds, its own run, and its page. The scenarios
//! themselves are in `scenarios/`; `weir-bench-run` runs the chosen ones in registry order.

use anyhow::Result;

use super::cli::Cli;
use super::harness::{Cell, Harness};
use super::report::RunMeta;
use super::Measurement;

/// What the runner must have started before a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// The shared fleet: the simulator nodes and every `--targets` proxy in front of them,
    /// after a correctness pass through each. Every chosen scenario that needs it runs
    /// first, on the same fleet: all their cells in one set of interleaved rounds, then each
    /// scenario's own `run`.
    Fleet,
    /// The simulator nodes, freshly started; the scenario starts its own proxies.
    Simulators,
    /// Nothing: the scenario brings its own storage and proxies.
    Nothing,
}

/// The shared rounds of the fleet: every fleet scenario's cells and what they measured.
#[derive(Default)]
pub struct Rounds {
    /// The cells, in run order.
    pub cells: Vec<Cell>,
    /// One measurement per cell, target and round (cells that failed have none).
    pub measurements: Vec<Measurement>,
}

impl Rounds {
    /// One scenario's cell labels and measurements.
    pub fn of(&self, scenario: &str) -> (Vec<String>, Vec<Measurement>) {
        let labels = self
            .cells
            .iter()
            .filter(|c| c.scenario == scenario)
            .map(|c| c.label.clone())
            .collect();
        let measurements = self
            .measurements
            .iter()
            .filter(|m| m.scenario == scenario)
            .cloned()
            .collect();
        (labels, measurements)
    }
}

/// One benchmark scenario: one result page (`<name>.md`) and one plot (`<name>.svg`).
pub trait Scenario {
    /// File stem of the page and name on the command line.
    fn name(&self) -> &'static str;

    /// Page title (also its line in the index).
    fn title(&self) -> &'static str;

    /// What must be running before `run`.
    fn needs(&self) -> Needs;

    /// Checks and looks up what the scenario needs from the command line and the machine,
    /// before anything starts.
    fn prepare(&mut self, _cli: &Cli) -> Result<()> {
        Ok(())
    }

    /// The timed cells this scenario adds to the fleet's shared rounds (`Needs::Fleet`
    /// only).
    fn cells(&self, _cli: &Cli) -> Result<Vec<Cell>> {
        Ok(Vec::new())
    }

    /// Runs the scenario (for a fleet scenario, after the shared rounds), writes its raw
    /// records and keeps what its page needs. A failure is noted and the scenario gets no
    /// page; the run fails after the other pages are written.
    fn run(&mut self, _harness: &mut Harness, _meta: &mut RunMeta) -> Result<()> {
        Ok(())
    }

    /// The page and the plot, from what `run` kept and the shared rounds; `None` when
    /// nothing was measured.
    fn page(&self, meta: &RunMeta, rounds: &Rounds) -> Option<(String, String)>;
}
