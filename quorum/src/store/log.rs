//! The Raft log, vote and committed/purged log ids in LMDB (openraft's `RaftLogStorage`).
//!
//! Invariants: entries are keyed by their index (big-endian u64) and are contiguous from
//! `last_purged + 1` to the last entry; `append` commits before it reports the entries flushed;
//! `purge` records the purged log id in the same transaction that deletes the entries.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};

use super::{Db, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, StoreError, get_json, put_json};
use crate::types::TypeConfig;

type Entry = openraft::Entry<TypeConfig>;

/// The log store; clones share the same LMDB environment (they are also the log readers).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Db,
}

impl LogStore {
    pub(crate) fn new(db: Db) -> Self {
        LogStore { db }
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(*e),
        Bound::Excluded(0) => return (1, Some(0)),
        Bound::Excluded(e) => Some(e - 1),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let (start, end) = bounds(&range);
        self.db
            .run(move |dbs| {
                let txn = dbs.env.read_txn()?;
                let mut entries = Vec::new();
                if end.is_some_and(|end| end < start) {
                    return Ok(entries);
                }
                let iter = match end {
                    Some(end) => dbs.log.range(&txn, &(start..=end))?,
                    None => dbs.log.range(&txn, &(start..))?,
                };
                for item in iter {
                    let (_, bytes) = item?;
                    entries.push(serde_json::from_slice::<Entry>(bytes)?);
                }
                Ok(entries)
            })
            .await
            .map_err(|e| StorageIOError::read_logs(openraft::AnyError::new(&e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        self.db
            .run(|dbs| {
                let txn = dbs.env.read_txn()?;
                let last_purged_log_id: Option<LogId<u64>> = get_json(&dbs.raft, &txn, KEY_PURGED)?;
                let last_log_id = match dbs.log.last(&txn)? {
                    Some((_, bytes)) => Some(serde_json::from_slice::<Entry>(bytes)?.log_id),
                    None => last_purged_log_id,
                };
                Ok(LogState {
                    last_purged_log_id,
                    last_log_id,
                })
            })
            .await
            .map_err(|e| StorageIOError::read_logs(openraft::AnyError::new(&e)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.put_raft(KEY_VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(openraft::AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.get_raft(KEY_VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(openraft::AnyError::new(&e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.put_raft(KEY_COMMITTED, committed)
            .await
            .map_err(|e| StorageIOError::write(openraft::AnyError::new(&e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.get_raft::<Option<LogId<u64>>>(KEY_COMMITTED)
            .await
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(openraft::AnyError::new(&e)).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_logs(openraft::AnyError::new(&e)))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .db
            .run(move |dbs| {
                let mut txn = dbs.env.write_txn()?;
                for (index, bytes) in &encoded {
                    dbs.log.put(&mut txn, index, bytes)?;
                }
                txn.commit()?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.0.clone())));
                Err(StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.db
            .run(move |dbs| {
                let mut txn = dbs.env.write_txn()?;
                dbs.log.delete_range(&mut txn, &(log_id.index..))?;
                txn.commit()?;
                Ok(())
            })
            .await
            .map_err(|e| StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.db
            .run(move |dbs| {
                let mut txn = dbs.env.write_txn()?;
                put_json(&dbs.raft, &mut txn, KEY_PURGED, &Some(log_id))?;
                dbs.log.delete_range(&mut txn, &(..=log_id.index))?;
                txn.commit()?;
                Ok(())
            })
            .await
            .map_err(|e| StorageIOError::write_logs(openraft::AnyError::new(&e)).into())
    }
}

impl LogStore {
    async fn put_raft<T: serde::Serialize + Send + 'static>(
        &self,
        key: &'static [u8],
        value: T,
    ) -> Result<(), StoreError> {
        self.db
            .run(move |dbs| {
                let mut txn = dbs.env.write_txn()?;
                put_json(&dbs.raft, &mut txn, key, &value)?;
                txn.commit()?;
                Ok(())
            })
            .await
    }

    async fn get_raft<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: &'static [u8],
    ) -> Result<Option<T>, StoreError> {
        self.db
            .run(move |dbs| {
                let txn = dbs.env.read_txn()?;
                get_json(&dbs.raft, &txn, key)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::bounds;

    #[test]
    fn bounds_cover_all_range_kinds() {
        assert_eq!(bounds(&(3..7)), (3, Some(6)));
        assert_eq!(bounds(&(3..=7)), (3, Some(7)));
        assert_eq!(bounds(&(3..)), (3, None));
        assert_eq!(bounds(&(..0)), (1, Some(0)));
    }
}
