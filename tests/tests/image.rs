//! Proof that the appliance image (`firmware-image/`) boots and serves.
//!
//! Each test copies `firmware-image/out/weir.img`, writes a config into its `WEIRCFG`
//! partition with `mcopy` (as the README tells users to), and boots the copy under QEMU TCG
//! (`firmware-image/boot.sh`) with user networking: `restrict=on`, host ports forwarded to the
//! guest's S3 (9000) and metrics (9100) listeners, and `guestfwd` taking the guest's
//! connections to 10.0.2.100:80 to an s3s-fs node on the host. Then, through the booted
//! appliance: weir's metrics answer, the AWS CLI on the host creates a bucket, PUTs and GETs
//! an object (SHA-256 compared, and read back from the node itself), and the power button
//! (QEMU `system_powerdown`) shuts the guest down cleanly (weir drains, QEMU exits 0).
//!
//! - `direct_kernel_boot`: `-kernel`/`-initrd` with a static address from the kernel
//!   command line (`weir.ip=`); also kills weir inside the guest with the kernel's OOM
//!   killer (SysRq-F sent as a key press through the QEMU monitor: the same SIGKILL a real
//!   memory exhaustion delivers) and checks that init restarts it and the appliance serves
//!   again; the kernel's OOM report also shows that weir ran as uid 100, not root. Before
//!   that, the kTLS proof (`docs/tls.md`): HTTPS PUT and GETs (TLS 1.3 AES-256-GCM and
//!   ChaCha20-Poly1305, TLS 1.2 AES-128-GCM) through the appliance, hash-checked, every
//!   handshake on the kernel path (`weir_tls_connections_total{path="ktls"}`).
//! - `bios_disk_boot`: SeaBIOS → gptmbr → syslinux, a static address from `network.conf`
//!   (written into WEIRCFG with mcopy, no trailing newline).
//! - `uefi_disk_boot`: OVMF → systemd-boot, DHCP.
//! - `default_config_without_weir_toml`: weir.toml deleted from WEIRCFG (mdel): the
//!   built-in default config serves.
//!
//! The image is built by `firmware-image/build.sh` (scripts/test.sh's `image` stage, which
//! also checks that two builds are identical bit for bit); a missing image fails the test.
//! One boot at a time (a lock): TCG on 2 shared cores. Serial logs stay in the scratch
//! folder and their tail is quoted on failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_tests::certs::Ca;
use weir_tests::clients::{aws, curl_sigv4};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::S3sFs;
use weir_tests::ports::free_addr;
use weir_tests::process::{log_tail, run_checked, Proc};
use weir_tests::tools::{cache_dir, repo_root};
use weir_tests::weir::http_request;

const MIB: u64 = 1 << 20;
/// Where `guestfwd` catches the guest's connections to the storage node.
const NODE_IN_GUEST: &str = "10.0.2.100:80";
/// From QEMU start to weir's metrics answering. Boots take 11–25 s on an idle 2-core
/// machine; CI may be slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

static SERIAL: Mutex<()> = Mutex::new(());

fn one_boot_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Kernel,
    Bios,
    Uefi,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Bios => "bios",
            Mode::Uefi => "uefi",
        }
    }
}

/// `firmware-image/out`, checked: the boot tests never build the image themselves.
fn image_out() -> PathBuf {
    let out = repo_root().join("firmware-image/out");
    for f in [
        "weir.img",
        "vmlinuz",
        "initrd.img",
        "cmdline",
        "manifest.txt",
    ] {
        assert!(
            out.join(f).is_file(),
            "{} is missing: build the image first (scripts/image-deps.sh && \
             firmware-image/build.sh; scripts/test.sh does it in its `image` stage)",
            out.join(f).display()
        );
    }
    out
}

/// The byte offset of the WEIRCFG partition, as build.sh writes it into the manifest.
fn config_offset(out: &Path) -> u64 {
    let manifest = std::fs::read_to_string(out.join("manifest.txt")).expect("read manifest");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("weir.toml offset (bytes) in weir.img: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no config offset in manifest.txt:\n{manifest}"))
}

/// A booted appliance: QEMU (killed on drop with its process group), its serial log and
/// monitor socket, the host ports forwarded to weir's listeners.
struct Appliance {
    qemu: Proc,
    serial: PathBuf,
    monitor: PathBuf,
    s3: SocketAddr,
    /// The guest's HTTPS listener (9443, `[tls]` of the test config).
    https: SocketAddr,
    metrics: SocketAddr,
    mode: Mode,
}

