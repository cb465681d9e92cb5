//! The leader-epoch index, Kafka's leader-epoch cache: `epochs` maps partition prefix +
//! leader epoch to the offset of the first batch written in that epoch. An entry is added
//! when a batch (a leader's own or a replicated one) carries an epoch newer than the latest
//! recorded; entries starting at or after a back truncation are removed with it. Epochs and
//! their start offsets therefore both increase along the key order. Only epochs >= 0 are
//! recorded.
//!
//! This file holds the lookups; the writer ([`super::writer`]) keeps the index.

use heed::RoTxn;

use super::{Db, Shared, keys};
use crate::log::partition::PartitionMeta;
use crate::log::{EpochEnd, EpochStart, PartitionId, StoreError};

/// Decodes an `epochs` entry of partition `id`; `None` for another partition's key.
fn entry(id: PartitionId, key: &[u8], value: &[u8]) -> Option<EpochStart> {
    if keys::partition_of(key) != Some(id) {
        return None;
    }
    Some(EpochStart {
        epoch: i32::try_from(keys::suffix_of(key)?).ok()?,
        start_offset: keys::u64_value(value)? as i64,
    })
}

/// The partition's latest recorded epoch in `txn`.
pub(super) fn last(txn: &RoTxn<'_>, db: Db, id: PartitionId) -> heed::Result<Option<EpochStart>> {
    Ok(db
        .get_lower_than_or_equal_to(txn, &keys::epoch_end(id))?
        .and_then(|(k, v)| entry(id, k, v)))
}

/// See [`crate::log::LogStore::latest_epoch`].
pub fn latest(shared: &Shared, id: PartitionId) -> Result<Option<EpochStart>, StoreError> {
    shared
        .partition(id)
        .ok_or(StoreError::UnknownPartition(id))?;
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    Ok(last(&txn, shared.dbs.epochs, id)?)
}

/// See [`crate::log::LogStore::epoch_end_offset`]. The latest epoch ends at the next offset
/// as committed in the same transaction (the `partitions` record), so the answer is one
/// consistent state even while the writer commits.
pub fn end_offset(
    shared: &Shared,
    id: PartitionId,
    epoch: i32,
) -> Result<Option<EpochEnd>, StoreError> {
    let part = shared
        .partition(id)
        .ok_or(StoreError::UnknownPartition(id))?;
    if epoch < 0 {
        return Ok(None);
    }
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    let db = shared.dbs.epochs;
    let Some(found) = db
        .get_lower_than_or_equal_to(&txn, &keys::epoch(id, epoch))?
        .and_then(|(k, v)| entry(id, k, v))
    else {
        return Ok(None);
    };
    let following = db
        .get_greater_than(&txn, &keys::epoch(id, found.epoch))?
        .and_then(|(k, v)| entry(id, k, v));
    let end_offset = match following {
        Some(next) => next.start_offset,
        None => shared
            .dbs
            .partitions
            .get(&txn, &keys::prefix(id))?
            .and_then(PartitionMeta::decode)
            .map_or_else(|| part.next_offset(), |m| m.next_offset),
    };
    Ok(Some(EpochEnd {
        epoch: found.epoch,
        end_offset,
    }))
}
