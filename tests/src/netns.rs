//! A network namespace joined to the host by a veth pair, so one storage node's path can
//! be made slow with `tc` without touching loopback (which other tests and other people's
//! processes share). Needs root (`ip netns`, `tc`); a missing capability is a loud failure,
//! never a skip.
//!
//! The test machine's kernel has no `sch_netem` (CONFIG_NET_SCH_NETEM is not set, and
//! there are no modules), so the slow path is a token-bucket shaper (`tc tbf`) on both
//! ends of the veth: a narrow link whose queue adds latency under load.
//!
//! Servers go into the namespace in-process: [`NetNs::run_in`] runs a closure on a thread
//! that has joined the namespace (`setns(2)` affects only the calling thread), so a socket
//! it binds lives there; accepted connections stay in the listener's namespace whatever
//! thread serves them.

use crate::process::run_checked;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

/// A namespace `weirt-<pid>-<n>` with veth `wh<tag>` (host side) ↔ `wn<tag>` (inside),
/// `10.231.<k>.1/30` on the host and `.2` inside. Deleted on drop.
pub struct NetNs {
    name: String,
    host_if: String,
    inner_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    run_checked(
        &format!("ip {}", args.join(" ")),
        Command::new("ip").args(args),
        Duration::from_secs(10),
    );
}

impl NetNs {
    /// Creates the namespace and the link (panics with the command's output on failure).
    pub fn create() -> NetNs {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names are at most 15 bytes; the /30 is picked from pid and n.
        let tag = format!("{:x}", (pid % 0x10000) * 16 + n % 16);
        let k = ((pid as usize * 7 + n as usize) % 250 + 1) as u8;
        let ns = NetNs {
            name: format!("weirt-{pid}-{n}"),
            host_if: format!("wh{tag}"),
            inner_if: format!("wn{tag}"),
            host_ip: Ipv4Addr::new(10, 231, k, 1),
            ns_ip: Ipv4Addr::new(10, 231, k, 2),
        };
        let inner_if = ns.inner_if.clone();
        // Leftovers of a crashed run with the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_if])
            .output();
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_if,
        ]);
        ip(&["link", "set", &inner_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        exec(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &inner_if]);
        exec(&["link", "set", &inner_if, "up"]);
        exec(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace side's address (bind servers here).
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The host side's address.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// Runs `f` on a thread that has joined the namespace; returns its result.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a namespace fd we hold open; it changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Shapes both directions of the link with `tc tbf <args>` (e.g. `rate 40mbit burst
    /// 32kb latency 200ms`).
    pub fn shape(&self, args: &str) {
        let tbf: Vec<&str> = args.split_whitespace().collect();
        let mut host = vec![
            "qdisc",
            "replace",
            "dev",
            self.host_if.as_str(),
            "root",
            "tbf",
        ];
        host.extend(&tbf);
        let mut inner = vec![
            "netns",
            "exec",
            self.name.as_str(),
            "tc",
            "qdisc",
            "replace",
            "dev",
            self.inner_if.as_str(),
            "root",
            "tbf",
        ];
        inner.extend(&tbf);
        run_checked(
            &format!("tc {}", host.join(" ")),
            Command::new("tc").args(&host),
            Duration::from_secs(10),
        );
        ip(&inner);
    }

    /// Removes the shapers again.
    pub fn clear_shape(&self) {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", &self.host_if, "root"])
            .output();
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "tc",
                "qdisc",
                "del",
                "dev",
                &self.inner_if,
                "root",
            ])
            .output();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inner veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
