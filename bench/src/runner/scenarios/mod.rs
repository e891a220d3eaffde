//! One [`Scenario`] per benchmark page, and the registry `weir-bench-run` runs them from.
//!
//! Adding a scenario: a file here with its `impl Scenario` (its records and page may live
//! in a module of their own beside `runner/tls.rs`), one line in [`registry`], and its
//! section in bench/README.md. A knob of its own is a field of `runner::cli::Cli`.

mod attack;
mod failover;
mod identity;
mod noisy;
mod seaweed;
mod throughput;
mod tls;

use anyhow::{bail, Result};

use super::scenario::Scenario;

/// Every scenario, in run order. The fleet's scenarios come first: they share the
/// simulator nodes and targets, which are stopped before the others start their own.
pub fn registry() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(throughput::LargeGet),
        Box::new(throughput::SmallGet),
        Box::new(throughput::LargePut),
        Box::<noisy::NoisyNeighbour>::default(),
        Box::<failover::Failover>::default(),
        Box::<tls::TlsGet>::default(),
        Box::<identity::Identity>::default(),
        Box::<attack::Attack>::default(),
        Box::<seaweed::Seaweed>::default(),
    ]
}

/// The scenarios chosen on the command line.
pub struct Selection {
    /// The chosen scenarios, in run order (the registry's).
    pub scenarios: Vec<Box<dyn Scenario>>,
    /// The order to write their pages in, as indices into `scenarios`: the order given.
    pub pages: Vec<usize>,
}

/// The scenarios chosen by name (all of them for none), each once.
pub fn select(names: &[String]) -> Result<Selection> {
    let all = registry();
    let mut given: Vec<usize> = Vec::new();
    for name in names {
        let Some(index) = all.iter().position(|s| s.name() == name) else {
            let known: Vec<&str> = all.iter().map(|s| s.name()).collect();
            bail!("unknown scenario {name:?} (known: {})", known.join(", "));
        };
        if !given.contains(&index) {
            given.push(index);
        }
    }
    if names.is_empty() {
        given = (0..all.len()).collect();
    }
    let mut run_order = given.clone();
    run_order.sort_unstable();
    let pages = given
        .iter()
        .filter_map(|i| run_order.binary_search(i).ok())
        .collect();
    let scenarios = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| run_order.contains(i))
        .map(|(_, s)| s)
        .collect();
    Ok(Selection { scenarios, pages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::scenario::Needs;

    fn names(scenarios: &[Box<dyn Scenario>]) -> Vec<&'static str> {
        scenarios.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn the_registry_runs_the_fleet_first_and_names_each_once() {
        let all = registry();
        assert_eq!(
            names(&all),
            [
                "large-get",
                "small-get",
                "large-put",
                "noisy-neighbour",
                "failover",
                "tls-get",
                "identity",
                "attack",
                "seaweed"
            ]
        );
        let first_other = all.iter().position(|s| s.needs() != Needs::Fleet);
        assert_eq!(first_other, Some(5));
        assert!(all[5..].iter().all(|s| s.needs() != Needs::Fleet));
    }

    #[test]
    fn selection_runs_in_registry_order_and_pages_in_the_order_given() {
        let given: Vec<String> = ["seaweed", "failover", "large-get", "failover"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let chosen = select(&given).unwrap();
        assert_eq!(
            names(&chosen.scenarios),
            ["large-get", "failover", "seaweed"]
        );
        let page_names: Vec<&str> = chosen
            .pages
            .iter()
            .map(|&i| chosen.scenarios[i].name())
            .collect();
        assert_eq!(page_names, ["seaweed", "failover", "large-get"]);
        let all = select(&[]).unwrap();
        assert_eq!(all.scenarios.len(), registry().len());
        assert_eq!(all.pages, (0..registry().len()).collect::<Vec<_>>());
        let err = select(&["large".to_string()]).err().unwrap().to_string();
        assert!(
            err.starts_with("unknown scenario \"large\" (known: large-get, "),
            "{err}"
        );
    }
}
