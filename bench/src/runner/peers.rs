//! The things a workload is sent to: the simulator nodes directly, weir (bare and with its
//! protection on), HAProxy, nginx and Envoy. Their configurations are the templates in
//! `bench/peers/` (compiled in, so a result always matches the runner that made it) with
//! `@NAME@` placeholders for ports, nodes and paths.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::procs::Managed;

/// `bench/peers/haproxy.cfg`.
pub const HAPROXY_TEMPLATE: &str = include_str!("../../peers/haproxy.cfg");
/// `bench/peers/nginx.conf`.
pub const NGINX_TEMPLATE: &str = include_str!("../../peers/nginx.conf");
/// `bench/peers/envoy.yaml`.
pub const ENVOY_TEMPLATE: &str = include_str!("../../peers/envoy.yaml");
/// `bench/peers/weir-bare.toml`.
pub const WEIR_BARE_TEMPLATE: &str = include_str!("../../peers/weir-bare.toml");
/// `bench/peers/weir-protected.toml`.
pub const WEIR_PROTECTED_TEMPLATE: &str = include_str!("../../peers/weir-protected.toml");
/// `bench/peers/weir-limits.toml`.
pub const WEIR_LIMITS_TEMPLATE: &str = include_str!("../../peers/weir-limits.toml");

/// What a cell's load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The simulator nodes themselves (connections spread round-robin over them).
    Direct,
    /// weir with its defaults.
    Weir,
    /// weir with probes, metrics, access log and (if supported) tenant/class limits.
    WeirProtected,
    /// HAProxy 2.6, HTTP mode, splice both ways.
    Haproxy,
    /// nginx, unbuffered proxying with upstream keep-alive.
    Nginx,
    /// Envoy, HTTP connection manager, round robin.
    Envoy,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::Weir,
        Kind::WeirProtected,
        Kind::Haproxy,
        Kind::Nginx,
        Kind::Envoy,
    ];

    /// Name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Weir => "weir",
            Kind::WeirProtected => "weir-protected",
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Envoy => "envoy",
        }
    }

    /// Parses a name of [`Kind::name`].
    pub fn parse(text: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .with_context(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown target {text:?} (one of {})", names.join(", "))
            })
    }

    /// Plot colour.
    pub fn colour(self) -> &'static str {
        match self {
            Kind::Direct => "#7f7f7f",
            Kind::Weir => "#1f5fbf",
            Kind::WeirProtected => "#74a9e8",
            Kind::Haproxy => "#d62728",
            Kind::Nginx => "#2ca02c",
            Kind::Envoy => "#9467bd",
        }
    }

    /// Port offset from the base port (listen; metrics/admin is listen + 1).
    pub fn port_offset(self) -> u16 {
        match self {
            Kind::Direct => 0,
            Kind::Weir => 10,
            Kind::WeirProtected => 20,
            Kind::Haproxy => 30,
            Kind::Nginx => 40,
            Kind::Envoy => 50,
        }
    }
}

/// Binaries of weir and the peers.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `weir`.
    pub weir: PathBuf,
    /// `haproxy`.
    pub haproxy: PathBuf,
    /// `nginx`.
    pub nginx: PathBuf,
    /// `envoy`.
    pub envoy: PathBuf,
}

/// Fills `@NAME@` placeholders; any placeholder left over is an error (a template and
/// the runner out of step).
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), value);
    }
    // `@type` in Envoy's YAML is not a placeholder: placeholders are `@UPPER_CASE@`.
    for (at, _) in out.match_indices('@') {
        let word: String = out[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !word.is_empty() && out[at + 1 + word.len()..].starts_with('@') {
            bail!("template placeholder @{word}@ was not filled in");
        }
    }
    Ok(out)
}

/// weir-protected's health-check preset over the simulators (`HEAD /`, any answer).
pub const HEALTH_PRESET_SIMULATORS: &str = "generic";
/// weir-protected's health-check preset over the SeaweedFS gateways (`GET /healthz`, 200).
pub const HEALTH_PRESET_SEAWEED: &str = "seaweedfs";

/// The rendered configuration of `kind` for `nodes`, and the file name it is written to.
/// `health_preset` is weir-protected's `[pool.health] preset` (the others probe TCP).
pub fn config(
    kind: Kind,
    listen: SocketAddr,
    nodes: &[SocketAddr],
    run_dir: &Path,
    with_limits: bool,
    health_preset: &str,
) -> Result<Option<(String, String)>> {
    let admin = SocketAddr::new(listen.ip(), listen.port() + 1);
    let rendered = match kind {
        Kind::Direct => return Ok(None),
        Kind::Weir | Kind::WeirProtected => {
            let servers: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
            let vars = [
                ("LISTEN", listen.to_string()),
                ("METRICS", admin.to_string()),
                ("SERVERS", servers.join(", ")),
                ("HEALTH_PRESET", health_preset.to_string()),
            ];
            if kind == Kind::Weir {
                (render(WEIR_BARE_TEMPLATE, &vars)?, "weir-bare.toml")
            } else {
                let mut text = render(WEIR_PROTECTED_TEMPLATE, &vars)?;
                if with_limits {
                    text.push('\n');
                    text.push_str(WEIR_LIMITS_TEMPLATE);
                }
                (text, "weir-protected.toml")
            }
        }
        Kind::Haproxy => {
            let servers: Vec<String> = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| format!("    server n{} {n} check inter 1s fall 2 rise 2", i + 1))
                .collect();
            let vars = [
                ("LISTEN", listen.to_string()),
                ("SERVERS", servers.join("\n")),
            ];
            (render(HAPROXY_TEMPLATE, &vars)?, "haproxy.cfg")
        }
        Kind::Nginx => {
            let servers: Vec<String> = nodes
                .iter()
                .map(|n| format!("        server {n} max_fails=1 fail_timeout=5s;"))
                .collect();
            let vars = [
                ("LISTEN", listen.to_string()),
                ("SERVERS", servers.join("\n")),
                ("RUNDIR", run_dir.display().to_string()),
            ];
            (render(NGINX_TEMPLATE, &vars)?, "nginx.conf")
        }
        Kind::Envoy => {
            let servers: Vec<String> = nodes
                .iter()
                .map(|n| {
                    format!(
                        "        - endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}",
                        n.ip(),
                        n.port()
                    )
                })
                .collect();
            let vars = [
                ("LISTEN_PORT", listen.port().to_string()),
                ("ADMIN_PORT", admin.port().to_string()),
                ("SERVERS", servers.join("\n")),
            ];
            (render(ENVOY_TEMPLATE, &vars)?, "envoy.yaml")
        }
    };
    Ok(Some((rendered.0, rendered.1.to_string())))
}

