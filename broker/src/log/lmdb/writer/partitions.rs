//! Writer steps on partitions: appends with idempotence checks (recording new leader epochs),
//! front truncation with its time-index repair, topic records, producer expiry, and purging
//! deleted partitions. All run inside the writer's open transaction except the purge, which
//! commits its own.

use heed::RwTxn;

use super::{PURGE_CHUNK, ProducerKey, TxnError, Writer};
use crate::log::lmdb::{budget, keys};
use crate::log::now_ms;
use crate::log::partition::PartitionMeta;
use crate::log::producers::{self, ProducerState, Verdict};
use crate::log::{
    AppendItem, Appended, PartitionId, PartitionLog, StoreError, TopicRecord, Truncated,
};
use crate::protocol::batch;

impl Writer {
    /// The partition's state as of the open transaction.
    pub(super) fn meta(&mut self, part: &PartitionLog) -> PartitionMeta {
        *self.dirty.entry(part.id).or_insert_with(|| part.meta())
    }

    pub(super) fn append(
        &mut self,
        txn: &mut RwTxn<'_>,
        item: &AppendItem,
    ) -> Result<Result<Appended, StoreError>, TxnError> {
        let id = item.partition.id;
        if self.shared.partition(id).is_none() || self.removed.contains(&id) {
            return Ok(Err(StoreError::UnknownPartition(id)));
        }
        let mut meta = self.meta(&item.partition);
        let base = meta.next_offset;
        if let Some(producer) = &item.producer {
            let key = (id, producer.producer_id);
            let state = self.producer_state(txn, key)?;
            match producers::check(state.as_ref(), producer) {
                Verdict::Append => {
                    let next = producers::appended(state, producer, base, now_ms());
                    self.dirty_producers.insert(key, Some(next));
                }
                Verdict::Duplicate(offset) => {
                    tracing::debug!(partition = %id, producer_id = producer.producer_id, base_sequence = producer.first_seq, offset, "duplicate batch acknowledged with its original offset");
                    return Ok(Ok(Appended {
                        base_offset: offset,
                        log_start: meta.log_start,
                    }));
                }
                Verdict::OutOfOrder { expected, got } => {
                    tracing::warn!(partition = %id, producer_id = producer.producer_id, expected, got, "out of order sequence refused");
                    return Ok(Err(StoreError::OutOfOrderSequence { expected, got }));
                }
                Verdict::Fenced { current, got } => {
                    return Ok(Err(StoreError::ProducerFenced { current, got }));
                }
            }
        }
        let stored = batch::with_offset(&item.batch, base, item.leader_epoch);
        let dbs = self.shared.dbs;
        dbs.batches.put(txn, &keys::batch(id, base), &stored)?;
        self.note_epoch(txn, id, item.leader_epoch, base)?;
        if item.max_timestamp > meta.max_timestamp {
            dbs.time_index.put(
                txn,
                &keys::time(id, item.max_timestamp),
                &(base as u64).to_be_bytes(),
            )?;
            meta.max_timestamp = item.max_timestamp;
        }
        meta.next_offset += i64::from(item.record_count);
        meta.size_bytes += stored.len() as u64;
        self.dirty.insert(id, meta);
        Ok(Ok(Appended {
            base_offset: base,
            log_start: meta.log_start,
        }))
    }

    /// A producer's state as of the open transaction.
    pub(super) fn producer_state(
        &mut self,
        txn: &RwTxn<'_>,
        key: ProducerKey,
    ) -> Result<Option<ProducerState>, TxnError> {
        if let Some(state) = self.dirty_producers.get(&key) {
            return Ok(state.clone());
        }
        if let Some(state) = self.producers.get(&key) {
            return Ok(Some(state.clone()));
        }
        let stored = self
            .shared
            .dbs
            .producers
            .get(txn, &keys::producer(key.0, key.1))?
            .and_then(ProducerState::decode);
        if let Some(state) = &stored {
            self.producers.insert(key, state.clone());
        }
        Ok(stored)
    }

    /// Removes producer states last appended to before `before_ms`.
    pub(super) fn expire(
        &mut self,
        txn: &mut RwTxn<'_>,
        before_ms: i64,
    ) -> Result<usize, TxnError> {
        let mut doomed = Vec::new();
        for entry in self.shared.dbs.producers.iter(txn)? {
            let (key, value) = entry?;
            let old = ProducerState::decode(value).is_none_or(|s| s.last_append_ms < before_ms);
            if let (true, Some(id), Some(pid)) =
                (old, keys::partition_of(key), keys::suffix_of(key))
            {
                doomed.push((id, pid as i64));
            }
        }
        for key in &doomed {
            self.dirty_producers.insert(*key, None);
        }
        Ok(doomed.len())
    }

