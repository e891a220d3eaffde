//! A bounded table with least-recently-used eviction, for state keyed by things clients
//! choose (client IPs, bucket names): every queue, table, buffer and wait has a bound
//! (docs/design.md, "Limits and deadlines"), so a client cannot grow one without end.
//!
//! Ordered maps, not hash maps: iteration order is part of what a seeded simulation
//! replays, and a `HashMap`'s is random per process. O(log n) per touch.

use std::borrow::Borrow;
use std::collections::BTreeMap;

/// At most `max` entries; inserting into a full table evicts the least recently touched.
#[derive(Debug, Clone)]
pub(crate) struct Table<K, V> {
    entries: BTreeMap<K, (V, u64)>,
    /// Touch stamp → key, oldest first.
    order: BTreeMap<u64, K>,
    clock: u64,
    max: usize,
}

impl<K: Ord + Clone, V> Table<K, V> {
    /// An empty table holding at most `max` entries (at least 1).
    pub(crate) fn new(max: usize) -> Self {
        Table {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            max: max.max(1),
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry for `key` without touching it.
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.get_mut(key).map(|(v, _)| v)
    }

    /// The entry for `key`, made by `make` if absent (evicting the least recently used
    /// entry when full), and marked most recently used. Always `Some`; an `Option` only
    /// so that no panic path exists.
    pub(crate) fn touch_or_insert_with<Q>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> V,
    ) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        self.clock += 1;
        let stamp = self.clock;
        if let Some((_, old)) = self.entries.get(key) {
            let old = *old;
            if let Some(k) = self.order.remove(&old) {
                self.order.insert(stamp, k);
            }
        } else {
            while self.entries.len() >= self.max {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.entries.remove::<K>(&oldest);
            }
            let owned = key.to_owned();
            self.order.insert(stamp, owned.clone());
            self.entries.insert(owned, (make(), stamp));
        }
        let entry = self.entries.get_mut(key)?;
        entry.1 = stamp;
        Some(&mut entry.0)
    }

    /// Keeps only the entries for which `keep` says so.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|k, (v, stamp)| {
            let kept = keep(k, v);
            if !kept {
                order.remove(stamp);
            }
            kept
        });
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (v, _))| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut t: Table<String, u32> = Table::new(2);
        t.touch_or_insert_with("a", || 1);
        t.touch_or_insert_with("b", || 2);
        // Touch a, so b is the oldest.
        assert_eq!(t.touch_or_insert_with("a", || 99).copied(), Some(1));
        t.touch_or_insert_with("c", || 3);
        assert_eq!(t.len(), 2);
        assert!(t.get_mut("b").is_none());
        assert_eq!(t.get_mut("a").copied(), Some(1));
        assert_eq!(t.get_mut("c").copied(), Some(3));
    }

    #[test]
    fn retain_keeps_the_order_index_in_step() {
        let mut t: Table<u32, u32> = Table::new(3);
        for k in 0..3 {
            t.touch_or_insert_with(&k, || k);
        }
        t.retain(|k, _| *k != 0);
        assert_eq!(t.order.len(), 2);
        for k in 3..6 {
            t.touch_or_insert_with(&k, || k);
        }
        assert_eq!(t.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(t.order.len(), 3);
        if let Some(v) = t.get_mut(&5) {
            *v += 1;
        }
        assert_eq!(t.get_mut(&5).copied(), Some(6));
    }
}
