//! Runtime node control: what an operator set on a node through the admin API (drain,
//! disable, enable, weight) and what it means for routing next to the node's health
//! (docs/operations.md, "Runtime control").
//!
//! The override never touches the health state machine: probes go on, `/nodes` shows
//! both, and a drained node is not a failed one. Routing reads the two together through
//! [`routing_state`] and [`balancing_weight`].

use std::net::SocketAddr;

use super::NodeState;

/// Weight of a node nobody set one for; a percentage is of this weight.
pub const WEIGHT_DEFAULT: u16 = 100;
/// Highest weight an operator may set.
pub const WEIGHT_MAX: u16 = 256;
/// Longest query the control endpoints take (a pool name, an address, a value).
pub const QUERY_BYTES_MAX: usize = 512;

/// What an operator set a node to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// As health says.
    Enabled,
    /// No new requests; requests in flight finish.
    Drain,
    /// Maintenance: no new requests, and the idle connections weir holds to it when it
    /// is disabled are closed; requests in flight still finish (a transfer is never cut
    /// by an operator's click).
    Disabled,
}

impl AdminState {
    /// Every state, in metric label order.
    pub const ALL: [AdminState; 3] = [AdminState::Enabled, AdminState::Drain, AdminState::Disabled];

    /// The lowercase name used in `/nodes` and as a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Drain => "drain",
            AdminState::Disabled => "disabled",
        }
    }
}

/// A node's override: its admin state and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// Drain, disable or as health says.
    pub state: AdminState,
    /// 0..=[`WEIGHT_MAX`]; relative to the pool's other nodes; 0 takes no new requests.
    pub weight: u16,
}

impl Default for Override {
    fn default() -> Override {
        Override {
            state: AdminState::Enabled,
            weight: WEIGHT_DEFAULT,
        }
    }
}

impl Override {
    /// The override after `change`: a state change keeps the weight and a weight change
    /// keeps the state, so `enable` after `weight=0` still takes no new requests.
    pub fn apply(self, change: Change) -> Override {
        match change {
            Change::State(state) => Override { state, ..self },
            Change::Weight(weight) => Override { weight, ..self },
        }
    }

    /// Whether the override lets the node take new requests (health permitting).
    pub const fn admits_new(&self) -> bool {
        matches!(self.state, AdminState::Enabled) && self.weight > 0
    }
}

/// One change an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Set the admin state.
    State(AdminState),
    /// Set the weight.
    Weight(u16),
}

/// Which control endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /nodes/drain`.
    Drain,
    /// `POST /nodes/disable`.
    Disable,
    /// `POST /nodes/enable`.
    Enable,
    /// `POST /nodes/weight` (takes `weight`).
    Weight,
}

/// A parsed control request: which node, what change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Pool name, as `/nodes` shows it.
    pub pool: String,
    /// Node address, as `/nodes` shows it.
    pub node: SocketAddr,
    /// What to set.
    pub change: Change,
}

