//! QoS classes as admission weights (docs/design.md, "Protecting the storage"): when
//! upstream concurrency or bandwidth is contended, waiting requests are served in
//! proportion to their classes' weights, and a latency-sensitive class may jump the queue.
//!
//! One [`Scheduler`] per core holds a bounded FIFO queue per class. The appliance pushes
//! a request that cannot go yet (no upstream slot; a body quantum not yet granted) with a
//! deadline, pops when a slot or quantum frees up, and answers whatever
//! [`Scheduler::expire`] returns with S3 `SlowDown`. The scheduler never reads the clock.
//!
//! The discipline is start-time fair queuing (Goyal, Vin, Cheng 1996): an item of class
//! `i` and cost `c` gets a start tag `S = max(V, F_prev)` and a finish tag
//! `F = S + c / weight_i`, where `V` is the start tag of the item served last and
//! `F_prev` the finish tag of the class's previous item; the smallest start tag goes
//! first. Backlogged classes are served in proportion to their weights; a class that was
//! idle comes back at `V` and is served within one round, without owing for its idle
//! time. A latency-sensitive class goes ahead of every other class whenever it is not
//! ahead of its share (its head's start tag is at most `V`), so it jumps the queue but
//! cannot starve the others.

use std::collections::VecDeque;
use std::time::Instant;

use crate::config::{Class, ClassId};

/// One waiting item with its tags.
#[derive(Debug, Clone)]
struct Entry<T> {
    item: T,
    deadline: Instant,
    /// Cost in the class's unit (1 per request, or bytes of a quantum).
    cost: f64,
    /// Virtual time when it was pushed: its start tag if its class had been idle.
    arrival: f64,
    start: f64,
    finish: f64,
}

/// One class's queue.
#[derive(Debug, Clone)]
struct ClassQueue<T> {
    weight: f64,
    latency_sensitive: bool,
    queue_max: usize,
    entries: VecDeque<Entry<T>>,
    /// Finish tag of the item of this class served last.
    served_finish: f64,
}

impl<T> ClassQueue<T> {
    /// The finish tag the next pushed item follows.
    fn tail_finish(&self) -> f64 {
        self.entries.back().map_or(self.served_finish, |e| e.finish)
    }

    /// Recomputes the tags after items were removed from the middle, as if they had
    /// never arrived.
    fn retag(&mut self) {
        let mut prev = self.served_finish;
        for e in &mut self.entries {
            e.start = e.arrival.max(prev);
            e.finish = e.start + e.cost / self.weight;
            prev = e.finish;
        }
    }
}

/// A weighted fair queue over per-class bounded queues with deadlines.
#[derive(Debug, Clone)]
pub struct Scheduler<T> {
    classes: Vec<ClassQueue<T>>,
    /// System virtual time: the start tag of the item served last.
    virtual_time: f64,
    /// Items found past their deadline by `pop`, for `expire` to hand back.
    expired: Vec<T>,
    /// The earliest deadline among queued items, to skip sweeps when nothing expired.
    earliest_deadline: Option<Instant>,
    len: usize,
}

impl<T> Scheduler<T> {
    /// Empty queues for `classes` (indexed like `Config::classes`).
    pub fn new(classes: &[Class]) -> Self {
        Scheduler {
            classes: classes
                .iter()
                .map(|c| ClassQueue {
                    // Validation keeps weights ≥ 1; a 0 here would divide by zero.
                    weight: f64::from(c.weight.max(1)),
                    latency_sensitive: c.latency_sensitive,
                    queue_max: c.queue_max,
                    entries: VecDeque::new(),
                    served_finish: 0.0,
                })
                .collect(),
            virtual_time: 0.0,
            expired: Vec::new(),
            earliest_deadline: None,
            len: 0,
        }
    }

    /// Queues `item` (cost 1, e.g. a request waiting for an upstream slot) until
    /// `deadline`. Gives the item back when the class queue is full (`queue_max`) or the
    /// class does not exist: answer `SlowDown`.
    pub fn push(&mut self, class: ClassId, item: T, deadline: Instant) -> Result<(), T> {
        self.push_with_cost(class, item, 1, deadline)
    }

