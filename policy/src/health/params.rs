//! How a pool's nodes are probed and judged: the typed `[[pool]] health` table.
//!
//! Presets carry what each storage product answers on its health endpoint, so an operator
//! writes `preset = "minio"` instead of remembering paths; any key written explicitly
//! overrides the preset. The appliance sends the probe and hands status and body prefix to
//! [`HealthParams::classify`], so what counts as alive is decided here, not in the prober.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::ProbeResult;

/// How much of a probe answer's body the prober reads for `body_match` / `drain_match`;
/// the matches must fit in it (config validation enforces that).
pub const PROBE_BODY_BYTES_MAX: usize = 4096;

/// Which storage product a pool's probe is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthPreset {
    /// Any S3 server: `HEAD /` and any HTTP answer means alive (an unsigned `HEAD /` is
    /// usually a 403, which still proves the server is up and speaking HTTP).
    #[default]
    Generic,
    /// SeaweedFS `weed s3`: `GET /healthz` answers 200 with an empty body.
    Seaweedfs,
    /// MinIO: `GET /minio/health/live` answers 200 while the server process is up.
    Minio,
    /// Dell ObjectScale / ECS: `GET /?ping` answers 200; a node in maintenance says
    /// `MAINTENANCE_MODE` in the body (with a 503), which drains it instead of failing it.
    Objectscale,
}

/// The probe request method. Only methods that cannot change state are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProbeMethod {
    /// `GET`: needed when the body is matched.
    #[serde(rename = "GET")]
    Get,
    /// `HEAD`: cheapest; the answer has no body.
    #[serde(rename = "HEAD")]
    Head,
}

/// Which probe answer statuses count as alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectStatus {
    /// Any complete HTTP answer (the generic S3 check: the server is up and talking).
    Any,
    /// A status class: `Class(2)` is any 2xx.
    Class(u16),
    /// Exactly this status.
    Exact(u16),
}

/// The typed `health` table of a `[[pool]]`, with the pool's `slow_start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthParams {
    /// The preset the probe fields started from.
    pub preset: HealthPreset,
    /// Probe request method.
    pub method: ProbeMethod,
    /// Probe request target in origin form (`/path?query`), starting with `/`.
    pub path: String,
    /// Which answer statuses mean alive.
    pub expect_status: ExpectStatus,
    /// Text the answer body must contain to be alive (within [`PROBE_BODY_BYTES_MAX`]).
    pub body_match: Option<String>,
    /// Text in the answer body that means "in maintenance": the node drains.
    pub drain_match: Option<String>,
    /// Time between the starts of two probes of one node.
    pub interval: Duration,
    /// Time allowed for one probe (connect + answer); at most `interval`.
    pub timeout: Duration,
    /// Consecutive alive probes that bring a down or draining node back up.
    pub rise: u32,
    /// Consecutive failed probes that take a node down.
    pub fall: u32,
    /// Consecutive failed requests (connect errors, resets, timeouts, 5xx) that take a
    /// node down without waiting for the probe; 0 = requests never take a node down.
    pub passive_fall: u32,
    /// A node whose response-head latency EWMA exceeds this is degraded; `None` = off.
    pub degraded_latency: Option<Duration>,
    /// Ramp time of a recovered node's weight from 10% to 100%; zero = no ramp. This is
    /// the pool's `slow_start` key, kept here because the health state machine owns it.
    pub slow_start: Duration,
}

/// Probe fields a preset fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetProbe {
    /// Probe method.
    pub method: ProbeMethod,
    /// Probe target.
    pub path: &'static str,
    /// Statuses meaning alive.
    pub expect_status: ExpectStatus,
    /// Body text meaning maintenance, if the product reports it.
    pub drain_match: Option<&'static str>,
}

// === impl HealthPreset ===

