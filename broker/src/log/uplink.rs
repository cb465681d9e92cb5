//! What the store keeps for store-and-forward uplinks: per (uplink, partition), how far the
//! partition has been forwarded and the producer identity that makes a re-send after a crash
//! land exactly once upstream ([`UplinkProgress`]), behind the narrow [`UplinkStore`] trait.
//!
//! Entries are keyed by the partition's internal id (topic number), so a re-created topic
//! starts from zero, and they are deleted with their topic.

use super::{PartitionId, Pending, StoreError};

/// Durable forwarding state of one local partition for one uplink.
///
/// Invariants: every record below `next_offset` was acknowledged upstream with acks=all (or
/// counted in `dropped` / `rejected`); when `in_flight_end > next_offset`, the records
/// `[next_offset, in_flight_end)` may have been sent as one batch with first sequence
/// `next_sequence` under (`producer_id`, `producer_epoch`), and a restart re-sends exactly
/// that batch so the upstream deduplicates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkProgress {
    pub next_offset: i64,
    /// -1 until the first InitProducerId.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence number of the record at `next_offset`.
    pub next_sequence: i32,
    /// End (exclusive) of the batch that may be in flight; -1 when none.
    pub in_flight_end: i64,
    /// Upstream partition this partition forwards to, fixed at first use; -1 before.
    pub remote_partition: i32,
    /// Records retention had to delete before they were forwarded (disk budget).
    pub dropped: u64,
    /// Records the upstream refused for good (e.g. larger than its `message.max.bytes`).
    pub rejected: u64,
}

impl Default for UplinkProgress {
    fn default() -> Self {
        UplinkProgress {
            next_offset: 0,
            producer_id: -1,
            producer_epoch: -1,
            next_sequence: 0,
            in_flight_end: -1,
            remote_partition: -1,
            dropped: 0,
            rejected: 0,
        }
    }
}

impl UplinkProgress {
    pub const ENCODED_LEN: usize = 50;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.next_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.producer_id.to_be_bytes());
        out[16..18].copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[18..22].copy_from_slice(&self.next_sequence.to_be_bytes());
        out[22..30].copy_from_slice(&self.in_flight_end.to_be_bytes());
        out[30..34].copy_from_slice(&self.remote_partition.to_be_bytes());
        out[34..42].copy_from_slice(&self.dropped.to_be_bytes());
        out[42..50].copy_from_slice(&self.rejected.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let take = |at: usize, len: usize| b.get(at..at + len);
        Some(UplinkProgress {
            next_offset: i64::from_be_bytes(take(0, 8)?.try_into().ok()?),
            producer_id: i64::from_be_bytes(take(8, 8)?.try_into().ok()?),
            producer_epoch: i16::from_be_bytes(take(16, 2)?.try_into().ok()?),
            next_sequence: i32::from_be_bytes(take(18, 4)?.try_into().ok()?),
            in_flight_end: i64::from_be_bytes(take(22, 8)?.try_into().ok()?),
            remote_partition: i32::from_be_bytes(take(30, 4)?.try_into().ok()?),
            dropped: u64::from_be_bytes(take(34, 8)?.try_into().ok()?),
            rejected: u64::from_be_bytes(take(42, 8)?.try_into().ok()?),
        })
    }
}

/// One progress entry to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEntry {
    pub uplink: String,
    pub partition: PartitionId,
    pub progress: UplinkProgress,
}

/// Durable uplink progress. Writes resolve once durable; reads are blocking.
pub trait UplinkStore: Send + Sync {
    /// Every stored entry of `uplink`. Blocking.
    fn uplink_progress(
        &self,
        uplink: &str,
    ) -> Result<Vec<(PartitionId, UplinkProgress)>, StoreError>;
    /// Stores the entries (overwriting) in one transaction. Not counted as an append against
    /// the disk budget: an uplink must be able to record progress on a full disk.
    fn save_uplink_progress(&self, entries: Vec<ProgressEntry>) -> Pending<Result<(), StoreError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips() {
        let p = UplinkProgress {
            next_offset: 1 << 40,
            producer_id: 77,
            producer_epoch: 3,
            next_sequence: i32::MAX - 1,
            in_flight_end: (1 << 40) + 9,
            remote_partition: 5,
            dropped: 12,
            rejected: 1,
        };
        assert_eq!(UplinkProgress::decode(&p.encode()), Some(p));
        assert_eq!(
            UplinkProgress::decode(&UplinkProgress::default().encode()),
            Some(UplinkProgress::default())
        );
        assert_eq!(UplinkProgress::decode(&[0u8; 49]), None);
    }
}