/// The command that runs `kind` with its configuration at `config_path`.
pub fn command(
    kind: Kind,
    binaries: &Binaries,
    config_path: &Path,
    run_dir: &Path,
) -> Result<Command> {
    let mut command;
    match kind {
        Kind::Direct => bail!("direct has no process"),
        Kind::Weir | Kind::WeirProtected => {
            command = Command::new(&binaries.weir);
            command.arg("run").arg("--config").arg(config_path);
            if kind == Kind::WeirProtected {
                command.env("WEIR_ACCESS_LOG", run_dir.join("weir-access.log"));
            }
        }
        Kind::Haproxy => {
            command = Command::new(&binaries.haproxy);
            command.arg("-db").arg("-f").arg(config_path);
        }
        Kind::Nginx => {
            for temp in [
                "nginx-body",
                "nginx-proxy",
                "nginx-fastcgi",
                "nginx-uwsgi",
                "nginx-scgi",
            ] {
                std::fs::create_dir_all(run_dir.join(temp))?;
            }
            command = Command::new(&binaries.nginx);
            command
                .arg("-p")
                .arg(run_dir)
                .arg("-c")
                .arg(config_path)
                .arg("-e")
                .arg(run_dir.join("nginx-error.log"));
        }
        Kind::Envoy => {
            command = Command::new(&binaries.envoy);
            command
                .arg("-c")
                .arg(config_path)
                .arg("--concurrency")
                .arg("2")
                .arg("--disable-hot-restart")
                .arg("--log-level")
                .arg("warn");
        }
    }
    Ok(command)
}

/// A running target.
pub struct Target {
    /// What it is.
    pub kind: Kind,
    /// Where load goes (several for direct).
    pub addrs: Vec<SocketAddr>,
    /// The process (none for direct).
    pub process: Option<Managed>,
    /// The configuration file it runs with.
    pub config_path: Option<PathBuf>,
}

impl Target {
    /// Pids to measure: the process and its descendants (nginx workers).
    pub fn pids(&self) -> Vec<u32> {
        self.process.as_ref().map(Managed::tree).unwrap_or_default()
    }
}

/// One line of a binary's version output (for the result pages).
pub fn version(kind: Kind, binaries: &Binaries) -> String {
    let (binary, args): (&Path, &[&str]) = match kind {
        Kind::Direct => return "weir-sim (bench/)".to_string(),
        Kind::Weir | Kind::WeirProtected => (&binaries.weir, &["--version"]),
        Kind::Haproxy => (&binaries.haproxy, &["-v"]),
        Kind::Nginx => (&binaries.nginx, &["-v"]),
        Kind::Envoy => (&binaries.envoy, &["--version"]),
    };
    match Command::new(binary).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?");
            // Envoy prints "envoy  version: HASH/1.40.0/Clean/RELEASE/BoringSSL".
            match line.split_once("version: ") {
                Some((_, v)) if kind == Kind::Envoy => format!("envoy {v}"),
                _ => line.to_string(),
            }
        }
        Err(err) => format!("{} ({err})", binary.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:27001".parse().unwrap(),
            "127.0.0.1:27002".parse().unwrap(),
        ]
    }

    #[test]
    fn every_template_renders_completely() {
        let listen: SocketAddr = "127.0.0.1:27030".parse().unwrap();
        for kind in Kind::ALL {
            for preset in [HEALTH_PRESET_SIMULATORS, HEALTH_PRESET_SEAWEED] {
                let rendered =
                    config(kind, listen, &nodes(), Path::new("/tmp/x"), true, preset).unwrap();
                if let Some((text, _)) = rendered {
                    assert!(text.contains("27002"), "{kind:?}");
                    if kind == Kind::WeirProtected {
                        assert!(text.contains(&format!("preset = \"{preset}\"")));
                    }
                }
            }
        }
    }

    #[test]
    fn leftover_placeholders_are_errors() {
        assert!(render("a @LISTEN@ b", &[]).is_err());
        assert_eq!(
            render("\"@type\": x @A@", &[("A", "1".into())]).unwrap(),
            "\"@type\": x 1"
        );
    }

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()).unwrap(), kind);
        }
        assert!(Kind::parse("squid").is_err());
    }
}
