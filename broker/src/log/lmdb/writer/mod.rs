//! The writer thread: the only place that opens LMDB write transactions.
//!
//! It takes every operation queued since its last commit, applies them all in one
//! transaction and commits once (one fsync), then publishes the new partition states and
//! answers each operation — so a producer is acknowledged only after its batch is durable.
//! When a group hits the map limit, the map grows (within the budget) and the group is
//! retried; at the budget, operations are retried one by one so only appends fail and
//! deletes may use the reserve (offset commits count as appends there). Data of deleted
//! topics is purged in small chunks while idle, and every few commits when busy.

mod epochs;
mod ops;
mod partitions;
mod replica;

pub use ops::Op;
use ops::{Outcome, answer, fail, is_append};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use heed::RwTxn;

use super::budget::{self, Budget};
use super::{Shared, keys, offsets, security, uplinks};
use crate::log::partition::PartitionMeta;
use crate::log::producers::ProducerState;
use crate::log::{PartitionId, PartitionLog, StoreError};

/// Most operations folded into one transaction.
const MAX_GROUP: usize = 4096;
/// With deleted topics to purge, one purge step per this many commits even when busy.
const PURGE_EVERY_COMMITS: u64 = 64;
/// Batches deleted per purge step of a deleted topic.
pub(super) const PURGE_CHUNK: usize = 2048;

/// Why a transaction must be abandoned.
pub(super) enum TxnError {
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

pub(super) struct Writer {
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
    /// Latest recorded leader epoch per partition (`None`: none), as committed and as the
    /// open transaction changed it; see [`epochs`].
    epochs: HashMap<PartitionId, Option<i32>>,
    dirty_epochs: HashMap<PartitionId, Option<i32>>,
    commits: u64,
}

pub(super) type ProducerKey = (PartitionId, i64);

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
        epochs: HashMap::new(),
        dirty_epochs: HashMap::new(),
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
        self.dirty_epochs.clear();
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
            Op::AppendReplica {
                partition, batches, ..
            } => Outcome::Offset(self.append_replica(txn, partition, batches)?),
            Op::TruncateBack { id, offset, .. } => {
                Outcome::Offset(self.truncate_back(txn, *id, *offset)?)
            }
            Op::ResetTo { id, start, .. } => Outcome::Committed(self.reset_to(txn, *id, *start)?),
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
                    let id = PartitionId {
                        topic: topic.num,
                        partition: p,
                    };
                    uplinks::delete_partition(txn, self.shared.dbs.uplinks, id)?;
                    self.removed.push(id);
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
            Op::AlterScram {
                upserts, deletions, ..
            } => Outcome::Committed(security::alter_scram(
                txn,
                self.shared.dbs.scram,
                upserts,
                deletions,
            )?),
            Op::AlterAcls { create, delete, .. } => Outcome::Committed(security::alter_acls(
                txn,
                self.shared.dbs.acls,
                create,
                delete,
            )?),
            Op::SaveUplinkProgress { entries, .. } => {
                uplinks::save(txn, self.shared.dbs.uplinks, entries)?;
                Outcome::Done
            }
            Op::Shutdown { .. } => Outcome::Done,
        })
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
        self.epochs.extend(self.dirty_epochs.drain());
        self.commits += 1;
        self.shared.changes.send_replace(self.commits);
        for (op, outcome) in ops.into_iter().zip(outcomes) {
            answer(op, outcome);
        }
    }
}
