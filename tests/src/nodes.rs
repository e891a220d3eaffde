//! Real S3 servers as storage nodes.
//!
//! - [`S3sFs`]: s3s-fs 0.14.1, one instance per data folder (instances sharing a folder
//!   collide on temp files: docs/design.md, "How we know it works"). It verifies SigV4, so
//!   a request weir altered fails. Use several with the same objects seeded into each
//!   ([`seed`]) for read routing; writes stay on one node.
//! - [`Seaweed`]: a SeaweedFS cluster (master + volume + filer in one `weed server`, plus
//!   several `weed s3` gateways over the one filer), so a write through any gateway is
//!   readable through every other: multi-node writes, multipart parts on different nodes.

use crate::clients::curl_sigv4;
use crate::data::SeedObject;
use crate::process::Proc;
use crate::{ACCESS_KEY, FLOOD_ACCESS_KEY, FLOOD_SECRET_KEY, SECRET_KEY};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One s3s-fs node with its own data folder.
pub struct S3sFs {
    proc: Proc,
    addr: SocketAddr,
    data: PathBuf,
}

impl S3sFs {
    /// Starts s3s-fs on a free port with data in `dir/<name>-data`, log `dir/<name>.log`.
    pub fn start(dir: &Path, name: &str) -> S3sFs {
        S3sFs::start_with_keys(dir, name, ACCESS_KEY, SECRET_KEY)
    }

    /// [`S3sFs::start`] accepting only `access_key`/`secret_key` (a site with an identity
    /// of its own, for the identity tests).
    pub fn start_with_keys(dir: &Path, name: &str, access_key: &str, secret_key: &str) -> S3sFs {
        let data = dir.join(format!("{name}-data"));
        std::fs::create_dir_all(&data).expect("create s3s-fs data dir");
        let addr = crate::ports::free_addr();
        let mut cmd = Command::new(crate::tools::s3s_fs());
        cmd.args(["--host", "127.0.0.1", "--port"])
            .arg(addr.port().to_string())
            .args(["--access-key", access_key, "--secret-key", secret_key])
            .arg(&data)
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")));
        proc.wait_port(addr, Duration::from_secs(20));
        S3sFs { proc, addr, data }
    }

    /// Starts `n` nodes (`s3s-0`, `s3s-1`, …), each on its own folder under `dir`.
    pub fn start_many(dir: &Path, n: usize) -> Vec<S3sFs> {
        (0..n)
            .map(|i| S3sFs::start(dir, &format!("s3s-{i}")))
            .collect()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The node's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}

/// Creates `bucket` on every endpoint and uploads `objects` into each (boto3,
/// `tests/py/seed.py`), checking each upload's size and ETag. Returns the manifest file the
/// read suite takes.
pub fn seed(endpoints: &[String], bucket: &str, objects: &[SeedObject], scratch: &Path) -> PathBuf {
    seed_as(
        endpoints,
        bucket,
        objects,
        scratch,
        (ACCESS_KEY, SECRET_KEY),
    )
}

/// [`seed`] signing as `keys` (access key, secret): for nodes started with
/// [`S3sFs::start_with_keys`].
pub fn seed_as(
    endpoints: &[String],
    bucket: &str,
    objects: &[SeedObject],
    scratch: &Path,
    keys: (&str, &str),
) -> PathBuf {
    let manifest = scratch.join(format!("seed-manifest-{bucket}.json"));
    std::fs::write(&manifest, crate::data::manifest_json(objects)).expect("write manifest");
    for endpoint in endpoints {
        let report = crate::clients::run_py_as(
            keys,
            "seed.py",
            [
                "--endpoint",
                endpoint.as_str(),
                "--bucket",
                bucket,
                "--manifest",
                manifest.to_str().expect("utf-8 path"),
            ],
            scratch,
            Duration::from_secs(300),
        );
        crate::clients::assert_checks(&format!("seed {endpoint}"), &report, &[]);
    }
    manifest
}

/// A SeaweedFS cluster: one `weed server` (master, volume, filer) and several S3 gateways.
pub struct Seaweed {
    gateways: Vec<(Proc, SocketAddr)>,
    server: Proc,
    grpc_ports: Vec<u16>,
}

impl Seaweed {
    /// Starts the cluster with `gateways` S3 gateways, all state under `dir/seaweed`, and
    /// waits until every gateway answers a signed ListBuckets with 200.
    pub fn start(dir: &Path, gateways: usize) -> Seaweed {
        let started = Instant::now();
        let root = dir.join("seaweed");
        let data = root.join("data");
        std::fs::create_dir_all(&data).expect("create seaweed dir");
        let identity = root.join("identity.json");
        std::fs::write(
            &identity,
            serde_json::json!({
                "identities": [{
                    "name": "weir-tests",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }, {
                    "name": "weir-tests-flood",
                    "credentials": [{"accessKey": FLOOD_ACCESS_KEY, "secretKey": FLOOD_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }]
            })
            .to_string(),
        )
        .expect("write identity.json");
        // Every port explicit: weed's default gRPC port is port + 10000, which may be taken.
        use crate::ports::free_port;
        let (master, master_grpc) = (free_port(), free_port());
        let (volume, volume_grpc) = (free_port(), free_port());
        let (filer, filer_grpc) = (free_port(), free_port());
        let mut grpc_ports = vec![master_grpc, volume_grpc, filer_grpc];

        let mut cmd = Command::new(crate::tools::weed());
        cmd.arg("-logtostderr")
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!(
                "-filer.localSocket={}",
                root.join("filer.sock").display()
            ))
            // Small volumes, many of them: a test writes a few GiB at most.
            .args([
                "-master.volumeSizeLimitMB=512",
                "-volume.max=64",
                "-volume.preStopSeconds=0",
            ]);
        let mut server = Proc::spawn("weed-server", &mut cmd, &root.join("server.log"));
        for port in [master, volume, filer] {
            server.wait_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(60),
            );
        }

        let mut gws = Vec::new();
        for i in 0..gateways {
            let (port, grpc) = (crate::ports::free_port(), crate::ports::free_port());
            grpc_ports.push(grpc);
            let mut cmd = Command::new(crate::tools::weed());
            cmd.arg("-logtostderr")
                .arg("s3")
                .arg(format!("-filer=127.0.0.1:{filer}.{filer_grpc}"))
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .arg(format!("-port={port}"))
                .arg(format!("-port.grpc={grpc}"))
                .args(["-port.iceberg=0", "-port.lance=0"])
                .arg(format!(
                    "-localSocket={}",
                    root.join(format!("s3-{i}.sock")).display()
                ))
                .arg(format!("-config={}", identity.display()));
            let proc = Proc::spawn(
                &format!("weed-s3-{i}"),
                &mut cmd,
                &root.join(format!("s3-{i}.log")),
            );
            gws.push((proc, SocketAddr::from(([127, 0, 0, 1], port))));
        }
        for (proc, addr) in gws.iter_mut() {
            let url = format!("http://{addr}/");
            proc.wait_until(
                &format!("{addr} to answer ListBuckets"),
                Duration::from_secs(60),
                || curl_status(&mut curl_sigv4(), &url, Duration::from_secs(5)) == Some(200),
            );
        }
        println!(
            "seaweedfs: {gateways} gateways ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Seaweed {
            gateways: gws,
            server,
            grpc_ports,
        }
    }

    /// The S3 gateways' addresses.
    pub fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateways.iter().map(|(_, a)| *a).collect()
    }

    /// Gateway `i`'s pid.
    pub fn gateway_pid(&self, i: usize) -> u32 {
        self.gateways[i].0.pid()
    }

    /// Sends `signal` to gateway `i` (SIGKILL, SIGSTOP, SIGCONT).
    pub fn signal_gateway(&self, i: usize, signal: i32) {
        self.gateways[i].0.signal_group(signal);
    }

    /// The index of the gateway listening on `addr`.
    pub fn gateway_index(&self, addr: SocketAddr) -> Option<usize> {
        self.gateways.iter().position(|(_, a)| *a == addr)
    }

    /// `http://<gateway i>`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.gateways[i].1)
    }