    /// [`Scheduler::push`] with a cost (e.g. the bytes of a body quantum, for bandwidth
    /// shares); a cost of 0 counts as 1.
    pub fn push_with_cost(
        &mut self,
        class: ClassId,
        item: T,
        cost: u64,
        deadline: Instant,
    ) -> Result<(), T> {
        let virtual_time = self.virtual_time;
        let Some(q) = self.classes.get_mut(class.0) else {
            return Err(item);
        };
        if q.entries.len() >= q.queue_max {
            return Err(item);
        }
        let cost = cost.max(1) as f64;
        let start = virtual_time.max(q.tail_finish());
        q.entries.push_back(Entry {
            item,
            deadline,
            cost,
            arrival: virtual_time,
            start,
            finish: start + cost / q.weight,
        });
        self.len += 1;
        self.earliest_deadline = Some(self.earliest_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(())
    }

    /// The waiting item that gets the next slot or quantum, if any. Items past their
    /// deadline are never returned: they wait for [`Scheduler::expire`].
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        self.sweep(now);
        let v = self.virtual_time;
        // A latency-sensitive class not ahead of its share goes first; otherwise the
        // smallest start tag (ties: latency-sensitive, then the lower class).
        let pick = |latency_only: bool| {
            self.classes
                .iter()
                .enumerate()
                .filter_map(|(i, q)| {
                    let head = q.entries.front()?;
                    let eligible = !latency_only || (q.latency_sensitive && head.start <= v);
                    eligible.then_some((head.start, !q.latency_sensitive, i))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
                .map(|(_, _, i)| i)
        };
        let index = pick(true).or_else(|| pick(false))?;
        let q = self.classes.get_mut(index)?;
        let entry = q.entries.pop_front()?;
        q.served_finish = entry.finish;
        self.virtual_time = self.virtual_time.max(entry.start);
        self.len -= 1;
        if self.len == 0 {
            self.reset_tags();
        }
        Some(entry.item)
    }

    /// Removes and returns every item past its deadline at `now` (answer each with S3
    /// `SlowDown`), including those `pop` skipped.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        self.sweep(now);
        std::mem::take(&mut self.expired)
    }

    /// Items waiting in `class` (0 for an unknown class).
    pub fn len(&self, class: ClassId) -> usize {
        self.classes.get(class.0).map_or(0, |q| q.entries.len())
    }

    /// Items waiting in all classes (not counting expired ones not yet collected).
    pub fn total_len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest deadline of a waiting item: when to call [`Scheduler::expire`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest_deadline
    }

    /// Moves items past their deadline to `expired` and retags their classes.
    fn sweep(&mut self, now: Instant) {
        if self.earliest_deadline.is_none_or(|d| d >= now) {
            return;
        }
        let mut earliest: Option<Instant> = None;
        for q in &mut self.classes {
            if !q.entries.iter().any(|e| e.deadline < now) {
                if let Some(d) = q.entries.iter().map(|e| e.deadline).min() {
                    earliest = Some(earliest.map_or(d, |e| e.min(d)));
                }
                continue;
            }
            let mut kept = VecDeque::with_capacity(q.entries.len());
            for e in q.entries.drain(..) {
                if e.deadline < now {
                    self.expired.push(e.item);
                    self.len -= 1;
                } else {
                    earliest = Some(earliest.map_or(e.deadline, |d| d.min(e.deadline)));
                    kept.push_back(e);
                }
            }
            q.entries = kept;
            q.retag();
        }
        self.earliest_deadline = earliest;
        if self.len == 0 {
            self.reset_tags();
        }
    }

    /// With nothing waiting, tags carry no information: start afresh so they stay small.
    fn reset_tags(&mut self) {
        self.virtual_time = 0.0;
        for q in &mut self.classes {
            q.served_finish = 0.0;
        }
        self.earliest_deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need one real base instant
    fn t0() -> Instant {
        Instant::now()
    }
    use crate::config::RateLimit;
    use std::time::Duration;

    fn class(name: &str, weight: u32, latency_sensitive: bool, queue_max: usize) -> Class {
        Class {
            name: name.into(),
            weight,
            latency_sensitive,
            queue_max,
            queue_timeout: Duration::from_secs(1),
            rate: RateLimit::unlimited(Duration::from_millis(100)),
        }
    }

    #[test]
    fn weights_8_to_1_under_contention() {
        let t0 = t0();
        let far = t0 + Duration::from_secs(60);
        let mut s: Scheduler<u8> = Scheduler::new(&[
            class("inference", 8, false, 10_000),
            class("bulk", 1, false, 10_000),
        ]);
        for _ in 0..5000 {
            s.push(ClassId(0), 0, far).unwrap();
            s.push(ClassId(1), 1, far).unwrap();
        }
        let mut served = [0u32; 2];
        for _ in 0..900 {
            served[usize::from(s.pop(t0).unwrap())] += 1;
        }
        assert_eq!(served, [800, 100]);
    }

    #[test]
    fn an_idle_class_is_served_within_a_round() {
        let t0 = t0();
        let far = t0 + Duration::from_secs(60);
        let mut s: Scheduler<&str> =
            Scheduler::new(&[class("a", 1, false, 100), class("b", 1, false, 100)]);
        for _ in 0..50 {
            s.push(ClassId(0), "a", far).unwrap();
        }
        for _ in 0..20 {
            assert_eq!(s.pop(t0), Some("a"));
        }
        // b was idle: it does not queue behind a's backlog.
        s.push(ClassId(1), "b", far).unwrap();
        assert_eq!(s.pop(t0), Some("b"));
    }

    #[test]
    fn latency_sensitive_jumps_but_cannot_starve() {
        let t0 = t0();
        let far = t0 + Duration::from_secs(60);
        let mut s: Scheduler<char> =
            Scheduler::new(&[class("bulk", 1, false, 1000), class("fast", 1, true, 1000)]);
        for _ in 0..100 {
            s.push(ClassId(0), 'b', far).unwrap();
        }
        assert_eq!(s.pop(t0), Some('b'));
        s.push(ClassId(1), 'f', far).unwrap();
        assert_eq!(s.pop(t0), Some('f'), "jumps the bulk backlog");
        // A flood of the latency class still leaves bulk its (equal) share.
        for _ in 0..100 {
            s.push(ClassId(1), 'f', far).unwrap();
        }
        let order: String = (0..40).filter_map(|_| s.pop(t0)).collect();
        let bulk = order.chars().filter(|&c| c == 'b').count();
        assert!((18..=22).contains(&bulk), "{order}");
    }

    #[test]
    fn full_queues_and_unknown_classes_give_the_item_back() {
        let t0 = t0();
        let mut s: Scheduler<u32> = Scheduler::new(&[class("a", 1, false, 2)]);
        assert_eq!(s.push(ClassId(0), 1, t0), Ok(()));
        assert_eq!(s.push(ClassId(0), 2, t0), Ok(()));
        assert_eq!(s.push(ClassId(0), 3, t0), Err(3));
        assert_eq!(s.push(ClassId(7), 4, t0), Err(4));
        assert_eq!(
            (s.len(ClassId(0)), s.len(ClassId(7)), s.total_len()),
            (2, 0, 2)
        );
    }

    #[test]
    fn deadlines_expire_and_are_never_popped() {
        let t0 = t0();
        let ms = Duration::from_millis;
        let mut s: Scheduler<u32> =
            Scheduler::new(&[class("a", 1, false, 10), class("b", 3, false, 10)]);
        s.push(ClassId(0), 1, t0 + ms(10)).unwrap();
        s.push(ClassId(0), 2, t0 + ms(50)).unwrap();
        s.push(ClassId(1), 3, t0 + ms(5)).unwrap();
        assert_eq!(s.next_deadline(), Some(t0 + ms(5)));
        assert_eq!(s.pop(t0 + ms(20)), Some(2));
        assert_eq!(s.expire(t0 + ms(20)), [1, 3]);
        assert!(s.is_empty());
        assert_eq!(s.pop(t0 + ms(20)), None);
        assert_eq!(s.next_deadline(), None);
        // At the deadline itself an item is still served.
        s.push(ClassId(0), 4, t0 + ms(30)).unwrap();
        assert_eq!(s.expire(t0 + ms(30)), Vec::<u32>::new());
        assert_eq!(s.pop(t0 + ms(30)), Some(4));
    }

    #[test]
    fn costs_share_bandwidth_by_weight() {
        let t0 = t0();
        let far = t0 + Duration::from_secs(60);
        let mut s: Scheduler<(u8, u64)> =
            Scheduler::new(&[class("a", 2, false, 1000), class("b", 1, false, 1000)]);
        // Class a sends big quanta, b small ones: bytes, not items, are shared 2:1.
        for _ in 0..200 {
            s.push_with_cost(ClassId(0), (0, 4096), 4096, far).unwrap();
        }
        for _ in 0..800 {
            s.push_with_cost(ClassId(1), (1, 1024), 1024, far).unwrap();
        }
        let mut bytes = [0u64; 2];
        for _ in 0..300 {
            let (c, n) = s.pop(t0).unwrap();
            bytes[usize::from(c)] += n;
        }
        let ratio = bytes[0] as f64 / bytes[1] as f64;
        assert!((1.8..=2.2).contains(&ratio), "{bytes:?}");
    }
}