impl Appliance {
    /// Boots `image` in `mode`, with guest connections to [`NODE_IN_GUEST`] going to `node`.
    fn boot(mode: Mode, image: &Path, node: SocketAddr, append: &str, dir: &Path) -> Appliance {
        let out = image_out();
        let s3 = free_addr();
        let https = free_addr();
        let metrics = free_addr();
        let name = mode.arg();
        let serial = dir.join(format!("{name}-serial.log"));
        let monitor = dir.join(format!("{name}.monitor"));
        let busybox = cache_dir().join("image/busybox/bin/busybox");
        assert!(
            busybox.is_file(),
            "{} is missing: run scripts/image-deps.sh",
            busybox.display()
        );
        // One `busybox nc` per guest connection (QEMU spawns the command for each).
        let guestfwd = format!(
            "tcp:{NODE_IN_GUEST}-cmd:{} nc 127.0.0.1 {}",
            busybox.display(),
            node.port()
        );
        let mut cmd = Command::new(repo_root().join("firmware-image/boot.sh"));
        cmd.arg(name)
            .arg("--image")
            .arg(image)
            .arg("--out")
            .arg(&out)
            .arg("--serial")
            .arg(&serial)
            .arg("--monitor")
            .arg(&monitor)
            .arg("--vars")
            .arg(dir.join(format!("{name}-ovmf-vars.fd")))
            .arg("--hostfwd")
            .arg(format!("tcp:{s3}-:9000"))
            .arg("--hostfwd")
            .arg(format!("tcp:{https}-:9443"))
            .arg("--hostfwd")
            .arg(format!("tcp:{metrics}-:9100"))
            .arg("--guestfwd")
            .arg(guestfwd);
        if !append.is_empty() {
            cmd.arg("--append").arg(append);
        }
        let qemu = Proc::spawn(
            &format!("qemu-{name}"),
            &mut cmd,
            &dir.join(format!("{name}-qemu.log")),
        );
        Appliance {
            qemu,
            serial,
            monitor,
            s3,
            https,
            metrics,
            mode,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.s3)
    }