    /// Creates `bucket` and waits until an object written through gateway 0 reads back
    /// through every gateway (volumes allocated, filer metadata seen everywhere).
    pub fn create_bucket(&mut self, bucket: &str) {
        let first = self.endpoint(0);
        let put_bucket = curl_status(
            curl_sigv4().args(["-X", "PUT"]),
            &format!("{first}/{bucket}"),
            Duration::from_secs(30),
        );
        assert_eq!(
            put_bucket,
            Some(200),
            "CreateBucket {bucket} via {first}; log:\n{}",
            self.server.log_tail()
        );
        let probe = format!("{first}/{bucket}/.weir-ready");
        let (gateways, server) = (&mut self.gateways, &mut self.server);
        server.wait_until(
            "a probe object to be writable",
            Duration::from_secs(60),
            || {
                curl_status(
                    curl_sigv4().args(["-X", "PUT", "--data-binary", "ready"]),
                    &probe,
                    Duration::from_secs(10),
                ) == Some(200)
            },
        );
        for (proc, addr) in gateways.iter_mut() {
            let url = format!("http://{addr}/{bucket}/.weir-ready");
            proc.wait_until(
                &format!("{url} to be readable"),
                Duration::from_secs(30),
                || curl_status(&mut curl_sigv4(), &url, Duration::from_secs(5)) == Some(200),
            );
        }
        let del = curl_status(
            curl_sigv4().args(["-X", "DELETE"]),
            &probe,
            Duration::from_secs(10),
        );
        assert_eq!(del, Some(204), "DeleteObject probe");
    }

    /// The server's log tail (master, volume, filer).
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        for (proc, _) in self.gateways.iter_mut() {
            proc.kill();
        }
        self.server.kill();
        // weed puts its gRPC unix sockets in /tmp, named by port; SIGKILL leaves them.
        for port in &self.grpc_ports {
            for kind in ["master", "volume", "filer", "s3"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-grpc-{port}.sock"));
            }
        }
    }
}

/// Runs a curl request and returns its HTTP status (None if curl failed or timed out).
fn curl_status(cmd: &mut Command, url: &str, timeout: Duration) -> Option<u16> {
    cmd.args(["-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
        .arg(timeout.as_secs().to_string())
        .arg(url);
    let out = crate::process::run_with_timeout(cmd, timeout + Duration::from_secs(2)).ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|s| *s != 0)
}
