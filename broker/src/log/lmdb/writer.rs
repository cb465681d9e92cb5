//! The writer thread: the only place that opens LMDB write transactions.
//!
//! It takes every operation queued since its last commit, applies them all in one
//! transaction and commits once (one fsync), then publishes the new partition states and
//! answers each operation — so a producer is acknowledged only after its batch is durable.
//! When a group hits the map limit, the map grows (within the budget) and the group is
//! retried; at the budget, operations are retried one by one so only appends fail and
//! deletes may use the reserve (offset commits count as appends there). While idle it purges data of deleted topics in small chunks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use heed::RwTxn;
use tokio::sync::oneshot;

use super::budget::{self, Budget};
use super::{Shared, keys, offsets};
use crate::log::partition::PartitionMeta;
use crate::log::producers::{self, ProducerState, Verdict};
use crate::log::{
    AppendItem, Appended, OffsetCommit, PartitionId, PartitionLog, StoreError, TopicPartition,
    TopicRecord, Truncated,
};
use crate::protocol::batch;

/// Most operations folded into one transaction.
const MAX_GROUP: usize = 4096;
/// With deleted topics to purge, one purge step per this many commits even when busy.
const PURGE_EVERY_COMMITS: u64 = 64;
/// Batches deleted per purge step of a deleted topic.
const PURGE_CHUNK: usize = 2048;

type Reply<T> = oneshot::Sender<T>;