/// Why a control request was refused (answered 400, the message naming the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The query is longer than [`QUERY_BYTES_MAX`].
    #[error("the query is longer than {QUERY_BYTES_MAX} bytes")]
    TooLong,
    /// A required key is absent.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// A key the endpoint does not take.
    #[error("unknown key `{0}` (this endpoint takes {1})")]
    UnknownKey(String, &'static str),
    /// A key given twice.
    #[error("`{0}` given more than once")]
    Duplicate(&'static str),
    /// A value that is not valid percent-encoded UTF-8, or a pair without `=`.
    #[error("`{0}` is not a key=value pair of percent-encoded UTF-8")]
    Encoding(String),
    /// `node` is not an address (`ip:port`, IPv6 in brackets).
    #[error("`node` {0:?} is not an ip:port address as /nodes shows it")]
    Node(String),
    /// `weight` out of range or not a number.
    #[error("`weight` {0:?} is not 0..=256 or a percentage 0%..=256%")]
    Weight(String),
}

/// Parses the query of a control endpoint: `pool=<name>&node=<ip:port>`, plus
/// `weight=<0..=256 | N%>` for [`Action::Weight`]. Strict: every key once, no other key,
/// values percent-encoded.
pub fn parse_command(action: Action, query: Option<&str>) -> Result<Command, ControlError> {
    let query = query.unwrap_or("");
    if query.len() > QUERY_BYTES_MAX {
        return Err(ControlError::TooLong);
    }
    let takes = match action {
        Action::Weight => "pool, node, weight",
        _ => "pool, node",
    };
    let (mut pool, mut node, mut weight) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ControlError::Encoding(pair.to_string()));
        };
        let value = crate::percent::decode(value.as_bytes())
            .and_then(|v| String::from_utf8(v.into_owned()).ok())
            .ok_or_else(|| ControlError::Encoding(pair.to_string()))?;
        let (slot, name) = match key {
            "pool" => (&mut pool, "pool"),
            "node" => (&mut node, "node"),
            "weight" if action == Action::Weight => (&mut weight, "weight"),
            other => return Err(ControlError::UnknownKey(other.to_string(), takes)),
        };
        if slot.replace(value).is_some() {
            return Err(ControlError::Duplicate(name));
        }
    }
    let pool = pool.ok_or(ControlError::Missing("pool"))?;
    let node = node.ok_or(ControlError::Missing("node"))?;
    let node = node.parse().map_err(|_| ControlError::Node(node))?;
    let change = match action {
        Action::Drain => Change::State(AdminState::Drain),
        Action::Disable => Change::State(AdminState::Disabled),
        Action::Enable => Change::State(AdminState::Enabled),
        Action::Weight => Change::Weight(parse_weight(
            &weight.ok_or(ControlError::Missing("weight"))?,
        )?),
    };
    Ok(Command { pool, node, change })
}

/// A weight as an operator writes it: `0..=256`, or `N%` of [`WEIGHT_DEFAULT`] (the
/// same number, as the default is 100). Digits only: no sign, no space, no fraction.
pub fn parse_weight(text: &str) -> Result<u16, ControlError> {
    let bad = || ControlError::Weight(text.to_string());
    let digits = text.strip_suffix('%').unwrap_or(text);
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u32 = digits.parse().map_err(|_| bad())?;
    let weight = if text.ends_with('%') {
        n * u32::from(WEIGHT_DEFAULT) / 100
    } else {
        n
    };
    u16::try_from(weight)
        .ok()
        .filter(|w| *w <= WEIGHT_MAX)
        .ok_or_else(bad)
}

/// The state the balancer sees: health's, unless the override keeps new requests away
/// (then `Draining`, which no pick takes and no pool counts as up).
pub fn routing_state(health: NodeState, admin: Override) -> NodeState {
    if admin.admits_new() {
        health
    } else {
        NodeState::Draining
    }
}

