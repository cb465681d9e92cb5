//! Key layouts. All integers are big-endian so LMDB's byte order is numeric order, and every
//! key of a partition shares the 8-byte prefix `topic u32 | partition u32`, so a partition is
//! one contiguous key range.
//!
//! Committed offsets are keyed by names instead: `group len u16 | group | topic len u16 |
//! topic | partition u32`. The length prefixes make any byte string safe (no separator to
//! collide with), and every key of a group shares the prefix `group len u16 | group`, so a
//! group is one contiguous key range.

use std::ops::Bound;

use crate::log::PartitionId;

pub const PREFIX_LEN: usize = 8;
pub const KEY_LEN: usize = 16;

pub fn prefix(id: PartitionId) -> [u8; PREFIX_LEN] {
    let mut k = [0u8; PREFIX_LEN];
    k[0..4].copy_from_slice(&id.topic.to_be_bytes());
    k[4..8].copy_from_slice(&id.partition.to_be_bytes());
    k
}

pub fn partition_of(key: &[u8]) -> Option<PartitionId> {
    if key.len() < PREFIX_LEN {
        return None;
    }
    Some(PartitionId {
        topic: u32::from_be_bytes([key[0], key[1], key[2], key[3]]),
        partition: u32::from_be_bytes([key[4], key[5], key[6], key[7]]),
    })
}

fn with_suffix(id: PartitionId, suffix: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..PREFIX_LEN].copy_from_slice(&prefix(id));
    k[PREFIX_LEN..].copy_from_slice(&suffix.to_be_bytes());
    k
}

/// `batches` key: the batch's base offset (offsets are never negative).
pub fn batch(id: PartitionId, base_offset: i64) -> [u8; KEY_LEN] {
    with_suffix(id, base_offset.max(0) as u64)
}

/// Last possible `batches` key of a partition.
pub fn batch_end(id: PartitionId) -> [u8; KEY_LEN] {
    with_suffix(id, u64::MAX)
}

/// `time_index` key: a timestamp with the sign bit flipped so negative ones sort first.
pub fn time(id: PartitionId, timestamp: i64) -> [u8; KEY_LEN] {
    with_suffix(id, (timestamp as u64) ^ (1 << 63))
}

pub fn time_end(id: PartitionId) -> [u8; KEY_LEN] {
    with_suffix(id, u64::MAX)
}

/// The timestamp of a `time_index` key.
pub fn timestamp_of(key: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&key[PREFIX_LEN..KEY_LEN]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

/// `producers` key: the producer id (never negative for a stored state).
pub fn producer(id: PartitionId, producer_id: i64) -> [u8; KEY_LEN] {
    with_suffix(id, producer_id.max(0) as u64)
}

pub fn producer_end(id: PartitionId) -> [u8; KEY_LEN] {
    with_suffix(id, u64::MAX)
}

/// `epochs` key: a partition leader epoch (only epochs >= 0 are recorded).
pub fn epoch(id: PartitionId, epoch: i32) -> [u8; KEY_LEN] {
    with_suffix(id, epoch.max(0) as u64)
}

/// Last possible `epochs` key of a partition.
pub fn epoch_end(id: PartitionId) -> [u8; KEY_LEN] {
    with_suffix(id, u64::MAX)
}

/// The 8-byte suffix of a 16-byte key.
pub fn suffix_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        key.get(PREFIX_LEN..KEY_LEN)?.try_into().ok()?,
    ))
}

/// The inclusive key range `start..=end`, in the form heed accepts for unsized keys.
pub fn span<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(start), Bound::Included(end))
}

pub fn u64_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// LMDB's largest key (its compile-time default `MDB_MAXKEYSIZE`).
pub const MAX_KEY_LEN: usize = 511;

fn push_name(k: &mut Vec<u8>, name: &str) -> Option<()> {
    k.extend_from_slice(&u16::try_from(name.len()).ok()?.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    Some(())
}

/// The key prefix shared by every committed offset of `group`; `None` if too long.
pub fn group_prefix(group: &str) -> Option<Vec<u8>> {
    let mut k = Vec::with_capacity(2 + group.len() + 2 + 16 + 4);
    push_name(&mut k, group)?;
    (k.len() <= MAX_KEY_LEN).then_some(k)
}

/// `offsets` key; `None` if the names do not fit a key or the partition is negative.
pub fn offset(group: &str, topic: &str, partition: i32) -> Option<Vec<u8>> {
    let mut k = group_prefix(group)?;
    push_name(&mut k, topic)?;
    k.extend_from_slice(&u32::try_from(partition).ok()?.to_be_bytes());
    (k.len() <= MAX_KEY_LEN).then_some(k)
}

fn take_name(key: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::from(u16::from_be_bytes(key.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(key.get(2..2 + len)?).ok()?;
    Some((name, key.get(2 + len..)?))
}

/// `(group, topic, partition)` of an `offsets` key.
pub fn offset_of(key: &[u8]) -> Option<(&str, &str, i32)> {
    let (group, rest) = take_name(key)?;
    let (topic, rest) = take_name(rest)?;
    let partition = i32::try_from(u32::from_be_bytes(rest.try_into().ok()?)).ok()?;
    Some((group, topic, partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_numerically_including_negatives() {
        let id = PartitionId {
            topic: 1,
            partition: 2,
        };
        let ts = [i64::MIN, -5, 0, 7, i64::MAX];
        let keys: Vec<_> = ts.iter().map(|t| time(id, *t)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (t, k) in ts.iter().zip(&keys) {
            assert_eq!(timestamp_of(k), *t);
        }
        assert_eq!(partition_of(&keys[0]), Some(id));
    }

    #[test]
    fn offset_keys_round_trip_and_keep_groups_contiguous() {
        let a = offset("g", "t", 3).expect("key");
        assert_eq!(offset_of(&a), Some(("g", "t", 3)));
        // "g" must not be a prefix-match of group "g\0…": the length prefix tells them apart.
        let tricky = offset("g\0\0", "t", 0).expect("key");
        let prefix = group_prefix("g").expect("prefix");
        assert!(a.starts_with(&prefix));
        assert!(!tricky.starts_with(&prefix));
        assert_eq!(offset_of(&tricky), Some(("g\0\0", "t", 0)));
        assert!(offset("g", "t", -1).is_none());
        assert!(offset(&"g".repeat(300), &"t".repeat(249), 0).is_none());
        let longest = offset(&"g".repeat(254), &"t".repeat(249), 0).expect("fits");
        assert_eq!(longest.len(), MAX_KEY_LEN);
    }
}
