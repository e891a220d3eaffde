//! Whose failure is it: the node's, or the request's?
//!
//! Some requests make every node fail them: a node closes the connection on a head it will
//! not take (too many fields, a header its parser chokes on), or hangs on a request it
//! cannot serve. Counted as node failures, a handful of such "queries of death" retried
//! across a pool would mark every node down and fail everyone's requests. So a failure
//! after the request reached a node (reset, timeout, malformed answer) is not reported at
//! once: it is *held* until the request shows whose it was.
//!
//! - Another node **answers** the same request (any response head: the request is
//!   servable), or a resumed body completes: the held failure was its node's, and is
//!   reported.
//! - Another node **fails it too**: the failure follows the request from node to node.
//!   Neither failure is reported, and the request is not tried again (see
//!   [`Blame::may_try_again`]): one such request costs the pool at most two attempts.
//! - The request ends with the failure still held (it could not be retried: a streamed
//!   body, a POST, no budget): the failure is reported as *unconfirmed*
//!   ([`super::NodeHealth::observe_unconfirmed`]), which counts only next to other
//!   requests' failures on the same node.
//!
//! A connect failure never reached the node with this request, so it is the node's and is
//! reported at once; so are answers (a 5xx is the node speaking for itself). Driven per
//! request by the appliance's attempt loop and by the seeded simulation, with the node
//! identifiers each uses.

use super::Observation;

/// One request's record of failures that may be its own; `N` identifies a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Blame<N> {
    held: Option<(N, Observation)>,
    suspect: bool,
}

/// What to report to node health now, at most two observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Reports<N> {
    /// Observations to report, in order (a confirmed held failure first).
    pub now: Vec<(N, Observation)>,
}

impl<N> Default for Blame<N> {
    fn default() -> Self {
        Blame {
            held: None,
            suspect: false,
        }
    }
}

impl<N: Copy> Blame<N> {
    /// A request that has not failed anywhere yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An attempt on `node` ended in `obs` (a response head, or the failure that stopped
    /// it). Returns the observations to report to health now.
    pub fn observe(&mut self, node: N, obs: Observation) -> Reports<N> {
        let mut now = Vec::with_capacity(2);
        match obs {
            Observation::ConnectFailed => now.push((node, obs)),
            Observation::Reset | Observation::Timeout | Observation::BadResponse => {
                if self.suspect {
                    // Already known to follow the request: nothing to learn.
                } else if self.held.is_some() {
                    // A second node failed it after it was sent: the request's doing.
                    self.held = None;
                    self.suspect = true;
                } else {
                    self.held = Some((node, obs));
                }
            }
            Observation::Success { .. }
            | Observation::Throttled { .. }
            | Observation::ServerError { .. } => {
                now.extend(self.held.take());
                now.push((node, obs));
            }
        }
        Reports { now }
    }

    /// The request's transfer completed (a resumed body finished): a failure held from an
    /// earlier node was that node's. Returns it, to report.
    pub fn complete(&mut self) -> Option<(N, Observation)> {
        self.held.take()
    }

    /// Whether another attempt (retry or resume) may be made: not once two nodes have
    /// failed the request after it reached them.
    pub fn may_try_again(&self) -> bool {
        !self.suspect
    }

    /// Whether the request has been found to fail every node it reaches.
    pub fn is_suspect(&self) -> bool {
        self.suspect
    }

    /// The request is over: a failure still held is returned, to report as unconfirmed.
    pub fn finish(&mut self) -> Option<(N, Observation)> {
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const OK: Observation = Observation::Success {
        latency: Duration::from_millis(5),
    };

    #[test]
    fn a_connect_failure_is_the_nodes_at_once() {
        let mut b = Blame::new();
        assert_eq!(
            b.observe(1, Observation::ConnectFailed).now,
            vec![(1, Observation::ConnectFailed)]
        );
        assert!(b.may_try_again());
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn a_failure_is_held_until_another_node_answers() {
        let mut b = Blame::new();
        assert!(b.observe(1, Observation::Reset).now.is_empty());
        assert!(b.may_try_again());
        assert_eq!(
            b.observe(2, OK).now,
            vec![(1, Observation::Reset), (2, OK)],
            "the answer confirms the held failure, then reports itself"
        );
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn an_answer_of_any_status_confirms() {
        for answer in [
            Observation::ServerError { status: 500 },
            Observation::Throttled { retry_after: None },
        ] {
            let mut b = Blame::new();
            b.observe(1, Observation::Timeout);
            assert_eq!(
                b.observe(2, answer).now,
                vec![(1, Observation::Timeout), (2, answer)]
            );
        }
    }

    #[test]
    fn a_failure_that_follows_the_request_is_nobodys() {
        for (first, second) in [
            (Observation::Reset, Observation::Reset),
            (Observation::Reset, Observation::Timeout),
            (Observation::BadResponse, Observation::Reset),
        ] {
            let mut b = Blame::new();
            assert!(b.observe(1, first).now.is_empty());
            assert!(b.observe(2, second).now.is_empty());
            assert!(!b.may_try_again());
            assert!(b.is_suspect());
            // Nothing is left to report, whatever happens next.
            assert!(b.observe(3, Observation::Reset).now.is_empty());
            assert_eq!(b.finish(), None);
        }
    }

    #[test]
    fn connect_failures_between_do_not_release_the_held_failure() {
        let mut b = Blame::new();
        b.observe(1, Observation::Reset);
        assert_eq!(
            b.observe(2, Observation::ConnectFailed).now,
            vec![(2, Observation::ConnectFailed)]
        );
        assert!(b.may_try_again());
        assert_eq!(b.finish(), Some((1, Observation::Reset)));
    }

    #[test]
    fn a_completed_resume_confirms_the_node_that_broke_off() {
        let mut b = Blame::new();
        b.observe(1, OK);
        b.observe(1, Observation::Reset); // mid-body
        assert_eq!(b.complete(), Some((1, Observation::Reset)));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn a_lone_failure_is_left_unconfirmed() {
        let mut b = Blame::new();
        b.observe(7, Observation::Timeout);
        assert_eq!(b.finish(), Some((7, Observation::Timeout)));
        assert_eq!(b.finish(), None, "handed out once");
    }
}
