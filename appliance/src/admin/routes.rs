//! The control endpoints: one table of (method, path, who may call it, body limit,
//! handler), and the handlers. What each endpoint answers is documented in
//! docs/metrics.md and docs/operations.md.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::task::{Poll, Waker};

use weir_io::http::{reason_phrase, Method, RequestHead};
use weir_policy::health::admin::{parse_command, Action};

use crate::bus::{Msg, SetBy};
use crate::metrics;

use super::cores::{ask, collect};
use super::{status, Listener, Role, Slot};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone who reaches the port (past the admin token, where one is set).
    Anyone,
    /// The metrics port only; the admin port does not have it (404).
    MetricsPort,
    /// The admin port, or loopback clients of the metrics port: answers that name
    /// clients, buckets and keys.
    Operator,
    /// The admin port, or loopback clients of the metrics port when no admin port is
    /// configured: what changes weir.
    Control,
}

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handler {
    /// Prometheus text: counters, per-node gauges, the cores' labeled statistics.
    Metrics,
    /// `ok` while the process runs.
    Healthz,
    /// 200 when some pool has a routable node, else 503.
    Readyz,
    /// The nodes as JSON.
    Nodes,
    /// The live transfers as JSON.
    Flows,
    /// Re-reads the config file.
    Reload,
    /// Runtime node control: drain, disable, enable a node or set its weight.
    Control(Action),
    /// The status page (`super::status`).
    Page,
    /// The status page's script.
    Script,
    /// The status page's style sheet.
    Style,
    /// What the status page shows, as JSON.
    Status,
    /// Each core's running config epoch and values, as JSON.
    Config,
}

/// One endpoint.
pub(super) struct Route {
    method: Method,
    path: &'static str,
    access: Access,
    /// Largest request body taken (with `Content-Length`); 0 = none.
    pub(super) body_max: usize,
    handler: Handler,
}

/// Every control endpoint. HEAD is answered wherever GET is.
pub(super) const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/metrics",
        access: Access::MetricsPort,
        body_max: 0,
        handler: Handler::Metrics,
    },
    Route {
        method: Method::Get,
        path: "/healthz",
        access: Access::Anyone,
        body_max: 0,
        handler: Handler::Healthz,
    },
    Route {
        method: Method::Get,
        path: "/readyz",
        access: Access::Anyone,
        body_max: 0,
        handler: Handler::Readyz,
    },
    Route {
        method: Method::Get,
        path: "/nodes",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Nodes,
    },
    Route {
        method: Method::Get,
        path: "/flows",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Flows,
    },
    Route {
        method: Method::Get,
        path: "/",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Page,
    },
    Route {
        method: Method::Get,
        path: "/status.js",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Script,
    },
    Route {
        method: Method::Get,
        path: "/status.css",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Style,
    },
    Route {
        method: Method::Get,
        path: "/status.json",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Status,
    },
    Route {
        method: Method::Post,
        path: "/reload",
        access: Access::Control,
        body_max: 0,
        handler: Handler::Reload,
    },
    Route {
        method: Method::Post,
        path: "/nodes/drain",
        access: Access::Control,
        body_max: 0,
        handler: Handler::Control(Action::Drain),
    },
    Route {
        method: Method::Post,
        path: "/nodes/disable",
        access: Access::Control,
        body_max: 0,
        handler: Handler::Control(Action::Disable),
    },
    Route {
        method: Method::Post,
        path: "/nodes/enable",
        access: Access::Control,
        body_max: 0,
        handler: Handler::Control(Action::Enable),
    },
    Route {
        method: Method::Post,
        path: "/nodes/weight",
        access: Access::Control,
        body_max: 0,
        handler: Handler::Control(Action::Weight),
    },
    Route {
        method: Method::Get,
        path: "/config",
        access: Access::Operator,
        body_max: 0,
        handler: Handler::Config,
    },
];

/// A request whose head passed the token check.
pub(super) struct Request {
    /// The parsed head.
    pub(super) head: RequestHead,
    /// The client is on this machine (IPv4-mapped loopback included).
    pub(super) loopback: bool,
    /// The client's address (who set a node's override).
    pub(super) peer: std::net::IpAddr,
    /// The body, read only once the route took it.
    pub(super) body: Vec<u8>,
}

/// An answer: status, content type, body, extra header fields.
pub(super) struct Answer {
    pub(super) status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    /// A `text/plain` answer: `message` and a newline.
    pub(super) fn text(status: u16, message: &str) -> Answer {
        Answer::new(status, "text/plain", format!("{message}\n"))
    }

