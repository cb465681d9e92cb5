//! The state machine side of openraft's storage: applies committed entries to the
//! application's [`StateMachine`] and persists its snapshot in LMDB.
//!
//! Invariants: after every apply batch (and every snapshot install) the application's whole
//! state, the last applied log id and the last membership are committed in one LMDB
//! transaction, so a restart resumes exactly after the persisted applied index; the `applied`
//! watch is bumped only after that commit.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use super::{Db, KEY_APPLIED, KEY_MEMBERSHIP, KEY_SNAPSHOT, StoreError, get_json, put_json};
use crate::error::QuorumError;
use crate::types::{Entry, StateMachine, TypeConfig};

type Membership = StoredMembership<u64, BasicNode>;

/// openraft's state machine, wrapping the application's.
pub(crate) struct SmStore<S> {
    db: Db,
    sm: S,
    last_applied: Option<LogId<u64>>,
    membership: Membership,
    applied: watch::Sender<u64>,
}

impl<S: StateMachine> SmStore<S> {
    /// Restores `sm` from the persisted snapshot, if any.
    pub(crate) async fn load(
        db: Db,
        mut sm: S,
    ) -> Result<(Self, watch::Receiver<u64>), QuorumError> {
        let dir = db.dir.clone();
        let storage_err = |message: String| QuorumError::Storage {
            dir: dir.clone(),
            message,
        };
        let (last_applied, membership, snapshot) = db
            .run(|dbs| {
                let txn = dbs.env.read_txn()?;
                let applied: Option<LogId<u64>> = get_json(&dbs.sm, &txn, KEY_APPLIED)?;
                let membership: Option<Membership> = get_json(&dbs.sm, &txn, KEY_MEMBERSHIP)?;
                let snapshot = dbs.sm.get(&txn, KEY_SNAPSHOT)?.map(<[u8]>::to_vec);
                Ok((applied, membership.unwrap_or_default(), snapshot))
            })
            .await
            .map_err(|e| storage_err(format!("cannot load the state machine: {e}")))?;
        if let Some(snapshot) = snapshot {
            sm.restore(&snapshot)
                .map_err(|e| storage_err(format!("cannot restore the state machine: {e}")))?;
        }
        let index = last_applied.map_or(0, |id| id.index);
        let (applied, rx) = watch::channel(index);
        let store = SmStore {
            db,
            sm,
            last_applied,
            membership,
            applied,
        };
        Ok((store, rx))
    }

    /// Commits the application's state with the applied log id and membership.
    async fn persist(&self, snapshot: Vec<u8>) -> Result<(), StoreError> {
        let applied = self.last_applied;
        let membership = self.membership.clone();
        self.db
            .run(move |dbs| {
                let mut txn = dbs.env.write_txn()?;
                put_json(&dbs.sm, &mut txn, KEY_APPLIED, &applied)?;
                put_json(&dbs.sm, &mut txn, KEY_MEMBERSHIP, &membership)?;
                dbs.sm.put(&mut txn, KEY_SNAPSHOT, &snapshot)?;
                txn.commit()?;
                Ok(())
            })
            .await?;
        self.applied.send_replace(applied.map_or(0, |id| id.index));
        Ok(())
    }

    fn current_snapshot(&self) -> Option<Snapshot<TypeConfig>> {
        let last = self.last_applied?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let meta = SnapshotMeta {
            last_log_id: Some(last),
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{}-{nanos}", last.leader_id.term, last.index),
        };
        Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(self.sm.snapshot())),
        })
    }
}

/// A snapshot taken when openraft asked for a builder (the state cannot change in between:
/// openraft builds while the state machine worker is not applying).
pub(crate) struct Builder {
    snapshot: Option<Snapshot<TypeConfig>>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        self.snapshot.take().ok_or_else(|| {
            StorageIOError::write_snapshot(None, openraft::AnyError::error("nothing applied yet"))
                .into()
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SmStore<S> {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError<u64>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut app_entries = Vec::new();
        let mut app_slots = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(data) => {
                    app_slots.push(responses.len());
                    app_entries.push(Entry {
                        index: entry.log_id.index,
                        data,
                    });
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            responses.push(Vec::new());
        }
        if !app_entries.is_empty() {
            let replies = self.sm.apply(app_entries).await;
            for (slot, reply) in app_slots.into_iter().zip(replies) {
                if let Some(r) = responses.get_mut(slot) {
                    *r = reply;
                }
            }
        }
        let snapshot = self.sm.snapshot();
        self.persist(snapshot)
            .await
            .map_err(|e| StorageIOError::write_state_machine(openraft::AnyError::new(&e)))?;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            snapshot: self.current_snapshot(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        self.sm.restore(&data).map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), openraft::AnyError::error(e))
        })?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "installed snapshot");
        self.persist(data).await.map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), openraft::AnyError::new(&e))
                .into()
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.current_snapshot())
    }
}
