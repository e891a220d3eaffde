//! Questions from the control plane to the cores (flows, stats, nodes): put to every core
//! whose inbox has room, and answered within a deadline, so a stuck core never holds up
//! a scrape or the status page.

use std::time::{Duration, Instant};

use crate::bus::{Bus, Msg};

/// How long the cores get to answer a question (a core that does not is left out, as a
/// stuck core must not hold up a scrape).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Puts a question to every core whose inbox has room; the replies come through the
/// returned receivers.
pub(super) fn ask<T>(
    bus: &Bus,
    question: impl Fn(flume::Sender<T>) -> Msg,
) -> Vec<flume::Receiver<T>> {
    let mut replies = Vec::with_capacity(bus.cores());
    for core in 0..bus.cores() {
        let (tx, rx) = flume::bounded(1);
        if bus.send(core, question(tx)) {
            replies.push(rx);
        }
    }
    replies
}

/// The replies that arrive within [`QUERY_TIMEOUT`], in core order, awaited without
/// blocking the executor.
pub(super) async fn collect<T>(replies: Vec<flume::Receiver<T>>) -> Vec<T> {
    let deadline = monoio::time::Instant::from_std(Instant::now() + QUERY_TIMEOUT);
    let mut out = Vec::with_capacity(replies.len());
    for rx in replies {
        if let Ok(Ok(reply)) = monoio::time::timeout_at(deadline, rx.recv_async()).await {
            out.push(reply);
        }
    }
    out
}
