//! Writer steps a follower needs: appending its leader's batches as they are, truncating the
//! back of the log (Kafka's truncateTo), and restarting a partition empty at an offset. Each
//! runs inside the writer's open transaction; a large truncation is one transaction too
//! (partitions on edge devices are small, and a follower truncates only what diverged).

use std::sync::Arc;

use bytes::Bytes;
use heed::RwTxn;

use super::{TxnError, Writer};
use crate::log::lmdb::keys;
use crate::log::now_ms;
use crate::log::partition::PartitionMeta;
use crate::log::producers::{self, ProducerBatch};
use crate::log::{PartitionId, PartitionLog, StoreError};
use crate::protocol::batch::{self, ValidBatch};

/// A leader's batch that will be appended, with its header facts.
struct Incoming {
    valid: ValidBatch,
    base: i64,
    last: i64,
    leader_epoch: i32,
}

impl Writer {
    fn live(&self, id: PartitionId) -> Result<Arc<PartitionLog>, StoreError> {
        self.shared
            .partition(id)
            .filter(|_| !self.removed.contains(&id))
            .ok_or(StoreError::UnknownPartition(id))
    }

    /// See [`crate::log::LogStore::append_replica`].
    pub(super) fn append_replica(
        &mut self,
        txn: &mut RwTxn<'_>,
        part: &Arc<PartitionLog>,
        batches: &Bytes,
    ) -> Result<Result<i64, StoreError>, TxnError> {
        let id = part.id;
        if let Err(e) = self.live(id) {
            return Ok(Err(e));
        }
        let mut meta = self.meta(part);
        let incoming = match plan(id, &meta, batches) {
            Ok(incoming) => incoming,
            Err(e) => return Ok(Err(e)),
        };
        let dbs = self.shared.dbs;
        for b in incoming {
            let bytes = &b.valid.bytes;
            dbs.batches.put(txn, &keys::batch(id, b.base), bytes)?;
            if b.valid.max_timestamp > meta.max_timestamp {
                dbs.time_index.put(
                    txn,
                    &keys::time(id, b.valid.max_timestamp),
                    &(b.base as u64).to_be_bytes(),
                )?;
                meta.max_timestamp = b.valid.max_timestamp;
            }
            self.note_epoch(txn, id, b.leader_epoch, b.base)?;
            if b.valid.producer_id >= 0 {
                // Taken as the leader accepted it, unchecked: the follower keeps the state it
                // needs to deduplicate retries should it become the leader.
                let producer = ProducerBatch {
                    producer_id: b.valid.producer_id,
                    epoch: b.valid.producer_epoch,
                    first_seq: b.valid.base_sequence,
                    last_seq: producers::increment_seq(
                        b.valid.base_sequence,
                        b.valid.record_count - 1,
                    ),
                };
                let key = (id, producer.producer_id);
                let state = self.producer_state(txn, key)?;
                let next = producers::appended(state, &producer, b.base, now_ms());
                self.dirty_producers.insert(key, Some(next));
            }
            meta.next_offset = b.last + 1;
            meta.size_bytes += bytes.len() as u64;
        }
        self.dirty.insert(id, meta);
        Ok(Ok(meta.next_offset))
    }

    /// See [`crate::log::LogStore::truncate_back`].
    pub(super) fn truncate_back(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        offset: i64,
    ) -> Result<Result<i64, StoreError>, TxnError> {
        let part = match self.live(id) {
            Ok(part) => part,
            Err(e) => return Ok(Err(e)),
        };
        let mut meta = self.meta(&part);
        if offset >= meta.next_offset {
            return Ok(Ok(meta.next_offset));
        }
        let target = offset.max(meta.log_start);
        let dbs = self.shared.dbs;
        // The batch holding `target` goes whole; it may start below the log start.
        let cut = match dbs
            .batches
            .get_lower_than_or_equal_to(txn, &keys::batch(id, target))?
        {
            Some((key, value)) if keys::partition_of(key) == Some(id) => {
                match batch::stored_header(value) {
                    Some(h) if h.last_offset >= target => h.base_offset,
                    _ => target,
                }
            }
            _ => target,
        };
        let (from, end) = (keys::batch(id, cut), keys::batch_end(id));
        let mut freed = 0u64;
        for entry in dbs.batches.range(txn, &keys::span(&from, &end))? {
            freed += entry?.1.len() as u64;
        }
        dbs.batches.delete_range(txn, &keys::span(&from, &end))?;
        meta.max_timestamp = self.truncate_time_index(txn, id, cut)?;
        let new_next = cut.max(meta.log_start);
        self.truncate_epochs(txn, id, new_next)?;
        self.truncate_producers(txn, id, cut)?;
        meta.next_offset = new_next;
        meta.size_bytes = meta.size_bytes.saturating_sub(freed);
        self.dirty.insert(id, meta);
        Ok(Ok(new_next))
    }

