//! Committed offsets of consumer groups: the `offsets` database ([`OffsetStore`]).
//!
//! Key: [`keys::offset`] (`group len u16 | group | topic len u16 | topic | partition u32`),
//! so one group is one contiguous key range. Value, big-endian: `offset i64 | leader epoch
//! i32 | commit timestamp ms i64 | metadata len u32 | metadata` (UTF-8).
//!
//! Invariants:
//! - writes happen only on the writer thread, inside its group-commit transaction, so a
//!   commit batch is durable all together before its [`Pending`] resolves;
//! - a commit batch with any key that cannot be stored writes nothing;
//! - expiry decides on the newest commit of a group inside the same transaction that deletes,
//!   so a commit queued before the expiry keeps the group's offsets alive.

use heed::{RoTxn, RwTxn, WithoutTls};

use super::writer::Op;
use super::{Db, LmdbStore, Shared, keys};
use crate::log::{
    CommittedOffset, GroupOffsets, OffsetCommit, OffsetStore, Pending, StoreError, TopicPartition,
};

const FIXED_LEN: usize = 8 + 4 + 8 + 4;

pub fn encode(o: &CommittedOffset) -> Vec<u8> {
    let mut v = Vec::with_capacity(FIXED_LEN + o.metadata.len());
    v.extend_from_slice(&o.offset.to_be_bytes());
    v.extend_from_slice(&o.leader_epoch.to_be_bytes());
    v.extend_from_slice(&o.commit_timestamp_ms.to_be_bytes());
    // Metadata is bounded far below 4 GiB by the request frame size.
    v.extend_from_slice(&(o.metadata.len() as u32).to_be_bytes());
    v.extend_from_slice(o.metadata.as_bytes());
    v
}

pub fn decode(v: &[u8]) -> Option<CommittedOffset> {
    let offset = i64::from_be_bytes(v.get(0..8)?.try_into().ok()?);
    let leader_epoch = i32::from_be_bytes(v.get(8..12)?.try_into().ok()?);
    let commit_timestamp_ms = i64::from_be_bytes(v.get(12..20)?.try_into().ok()?);
    let len = u32::from_be_bytes(v.get(20..24)?.try_into().ok()?) as usize;
    let metadata = std::str::from_utf8(v.get(FIXED_LEN..FIXED_LEN.checked_add(len)?)?).ok()?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata: metadata.to_owned(),
        commit_timestamp_ms,
    })
}

fn corrupt(key: &[u8]) -> StoreError {
    StoreError::Io(format!("corrupt committed offset under key {key:02x?}"))
}

impl OffsetStore for LmdbStore {
    fn commit_offsets(&self, commits: Vec<OffsetCommit>) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::CommitOffsets { commits, reply })
    }

    fn fetch_offsets(
        &self,
        group: &str,
        only: Option<&[TopicPartition]>,
    ) -> Result<GroupOffsets, StoreError> {
        fetch(&self.shared, group, only)
    }

    fn delete_offsets(
        &self,
        group: String,
        only: Option<Vec<TopicPartition>>,
    ) -> Pending<Result<usize, StoreError>> {
        self.send(|reply| Op::DeleteOffsets { group, only, reply })
    }

    fn offset_groups(&self) -> Result<Vec<String>, StoreError> {
        groups(&self.shared)
    }

    fn expire_offsets(
        &self,
        groups: Vec<String>,
        before_ms: i64,
    ) -> Pending<Result<Vec<String>, StoreError>> {
        self.send(|reply| Op::ExpireOffsets {
            groups,
            before_ms,
            reply,
        })
    }
}

fn fetch(
    shared: &Shared,
    group: &str,
    only: Option<&[TopicPartition]>,
) -> Result<GroupOffsets, StoreError> {
    let mut out = GroupOffsets::new();
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    let db = shared.dbs.offsets;
    match only {
        Some(wanted) => {
            for tp in wanted {
                let Some(key) = keys::offset(group, &tp.topic, tp.partition) else {
                    continue;
                };
                if let Some(value) = db.get(&txn, &key)? {
                    out.insert(tp.clone(), decode(value).ok_or_else(|| corrupt(&key))?);
                }
            }
        }
        None => {
            for (tp, value) in scan_group(&txn, db, group)? {
                out.insert(tp, value?);
            }
        }
    }
    Ok(out)
}

/// One entry of a group scan; a value that cannot be decoded is an error of its own.
type Scanned = (TopicPartition, Result<CommittedOffset, StoreError>);

