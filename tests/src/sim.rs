//! The bench simulator (`weir_bench`, which shares no code with weir's data path:
//! docs/design.md, "Layout and dependency direction") as storage nodes: in-process nodes
//! serving synthetic objects (every node the same bytes and ETags, no upload), with fault
//! knobs a test flips at run time (`SimNode::set_faults`) and exact per-node counters.

use crate::weir::PoolConfig;
use std::net::SocketAddr;
use weir_bench::{SimNode, Synthetic};

/// Parses synthetic specs (`bench/obj-:64MiB:2`).
pub fn specs(specs: &[&str]) -> Vec<Synthetic> {
    specs
        .iter()
        .map(|s| Synthetic::parse(s).unwrap_or_else(|e| panic!("synthetic spec {s}: {e:#}")))
        .collect()
}

/// `n` simulator nodes on ephemeral loopback ports, all serving `specs`.
pub fn start(n: usize, synthetic: &[&str]) -> Vec<SimNode> {
    weir_bench::spawn_nodes(n, &specs(synthetic)).expect("start simulator nodes")
}

/// The nodes' addresses.
pub fn addrs(nodes: &[SimNode]) -> Vec<SocketAddr> {
    nodes.iter().map(SimNode::addr).collect()
}

/// Points `pool`'s probes at the simulator's control API (`GET /_sim/stats`): the node
/// does not count it as a request and answers it even while throttling, so a node's
/// `requests` counter holds exactly what weir forwarded; a node that is shut down (or its
/// listener closed) fails it.
pub fn control_probe(pool: PoolConfig) -> PoolConfig {
    pool.health("method = \"GET\"")
        .health("path = \"/_sim/stats\"")
        .health("expect_status = 200")
}
