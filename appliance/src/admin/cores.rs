//! Questions from the control plane to the cores (flows, stats, nodes), put and gathered
//! by the bus (`crate::bus`) within a deadline, so a stuck core never holds up a scrape or
//! the status page.

use std::time::Duration;

use crate::bus::{self, Bus, Msg};

/// How long the cores get to answer a question (a core that does not is left out, as a
/// stuck core must not hold up a scrape).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Puts a question to every core whose inbox has room.
pub(super) fn ask<T>(
    bus: &Bus,
    question: impl Fn(flume::Sender<T>) -> Msg,
) -> Vec<flume::Receiver<T>> {
    bus.ask(question)
}

/// The replies that arrive within [`QUERY_TIMEOUT`], in core order.
pub(super) async fn collect<T>(replies: Vec<flume::Receiver<T>>) -> Vec<T> {
    bus::gather(replies, QUERY_TIMEOUT).await
}
