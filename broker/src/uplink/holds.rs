//! Retention holds: for every partition an uplink forwards, the first offset not yet
//! forwarded. Retention never moves a partition's log start past its hold; only disk-budget
//! relief ([`crate::retention::relieve`]) may, and the uplink then counts what it lost.
//!
//! Invariant: a hold is only ever set from durable progress, so a crash never finds data
//! deleted that its stored progress still needs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::log::PartitionId;

/// The uplinks holding one partition, each with its first unforwarded offset.
type Holders = Vec<(Arc<str>, i64)>;

/// Holds of every uplink, per partition.
#[derive(Debug, Default)]
pub struct Holds {
    inner: RwLock<HashMap<PartitionId, Holders>>,
}

impl Holds {
    /// Sets `uplink`'s hold on `id` to `next_offset`.
    pub fn set(&self, uplink: &Arc<str>, id: PartitionId, next_offset: i64) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let holders = map.entry(id).or_default();
        match holders.iter_mut().find(|(u, _)| u == uplink) {
            Some(entry) => entry.1 = next_offset,
            None => holders.push((uplink.clone(), next_offset)),
        }
    }

    /// Drops every hold on `id` (its topic is gone).
    pub fn forget(&self, id: PartitionId) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&id);
    }

    /// The smallest hold on `id`, if any uplink holds it.
    pub fn hold(&self, id: PartitionId) -> Option<i64> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&id)?.iter().map(|(_, o)| *o).min()
    }

    /// Every held partition with its smallest hold.
    pub fn all(&self) -> Vec<(PartitionId, i64)> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter_map(|(id, h)| Some((*id, h.iter().map(|(_, o)| *o).min()?)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_hold_wins() {
        let holds = Holds::default();
        let id = PartitionId {
            topic: 1,
            partition: 0,
        };
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert_eq!(holds.hold(id), None);
        holds.set(&a, id, 50);
        holds.set(&b, id, 20);
        assert_eq!(holds.hold(id), Some(20));
        holds.set(&b, id, 70);
        assert_eq!(holds.hold(id), Some(50));
        assert_eq!(holds.all(), vec![(id, 50)]);
        holds.forget(id);
        assert_eq!(holds.hold(id), None);
    }
}