    fn serial_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Panics with the serial console's tail (and QEMU's own log).
    fn fail(&self, why: &str) -> ! {
        panic!(
            "{} boot: {why}\n--- serial console (tail) ---\n{}\n--- qemu ---\n{}",
            self.mode.arg(),
            log_tail(&self.serial),
            self.qemu.log_tail()
        );
    }

    /// Waits until `GET /metrics` answers 200 with weir's metrics; returns the body.
    fn wait_metrics(&mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.qemu.exited() {
                self.fail(&format!("QEMU exited ({status}) before weir served"));
            }
            if let Some(body) = get_metrics(self.metrics) {
                if body.contains("weir_info{") {
                    return body;
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("weir's metrics did not answer within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the serial log contains `needle`.
    fn wait_serial(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.serial_log().contains(needle) {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "no {needle:?} on the serial console within {timeout:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command to the QEMU monitor (human monitor protocol).
    fn monitor(&self, command: &str) {
        let mut sock = UnixStream::connect(&self.monitor)
            .unwrap_or_else(|e| self.fail(&format!("connect monitor: {e}")));
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Read the banner and prompt before typing.
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf);
        writeln!(sock, "{command}").unwrap_or_else(|e| self.fail(&format!("monitor: {e}")));
        // Give QEMU the time to read the line before the socket closes.
        std::thread::sleep(Duration::from_millis(500));
        let _ = sock.read(&mut buf);
    }

    /// Presses the ACPI power button; the guest must stop weir (it drains) and power off,
    /// QEMU exiting with status 0.
    fn power_off(&mut self) {
        self.monitor("system_powerdown");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.qemu.exited() {
                break status;
            }
            if Instant::now() > deadline {
                self.fail("the guest did not power off within 60 s of the power button");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = self.serial_log();
        for line in [
            "weir-init: power button pressed",
            "weir-init: shutting down (poweroff): stopping weir",
            "drained; exiting",
            "weir-init: poweroff now",
        ] {
            if !log.contains(line) {
                self.fail(&format!(
                    "no {line:?} in the serial log after the power button"
                ));
            }
        }
        assert!(status.success(), "QEMU exited with {status} after poweroff");
    }
}

/// `GET /metrics` with short timeouts (a forwarded port accepts before the guest listens);
/// the body when the answer is 200.
fn get_metrics(addr: SocketAddr) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Writes the test config into WEIRCFG: plain S3 on 9000, HTTPS on 9443 with a
/// certificate from a CA of the test's (`dir/edge-ca.pem`; the certificate and key go onto
/// the partition beside weir.toml, where relative paths point).
fn write_config(image: &Path, offset: u64, dir: &Path) {
    let config = dir.join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "# The boot test's config: the host's s3s-fs node through QEMU's guestfwd.\n\
             [appliance]\n\
             listen = [\"0.0.0.0:9000\"]\n\
             metrics = \"0.0.0.0:9100\"\n\
             drain_timeout = \"5s\"\n\
             \n\
             [tls]\n\
             listen = [\"0.0.0.0:9443\"]\n\
             [[tls.certificate]]\n\
             cert = \"edge.pem\"\n\
             key = \"edge.key\"\n\
             \n\
             [[pool]]\n\
             name = \"host\"\n\
             nodes = [\"{NODE_IN_GUEST}\"]\n"
        ),
    )
    .expect("write test config");
    let cert = Ca::new(dir, "edge").server(dir, "edge", &["127.0.0.1"]);
    for (file, name) in [
        (&config, "weir.toml"),
        (&cert.cert, "edge.pem"),
        (&cert.key, "edge.key"),
    ] {
        run_checked(
            &format!("mcopy {name} into WEIRCFG"),
            Command::new("mcopy")
                .arg("-o")
                .arg("-i")
                .arg(format!("{}@@{offset}", image.display()))
                .arg(file)
                .arg(format!("::{name}")),
            Duration::from_secs(30),
        );
    }
    // What a user would check: the file on the partition is the one written.
    let back = run_checked(
        "mtype weir.toml",
        Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{offset}", image.display()))
            .arg("::weir.toml"),
        Duration::from_secs(30),
    );
    assert_eq!(
        back,
        std::fs::read(&config).unwrap(),
        "weir.toml read back from WEIRCFG differs"
    );
}

/// PUTs a `size`-byte object through the appliance with the AWS CLI and GETs it back;
/// both the copy read through the appliance and the one read from the node itself must
/// match the uploaded bytes.
fn put_get(app: &Appliance, node: &S3sFs, key: &str, seed: u64, size: u64, dir: &Path) {
    let src = dir.join(format!("{key}.src"));
    let want = data::write_pattern_file(&src, seed, size);
    let url = format!("s3://appliance/{key}");
    let endpoint = app.endpoint();
    aws(&endpoint, &["s3", "cp", src.to_str().unwrap(), &url], dir);
    let back = dir.join(format!("{key}.via-appliance"));
    aws(&endpoint, &["s3", "cp", &url, back.to_str().unwrap()], dir);
    let (got, len) = data::sha256_file(&back);
    if (got.as_str(), len) != (want.as_str(), size) {
        app.fail(&format!(
            "GET {key} through the appliance: sha256 {got} ({len} bytes), want {want} ({size})"
        ));
    }
    let direct = dir.join(format!("{key}.from-node"));
    aws(
        &node.endpoint(),
        &["s3", "cp", &url, direct.to_str().unwrap()],
        dir,
    );
    assert_eq!(
        data::sha256_file(&direct),
        (want, size),
        "{key} as stored on the node"
    );
}

/// Counter value of a metric line starting with `prefix` (0 when absent).
fn metric(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes `text` as network.conf into the image copy's WEIRCFG partition, as a user would.
fn write_network_conf(image: &Path, offset: u64, text: &str, dir: &Path) {
    let file = dir.join("network.conf");
    std::fs::write(&file, text).expect("write network.conf");
    run_checked(
        "mcopy network.conf into WEIRCFG",
        Command::new("mcopy")
            .arg("-o")
            .arg("-i")
            .arg(format!("{}@@{offset}", image.display()))
            .arg(&file)
            .arg("::network.conf"),
        Duration::from_secs(30),
    );
}

/// Boots `mode` and runs the checks; returns the appliance, still running. `network`, when
/// given, replaces network.conf on WEIRCFG.
fn boot_and_serve(
    mode: Mode,
    append: &str,
    network: Option<&str>,
    scratch: &Scratch,
) -> (Appliance, S3sFs) {
    let out = image_out();
    let dir = scratch.path();
    let node = S3sFs::start(dir, "node");
    let image = dir.join("weir.img");
    std::fs::copy(out.join("weir.img"), &image).expect("copy image");
    write_config(&image, config_offset(&out), dir);
    if let Some(text) = network {
        write_network_conf(&image, config_offset(&out), text, dir);
    }

    let started = Instant::now();
    let mut app = Appliance::boot(mode, &image, node.addr(), append, dir);
    let metrics = app.wait_metrics(BOOT_TIMEOUT);
    let serving = started.elapsed();
    eprintln!(
        "image {} boot: weir's metrics answered {:.1}s after QEMU started",
        mode.arg(),
        serving.as_secs_f64()
    );
    if !metrics.contains("weir_info{version=") || !metrics.contains("driver=\"io_uring\"") {
        app.fail(&format!("unexpected metrics:\n{metrics}"));
    }
    // The metrics port is bound wide for Prometheus; live flows (clients, buckets, keys)
    // and node details are not for everyone who reaches it: from outside the guest, 403.
    for path in ["/flows", "/nodes"] {
        match http_request(app.metrics, "GET", path) {
            Ok((403, _)) => {}
            other => app.fail(&format!(
                "GET {path} on the metrics port from outside: {other:?}"
            )),
        }
    }
    let log = app.serial_log();
    for line in [
        "weir-init: config partition /dev/vda2 (WEIRCFG) mounted read-only at /etc/weir",
        "weir-init: starting weir (start #1): weir run --config /etc/weir/weir.toml",
    ] {
        if !log.contains(line) {
            app.fail(&format!("no {line:?} in the serial log"));
        }
    }

    aws(
        &app.endpoint(),
        &["s3api", "create-bucket", "--bucket", "appliance"],
        dir,
    );
    put_get(&app, &node, mode.arg(), 8, 3 * MIB + 17, dir);
    let Some(after) = get_metrics(app.metrics) else {
        app.fail("no metrics after the transfers");
    };
    let requests = metric(&after, "weir_requests_total");
    if requests < 3.0 {
        app.fail(&format!(
            "weir counted {requests} requests after create-bucket, PUT and GET:\n{after}"
        ));
    }
    (app, node)
}

#[test]
fn direct_kernel_boot() {
    let _one = one_boot_at_a_time();
    let scratch = Scratch::new("image-kernel");
    // A static address from the kernel command line instead of DHCP (slirp's guest address).
    let (mut app, node) = boot_and_serve(
        Mode::Kernel,
        "weir.ip=10.0.2.15/24,10.0.2.2",
        None,
        &scratch,
    );
    app.wait_serial(
        "weir-init: static address 10.0.2.15/24 on eth0",
        Duration::from_secs(1),
    );
    ktls_transfers(&app, scratch.path());

    // The OOM killer (SysRq-F) kills the biggest process: weir. Init must restart it.
    app.monitor("sendkey alt-sysrq-f");
    app.wait_serial(
        "weir-init: weir exited with status 137",
        Duration::from_secs(30),
    );
    app.wait_serial("(weir)", Duration::from_secs(5));
    app.wait_serial(
        "weir-init: starting weir (start #2)",
        Duration::from_secs(30),
    );
    let metrics = app.wait_metrics(Duration::from_secs(60));
    // A new process: its request counter starts again from zero.
    let requests = metric(&metrics, "weir_requests_total");
    if requests != 0.0 {
        app.fail(&format!(
            "weir_requests_total is {requests} right after the restart (not a new process?)"
        ));
    }
    // Init quotes the kernel's reason; weir runs unprivileged (uid 100), not as root.
    let log = app.serial_log();
    let Some(oom) = log
        .lines()
        .find(|l| l.contains("Out of memory: Killed process") && l.contains("(weir)"))
    else {
        app.fail("init did not log the kernel's OOM kill of weir");
    };
    if !oom.contains("UID:100 ") {
        app.fail(&format!("weir did not run as uid 100: {oom}"));
    }
    put_get(&app, &node, "after-restart", 9, MIB, scratch.path());
    app.power_off();
}

#[test]
fn bios_disk_boot() {
    let _one = one_boot_at_a_time();
    let scratch = Scratch::new("image-bios");
    // A static address from network.conf on WEIRCFG (slirp's guest address), no DHCP.
    let network = "# the boot test\naddress = 10.0.2.15/24\ngateway = 10.0.2.2\ndns = 10.0.2.3";
    let (mut app, _node) = boot_and_serve(Mode::Bios, "", Some(network), &scratch);
    // syslinux (with its serial console) loaded the kernel.
    app.wait_serial("SYSLINUX 6.", Duration::from_secs(1));
    app.wait_serial(
        "weir-init: static address 10.0.2.15/24 on eth0",
        Duration::from_secs(1),
    );
    if app.serial_log().contains("udhcpc") {
        app.fail("DHCP ran although network.conf sets a static address");
    }
    app.power_off();
}

#[test]
fn uefi_disk_boot() {
    let _one = one_boot_at_a_time();
    let scratch = Scratch::new("image-uefi");
    let (mut app, _node) = boot_and_serve(Mode::Uefi, "", None, &scratch);
    // OVMF started the disk's EFI/BOOT/BOOTX64.EFI (systemd-boot), not syslinux.
    app.wait_serial("BdsDxe: starting Boot", Duration::from_secs(1));
    if app.serial_log().contains("SYSLINUX") {
        app.fail("syslinux ran on a UEFI boot");
    }
    app.wait_serial(
        "weir-init: dhcp eth0: lease 10.0.2.15",
        Duration::from_secs(1),
    );
    app.power_off();
}

#[test]
fn default_config_without_weir_toml() {
    let _one = one_boot_at_a_time();
    let scratch = Scratch::new("image-default");
    let out = image_out();
    let dir = scratch.path();
    let image = dir.join("weir.img");
    std::fs::copy(out.join("weir.img"), &image).expect("copy image");
    // The user deleted weir.toml from WEIRCFG: the appliance must still come up, with the
    // built-in default config (S3 on 9000, metrics on 9100).
    run_checked(
        "mdel weir.toml",
        Command::new("mdel")
            .arg("-i")
            .arg(format!("{}@@{}", image.display(), config_offset(&out)))
            .arg("::weir.toml"),
        Duration::from_secs(30),
    );
    let nowhere = free_addr();
    let mut app = Appliance::boot(Mode::Kernel, &image, nowhere, "", dir);
    let metrics = app.wait_metrics(BOOT_TIMEOUT);
    if !metrics.contains("pool=\"unconfigured\"") {
        app.fail(&format!(
            "metrics do not show the default config's pool:\n{metrics}"
        ));
    }
    app.wait_serial(
        "weir-init: no /etc/weir/weir.toml: running the built-in default config",
        Duration::from_secs(1),
    );
    app.wait_serial(
        "weir run --config /usr/share/weir/default.toml",
        Duration::from_secs(1),
    );
    // The S3 listener answers (no storage is configured: weir's own error, not a hang).
    let (status, body) = weir_tests::weir::http_request(app.s3, "GET", "/bucket/key")
        .unwrap_or_else(|e| app.fail(&format!("S3 port: {e}")));
    if !(500..600).contains(&status) || !body.contains("<Code>") {
        app.fail(&format!("S3 port answered {status}: {body}"));
    }
    app.power_off();
}

/// The kTLS proof, in the image's Debian kernel (which ships `tls.ko` and the AEAD modules;
/// the development kernel has neither): HTTPS PUTs and GETs through the booted appliance
/// under TLS 1.3 (AES-256-GCM, ChaCha20-Poly1305) and TLS 1.2 (AES-128-GCM), every body
/// hash-checked, and every handshake counted on the kernel path
/// (`weir_tls_connections_total{side="client",path="ktls"}`), none in user space.
fn ktls_transfers(app: &Appliance, dir: &Path) {
    let ca = dir.join("edge-ca.pem");
    let src = dir.join("tls.src");
    let size = 2 * MIB + 5;
    let want = data::write_pattern_file(&src, 21, size);
    let base = format!("https://{}/appliance", app.https);
    let curl = |args: &[&str]| {
        let mut cmd = curl_sigv4();
        cmd.arg("--cacert")
            .arg(&ca)
            .args(["--fail", "--max-time", "120"])
            .args(args);
        let out = weir_tests::clients::output(&mut cmd, Duration::from_secs(130));
        if !out.status.success() {
            app.fail(&format!(
                "curl {args:?} over HTTPS: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        out.stdout
    };
    curl(&["-T", src.to_str().unwrap(), &format!("{base}/tls-put")]);
    let suites: [&[&str]; 3] = [
        &["--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"],
        &[
            "--tlsv1.3",
            "--tls13-ciphers",
            "TLS_CHACHA20_POLY1305_SHA256",
        ],
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    ];
    for suite in suites {
        let mut args = suite.to_vec();
        let url = format!("{base}/tls-put");
        args.extend(["-o", "-", url.as_str()]);
        let body = curl(&args);
        let got = (data::sha256_hex(&body), body.len() as u64);
        if got != (want.clone(), size) {
            app.fail(&format!(
                "GET over HTTPS {suite:?}: {got:?}, want {want} ({size})"
            ));
        }
    }
    let Some(metrics) = get_metrics(app.metrics) else {
        app.fail("no metrics after the HTTPS transfers");
    };
    let ktls = metric(
        &metrics,
        "weir_tls_connections_total{side=\"client\",path=\"ktls\"}",
    );
    let user = metric(
        &metrics,
        "weir_tls_connections_total{side=\"client\",path=\"userspace\"}",
    );
    eprintln!("image kTLS: {ktls} handshakes on the kernel path, {user} in user space");
    if ktls < 4.0 || user != 0.0 {
        app.fail(&format!(
            "expected 4 kTLS connections and none in user space, got {ktls} and {user}"
        ));
    }
}
