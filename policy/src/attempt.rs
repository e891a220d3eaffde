//! One client request's attempts, as a pure machine (docs/design.md, "Failure is a normal
//! state"): what each attempt on a node came to goes in ([`Outcome`]), what to do next
//! comes out ([`Decision`]), with what node health must hear ([`Step::reports`]) and what
//! the node's and the pool+bucket's AIMD limits learn ([`Step::limit`]).
//!
//! Driven by the appliance's request pipeline (`appliance/src/proxy/dispatch.rs`) and by
//! the seeded simulation (`policy/tests/sim.rs`), so the simulation exercises the
//! decisions that run.
//! The driver does the I/O and the waiting: it picks a node the request has not tried
//! ([`Attempts::tried`]), calls [`Attempts::start`], sends, and hands the outcome to
//! [`Attempts::on_outcome`]; when no node can be picked it asks [`Attempts::on_no_node`].
//! A GET whose body breaks off goes through [`Attempts::on_body_cut`] and
//! [`Attempts::on_resume`]. Time, randomness and the retry budget come in as [`Env`].
//!
//! The rules, in the order they are asked: a node's answer is read by its status and S3
//! error code (`crate::s3code`, one table); throttling is backpressure (AIMD decrease,
//! jittered backoff, another node or weir's `SlowDown`); a failure answer (5xx, or a
//! failure code) is retried on another node when the whole answer is held and the request
//! may be replayed, else relayed; a failure before any answer is retried when
//! `crate::retry` and the request's blame record (`crate::health::Blame`) allow it and the
//! budget has room; otherwise weir answers with its own S3 error.

use std::time::{Duration, Instant};

use crate::aimd::backoff;
use crate::config::Upstream;
use crate::health::{classify, Blame, Observation};
use crate::retry::{may_retry, BodyState, Failure, RetryBudget};
use crate::s3code::S3Code;

/// The limits of one request's attempts, from `[upstream]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Attempts at most, the first included (`upstream.attempts_max`).
    pub attempts_max: u32,
    /// Resumes of a broken GET body at most (`upstream.resume_max`).
    pub resume_max: u32,
    /// First throttle backoff step (`upstream.throttle_backoff_base`).
    pub backoff_base: Duration,
    /// Largest throttle backoff step, and the longest weir waits before a retry
    /// (`upstream.throttle_backoff_max`).
    pub backoff_max: Duration,
}

impl Params {
    /// The limits configured in `[upstream]`.
    pub fn from_upstream(upstream: &Upstream) -> Self {
        Params {
            attempts_max: upstream.attempts_max,
            resume_max: upstream.resume_max,
            backoff_base: upstream.throttle_backoff_base,
            backoff_max: upstream.throttle_backoff_max,
        }
    }
}

/// What the machine is given for one decision: the time, a random word (for backoff
/// jitter) and the core's retry budget, which a granted retry spends.
#[derive(Debug)]
pub struct Env<'a> {
    /// Now.
    pub now: Instant,
    /// Uniform random bits.
    pub rand: u64,
    /// The core's retry budget.
    pub budget: &'a mut RetryBudget,
}

/// How an attempt failed without an answer (or how a response body broke off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The connection to the node could not be made: nothing reached it.
    Connect,
    /// The node reset or closed the connection.
    Reset,
    /// A deadline passed (first byte, or silence mid-body).
    Timeout,
    /// The node's answer was malformed.
    BadResponse,
    /// A connection reused from the idle pool closed or reset before any byte of the
    /// answer (or took no request at all): the node may have closed it while idle at
    /// that very moment, or have died; nothing says the request reached it. Tried once
    /// more on a new connection, as any HTTP client does ([`Attempts::on_outcome`]).
    Stale,
}

impl Failed {
    /// What node health sees.
    pub const fn observation(self) -> Observation {
        match self {
            Failed::Connect => Observation::ConnectFailed,
            Failed::Reset | Failed::Stale => Observation::Reset,
            Failed::Timeout => Observation::Timeout,
            Failed::BadResponse => Observation::BadResponse,
        }
    }