/// Every offset of `group`: a prefix scan of its key range.
fn scan_group(
    txn: &RoTxn<'_, WithoutTls>,
    db: Db,
    group: &str,
) -> Result<Vec<Scanned>, StoreError> {
    let Some(prefix) = keys::group_prefix(group) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in db.prefix_iter(txn, &prefix)? {
        let (key, value) = entry?;
        let Some((_, topic, partition)) = keys::offset_of(key) else {
            return Err(corrupt(key));
        };
        let tp = TopicPartition {
            topic: topic.to_owned(),
            partition,
        };
        out.push((tp, decode(value).ok_or_else(|| corrupt(key))));
    }
    Ok(out)
}

fn groups(shared: &Shared) -> Result<Vec<String>, StoreError> {
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    let mut out: Vec<String> = Vec::new();
    for entry in shared.dbs.offsets.iter(&txn)? {
        let (key, _) = entry?;
        match keys::offset_of(key) {
            Some((group, _, _)) if out.last().is_some_and(|g| g == group) => {}
            Some((group, _, _)) => out.push(group.to_owned()),
            None => tracing::warn!(key = ?key, "skipping corrupt committed-offset key"),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Writer side of [`OffsetStore::commit_offsets`]. The outer error aborts the transaction;
/// the inner one refuses this op alone.
pub fn commit(
    txn: &mut RwTxn<'_>,
    db: Db,
    commits: &[OffsetCommit],
) -> Result<Result<(), StoreError>, heed::Error> {
    let mut rows = Vec::with_capacity(commits.len());
    for c in commits {
        let tp = &c.partition;
        let Some(key) = keys::offset(&c.group, &tp.topic, tp.partition) else {
            return Ok(Err(StoreError::Io(format!(
                "cannot store an offset for group {:?}, topic {:?}, partition {}: key too long or partition negative",
                c.group, tp.topic, tp.partition
            ))));
        };
        rows.push((key, encode(&c.offset)));
    }
    for (key, value) in &rows {
        db.put(txn, key, value)?;
    }
    Ok(Ok(()))
}

/// Writer side of [`OffsetStore::delete_offsets`].
pub fn delete(
    txn: &mut RwTxn<'_>,
    db: Db,
    group: &str,
    only: Option<&[TopicPartition]>,
) -> Result<usize, heed::Error> {
    let doomed: Vec<Vec<u8>> = match only {
        Some(wanted) => wanted
            .iter()
            .filter_map(|tp| keys::offset(group, &tp.topic, tp.partition))
            .collect(),
        None => group_keys(txn, db, group)?,
    };
    let mut deleted = 0;
    for key in &doomed {
        if db.delete(txn, key)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

fn group_keys(
    txn: &RoTxn<'_, WithoutTls>,
    db: Db,
    group: &str,
) -> Result<Vec<Vec<u8>>, heed::Error> {
    let Some(prefix) = keys::group_prefix(group) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in db.prefix_iter(txn, &prefix)? {
        out.push(entry?.0.to_vec());
    }
    Ok(out)
}

/// Writer side of [`OffsetStore::expire_offsets`]. A value that cannot be decoded counts as
/// expired: nothing could use it.
pub fn expire(
    txn: &mut RwTxn<'_>,
    db: Db,
    groups: &[String],
    before_ms: i64,
) -> Result<Vec<String>, heed::Error> {
    let mut expired = Vec::new();
    for group in groups {
        let Some(prefix) = keys::group_prefix(group) else {
            continue;
        };
        let mut newest = None;
        let mut found = false;
        for entry in db.prefix_iter(txn, &prefix)? {
            let (_, value) = entry?;
            found = true;
            if let Some(o) = decode(value) {
                newest = newest.max(Some(o.commit_timestamp_ms));
            }
        }
        if found && newest.is_none_or(|ts| ts < before_ms) {
            delete(txn, db, group, None)?;
            expired.push(group.clone());
        }
    }
    Ok(expired)
}

/// Deletes every group's offsets of a deleted topic (a full scan: offsets are few).
pub fn delete_topic(txn: &mut RwTxn<'_>, db: Db, topic: &str) -> Result<usize, heed::Error> {
    let mut doomed = Vec::new();
    for entry in db.iter(txn)? {
        let (key, _) = entry?;
        if keys::offset_of(key).is_some_and(|(_, t, _)| t == topic) {
            doomed.push(key.to_vec());
        }
    }
    for key in &doomed {
        db.delete(txn, key)?;
    }
    Ok(doomed.len())
}