/// The weight the balancer sees: slow start's ramp times the node's share of the
/// heaviest weight among the pool's nodes that take requests (`pool_max`), so weights
/// are relative within a pool and the heaviest node is at full weight.
pub fn balancing_weight(slow_start: f64, weight: u16, pool_max: u16) -> f64 {
    if pool_max == 0 {
        return 0.0;
    }
    slow_start * f64::from(weight.min(pool_max)) / f64::from(pool_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(action: Action, query: &str) -> Result<Command, ControlError> {
        parse_command(action, Some(query))
    }

    #[test]
    fn parses_pool_node_and_weight() {
        let c = cmd(
            Action::Weight,
            "pool=hot&node=127.0.0.1%3A9000&weight=50%25",
        )
        .unwrap();
        assert_eq!(c.pool, "hot");
        assert_eq!(c.node, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.change, Change::Weight(50));
        let c = cmd(Action::Drain, "node=[::1]:9000&pool=a%20b").unwrap();
        assert_eq!(c.pool, "a b");
        assert_eq!(c.node, "[::1]:9000".parse().unwrap());
        assert_eq!(c.change, Change::State(AdminState::Drain));
        assert_eq!(
            cmd(Action::Enable, "pool=p&node=10.0.0.1:80")
                .unwrap()
                .change,
            Change::State(AdminState::Enabled)
        );
        assert_eq!(
            cmd(Action::Disable, "pool=p&node=10.0.0.1:80")
                .unwrap()
                .change,
            Change::State(AdminState::Disabled)
        );
    }

    #[test]
    fn refuses_anything_loose() {
        use ControlError::*;
        assert_eq!(parse_command(Action::Drain, None), Err(Missing("pool")));
        assert_eq!(cmd(Action::Drain, "pool=p"), Err(Missing("node")));
        assert_eq!(
            cmd(Action::Weight, "pool=p&node=1.2.3.4:5"),
            Err(Missing("weight"))
        );
        assert!(
            matches!(cmd(Action::Drain, "pool=p&node=1.2.3.4:5&weight=3"), Err(UnknownKey(k, _)) if k == "weight")
        );
        assert!(matches!(
            cmd(Action::Drain, "pool=p&node=1.2.3.4:5&x=1"),
            Err(UnknownKey(..))
        ));
        assert_eq!(
            cmd(Action::Drain, "pool=p&pool=q&node=1.2.3.4:5"),
            Err(Duplicate("pool"))
        );
        assert!(matches!(
            cmd(Action::Drain, "pool&node=1.2.3.4:5"),
            Err(Encoding(_))
        ));
        assert!(matches!(
            cmd(Action::Drain, "pool=%zz&node=1.2.3.4:5"),
            Err(Encoding(_))
        ));
        assert!(matches!(
            cmd(Action::Drain, "pool=%ff&node=1.2.3.4:5"),
            Err(Encoding(_))
        ));
        assert!(matches!(
            cmd(Action::Drain, "pool=p&node=host:80"),
            Err(Node(_))
        ));
        assert!(matches!(
            cmd(Action::Drain, "pool=p&node=1.2.3.4"),
            Err(Node(_))
        ));
        let long = format!("pool={}&node=1.2.3.4:5", "p".repeat(QUERY_BYTES_MAX));
        assert_eq!(cmd(Action::Drain, &long), Err(TooLong));
    }

    #[test]
    fn weights_are_0_to_256_or_percent() {
        assert_eq!(parse_weight("0"), Ok(0));
        assert_eq!(parse_weight("256"), Ok(256));
        assert_eq!(parse_weight("1"), Ok(1));
        assert_eq!(parse_weight("25%"), Ok(25));
        assert_eq!(parse_weight("256%"), Ok(256));
        for bad in [
            "257",
            "257%",
            "-1",
            "+1",
            " 1",
            "1.5",
            "",
            "%",
            "1e2",
            "0x10",
            "1000",
            "99999999999",
        ] {
            assert!(parse_weight(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn override_keeps_the_other_half() {
        let o = Override::default().apply(Change::Weight(0));
        assert!(!o.admits_new());
        let o = o.apply(Change::State(AdminState::Enabled));
        assert_eq!(o.weight, 0, "enable keeps the weight");
        assert!(!o.admits_new());
        let o = o
            .apply(Change::Weight(3))
            .apply(Change::State(AdminState::Drain));
        assert_eq!(o.weight, 3);
        assert!(!o.admits_new());
        assert!(o.apply(Change::State(AdminState::Enabled)).admits_new());
    }

    #[test]
    fn routing_state_hides_drained_and_disabled_nodes_only() {
        let set = |state| Override {
            state,
            weight: WEIGHT_DEFAULT,
        };
        for health in [
            NodeState::Up,
            NodeState::Degraded,
            NodeState::Down,
            NodeState::Draining,
        ] {
            assert_eq!(routing_state(health, Override::default()), health);
            assert_eq!(
                routing_state(health, set(AdminState::Drain)),
                NodeState::Draining
            );
            assert_eq!(
                routing_state(health, set(AdminState::Disabled)),
                NodeState::Draining
            );
            let zero = Override {
                weight: 0,
                ..Override::default()
            };
            assert_eq!(routing_state(health, zero), NodeState::Draining);
        }
        // Health's own verdict is never made better by an override.
        assert_eq!(
            routing_state(NodeState::Down, set(AdminState::Enabled)),
            NodeState::Down
        );
    }

    #[test]
    fn weights_are_relative_to_the_pool_heaviest() {
        assert_eq!(balancing_weight(1.0, 100, 100), 1.0);
        assert!((balancing_weight(1.0, 1, 3) - 1.0 / 3.0).abs() < 1e-12);
        assert!((balancing_weight(0.5, 128, 256) - 0.25).abs() < 1e-12);
        assert_eq!(balancing_weight(1.0, 0, 0), 0.0);
        assert_eq!(balancing_weight(1.0, 5, 3), 1.0, "never above full weight");
    }
}