    /// What the retry rules see (node health's reading of the same failure).
    pub fn failure(self) -> Failure {
        match self.observation().failure() {
            Some(failure) => failure,
            None => unreachable!("every Failed is observed as a failure"),
        }
    }
}

/// A node's final response head, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The S3 error code of its body, when the driver read one (a small error body,
    /// `crate::s3code::ERROR_BODY_BYTES_MAX`).
    pub code: Option<S3Code>,
    /// The node's `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
    /// From the request being sent to the response head.
    pub latency: Duration,
    /// The driver holds the whole answer (no body, or its body read): it may be dropped
    /// for a retry, or relayed unchanged.
    pub held: bool,
    /// The node took the whole request (false when it answered mid-upload: the request
    /// cannot go again on either connection).
    pub request_complete: bool,
    /// The request body as it stands after this attempt.
    pub body: BodyState,
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The node answered with a final response head.
    Answered(Answer),
    /// The node did not answer: `how`, with the request body as it stands now
    /// ([`BodyState::Streaming`] once body bytes were pulled and are gone).
    Failed {
        /// How the attempt failed.
        how: Failed,
        /// The request body as it stands.
        body: BodyState,
    },
}

/// weir's own S3 error answer to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The S3 error code.
    pub code: S3Code,
    /// The `<Message>`.
    pub message: &'static str,
    /// `Retry-After` to send (for `SlowDown`).
    pub retry_after: Option<Duration>,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Pass the node's answer to the client (after [`Attempts::on_no_node`]: the last
    /// failure answer held, unchanged).
    Relay,
    /// Wait `wait`, then send the request to a node it has not tried.
    Retry {
        /// How long to wait first (a throttle's backoff; zero otherwise).
        wait: Duration,
    },
    /// Fetch the rest of a GET body from another node, from body byte `from` on.
    Resume {
        /// Body bytes the client already has.
        from: u64,
    },
    /// Answer the client with weir's own S3 error.
    GiveUp(Refusal),
    /// The response already started and cannot be completed: reset the client
    /// connection (never a short body presented as whole).
    Abort,
}

/// What an AIMD limit learns from an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// An answer without throttling: grow.
    Success,
    /// A throttled answer: shrink.
    Throttle,
}

/// One decision and what goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<N> {
    /// What to do.
    pub decision: Decision,
    /// Observations to report to node health now, in order.
    pub reports: Vec<(N, Observation)>,
    /// What the attempted node's AIMD limit, and its pool+bucket's, learn.
    pub limit: Option<Limit>,
}

impl<N> Step<N> {
    fn only(decision: Decision) -> Self {
        Step {
            decision,
            reports: Vec::new(),
            limit: None,
        }
    }
}

/// A resume attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResumeOutcome {
    /// The node failed before a usable head.
    Failed(Failed),
    /// The node answered, but not with the bytes asked for (another ETag, range, length).
    Rejected,
    /// The node answered with the rest of the body; `latency` to its head.
    Resumed {
        /// From the resume being sent to its head.
        latency: Duration,
    },
}

const SLOW_DOWN: &str = "Please reduce your request rate.";

/// The attempts of one client request: its retry and resume state and its blame record.
#[derive(Debug, Clone)]
pub struct Attempts<N> {
    method: &'static str,
    params: Params,
    /// Attempts started so far (resumes not included).
    attempts: u32,
    /// Resumes started so far.
    resumes: u32,
    /// Resume attempts on the current resume.
    resume_tries: u32,
    tried: Vec<N>,
    blame: Blame<N>,
    /// What the last attempt came to, as far as weir's final answer depends on it.
    last: Last,
    /// A reused connection failed stale and the request was sent again: every attempt
    /// from then on goes on a new connection ([`Attempts::fresh_only`]).
    fresh_only: bool,
    /// The node to send the request to again, on a new connection, after a stale one
    /// ([`Attempts::take_again`]).
    again: Option<N>,
}