    /// Drops time-index entries pointing at batches from `cut` on; returns the running max
    /// timestamp that remains (the last entry's), `i64::MIN` if none.
    fn truncate_time_index(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        cut: i64,
    ) -> Result<i64, TxnError> {
        let db = self.shared.dbs.time_index;
        let (start, end) = (keys::time(id, i64::MIN), keys::time_end(id));
        let mut doomed = Vec::new();
        let mut max_timestamp = i64::MIN;
        for entry in db.range(txn, &keys::span(&start, &end))? {
            let (key, value) = entry?;
            if keys::u64_value(value).is_none_or(|base| base as i64 >= cut) {
                doomed.push(key.to_vec());
            } else {
                max_timestamp = keys::timestamp_of(key);
            }
        }
        for key in &doomed {
            db.delete(txn, key)?;
        }
        Ok(max_timestamp)
    }

    /// See [`crate::log::LogStore::reset_to`].
    pub(super) fn reset_to(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        start: i64,
    ) -> Result<Result<(), StoreError>, TxnError> {
        let part = match self.live(id) {
            Ok(part) => part,
            Err(e) => return Ok(Err(e)),
        };
        if start < 0 {
            let meta = self.meta(&part);
            return Ok(Err(StoreError::OffsetOutOfRange {
                offset: start,
                log_start: meta.log_start,
                next: meta.next_offset,
            }));
        }
        let dbs = self.shared.dbs;
        let (from, end) = (keys::batch(id, 0), keys::batch_end(id));
        dbs.batches.delete_range(txn, &keys::span(&from, &end))?;
        let (from, end) = (keys::time(id, i64::MIN), keys::time_end(id));
        dbs.time_index.delete_range(txn, &keys::span(&from, &end))?;
        self.truncate_epochs(txn, id, i64::MIN)?;
        self.truncate_producers(txn, id, i64::MIN)?;
        self.dirty.insert(
            id,
            PartitionMeta {
                log_start: start,
                next_offset: start,
                ..PartitionMeta::new()
            },
        );
        Ok(Ok(()))
    }
}

/// Picks the batches of a leader's fetch data to append: skips those wholly below the next
/// offset, then requires each to start where the previous ended and to be a valid v2 batch.
fn plan(
    id: PartitionId,
    meta: &PartitionMeta,
    batches: &Bytes,
) -> Result<Vec<Incoming>, StoreError> {
    let mut next = meta.next_offset;
    let mut out = Vec::new();
    for bytes in batch::split(batches) {
        let header = batch::stored_header(&bytes);
        if out.is_empty() && header.is_some_and(|h| h.last_offset < next) {
            continue;
        }
        let (Some(h), Some(leader_epoch)) = (header, batch::leader_epoch(&bytes)) else {
            return Err(StoreError::Io(format!(
                "partition {id}: the leader sent a record batch of {} bytes, too short to be one",
                bytes.len()
            )));
        };
        if h.base_offset != next {
            return Err(StoreError::OffsetOutOfRange {
                offset: h.base_offset,
                log_start: meta.log_start,
                next,
            });
        }
        let valid = batch::validate(bytes).map_err(|e| {
            StoreError::Io(format!(
                "partition {id}: the leader's record batch at offset {} is invalid: {e}",
                h.base_offset
            ))
        })?;
        next = h.last_offset + 1;
        out.push(Incoming {
            valid,
            base: h.base_offset,
            last: h.last_offset,
            leader_epoch,
        });
    }
    Ok(out)
}
