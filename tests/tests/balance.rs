//! Balancing within a pool, end to end (docs/config.md, "Balancing within a pool"): a
//! pool's `balance` key decides which of its nodes serves, on real connections to
//! `weir-sim` nodes whose request counters say exactly which node served each GET (probes
//! go to the simulator's control API and are not counted; GETs run one at a time, so the
//! counter that moved is the node that served). Every body is checked by SHA-256.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use weir_bench::{SimNode, SimOptions};
use weir_tests::data::Scratch;
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for, Transfer};
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};

/// The scenarios run one at a time: they share 2 cores with everything else.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const OBJECT_BYTES: u64 = 64 * 1024;
/// Synthetic objects `bench/obj-0` … `bench/obj-15`, 64 KiB each, on every node.
const SPEC: &str = "bench/obj-:64KiB:16";
const OBJECTS: usize = 16;

/// Two cores (each with its own round-robin position), one pool `main` balanced by
/// `balance`, probed every 200 ms through the control API, no slow start (a node that
/// comes back takes its share at once).
fn config(nodes: &[SocketAddr], balance: &str) -> WeirConfig {
    let pool = sim::control_probe(
        PoolConfig::new("main", nodes)
            .key(&format!("balance = \"{balance}\""))
            .key("slow_start = \"0s\""),
    )
    .health("interval = \"200ms\"")
    .health("timeout = \"150ms\"");
    WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"5s\"")
        .pool(pool)
}

/// Each node's forwarded-request count.
fn counts(nodes: &[&SimNode]) -> Vec<u64> {
    nodes.iter().map(|n| n.stats().requests).collect()
}

/// GETs `bench/obj-<i>` through weir (curl, a fresh connection, no client retry), checks
/// the body's SHA-256 and length, and returns the index of the one node whose request
/// count moved.
fn get_served_by(weir: &Weir, nodes: &[&SimNode], i: usize) -> usize {
    let key = format!("bench/obj-{i}");
    let before = counts(nodes);
    let out =
        Transfer::get(&format!("{}/{key}", weir.endpoint()), None).wait(Duration::from_secs(30));
    assert!(
        out.ok && out.status == 200,
        "GET {key}: {out:?}\n{}",
        weir.log_tail()
    );
    assert_eq!(
        (out.sha256.as_str(), out.bytes),
        (synthetic_sha256(&key, OBJECT_BYTES).as_str(), OBJECT_BYTES),
        "GET {key}: the body"
    );
    let after = counts(nodes);
    let moved: Vec<usize> = (0..nodes.len())
        .filter(|&n| after[n] != before[n])
        .collect();
    assert_eq!(moved.len(), 1, "GET {key}: nodes {before:?} -> {after:?}");
    assert_eq!(
        after[moved[0]],
        before[moved[0]] + 1,
        "GET {key}: one request"
    );
    moved[0]
}

/// `round_robin` spreads sequential GETs evenly: each core takes the nodes in turn, so
/// with two cores no node is more than two GETs from another (a uniform random draw of 60
/// GETs over 3 nodes is that even 9% of the time; `p2c` also leans to the fastest node).
#[test]
fn round_robin_spreads_sequential_gets_evenly() {
    let _serial = serial();
    let scratch = Scratch::new("balance-round-robin");
    let nodes = sim::start(3, &[SPEC]);
    let weir = Weir::start(&config(&sim::addrs(&nodes), "round_robin"), scratch.path());
    let all: Vec<&SimNode> = nodes.iter().collect();
    let mut served = [0u32; 3];
    for i in 0..60 {
        served[get_served_by(&weir, &all, i % OBJECTS)] += 1;
    }
    println!("BALANCE round_robin: 60 GETs over 3 nodes: {served:?}");
    let (min, max) = (served.iter().min(), served.iter().max());
    assert!(
        max.zip(min).is_some_and(|(max, min)| max - min <= 2),
        "round_robin served {served:?}"
    );
    assert_eq!(served.iter().sum::<u32>(), 60);
}

/// `rendezvous` sends every GET of one object to one node (whichever core takes the
/// connection), different objects to several nodes; when a node is killed only its objects
/// move (each again to one node), the others stay, and every body is right; when it comes
/// back, its objects return to it.
#[test]
fn rendezvous_is_sticky_and_moves_only_a_dead_nodes_objects() {
    let _serial = serial();
    let scratch = Scratch::new("balance-rendezvous");
    let mut nodes = sim::start(4, &[SPEC]);
    let addrs = sim::addrs(&nodes);
    let weir = Weir::start(&config(&addrs, "rendezvous"), scratch.path());

    // Where each object goes: three GETs each, always the same node.
    let placement: Vec<usize> = {
        let all: Vec<&SimNode> = nodes.iter().collect();
        (0..OBJECTS)
            .map(|i| {
                let first = get_served_by(&weir, &all, i);
                for _ in 0..2 {
                    assert_eq!(get_served_by(&weir, &all, i), first, "obj-{i} moved");
                }
                first
            })
            .collect()
    };
    let mut per_node = [0usize; 4];
    for &n in &placement {
        per_node[n] += 1;
    }
    println!("BALANCE rendezvous: objects per node {per_node:?}, placement {placement:?}");
    let used = per_node.iter().filter(|&&c| c > 0).count();
    assert!(used >= 2, "16 objects on {used} node(s): {per_node:?}");

    // Kill the node holding obj-0 and wait until weir holds it down.
    let victim = placement[0];
    nodes[victim].shutdown();
    wait_for(
        "the killed node to be marked down",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (weir.node_state(addrs[victim]).as_deref() == Some("down")).then_some(()),
    );
    let alive: Vec<&SimNode> = nodes.iter().collect();
    let mut moved_to = Vec::new();
    for (i, &was) in placement.iter().enumerate() {
        let now = get_served_by(&weir, &alive, i);
        assert_eq!(
            get_served_by(&weir, &alive, i),
            now,
            "obj-{i} not sticky after the kill"
        );
        assert_ne!(now, victim, "obj-{i} served by the dead node");
        if was == victim {
            moved_to.push(now);
        } else {
            assert_eq!(now, was, "obj-{i} of a live node moved");
        }
    }
    println!("BALANCE rendezvous: node {victim} killed; its objects moved to {moved_to:?}");
    assert_eq!(moved_to.len(), per_node[victim]);

    // Back on its address: its objects come back to it, nothing else moves.
    let specs = sim::specs(&[SPEC]);
    let revived = weir_bench::spawn_nodes_at(&[addrs[victim]], &specs, &SimOptions::default())
        .expect("restart the node on its address");
    wait_for(
        "the restarted node to be up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (weir.node_state(addrs[victim]).as_deref() == Some("up")).then_some(()),
    );
    let mut now_nodes: Vec<&SimNode> = nodes.iter().collect();
    now_nodes[victim] = &revived[0];
    for (i, &was) in placement.iter().enumerate() {
        assert_eq!(
            get_served_by(&weir, &now_nodes, i),
            was,
            "obj-{i} after the return"
        );
    }
}