    fn new(status: u16, content_type: &'static str, body: String) -> Answer {
        Answer {
            status,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// One of the status page's embedded files, with headers that keep a browser from
    /// running anything but it: no inline script, no other origin, no framing.
    fn asset(content_type: &'static str, body: &str) -> Answer {
        Answer::new(200, content_type, body.to_string())
            .header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
                    .into(),
            )
            .header("X-Content-Type-Options", "nosniff".into())
            .header("X-Frame-Options", "DENY".into())
            .header("Referrer-Policy", "no-referrer".into())
    }

    /// Adds a header field.
    pub(super) fn header(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }

    /// The response bytes; `Content-Length` is the body's even when `head_only` leaves it
    /// out (the answer to HEAD).
    pub(super) fn to_bytes(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        let reason = match self.status {
            401 => "Unauthorized",
            s => reason_phrase(s),
        };
        let _ = write!(
            head,
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The route for `request` on a listener of `role`, or the answer that refuses it
/// (404, 405 with `Allow`, 403).
pub(super) fn find(role: &Role, request: &Request) -> Result<&'static Route, Answer> {
    let path = request.head.path();
    let method = match request.head.method {
        Method::Head => Method::Get,
        m => m,
    };
    let here = |r: &&Route| r.path == path && !(r.access == Access::MetricsPort && role.is_admin());
    if !ROUTES.iter().any(|r| here(&r)) {
        return Err(Answer::text(404, "not found"));
    }
    let Some(route) = ROUTES.iter().filter(here).find(|r| r.method == method) else {
        let mut allow: Vec<&str> = Vec::new();
        for r in ROUTES.iter().filter(here) {
            allow.push(r.method.as_str());
            if r.method == Method::Get {
                allow.push("HEAD");
            }
        }
        return Err(
            Answer::text(405, &format!("{path} takes {}", allow.join(", ")))
                .header("Allow", allow.join(", ")),
        );
    };
    let allowed = match route.access {
        Access::Anyone | Access::MetricsPort => true,
        Access::Operator => role.is_admin() || request.loopback,
        Access::Control => match role {
            Role::Admin { .. } => true,
            Role::Metrics { reload } => *reload && request.loopback,
        },
    };
    // Without a token the operator routes trust the network path (loopback, or a tunnel
    // to it); a page that rebinds its own DNS name to this address (DNS rebinding) would
    // then be "same origin" and could read or change everything. Its requests carry its
    // name in `Host`, so such requests must name this port by address or `localhost`.
    let operator = matches!(route.access, Access::Operator | Access::Control);
    if allowed && operator && role.token().is_none() && !local_host(&request.head) {
        return Err(Answer::text(
            403,
            &format!("{path}: without an admin token, name this port by address or localhost"),
        ));
    }
    // A form on another site's page can POST here without a preflight.
    if allowed && route.handler == Handler::Reload && !same_origin(&request.head) {
        return Err(Answer::text(
            403,
            "/reload from another origin's page is refused",
        ));
    }
    if allowed {
        return Ok(route);
    }
    Err(match route.access {
        Access::Control => Answer::text(
            403,
            &format!("{path}: use the admin port (or loopback when none is configured)"),
        ),
        _ => Answer::text(
            403,
            &format!("{path}: use the admin port (or loopback on the metrics port)"),
        ),
    })
}

/// One answer at a time that asks the cores and renders their replies, per listener: the
/// cores' share of a scrape (snapshots of their statistics) then costs them no more than
/// with one connection at a time, however many clients scrape at once. Other connections
/// keep being read and answered meanwhile. Single-threaded, like its executor.
pub(super) struct CoreGate {
    busy: Cell<bool>,
    /// Tasks waiting for the gate; all are woken when it opens (at most a few dozen), so
    /// a waiter that went away (evicted, timed out) cannot swallow the wake-up.
    waiting: RefCell<Vec<Waker>>,
}

/// Holds the [`CoreGate`] until dropped.
struct Permit<'a>(&'a CoreGate);

impl CoreGate {
    /// An open gate.
    pub(super) fn new() -> CoreGate {
        CoreGate {
            busy: Cell::new(false),
            waiting: RefCell::new(Vec::new()),
        }
    }

    /// Waits for the gate.
    async fn enter(&self) -> Permit<'_> {
        std::future::poll_fn(|cx| {
            if self.busy.get() {
                let mut waiting = self.waiting.borrow_mut();
                if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    waiting.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            self.busy.set(true);
            Poll::Ready(())
        })
        .await;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
        let waiting = std::mem::take(&mut *self.0.waiting.borrow_mut());
        for waker in waiting {
            waker.wake();
        }
    }
}

/// Computes the answer to an allowed request. The connection stays evictable while it
/// waits for its turn at the [`CoreGate`], and is not while its answer is computed.
pub(super) async fn handle(
    listener: &Listener,
    slot: &Slot,
    route: &Route,
    request: &Request,
) -> Answer {
    let _ = &request.body; // no route takes a body yet
    let plane = &listener.plane;
    if route.handler == Handler::Status {
        // Polls share one round of questions per refresh (`super::status`): only a
        // stale model takes a turn at the gate.
        let query = status::Query::parse(request.head.query());
        let body = match status::fresh_answer(&listener.status, &query) {
            Some(body) => {
                slot.work();
                body
            }
            None => {
                let _permit = listener.cores.enter().await;
                slot.work();
                status::refresh_answer(
                    &listener.status,
                    &plane.bus,
                    &plane.registry,
                    &plane.reloader,
                    &query,
                )
                .await
            }
        };
        return Answer::new(200, "application/json", body)
            .header("X-Content-Type-Options", "nosniff".into());
    }
    if let Handler::Control(action) = route.handler {
        let _permit = listener.cores.enter().await;
        slot.work();
        return control(listener, action, request).await;
    }
    let _permit = match route.handler {
        Handler::Healthz
        | Handler::Control(_)
        | Handler::Reload
        | Handler::Page
        | Handler::Script
        | Handler::Style
        | Handler::Status => None,
        Handler::Metrics | Handler::Readyz | Handler::Nodes | Handler::Flows | Handler::Config => {
            Some(listener.cores.enter().await)
        }
    };
    slot.work();
    match route.handler {
        Handler::Metrics => {
            let nodes = ask(&plane.bus, Msg::QueryNodes);
            let stats = ask(&plane.bus, Msg::QueryStats);
            let nodes = metrics::merge_nodes(collect(nodes).await);
            let stats = collect(stats).await;
            let mut body = plane.registry.render();
            metrics::render_nodes(&mut body, &nodes);
            crate::stats::render(stats, &mut body);
            Answer::new(200, "text/plain; version=0.0.4", body)
        }
        Handler::Healthz => Answer::text(200, "ok"),
        Handler::Page => Answer::asset("text/html; charset=utf-8", status::INDEX_HTML),
        Handler::Script => Answer::asset("text/javascript; charset=utf-8", status::STATUS_JS),
        Handler::Style => Answer::asset("text/css; charset=utf-8", status::STATUS_CSS),
        Handler::Status | Handler::Control(_) => unreachable!("answered above"),
        // Stopping: balancers must see it before the data port closes.
        Handler::Readyz if crate::signals::stopping() => Answer::text(503, "stopping"),
        Handler::Readyz => {
            let nodes = metrics::merge_nodes(collect(ask(&plane.bus, Msg::QueryNodes)).await);
            if nodes.iter().any(metrics::NodeSummary::is_routable) {
                Answer::text(200, "ready")
            } else {
                Answer::text(503, "no pool has a routable node")
            }
        }
        Handler::Nodes => {
            let nodes = metrics::merge_nodes(collect(ask(&plane.bus, Msg::QueryNodes)).await);
            Answer::new(200, "application/json", metrics::nodes_json(&nodes))
        }
        Handler::Flows => {
            let flows = collect(ask(&plane.bus, Msg::QueryFlows)).await;
            Answer::new(200, "application/json", metrics::flows_json(flows))
        }
        Handler::Config => {
            let cores = collect(ask(&plane.bus, Msg::QueryConfig)).await;
            let epoch = plane.reloader.current().map(|(epoch, _)| epoch);
            Answer::new(200, "application/json", config_json(epoch, &cores))
        }
        Handler::Reload => {
            let reloader = plane.reloader.clone();
            match listener.worker.run(move || reloader.reload()).await {
                Some(Ok(msg)) => Answer::text(200, &msg),
                Some(Err(why)) => Answer::text(400, &format!("reload rejected: {why}")),
                None => Answer::text(503, "busy with earlier reloads; try again")
                    .header("Retry-After", "1".into()),
            }
        }
    }
}

/// Whether `Host` names this port by an IP address or `localhost` (or is absent, as an
/// HTTP/1.0 client may leave it; browsers always send it).
fn local_host(head: &RequestHead) -> bool {
    let Some(host) = head.host() else {
        return true;
    };
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .split(']')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether a request is not from another site's page: a browser names the page's origin
/// in `Origin` on every cross-origin POST (a form too, which needs no preflight), so a
/// page elsewhere cannot click an operator's buttons for them when no token is set.
/// Clients that are not browsers send no `Origin`.
fn same_origin(head: &RequestHead) -> bool {
    let Some(origin) = head.header("origin") else {
        return true;
    };
    let host = head.host().unwrap_or("");
    let origin = std::str::from_utf8(origin).unwrap_or("");
    ["http://", "https://"]
        .iter()
        .any(|scheme| origin.strip_prefix(scheme) == Some(host))
}

/// A JSON error answer: `{"error": code, "message": ...}`.
fn json_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::new(
        status,
        "application/json",
        format!(
            "{{\"error\":{},\"message\":{}}}\n",
            crate::flows::json_str(code),
            crate::flows::json_str(message)
        ),
    )
}

/// Runtime node control (docs/operations.md, "Runtime control"): every core applies the
/// change to its copy of the node and answers with its view, merged into the answer. A
/// core that did not answer in time is named in a 503, and the call is safe to repeat.
async fn control(listener: &Listener, action: Action, request: &Request) -> Answer {
    if !same_origin(&request.head) {
        return json_error(
            403,
            "cross_origin",
            "node control from another origin's page is refused (a browser sent an Origin \
             that is not this port's)",
        );
    }
    let command = match parse_command(action, request.head.query()) {
        Ok(c) => c,
        Err(e) => return json_error(400, "bad_request", &e.to_string()),
    };
    let bus = &listener.plane.bus;
    let by = SetBy {
        client: request.peer,
        token: listener.role.token().is_some(),
        at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    let pool: std::sync::Arc<str> = std::sync::Arc::from(command.pool.as_str());
    let replies = ask(bus, |reply| Msg::Admin {
        pool: pool.clone(),
        addr: command.node,
        change: command.change,
        by: by.clone(),
        reply,
    });
    let replies = collect(replies).await;
    let answered = replies.len();
    let reports: Vec<_> = replies.into_iter().flatten().collect();
    if answered == bus.cores() && reports.is_empty() {
        return json_error(
            404,
            "unknown_node",
            &format!(
                "no node {} in pool {:?} (GET /nodes names them)",
                command.node, command.pool
            ),
        );
    }
    if answered < bus.cores() {
        return json_error(
            503,
            "incomplete",
            &format!(
                "{answered} of {} cores applied the change in time; repeat the call",
                bus.cores()
            ),
        )
        .header("Retry-After", "1".into());
    }
    let nodes = metrics::merge_nodes(vec![reports]);
    let body = metrics::nodes_json(&nodes);
    // `nodes_json` gives a list; the answer is its one node.
    let one = body
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim();
    Answer::new(200, "application/json", format!("{one}\n"))
}

/// `GET /config`: the coordinator's epoch (absent while a reload runs) and, per core that
/// answered, the epoch it serves and that epoch's config (docs/operations.md, "Reloading").
fn config_json(epoch: Option<u64>, cores: &[crate::bus::ConfigReport]) -> String {
    let cores: Vec<String> = cores
        .iter()
        .map(|c| {
            let config = crate::flows::json_str(&c.config);
            format!(
                r#"{{"core":{},"epoch":{},"config":{config}}}"#,
                c.core, c.epoch
            )
        })
        .collect();
    let epoch = epoch.map_or_else(|| "null".to_owned(), |e| e.to_string());
    format!(r#"{{"epoch":{epoch},"cores":[{}]}}"#, cores.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_io::http::{parse_request, HeadLimits};

    fn request(method: &str, path: &str, loopback: bool) -> Request {
        let text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let Ok(Some((head, _))) = parse_request(text.as_bytes(), &HeadLimits::default()) else {
            panic!("{text:?} does not parse");
        };
        Request {
            head,
            loopback,
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
            body: Vec::new(),
        }
    }

    /// The status `find` answers with (200 when a route was found and allowed).
    fn status(role: &Role, method: &str, path: &str, loopback: bool) -> u16 {
        match find(role, &request(method, path, loopback)) {
            Ok(_) => 200,
            Err(answer) => answer.status,
        }
    }

    #[test]
    fn control_refuses_another_origins_page() {
        let with = |origin: &str| {
            let text = format!("POST /nodes/drain HTTP/1.1\r\nHost: 127.0.0.1:9\r\n{origin}\r\n");
            let Ok(Some((head, _))) = parse_request(text.as_bytes(), &HeadLimits::default()) else {
                panic!("{text:?} does not parse");
            };
            head
        };
        assert!(same_origin(&with("")), "curl sends no Origin");
        for (host, local) in [
            ("127.0.0.1:9091", true),
            ("localhost:9091", true),
            ("LOCALHOST", true),
            ("[::1]:9091", true),
            ("10.0.0.7", true),
            ("evil.example:9091", false),
            ("127.0.0.1.evil.example", false),
            ("localhost.evil.example:80", false),
        ] {
            let text = format!("GET /nodes HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let Ok(Some((h, _))) = parse_request(text.as_bytes(), &HeadLimits::default()) else {
                panic!("{text:?} does not parse");
            };
            assert_eq!(local_host(&h), local, "{host}");
        }
        assert!(same_origin(&with("Origin: http://127.0.0.1:9\r\n")));
        assert!(same_origin(&with("Origin: https://127.0.0.1:9\r\n")));
        assert!(!same_origin(&with("Origin: http://evil.example\r\n")));
        assert!(!same_origin(&with("Origin: null\r\n")));
        assert!(!same_origin(&with("Origin: http://127.0.0.1:9.evil\r\n")));
    }

    #[test]
    fn metrics_port_gives_strangers_only_metrics_and_probes() {
        let metrics = Role::Metrics { reload: true };
        for path in ["/metrics", "/healthz", "/readyz", "/metrics?x=1"] {
            assert_eq!(status(&metrics, "GET", path, false), 200, "{path}");
            assert_eq!(status(&metrics, "HEAD", path, false), 200, "HEAD {path}");
        }
        for (method, path) in [("GET", "/nodes"), ("GET", "/flows"), ("POST", "/reload")] {
            assert_eq!(
                status(&metrics, method, path, false),
                403,
                "{path} from outside"
            );
            assert_eq!(
                status(&metrics, method, path, true),
                200,
                "{path} from loopback"
            );
        }
        // With an admin port, reloads go there, even from loopback.
        let no_reload = Role::Metrics { reload: false };
        assert_eq!(status(&no_reload, "POST", "/reload", true), 403);
        assert_eq!(status(&metrics, "GET", "/nope", false), 404);
        // The status page names clients and keys: loopback only on this port.
        for path in ["/", "/status.js", "/status.css", "/status.json?offset=50"] {
            assert_eq!(status(&metrics, "GET", path, false), 403, "{path}");
            assert_eq!(status(&metrics, "GET", path, true), 200, "{path}");
        }
        assert_eq!(status(&metrics, "PUT", "/metrics", false), 405);
        assert_eq!(status(&metrics, "GET", "/reload", true), 405);
    }

    #[test]
    fn admin_port_serves_everything_but_metrics() {
        let admin = Role::Admin { token: None };
        for (method, path) in [
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/nodes"),
            ("GET", "/flows"),
            ("POST", "/reload"),
            ("GET", "/"),
            ("HEAD", "/"),
            ("GET", "/status.js"),
            ("GET", "/status.css"),
            ("GET", "/status.json"),
        ] {
            assert_eq!(status(&admin, method, path, false), 200, "{path}");
        }
        assert_eq!(status(&admin, "GET", "/metrics", false), 404);
    }

    #[test]
    fn wrong_method_names_the_allowed_ones() {
        let metrics = Role::Metrics { reload: true };
        let Err(answer) = find(&metrics, &request("DELETE", "/healthz", true)) else {
            panic!("DELETE /healthz was routed");
        };
        assert_eq!(answer.status, 405);
        assert_eq!(answer.headers, [("Allow", "GET, HEAD".to_string())]);
        let Err(answer) = find(&metrics, &request("GET", "/reload", true)) else {
            panic!("GET /reload was routed");
        };
        assert_eq!(answer.headers, [("Allow", "POST".to_string())]);
    }

    #[test]
    fn head_answer_has_the_length_but_no_body() {
        let answer = Answer::text(200, "ok");
        let full = String::from_utf8(answer.to_bytes(false, true)).unwrap();
        let head = String::from_utf8(answer.to_bytes(true, false)).unwrap();
        assert!(full.ends_with("Content-Length: 3\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\nok\n"), "{full:?}");
        assert!(
            head.ends_with(
                "Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            ),
            "{head:?}"
        );
    }
}