/// What the last attempt came to, for weir's answer when it stops trying: exactly one
/// of these holds after each outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Last {
    /// Nothing that shapes weir's answer (a success, or no attempt yet).
    Nothing,
    /// The node throttled; the wait to tell the client (its `Retry-After`, else the
    /// backoff).
    Throttled(Duration),
    /// The node failed without an answer.
    Failed(Failed),
    /// The node answered with a failure the driver holds whole: relayed if no other
    /// node does better.
    FailureAnswerHeld,
}

impl<N: Copy + PartialEq> Attempts<N> {
    /// A request with `method`, not yet sent anywhere. The driver has already counted it
    /// in the retry budget (`RetryBudget::on_request`).
    pub fn new(method: &'static str, params: Params) -> Self {
        Attempts {
            method,
            params,
            attempts: 0,
            resumes: 0,
            resume_tries: 0,
            tried: Vec::new(),
            blame: Blame::new(),
            last: Last::Nothing,
            fresh_only: false,
            again: None,
        }
    }

    /// The node the next attempt must go to: the one whose stale connection failed the
    /// request, tried again on a new connection. The same node, so that a request that
    /// makes nodes close on it still reaches at most two of them.
    pub fn take_again(&mut self) -> Option<N> {
        self.again.take()
    }

    /// Whether the next attempts must open new connections: a reused one already failed
    /// this request before any answer.
    pub fn fresh_only(&self) -> bool {
        self.fresh_only
    }