pub enum Op {
    Append {
        items: Vec<AppendItem>,
        reply: Reply<Vec<Result<Appended, StoreError>>>,
    },
    Truncate {
        id: PartitionId,
        new_start: i64,
        limit: usize,
        reply: Reply<Result<Truncated, StoreError>>,
    },
    NextTopicNum {
        reply: Reply<Result<u32, StoreError>>,
    },
    NextProducerId {
        reply: Reply<Result<i64, StoreError>>,
    },
    ExpireProducers {
        before_ms: i64,
        reply: Reply<Result<usize, StoreError>>,
    },
    PutTopic {
        topic: TopicRecord,
        reply: Reply<Result<(), StoreError>>,
    },
    DeleteTopic {
        topic: TopicRecord,
        reply: Reply<Result<(), StoreError>>,
    },
    CommitOffsets {
        commits: Vec<OffsetCommit>,
        reply: Reply<Result<(), StoreError>>,
    },
    DeleteOffsets {
        group: String,
        only: Option<Vec<TopicPartition>>,
        reply: Reply<Result<usize, StoreError>>,
    },
    ExpireOffsets {
        groups: Vec<String>,
        before_ms: i64,
        reply: Reply<Result<Vec<String>, StoreError>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// What applying one op produced, before commit.
enum Outcome {
    Append(Vec<Result<Appended, StoreError>>),
    Truncate(Result<Truncated, StoreError>),
    TopicNum(u32),
    ProducerId(i64),
    Expired(usize),
    Committed(Result<(), StoreError>),
    Deleted(usize),
    Groups(Vec<String>),
    Done,
}

/// Why a transaction must be abandoned.
enum TxnError {
    MapFull,
    Other(heed::Error),
}

impl From<heed::Error> for TxnError {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => TxnError::MapFull,
            other => TxnError::Other(other),
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    budget: Budget,
    map_size: u64,
    orphans: Vec<PartitionId>,
    /// Partition states changed by the open transaction, published after commit.
    dirty: HashMap<PartitionId, PartitionMeta>,
    /// Partitions created / removed by the open transaction.
    created: Vec<PartitionId>,
    removed: Vec<PartitionId>,
    /// Committed idempotent-producer states read so far, and those the open transaction
    /// changed (`None`: removed).
    producers: HashMap<ProducerKey, ProducerState>,
    dirty_producers: HashMap<ProducerKey, Option<ProducerState>>,
    commits: u64,
}

type ProducerKey = (PartitionId, i64);

pub fn spawn(
    shared: Arc<Shared>,
    rx: Receiver<Op>,
    orphans: Vec<PartitionId>,
    map_size: u64,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let budget = shared.budget;
    let mut writer = Writer {
        shared,
        budget,
        map_size,
        orphans,
        dirty: HashMap::new(),
        created: Vec::new(),
        removed: Vec::new(),
        producers: HashMap::new(),
        dirty_producers: HashMap::new(),
        commits: 0,
    };
    std::thread::Builder::new()
        .name("runnel-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Io(format!("cannot start writer thread: {e}")))
}

impl Writer {
    fn run(&mut self, rx: Receiver<Op>) {
        loop {
            let first = if self.orphans.is_empty() {
                match rx.recv() {
                    Ok(op) => op,
                    Err(_) => return,
                }
            } else {
                match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        self.purge_step();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            if !self.orphans.is_empty() && self.commits.is_multiple_of(PURGE_EVERY_COMMITS) {
                // Under steady load the queue is never idle: purge a chunk now and then anyway.
                self.purge_step();
            }
            let mut ops = vec![first];
            while ops.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let shutdown = ops.iter().position(|op| matches!(op, Op::Shutdown { .. }));
            let rest = shutdown.map(|at| ops.split_off(at));
            self.commit_group(ops);
            if let Some(rest) = rest {
                // Everything queued before the shutdown is committed; answer later ops with
                // `Closed` by dropping their senders.
                for op in rest {
                    if let Op::Shutdown { reply } = op {
                        let _ = reply.send(());
                    }
                }
                return;
            }
        }
    }

    fn commit_group(&mut self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        loop {
            let started = std::time::Instant::now();
            match self.apply_all(&ops) {
                Ok(outcomes) => {
                    tracing::trace!(
                        ops = ops.len(),
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "group committed"
                    );
                    self.finish(ops, outcomes);
                    return;
                }
                Err(TxnError::MapFull) => {
                    if let Some(next) = self.budget.grow_for_appends(self.map_size)
                        && self.resize(next)
                    {
                        continue;
                    }
                    break;
                }
                Err(TxnError::Other(e)) => {
                    tracing::error!(error = %e, "LMDB write transaction failed; retrying ops one by one");
                    break;
                }
            }
        }
        for op in ops {
            self.commit_alone(op);
        }
    }

    /// Applies one op in its own transaction. Used when the group as a whole cannot commit.
    fn commit_alone(&mut self, op: Op) {
        let ops = vec![op];
        let mut emergency = false;
        let result = loop {
            match self.apply_all(&ops) {
                Ok(outcomes) => break Ok(outcomes),
                Err(TxnError::MapFull) if !is_append(&ops[0]) && !emergency => {
                    // Deletes may use the reserve: that is what it is for.
                    emergency = self.resize(self.budget.budget);
                    if !emergency {
                        break Err(StoreError::DiskFull {
                            budget: self.budget.budget,
                        });
                    }
                }
                Err(TxnError::MapFull) => {
                    break Err(StoreError::DiskFull {
                        budget: self.budget.budget,
                    });
                }
                Err(TxnError::Other(e)) => break Err(StoreError::Io(e.to_string())),
            }
        };
        if emergency {
            let used = budget::round_up(self.shared.disk_usage().used);
            self.resize(self.budget.soft.max(used).min(self.budget.budget));
        }
        match result {
            Ok(outcomes) => self.finish(ops, outcomes),
            Err(err) => {
                for op in ops {
                    fail(op, err.clone());
                }
            }
        }
    }

    /// Resizes the map; waits for readers to close their transactions first.
    fn resize(&mut self, to: u64) -> bool {
        let Ok(size) = usize::try_from(to) else {
            return false;
        };
        let _exclusive = self
            .shared
            .gate
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: the gate is held exclusively, so no reader has a transaction open, and the
        // writer (this thread) aborted its own before calling.
        match unsafe { self.shared.env.resize(size) } {
            Ok(()) => {
                tracing::info!(from = self.map_size, to, "resized LMDB map");
                self.map_size = to;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, to, "cannot resize LMDB map");
                false
            }
        }
    }

    fn apply_all(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, TxnError> {
        self.dirty.clear();
        self.created.clear();
        self.removed.clear();
        self.dirty_producers.clear();
        let env = self.shared.env.clone();
        let mut txn = env.write_txn()?;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(self.apply(&mut txn, op)?);
        }
        for (id, meta) in &self.dirty {
            if !self.removed.contains(id) {
                self.shared
                    .dbs
                    .partitions
                    .put(&mut txn, &keys::prefix(*id), &meta.encode())?;
            }
        }
        for ((id, pid), state) in &self.dirty_producers {
            let key = keys::producer(*id, *pid);
            match state {
                Some(state) => self
                    .shared
                    .dbs
                    .producers
                    .put(&mut txn, &key, &state.encode())?,
                None => {
                    self.shared.dbs.producers.delete(&mut txn, &key)?;
                }
            }
        }
        txn.commit()?;
        Ok(outcomes)
    }

    fn apply(&mut self, txn: &mut RwTxn<'_>, op: &Op) -> Result<Outcome, TxnError> {
        Ok(match op {
            Op::Append { items, .. } => {
                let mut results = Vec::with_capacity(items.len());
                for item in items {
                    results.push(self.append(txn, item)?);
                }
                Outcome::Append(results)
            }
            Op::Truncate {
                id,
                new_start,
                limit,
                ..
            } => Outcome::Truncate(self.truncate(txn, *id, *new_start, *limit)?),
            Op::NextTopicNum { .. } => {
                let meta = self.shared.dbs.meta;
                let next = meta
                    .get(txn, b"next_topic_num")?
                    .and_then(|v| v.try_into().ok().map(u32::from_be_bytes))
                    .unwrap_or(1);
                meta.put(txn, b"next_topic_num", &(next + 1).to_be_bytes())?;
                Outcome::TopicNum(next)
            }
            Op::NextProducerId { .. } => {
                let meta = self.shared.dbs.meta;
                let next = meta
                    .get(txn, b"next_producer_id")?
                    .and_then(|v| v.try_into().ok().map(i64::from_be_bytes))
                    .unwrap_or(0);
                meta.put(txn, b"next_producer_id", &(next + 1).to_be_bytes())?;
                Outcome::ProducerId(next)
            }
            Op::ExpireProducers { before_ms, .. } => {
                Outcome::Expired(self.expire(txn, *before_ms)?)
            }
            Op::PutTopic { topic, .. } => {
                self.put_topic(txn, topic)?;
                Outcome::Done
            }
            Op::DeleteTopic { topic, .. } => {
                self.shared.dbs.topics.delete(txn, topic.name.as_bytes())?;
                offsets::delete_topic(txn, self.shared.dbs.offsets, &topic.name)?;
                for p in 0..topic.partitions {
                    self.removed.push(PartitionId {
                        topic: topic.num,
                        partition: p,
                    });
                }
                Outcome::Done
            }
            Op::CommitOffsets { commits, .. } => {
                Outcome::Committed(offsets::commit(txn, self.shared.dbs.offsets, commits)?)
            }
            Op::DeleteOffsets { group, only, .. } => Outcome::Deleted(offsets::delete(
                txn,
                self.shared.dbs.offsets,
                group,
                only.as_deref(),
            )?),
            Op::ExpireOffsets {
                groups, before_ms, ..
            } => Outcome::Groups(offsets::expire(
                txn,
                self.shared.dbs.offsets,
                groups,
                *before_ms,
            )?),
            Op::Shutdown { .. } => Outcome::Done,
        })
    }

    /// The partition's state as of the open transaction.
    fn meta(&mut self, part: &PartitionLog) -> PartitionMeta {
        *self.dirty.entry(part.id).or_insert_with(|| part.meta())
    }

    fn append(
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
                    return Ok(Err(StoreError::OutOfOrderSequence { expected, got }));
                }
                Verdict::Fenced { current, got } => {
                    return Ok(Err(StoreError::ProducerFenced { current, got }));
                }
            }
        }
        let stored = batch::with_offset(&item.batch, base, 0);
        let dbs = self.shared.dbs;
        dbs.batches.put(txn, &keys::batch(id, base), &stored)?;
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
    fn producer_state(
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
    fn expire(&mut self, txn: &mut RwTxn<'_>, before_ms: i64) -> Result<usize, TxnError> {
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

    fn truncate(
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
    fn trim_time_index(
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

    fn put_topic(&mut self, txn: &mut RwTxn<'_>, topic: &TopicRecord) -> Result<(), TxnError> {
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

    /// Publishes committed state and answers every op.
    fn finish(&mut self, ops: Vec<Op>, outcomes: Vec<Outcome>) {
        {
            let mut map = self
                .shared
                .partitions
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for id in &self.created {
                if let Some(meta) = self.dirty.get(id) {
                    map.insert(*id, Arc::new(PartitionLog::new(*id, *meta)));
                }
            }
            for id in &self.removed {
                map.remove(id);
                self.orphans.push(*id);
            }
            for (id, meta) in &self.dirty {
                if let Some(part) = map.get(id) {
                    part.publish(meta);
                }
            }
        }
        for (key, state) in self.dirty_producers.drain() {
            match state {
                Some(state) => self.producers.insert(key, state),
                None => self.producers.remove(&key),
            };
        }
        self.commits += 1;
        self.shared.changes.send_replace(self.commits);
        for (op, outcome) in ops.into_iter().zip(outcomes) {
            answer(op, outcome);
        }
    }

    /// Deletes a chunk of a deleted topic's data in its own transaction.
    fn purge_step(&mut self) {
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

    fn purge(&mut self, id: PartitionId) -> Result<bool, TxnError> {
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
            dbs.partitions.delete(&mut txn, &keys::prefix(id))?;
        }
        txn.commit()?;
        Ok(more)
    }
}

fn is_append(op: &Op) -> bool {
    matches!(op, Op::Append { .. } | Op::CommitOffsets { .. })
}

fn answer(op: Op, outcome: Outcome) {
    match (op, outcome) {
        (Op::Append { reply, .. }, Outcome::Append(results)) => {
            let _ = reply.send(results);
        }
        (Op::Truncate { reply, .. }, Outcome::Truncate(result)) => {
            let _ = reply.send(result);
        }
        (Op::NextTopicNum { reply }, Outcome::TopicNum(n)) => {
            let _ = reply.send(Ok(n));
        }
        (Op::NextProducerId { reply }, Outcome::ProducerId(id)) => {
            let _ = reply.send(Ok(id));
        }
        (Op::ExpireProducers { reply, .. }, Outcome::Expired(n)) => {
            let _ = reply.send(Ok(n));
        }
        (Op::PutTopic { reply, .. }, _) | (Op::DeleteTopic { reply, .. }, _) => {
            let _ = reply.send(Ok(()));
        }
        (Op::CommitOffsets { reply, .. }, Outcome::Committed(result)) => {
            let _ = reply.send(result);
        }
        (Op::DeleteOffsets { reply, .. }, Outcome::Deleted(n)) => {
            let _ = reply.send(Ok(n));
        }
        (Op::ExpireOffsets { reply, .. }, Outcome::Groups(groups)) => {
            let _ = reply.send(Ok(groups));
        }
        (Op::Shutdown { reply }, _) => {
            let _ = reply.send(());
        }
        (op, _) => fail(op, StoreError::Io("internal: mismatched outcome".into())),
    }
}

fn fail(op: Op, err: StoreError) {
    match op {
        Op::Append { items, reply } => {
            let _ = reply.send(items.iter().map(|_| Err(err.clone())).collect());
        }
        Op::Truncate { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::NextTopicNum { reply } => {
            let _ = reply.send(Err(err));
        }
        Op::NextProducerId { reply } => {
            let _ = reply.send(Err(err));
        }
        Op::ExpireProducers { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::PutTopic { reply, .. } | Op::DeleteTopic { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::CommitOffsets { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::DeleteOffsets { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::ExpireOffsets { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::Shutdown { reply } => {
            let _ = reply.send(());
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