impl HealthPreset {
    /// The probe this preset stands for.
    pub const fn probe(self) -> PresetProbe {
        match self {
            HealthPreset::Generic => PresetProbe {
                method: ProbeMethod::Head,
                path: "/",
                expect_status: ExpectStatus::Any,
                drain_match: None,
            },
            HealthPreset::Seaweedfs => PresetProbe {
                method: ProbeMethod::Get,
                path: "/healthz",
                expect_status: ExpectStatus::Exact(200),
                drain_match: None,
            },
            HealthPreset::Minio => PresetProbe {
                method: ProbeMethod::Get,
                path: "/minio/health/live",
                expect_status: ExpectStatus::Exact(200),
                drain_match: None,
            },
            HealthPreset::Objectscale => PresetProbe {
                method: ProbeMethod::Get,
                path: "/?ping",
                expect_status: ExpectStatus::Exact(200),
                drain_match: Some("MAINTENANCE_MODE"),
            },
        }
    }

    /// The preset's name as written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthPreset::Generic => "generic",
            HealthPreset::Seaweedfs => "seaweedfs",
            HealthPreset::Minio => "minio",
            HealthPreset::Objectscale => "objectscale",
        }
    }
}

impl fmt::Display for HealthPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl ProbeMethod ===

impl ProbeMethod {
    /// The method token for the request line.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProbeMethod::Get => "GET",
            ProbeMethod::Head => "HEAD",
        }
    }
}

impl fmt::Display for ProbeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl ExpectStatus ===

impl ExpectStatus {
    /// Whether a probe answer with `status` counts as alive.
    pub const fn matches(self, status: u16) -> bool {
        match self {
            ExpectStatus::Any => true,
            ExpectStatus::Class(class) => status / 100 == class,
            ExpectStatus::Exact(expected) => status == expected,
        }
    }

    /// Reads the config spelling: a status code (`200` or `"200"`), a class (`"2xx"`) or
    /// `"any"`; `None` for anything else.
    pub fn parse(text: &str) -> Option<ExpectStatus> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("any") {
            return Some(ExpectStatus::Any);
        }
        let bytes = text.as_bytes();
        match bytes {
            [class @ b'1'..=b'5', x, y]
                if x.eq_ignore_ascii_case(&b'x') && y.eq_ignore_ascii_case(&b'x') =>
            {
                Some(ExpectStatus::Class(u16::from(class - b'0')))
            }
            _ => text
                .parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .map(ExpectStatus::Exact),
        }
    }
}

impl fmt::Display for ExpectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectStatus::Any => f.write_str("any"),
            ExpectStatus::Class(class) => write!(f, "{class}xx"),
            ExpectStatus::Exact(status) => write!(f, "{status}"),
        }
    }
}

// === impl HealthParams ===

impl HealthParams {
    /// The parameters of `preset` with every other key at its default.
    pub fn from_preset(preset: HealthPreset) -> Self {
        let probe = preset.probe();
        HealthParams {
            preset,
            method: probe.method,
            path: probe.path.to_owned(),
            expect_status: probe.expect_status,
            body_match: None,
            drain_match: probe.drain_match.map(str::to_owned),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            passive_fall: 5,
            degraded_latency: None,
            slow_start: Duration::from_secs(10),
        }
    }

    /// Judges a probe answer: maintenance text first (a node in maintenance may answer
    /// 503, and must drain rather than count as dead), then the status, then the body
    /// match. `body` is the prefix the prober read (up to [`PROBE_BODY_BYTES_MAX`]).
    /// Transport failures (refused, timed out, malformed) never get here: the prober
    /// reports them as [`ProbeResult::Dead`] itself.
    pub fn classify(&self, status: u16, body: &[u8]) -> ProbeResult {
        if let Some(drain) = &self.drain_match {
            if contains(body, drain.as_bytes()) {
                return ProbeResult::Maintenance;
            }
        }
        if !self.expect_status.matches(status) {
            return ProbeResult::Dead(format!(
                "probe answered {status}, expected {}",
                self.expect_status
            ));
        }
        if let Some(needle) = &self.body_match {
            if !contains(body, needle.as_bytes()) {
                return ProbeResult::Dead(format!("probe answer lacks {needle:?}"));
            }
        }
        ProbeResult::Alive
    }
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams::from_preset(HealthPreset::Generic)
    }
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