    /// Nodes this request already tried (never picked again for it).
    pub fn tried(&self) -> &[N] {
        &self.tried
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Resumes started so far.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Whether the request fails every node it reaches (the failures are its own).
    pub fn is_suspect(&self) -> bool {
        self.blame.is_suspect()
    }

    /// An attempt on `node` starts. Returns whether it is a retry.
    pub fn start(&mut self, node: N) -> bool {
        self.attempts += 1;
        self.tried.push(node);
        // A held answer belongs to the attempt before: the driver drops it when this
        // one answers or fails.
        if self.last == Last::FailureAnswerHeld {
            self.last = Last::Nothing;
        }
        self.attempts > 1
    }

    /// The attempt on `node` came to `outcome`: what next.
    pub fn on_outcome(&mut self, node: N, outcome: Outcome, env: Env<'_>) -> Step<N> {
        match outcome {
            Outcome::Answered(answer) => self.on_answer(node, answer, env),
            Outcome::Failed { how, body } => self.on_failed(node, how, body, env),
        }
    }

    fn on_answer(&mut self, node: N, a: Answer, env: Env<'_>) -> Step<N> {
        let obs = classify(a.status, a.code, a.retry_after, a.latency);
        let reports = self.blame.observe(node, obs).now;
        let replayable = |failure| {
            a.held
                && a.request_complete
                && self.blame.may_try_again()
                && may_retry(
                    self.method,
                    a.body,
                    failure,
                    self.attempts,
                    self.params.attempts_max,
                )
        };
        let (decision, limit) = match obs {
            Observation::Throttled { retry_after } => {
                // `attempts` counts from 1 here; the backoff counts retries from 0.
                let index = self.attempts.saturating_sub(1);
                let p = &self.params;
                let wait = backoff(p.backoff_base, p.backoff_max, index, retry_after, env.rand);
                let can = replayable(Failure::Throttled) && wait <= p.backoff_max;
                self.last = Last::Throttled(retry_after.unwrap_or(wait));
                let decision = if can && env.budget.try_retry(env.now) {
                    Decision::Retry { wait }
                } else if a.held {
                    // The node's answer (often without Retry-After) becomes weir's.
                    Decision::GiveUp(self.slow_down())
                } else {
                    Decision::Relay
                };
                (decision, Some(Limit::Throttle))
            }
            Observation::ServerError { .. } => {
                let can = replayable(Failure::ServerError);
                self.last = if a.held {
                    Last::FailureAnswerHeld
                } else {
                    Last::Nothing
                };
                let decision = if can && env.budget.try_retry(env.now) {
                    Decision::Retry {
                        wait: Duration::ZERO,
                    }
                } else {
                    Decision::Relay
                };
                (decision, None)
            }
            _ => {
                self.last = Last::Nothing;
                (Decision::Relay, Some(Limit::Success))
            }
        };
        Step {
            decision,
            reports,
            limit,
        }
    }

    fn on_failed(&mut self, node: N, how: Failed, body: BodyState, env: Env<'_>) -> Step<N> {
        let how = match how {
            // Once per request, and only where the request may be sent again at all: the
            // attempt does not count (nor is the node tried, nor the budget spent), and
            // neither health nor the blame record hears of it — a stale connection says
            // nothing about the node or the request. The next attempt, on a new
            // connection to the same node, tells.
            Failed::Stale
                if !self.fresh_only
                    && may_retry(self.method, body, Failure::ResetBeforeResponse, 0, u32::MAX) =>
            {
                self.fresh_only = true;
                self.again = Some(node);
                self.attempts -= 1;
                if self.tried.last() == Some(&node) {
                    self.tried.pop();
                }
                return Step::only(Decision::Retry {
                    wait: Duration::ZERO,
                });
            }
            Failed::Stale => Failed::Reset,
            how => how,
        };
        let reports = self.blame.observe(node, how.observation()).now;
        self.last = Last::Failed(how);
        let retry = self.blame.may_try_again()
            && may_retry(
                self.method,
                body,
                how.failure(),
                self.attempts,
                self.params.attempts_max,
            )
            && env.budget.try_retry(env.now);
        let decision = if retry {
            Decision::Retry {
                wait: Duration::ZERO,
            }
        } else {
            Decision::GiveUp(self.refusal())
        };
        Step {
            decision,
            reports,
            limit: None,
        }
    }

    /// No node can be picked for the next attempt (every node tried, down or full).
    pub fn on_no_node(&mut self) -> Decision {
        if self.last == Last::FailureAnswerHeld {
            Decision::Relay
        } else {
            Decision::GiveUp(self.refusal())
        }
    }

    /// weir's answer when it stops trying, from what the attempts came to.
    fn refusal(&self) -> Refusal {
        let refusal = |status, code, message| Refusal {
            status,
            code,
            message,
            retry_after: None,
        };
        match self.last {
            Last::Throttled(_) => self.slow_down(),
            Last::Failed(Failed::Timeout) => refusal(
                504,
                S3Code::GatewayTimeout,
                "the storage node did not answer in time",
            ),
            Last::Failed(Failed::BadResponse) => refusal(
                502,
                S3Code::BadGateway,
                "the storage node sent a malformed response",
            ),
            // Two nodes dropped this request without an answer: it is not the nodes.
            _ if self.blame.is_suspect() => refusal(
                502,
                S3Code::BadGateway,
                "the storage nodes closed the connection on this request",
            ),
            _ => refusal(
                503,
                S3Code::ServiceUnavailable,
                "no storage node could take the request",
            ),
        }
    }

    fn slow_down(&self) -> Refusal {
        Refusal {
            status: 503,
            code: S3Code::SlowDown,
            message: SLOW_DOWN,
            retry_after: match self.last {
                Last::Throttled(wait) => Some(wait),
                _ => None,
            },
        }
    }

    /// The response body from `node` broke off (`how`) after `delivered` body bytes
    /// reached the client; `resumable` says whether the response can be resumed at all
    /// (a GET, length-delimited, with a strong ETag). Resume or abort.
    pub fn on_body_cut(
        &mut self,
        node: N,
        how: Failed,
        delivered: u64,
        resumable: bool,
    ) -> Step<N> {
        let reports = self.blame.observe(node, how.observation()).now;
        let decision =
            if resumable && self.resumes < self.params.resume_max && self.blame.may_try_again() {
                self.resume_tries = 0;
                Decision::Resume { from: delivered }
            } else {
                Decision::Abort
            };
        if !self.tried.contains(&node) {
            self.tried.push(node);
        }
        Step {
            decision,
            reports,
            limit: None,
        }
    }

    /// A resume attempt on `node` starts. Returns false when no more may be made for
    /// this resume (the driver then aborts).
    pub fn start_resume(&mut self, node: N) -> bool {
        if self.resume_tries >= self.params.attempts_max || !self.blame.may_try_again() {
            return false;
        }
        self.resume_tries += 1;
        self.tried.push(node);
        true
    }

    /// A resume attempt on `node` came to `outcome`: `Relay` (go on relaying from the
    /// new node), `Retry` (try another node for the resume) or `Abort`.
    pub fn on_resume(&mut self, node: N, outcome: ResumeOutcome) -> Step<N> {
        match outcome {
            ResumeOutcome::Resumed { latency } => {
                self.resumes += 1;
                // The head's latency is the node's; whether the earlier node's failure
                // was its own is settled when the body completes ([`Self::complete`]).
                Step {
                    decision: Decision::Relay,
                    reports: vec![(node, Observation::Success { latency })],
                    limit: Some(Limit::Success),
                }
            }
            ResumeOutcome::Rejected => Step::only(self.resume_next()),
            ResumeOutcome::Failed(how) => {
                let reports = self.blame.observe(node, how.observation()).now;
                Step {
                    decision: self.resume_next(),
                    reports,
                    limit: None,
                }
            }
        }
    }

    fn resume_next(&self) -> Decision {
        if self.resume_tries < self.params.attempts_max && self.blame.may_try_again() {
            Decision::Retry {
                wait: Duration::ZERO,
            }
        } else {
            Decision::Abort
        }
    }

    /// The response completed. After a resume, a failure held from an earlier node was
    /// that node's: returned, to report.
    pub fn complete(&mut self) -> Option<(N, Observation)> {
        if self.resumes > 0 {
            self.blame.complete()
        } else {
            None
        }
    }

    /// The request is over: a failure still held is returned, to report as unconfirmed
    /// (`NodeHealth::observe_unconfirmed`).
    pub fn finish(&mut self) -> Option<(N, Observation)> {
        self.blame.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need one real base instant
    fn t0() -> Instant {
        Instant::now()
    }

    fn params() -> Params {
        Params::from_upstream(&Upstream::default())
    }

    fn budget() -> RetryBudget {
        RetryBudget::new(1.0, 100)
    }

    fn answer(status: u16, code: Option<S3Code>) -> Outcome {
        Outcome::Answered(Answer {
            status,
            code,
            retry_after: None,
            latency: Duration::from_millis(3),
            held: true,
            request_complete: true,
            body: BodyState::Empty,
        })
    }

    fn env(budget: &mut RetryBudget, rand: u64) -> Env<'_> {
        Env {
            now: t0(),
            rand,
            budget,
        }
    }

    fn failed(how: Failed) -> Outcome {
        Outcome::Failed {
            how,
            body: BodyState::Empty,
        }
    }

    /// Two nodes die at once: the request meets a dead idle connection on the first, is
    /// sent again on new connections, and reaches a third node within `attempts_max`.
    /// Before, two stale connections read as a request that kills nodes (no more tries).
    #[test]
    fn a_stale_idle_connection_costs_no_attempt_and_no_blame() {
        let p = params();
        assert_eq!(p.attempts_max, 3);
        let mut b = budget();
        let mut a = Attempts::new("GET", p);
        assert!(!a.start(1));
        let step = a.on_outcome(1, failed(Failed::Stale), env(&mut b, 0));
        assert_eq!(
            step.decision,
            Decision::Retry {
                wait: Duration::ZERO
            }
        );
        assert!(step.reports.is_empty(), "health hears nothing: {step:?}");
        assert_eq!(
            (a.attempts(), a.tried()),
            (0, &[][..]),
            "not counted, not tried"
        );
        assert!(a.fresh_only());
        assert_eq!(
            a.take_again(),
            Some(1),
            "the same node, on a new connection"
        );
        assert_eq!(a.take_again(), None);
        // On new connections: both dead nodes refuse, the third answers.
        for node in [1, 2] {
            a.start(node);
            let step = a.on_outcome(node, failed(Failed::Connect), env(&mut b, 0));
            assert_eq!(
                step.decision,
                Decision::Retry {
                    wait: Duration::ZERO
                }
            );
            assert_eq!(step.reports, vec![(node, Observation::ConnectFailed)]);
        }
        assert!(a.start(3));
        let step = a.on_outcome(3, answer(200, None), env(&mut b, 0));
        assert_eq!(step.decision, Decision::Relay);
        assert!(!a.is_suspect());
        assert_eq!(a.tried(), &[1, 2, 3]);
    }

    #[test]
    fn only_one_stale_retry_and_only_for_a_request_that_may_go_again() {
        let mut b = budget();
        // A request that makes nodes close on it, first met on a reused connection: the
        // same node again (a new connection), then one more; no third node.
        let mut a = Attempts::new("GET", params());
        a.start(1);
        a.on_outcome(1, failed(Failed::Stale), env(&mut b, 0));
        let again = a.take_again().expect("the same node again");
        a.start(again);
        let step = a.on_outcome(again, failed(Failed::Reset), env(&mut b, 0));
        assert!(matches!(step.decision, Decision::Retry { .. }), "{step:?}");
        assert_eq!((a.attempts(), a.tried()), (1, &[1][..]));
        a.start(2);
        let step = a.on_outcome(2, failed(Failed::Reset), env(&mut b, 0));
        assert!(matches!(step.decision, Decision::GiveUp(_)), "{step:?}");
        assert!(a.is_suspect());
        // A second stale failure (it cannot come on a new connection, but if the driver
        // said so) is an ordinary reset: held, and blamed like one.
        let mut a = Attempts::new("GET", params());
        a.start(1);
        a.on_outcome(1, failed(Failed::Stale), env(&mut b, 0));
        a.start(1);
        let step = a.on_outcome(1, failed(Failed::Stale), env(&mut b, 0));
        assert_eq!(
            step.decision,
            Decision::Retry {
                wait: Duration::ZERO
            }
        );
        assert_eq!((a.attempts(), a.tried()), (1, &[1][..]));
        a.start(2);
        let step = a.on_outcome(2, failed(Failed::Reset), env(&mut b, 0));
        assert!(matches!(step.decision, Decision::GiveUp(_)), "{step:?}");
        assert!(a.is_suspect());
        // A POST may have been taken: never sent again after a reset, stale or not.
        let mut a = Attempts::new("POST", params());
        a.start(1);
        let step = a.on_outcome(1, failed(Failed::Stale), env(&mut b, 0));
        assert!(matches!(step.decision, Decision::GiveUp(_)), "{step:?}");
        assert!(!a.fresh_only());
    }

    #[test]
    fn first_throttle_backoff_is_the_documented_first_step() {
        // aimd.rs: the first retry's wait is jittered in [base/2, base].
        let p = params();
        let mut b = budget();
        let mut a = Attempts::new("GET", p);
        a.start(1);
        let step = a.on_outcome(1, answer(503, Some(S3Code::SlowDown)), env(&mut b, 0));
        assert_eq!(
            step.decision,
            Decision::Retry {
                wait: p.backoff_base / 2
            },
            "no jitter: half the first step"
        );
        assert_eq!(step.limit, Some(Limit::Throttle));
        assert_eq!(
            step.reports,
            vec![(1, Observation::Throttled { retry_after: None })]
        );
        let mut a = Attempts::new("GET", p);
        a.start(1);
        let step = a.on_outcome(1, answer(503, None), env(&mut b, u64::MAX));
        let Decision::Retry { wait } = step.decision else {
            panic!("{step:?}")
        };
        assert!(
            wait <= p.backoff_base && wait > p.backoff_base * 9 / 10,
            "{wait:?}"
        );
        // The second retry's cap doubles.
        a.start(2);
        let step = a.on_outcome(2, answer(429, None), env(&mut b, 0));
        assert_eq!(
            step.decision,
            Decision::Retry {
                wait: p.backoff_base
            }
        );
    }

    #[test]
    fn s3_codes_decide_backpressure_or_failure() {
        let p = params();
        let mut b = budget();
        for (status, code, throttle) in [
            (503, Some(S3Code::SlowDown), true),
            (503, Some(S3Code::ServiceUnavailable), true),
            (400, Some(S3Code::SlowDown), true),
            (403, Some(S3Code::RequestLimitExceeded), true),
            (500, Some(S3Code::TooManyRequests), true),
            (503, None, true),
            (503, Some(S3Code::XMinioServerNotInitialized), false),
            (503, Some(S3Code::Other), false),
            (500, Some(S3Code::InternalError), false),
        ] {
            let mut a = Attempts::new("GET", p);
            a.start(1);
            let step = a.on_outcome(1, answer(status, code), env(&mut b, 0));
            let (obs, limit) = (step.reports[0].1, step.limit);
            if throttle {
                assert!(
                    matches!(obs, Observation::Throttled { .. }),
                    "{status} {code:?}"
                );
                assert_eq!(limit, Some(Limit::Throttle));
            } else {
                assert_eq!(obs, Observation::ServerError { status }, "{code:?}");
                assert_eq!(limit, None);
                assert_eq!(
                    step.decision,
                    Decision::Retry {
                        wait: Duration::ZERO
                    },
                    "a held failure answer goes to another node"
                );
            }
        }
        // A 4xx with a code outside the table is the request's answer.
        let mut a = Attempts::new("GET", p);
        a.start(1);
        let step = a.on_outcome(1, answer(404, Some(S3Code::Other)), env(&mut b, 0));
        assert_eq!(step.decision, Decision::Relay);
        assert_eq!(step.limit, Some(Limit::Success));
    }

    #[test]
    fn a_failure_answer_is_relayed_when_nothing_else_can_be_done() {
        let p = params();
        let mut b = budget();
        // A POST is not replayed after a node answered.
        let mut a = Attempts::new("POST", p);
        a.start(1);
        let step = a.on_outcome(1, answer(500, Some(S3Code::InternalError)), env(&mut b, 0));
        assert_eq!(step.decision, Decision::Relay);
        // A GET retried, and no node is left: the held answer goes to the client.
        let mut a = Attempts::new("GET", p);
        a.start(1);
        a.on_outcome(1, answer(500, Some(S3Code::InternalError)), env(&mut b, 0));
        assert_eq!(a.on_no_node(), Decision::Relay);
        // An answer whose body the driver could not hold is relayed at once.
        let mut a = Attempts::new("GET", p);
        a.start(1);
        let Outcome::Answered(mut big) = answer(500, None) else {
            unreachable!()
        };
        big.held = false;
        let step = a.on_outcome(1, Outcome::Answered(big), env(&mut b, 0));
        assert_eq!(step.decision, Decision::Relay);
    }

    #[test]
    fn throttling_everywhere_ends_in_slow_down() {
        let p = params();
        let mut b = budget();
        let mut a = Attempts::new("GET", p);
        let mut last = None;
        for node in 1..=p.attempts_max {
            a.start(node);
            last = Some(
                a.on_outcome(node, answer(503, None), env(&mut b, 0))
                    .decision,
            );
        }
        let Some(Decision::GiveUp(r)) = last else {
            panic!("{last:?}")
        };
        assert_eq!((r.status, r.code), (503, S3Code::SlowDown));
        assert!(r.retry_after.is_some_and(|d| d > Duration::ZERO));
    }

    #[test]
    fn failures_without_answers() {
        let p = params();
        let mut b = budget();
        let mut a = Attempts::new("GET", p);
        a.start(1);
        let failed = |how| Outcome::Failed {
            how,
            body: BodyState::Empty,
        };
        let step = a.on_outcome(1, failed(Failed::Connect), env(&mut b, 0));
        assert_eq!(step.reports, vec![(1, Observation::ConnectFailed)]);
        assert_eq!(
            step.decision,
            Decision::Retry {
                wait: Duration::ZERO
            }
        );
        a.start(2);
        let step = a.on_outcome(2, failed(Failed::Reset), env(&mut b, 0));
        assert!(
            step.reports.is_empty(),
            "held until the request shows whose"
        );
        a.start(3);
        let step = a.on_outcome(3, failed(Failed::Timeout), env(&mut b, 0));
        assert!(a.is_suspect());
        let Decision::GiveUp(r) = step.decision else {
            panic!("{step:?}")
        };
        assert_eq!((r.status, r.code), (504, S3Code::GatewayTimeout));
        assert_eq!(a.tried(), &[1, 2, 3]);
        // A streamed body is never replayed; a POST only after a connect failure.
        let mut a = Attempts::new("PUT", p);
        a.start(1);
        let step = a.on_outcome(
            1,
            Outcome::Failed {
                how: Failed::Reset,
                body: BodyState::Streaming,
            },
            env(&mut b, 0),
        );
        assert!(matches!(step.decision, Decision::GiveUp(_)));
        assert_eq!(a.finish(), Some((1, Observation::Reset)), "unconfirmed");
        let mut a = Attempts::new("POST", p);
        a.start(1);
        let step = a.on_outcome(1, failed(Failed::Timeout), env(&mut b, 0));
        assert!(matches!(step.decision, Decision::GiveUp(_)));
    }

    #[test]
    fn no_budget_no_retry() {
        let mut b = RetryBudget::new(0.0, 0);
        let mut a = Attempts::new("GET", params());
        a.start(1);
        let step = a.on_outcome(1, answer(503, None), env(&mut b, 0));
        assert!(matches!(step.decision, Decision::GiveUp(r) if r.code == S3Code::SlowDown));
    }

    #[test]
    fn resume_until_it_works_or_runs_out() {
        let p = params();
        let mut b = budget();
        let mut a = Attempts::new("GET", p);
        a.start(1);
        a.on_outcome(1, answer(200, None), env(&mut b, 0));
        let step = a.on_body_cut(1, Failed::Reset, 1000, true);
        assert_eq!(step.decision, Decision::Resume { from: 1000 });
        assert!(step.reports.is_empty());
        assert!(a.start_resume(2));
        let step = a.on_resume(2, ResumeOutcome::Rejected);
        assert_eq!(
            step.decision,
            Decision::Retry {
                wait: Duration::ZERO
            }
        );
        assert!(a.start_resume(3));
        let latency = Duration::from_millis(2);
        let step = a.on_resume(3, ResumeOutcome::Resumed { latency });
        assert_eq!(step.decision, Decision::Relay);
        assert_eq!(step.reports, vec![(3, Observation::Success { latency })]);
        assert_eq!(a.resumes(), 1);
        assert_eq!(a.complete(), Some((1, Observation::Reset)));
        // Not resumable, or out of resumes: abort.
        let mut a: Attempts<u32> = Attempts::new("GET", Params { resume_max: 0, ..p });
        a.start(1);
        assert_eq!(
            a.on_body_cut(1, Failed::Timeout, 5, true).decision,
            Decision::Abort
        );
        let mut a: Attempts<u32> = Attempts::new("GET", p);
        a.start(1);
        assert_eq!(
            a.on_body_cut(1, Failed::Timeout, 5, false).decision,
            Decision::Abort
        );
    }
}