    pub(super) fn truncate(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        new_start: i64,
        limit: usize,
    ) -> Result<Result<Truncated, StoreError>, TxnError> {
        let Some(part) = self.shared.partition(id) else {
            return Ok(Err(StoreError::UnknownPartition(id)));
        };
        let mut meta = self.meta(&part);
        if new_start > meta.next_offset || new_start < 0 {
            return Ok(Err(StoreError::OffsetOutOfRange {
                offset: new_start,
                log_start: meta.log_start,
                next: meta.next_offset,
            }));
        }
        meta.log_start = meta.log_start.max(new_start);
        let dbs = self.shared.dbs;
        let (start, end) = (keys::batch(id, 0), keys::batch_end(id));
        let mut doomed = Vec::new();
        let mut first_kept = meta.next_offset;
        let mut freed = 0u64;
        for entry in dbs.batches.range(txn, &keys::span(&start, &end))? {
            let (key, value) = entry?;
            let header = batch::stored_header(value);
            match header {
                Some(h) if h.last_offset < meta.log_start && doomed.len() < limit => {
                    doomed.push(key.to_vec());
                    freed += value.len() as u64;
                }
                Some(h) => {
                    first_kept = h.base_offset;
                    break;
                }
                None => break,
            }
        }
        for key in &doomed {
            dbs.batches.delete(txn, key)?;
        }
        let more = doomed.len() == limit && first_kept < meta.log_start;
        self.trim_time_index(txn, id, first_kept)?;
        meta.size_bytes = meta.size_bytes.saturating_sub(freed);
        self.dirty.insert(id, meta);
        Ok(Ok(Truncated {
            log_start: meta.log_start,
            more,
        }))
    }

    /// Drops time-index entries of deleted batches. The largest dropped timestamp is
    /// re-pointed at the first kept batch, so a lookup still starts no later than the first
    /// batch that may hold a matching record.
    pub(super) fn trim_time_index(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        first_kept: i64,
    ) -> Result<(), TxnError> {
        let dbs = self.shared.dbs;
        let (start, end) = (keys::time(id, i64::MIN), keys::time_end(id));
        let mut doomed = Vec::new();
        for entry in dbs.time_index.range(txn, &keys::span(&start, &end))? {
            let (key, value) = entry?;
            match keys::u64_value(value) {
                Some(base) if (base as i64) < first_kept => doomed.push(key.to_vec()),
                _ => break,
            }
        }
        let Some(last) = doomed.pop() else {
            return Ok(());
        };
        for key in &doomed {
            dbs.time_index.delete(txn, key)?;
        }
        dbs.time_index
            .put(txn, &last, &(first_kept as u64).to_be_bytes())?;
        Ok(())
    }

    pub(super) fn put_topic(
        &mut self,
        txn: &mut RwTxn<'_>,
        topic: &TopicRecord,
    ) -> Result<(), TxnError> {
        let dbs = self.shared.dbs;
        let json = serde_json::to_vec(topic)
            .map_err(|e| TxnError::Other(heed::Error::Encoding(Box::new(e))))?;
        dbs.topics.put(txn, topic.name.as_bytes(), &json)?;
        for p in 0..topic.partitions {
            let id = PartitionId {
                topic: topic.num,
                partition: p,
            };
            if self.shared.partition(id).is_none() && !self.dirty.contains_key(&id) {
                self.dirty.insert(id, PartitionMeta::new());
                self.created.push(id);
            }
        }
        Ok(())
    }

    /// Deletes a chunk of a deleted topic's data in its own transaction.
    pub(super) fn purge_step(&mut self) {
        let Some(&id) = self.orphans.last() else {
            return;
        };
        match self.purge(id) {
            Ok(true) => {}
            Ok(false) => {
                self.orphans.pop();
                tracing::debug!(partition = %id, "purged deleted partition");
            }
            Err(TxnError::MapFull) => {
                // Purging may use the reserve; appends may not, so shrink back afterwards.
                if self.resize(self.budget.budget) {
                    let _ = self.purge(id);
                    let used = budget::round_up(self.shared.disk_usage().used);
                    self.resize(self.budget.soft.max(used).min(self.budget.budget));
                } else {
                    self.orphans.pop();
                }
            }
            Err(TxnError::Other(e)) => {
                tracing::error!(partition = %id, error = %e, "cannot purge deleted partition");
                self.orphans.pop();
            }
        }
    }

    pub(super) fn purge(&mut self, id: PartitionId) -> Result<bool, TxnError> {
        let env = self.shared.env.clone();
        let dbs = self.shared.dbs;
        let mut txn = env.write_txn()?;
        let (start, end) = (keys::batch(id, 0), keys::batch_end(id));
        let mut doomed = Vec::new();
        for entry in dbs.batches.range(&txn, &keys::span(&start, &end))? {
            doomed.push(entry?.0.to_vec());
            if doomed.len() == PURGE_CHUNK {
                break;
            }
        }
        for key in &doomed {
            dbs.batches.delete(&mut txn, key)?;
        }
        let more = doomed.len() == PURGE_CHUNK;
        if !more {
            let (start, end) = (keys::time(id, i64::MIN), keys::time_end(id));
            dbs.time_index
                .delete_range(&mut txn, &keys::span(&start, &end))?;
            let (start, end) = (keys::producer(id, 0), keys::producer_end(id));
            dbs.producers
                .delete_range(&mut txn, &keys::span(&start, &end))?;
            self.producers.retain(|(p, _), _| *p != id);
            let (start, end) = (keys::epoch(id, 0), keys::epoch_end(id));
            dbs.epochs
                .delete_range(&mut txn, &keys::span(&start, &end))?;
            self.epochs.remove(&id);
            dbs.partitions.delete(&mut txn, &keys::prefix(id))?;
        }
        txn.commit()?;
        Ok(more)
    }
}
