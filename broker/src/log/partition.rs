//! Shared, lock-free view of one partition's offsets.
//!
//! Only the store's writer thread changes these values, and only after the transaction that
//! made the change durable has committed; every other thread reads them. `next_offset` grows
//! with appends; a follower's truncation or reset may move it (and, on reset, `log_start`)
//! down. Offsets stored are always dense and strictly increasing.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Internal partition address: (topic number, partition index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub topic: u32,
    pub partition: u32,
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Committed offsets and size of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    pub id: PartitionId,
    log_start: AtomicI64,
    next_offset: AtomicI64,
    size_bytes: AtomicU64,
    max_timestamp: AtomicI64,
}

/// A plain copy of a partition's state, as the writer works on it and as it is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionMeta {
    pub log_start: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest batch max-timestamp appended so far (the time index is monotonic in it).
    pub max_timestamp: i64,
}

impl PartitionMeta {
    pub const ENCODED_LEN: usize = 32;

    pub fn new() -> Self {
        PartitionMeta {
            max_timestamp: i64::MIN,
            ..Default::default()
        }
    }

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.log_start.to_be_bytes());
        out[8..16].copy_from_slice(&self.next_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.size_bytes.to_be_bytes());
        out[24..32].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let i = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            a
        };
        Some(PartitionMeta {
            log_start: i64::from_be_bytes(i(0)),
            next_offset: i64::from_be_bytes(i(8)),
            size_bytes: u64::from_be_bytes(i(16)),
            max_timestamp: i64::from_be_bytes(i(24)),
        })
    }
}

impl PartitionLog {
    pub fn new(id: PartitionId, meta: PartitionMeta) -> Self {
        PartitionLog {
            id,
            log_start: AtomicI64::new(meta.log_start),
            next_offset: AtomicI64::new(meta.next_offset),
            size_bytes: AtomicU64::new(meta.size_bytes),
            max_timestamp: AtomicI64::new(meta.max_timestamp),
        }
    }

    /// First offset still stored (Kafka's log start offset / low watermark).
    pub fn log_start(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Offset the next record will get; on a single node this is the high watermark.
    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Acquire)
    }

    pub fn meta(&self) -> PartitionMeta {
        PartitionMeta {
            log_start: self.log_start(),
            next_offset: self.next_offset(),
            size_bytes: self.size_bytes(),
            max_timestamp: self.max_timestamp.load(Ordering::Acquire),
        }
    }

    /// Publishes committed state. Called by the writer thread only, after commit. The two
    /// offsets are stored in the order that keeps `log_start <= next_offset` for a reader
    /// between the stores: next first when it grows, log start first otherwise.
    pub(crate) fn publish(&self, meta: &PartitionMeta) {
        self.size_bytes.store(meta.size_bytes, Ordering::Release);
        self.max_timestamp
            .store(meta.max_timestamp, Ordering::Release);
        if meta.next_offset > self.next_offset() {
            self.next_offset.store(meta.next_offset, Ordering::Release);
            self.log_start.store(meta.log_start, Ordering::Release);
        } else {
            self.log_start.store(meta.log_start, Ordering::Release);
            self.next_offset.store(meta.next_offset, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let m = PartitionMeta {
            log_start: 3,
            next_offset: 99,
            size_bytes: 12345,
            max_timestamp: -7,
        };
        assert_eq!(PartitionMeta::decode(&m.encode()), Some(m));
        assert_eq!(PartitionMeta::decode(&[0u8; 5]), None);
    }
}
