//! The LMDB implementation of [`LogStore`] and [`MetaStore`].
//!
//! One environment holds eleven databases: `batches` (partition prefix + base offset → the
//! batch as received), `time_index` (partition prefix + running max timestamp → base offset,
//! monotonic like Kafka's time index), `epochs` (partition prefix + leader epoch → the offset
//! where it starts, Kafka's leader-epoch cache; see [`epochs`]), `partitions` (partition
//! prefix → [`PartitionMeta`]), `producers` (partition prefix + producer id → idempotence
//! state, written in the same transaction as the producer's batch), `topics` (name →
//! [`TopicRecord`] as JSON), `meta` (cluster id, topic and producer id counters) and
//! `offsets` (group, topic name, partition → committed offset; see [`offsets`]) and `uplinks`
//! (partition prefix + uplink name → forwarding progress; see [`uplinks`]), `scram` and `acls`
//! (see [`security`]).
//!
//! Reads run on the caller's thread in their own read transaction. All writes go through
//! one writer thread ([`writer`]) that group-commits: one transaction and one fsync for
//! every operation queued meanwhile. Resizing the map requires that no transaction is open,
//! so readers hold [`Shared::gate`] for reading while their transaction lives and the writer
//! takes it for writing only to resize.

mod budget;
mod epochs;
mod keys;
mod lock;
mod offsets;
mod reads;
mod security;
mod uplinks;
mod writer;

pub(crate) use lock::IN_USE;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use heed::types::Bytes as RawBytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};
use tokio::sync::{oneshot, watch};

use super::partition::PartitionMeta;
use super::{AclBinding, ScramCredential, ScramMechanism, SecurityStore};
use super::{
    AppendItem, Appended, DiskUsage, EpochEnd, EpochStart, LogStore, MetaStore, PartitionId,
    PartitionLog, Pending, ProgressEntry, ReadChunk, Retention, StoreError, TimestampOffset,
    TopicRecord, Truncated, UplinkProgress, UplinkStore,
};
pub use budget::{Budget, MAX_MAP_32BIT};
use writer::Op;

type Db = Database<'static, RawBytes, RawBytes>;

/// The named databases of the environment.
#[derive(Clone, Copy)]
pub(crate) struct Dbs {
    batches: Db,
    time_index: Db,
    epochs: Db,
    partitions: Db,
    producers: Db,
    topics: Db,
    meta: Db,
    offsets: Db,
    uplinks: Db,
    scram: Db,
    acls: Db,
}

/// State shared by readers and the writer thread.
pub(crate) struct Shared {
    env: Env<WithoutTls>,
    dbs: Dbs,
    gate: RwLock<()>,
    partitions: RwLock<HashMap<PartitionId, Arc<PartitionLog>>>,
    budget: Budget,
    changes: watch::Sender<u64>,
    cluster_id: String,
}

/// Handle to the store. Dropping the last handle stops the writer after it drained its queue.
pub struct LmdbStore {
    shared: Arc<Shared>,
    ops: std::sync::mpsc::Sender<Op>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Dropped last: the directory stays ours until the environment is closed.
    _lock: lock::DirLock,
}

const MAX_READERS: u32 = 1022;

impl LmdbStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, configured_budget: Option<u64>) -> Result<LmdbStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock::DirLock::acquire(dir).map_err(StoreError::Io)?;
        let existing = std::fs::metadata(dir.join("data.mdb"))
            .map(|m| m.len())
            .unwrap_or(0);
        let budget = Budget::new(configured_budget, dir, existing)
            .map_err(|e| StoreError::Io(format!("cannot size disk budget: {e}")))?;
        let map = budget.initial_map(existing);
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options
            .map_size(usize::try_from(map).map_err(|e| StoreError::Io(e.to_string()))?)
            .max_dbs(16)
            .max_readers(MAX_READERS);
        // SAFETY: NO_READ_AHEAD only changes the kernel's read-ahead advice for the map.
        unsafe { options.flags(EnvFlags::NO_READ_AHEAD) };
        // SAFETY: the environment is opened once per process (the data dir holds LMDB's lock
        // file, which also keeps a second process consistent), and never with WRITE_MAP.
        let env = unsafe { options.open(dir) }?;
        env.clear_stale_readers()?;
        let dbs = create_databases(&env)?;
        let mut wtxn = env.write_txn()?;
        let cluster_id = match dbs.meta.get(&wtxn, b"cluster_id")? {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => {
                let id = new_cluster_id();
                dbs.meta.put(&mut wtxn, b"cluster_id", id.as_bytes())?;
                id
            }
        };
        let (partitions, orphans) = load_partitions(&wtxn, &dbs)?;
        wtxn.commit()?;
        tracing::debug!(
            map_size = map,
            budget = budget.budget,
            partitions = partitions.len(),
            orphans = orphans.len(),
            "opened LMDB environment"
        );
        let shared = Arc::new(Shared {
            env,
            dbs,
            gate: RwLock::new(()),
            partitions: RwLock::new(partitions),
            budget,
            changes: watch::channel(0).0,
            cluster_id,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = writer::spawn(shared.clone(), rx, orphans, map)?;
        Ok(LmdbStore {
            shared,
            ops: tx,
            writer: std::sync::Mutex::new(Some(handle)),
            _lock: lock,
        })
    }

    /// Receives a new value after every commit; long-polling fetches wait on it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Waits for queued writes to commit, stops the writer and closes the environment.
    /// Safe to call from any thread, including an async runtime's (it joins a thread but
    /// never blocks on a tokio channel).
    pub fn close(&self) {
        let (tx, _rx) = oneshot::channel();
        // The writer commits everything queued before this op, then exits; joining it below
        // is the wait.
        let _ = self.ops.send(Op::Shutdown { reply: tx });
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        if let Err(e) = self.shared.env.force_sync() {
            tracing::warn!(error = %e, "final LMDB sync failed");
        }
    }

    fn send<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Op) -> Pending<T> {
        let (tx, rx) = oneshot::channel();
        // If the writer is gone the sender is dropped with the op and the receiver sees it.
        let _ = self.ops.send(make(tx));
        rx
    }
}

impl Drop for LmdbStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates (or opens) the named databases; committed handles are valid for the env's life.
fn create_databases(env: &Env<WithoutTls>) -> Result<Dbs, StoreError> {
    let wtxn = env.write_txn()?;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        let mut db = |name| opener.create_database::<RawBytes, RawBytes>(wtxn, Some(name));
        let all = (
            db("batches")?,
            db("time_index")?,
            db("epochs")?,
            db("partitions")?,
            db("producers")?,
            db("topics")?,
            db("meta")?,
            db("offsets")?,
            db("uplinks")?,
            db("scram")?,
            db("acls")?,
        );
        Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(all))
    })?;
    let CommitOrAbort::Commit((
        batches,
        time_index,
        epochs,
        partitions,
        producers,
        topics,
        meta,
        offsets,
        uplinks,
        scram,
        acls,
    )) = created
    else {
        return Err(StoreError::Io("creating LMDB databases was aborted".into()));
    };
    Ok(Dbs {
        batches,
        time_index,
        epochs,
        partitions,
        producers,
        topics,
        meta,
        offsets,
        uplinks,
        scram,
        acls,
    })
}

fn new_cluster_id() -> String {
    // Kafka cluster ids are 22-character URL-safe base64 UUIDs; any unique string works for
    // clients, so the simple form is used.
    uuid::Uuid::new_v4().simple().to_string()
}

type Loaded = (HashMap<PartitionId, Arc<PartitionLog>>, Vec<PartitionId>);

/// Loads partition states; partitions of topics that no longer exist are orphans to purge.
fn load_partitions(txn: &heed::RoTxn<'_, WithoutTls>, dbs: &Dbs) -> Result<Loaded, StoreError> {
    let mut live_topics = std::collections::HashSet::new();
    for entry in dbs.topics.iter(txn)? {
        let (_, value) = entry?;
        let topic: TopicRecord = serde_json::from_slice(value)
            .map_err(|e| StoreError::Io(format!("corrupt topic record: {e}")))?;
        live_topics.insert(topic.num);
    }
    let mut partitions = HashMap::new();
    let mut orphans = Vec::new();
    for entry in dbs.partitions.iter(txn)? {
        let (key, value) = entry?;
        let (Some(id), Some(meta)) = (keys::partition_of(key), PartitionMeta::decode(value)) else {
            return Err(StoreError::Io("corrupt partition record".into()));
        };
        if live_topics.contains(&id.topic) {
            partitions.insert(id, Arc::new(PartitionLog::new(id, meta)));
        } else {
            orphans.push(id);
        }
    }
    Ok((partitions, orphans))
}

impl LogStore for LmdbStore {
    fn partition(&self, id: PartitionId) -> Option<Arc<PartitionLog>> {
        self.shared.partition(id)
    }

    fn append(&self, items: Vec<AppendItem>) -> Pending<Vec<Result<Appended, StoreError>>> {
        self.send(|reply| Op::Append { items, reply })
    }

    fn read(
        &self,
        id: PartitionId,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadChunk, StoreError> {
        reads::read(&self.shared, id, offset, max_bytes, at_least_one, false)
    }

    fn read_once(
        &self,
        id: PartitionId,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadChunk, StoreError> {
        reads::read(&self.shared, id, offset, max_bytes, true, true)
    }

    fn offset_for_timestamp(
        &self,
        id: PartitionId,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StoreError> {
        reads::offset_for_timestamp(&self.shared, id, timestamp)
    }

    fn max_timestamp(&self, id: PartitionId) -> Result<Option<TimestampOffset>, StoreError> {
        reads::max_timestamp(&self.shared, id)
    }

    fn truncate_front(
        &self,
        id: PartitionId,
        new_start: i64,
        limit: usize,
    ) -> Pending<Result<Truncated, StoreError>> {
        self.send(|reply| Op::Truncate {
            id,
            new_start,
            limit,
            reply,
        })
    }

    fn retention_point(&self, id: PartitionId, policy: Retention) -> Result<i64, StoreError> {
        reads::retention_point(&self.shared, id, policy)
    }

    fn expire_producers(&self, before_ms: i64) -> Pending<Result<usize, StoreError>> {
        self.send(|reply| Op::ExpireProducers { before_ms, reply })
    }

    fn disk_usage(&self) -> DiskUsage {
        self.shared.disk_usage()
    }

    fn append_replica(
        &self,
        partition: Arc<PartitionLog>,
        batches: bytes::Bytes,
    ) -> Pending<Result<i64, StoreError>> {
        self.send(|reply| Op::AppendReplica {
            partition,
            batches,
            reply,
        })
    }

    fn truncate_back(&self, id: PartitionId, offset: i64) -> Pending<Result<i64, StoreError>> {
        self.send(|reply| Op::TruncateBack { id, offset, reply })
    }

    fn reset_to(&self, id: PartitionId, start: i64) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::ResetTo { id, start, reply })
    }

    fn latest_epoch(&self, id: PartitionId) -> Result<Option<EpochStart>, StoreError> {
        epochs::latest(&self.shared, id)
    }

    fn epoch_end_offset(
        &self,
        id: PartitionId,
        epoch: i32,
    ) -> Result<Option<EpochEnd>, StoreError> {
        epochs::end_offset(&self.shared, id, epoch)
    }
}

impl MetaStore for LmdbStore {
    fn load_topics(&self) -> Result<Vec<TopicRecord>, StoreError> {
        let _gate = self.shared.read_gate();
        let txn = self.shared.env.read_txn()?;
        let mut out = Vec::new();
        for entry in self.shared.dbs.topics.iter(&txn)? {
            let (_, value) = entry?;
            out.push(
                serde_json::from_slice(value)
                    .map_err(|e| StoreError::Io(format!("corrupt topic record: {e}")))?,
            );
        }
        Ok(out)
    }

    fn next_producer_id(&self) -> Pending<Result<i64, StoreError>> {
        self.send(|reply| Op::NextProducerId { reply })
    }

    fn next_topic_num(&self) -> Pending<Result<u32, StoreError>> {
        self.send(|reply| Op::NextTopicNum { reply })
    }

    fn put_topic(&self, topic: TopicRecord) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::PutTopic { topic, reply })
    }

    fn delete_topic(&self, topic: TopicRecord) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::DeleteTopic { topic, reply })
    }

    fn cluster_id(&self) -> String {
        self.shared.cluster_id.clone()
    }
}

impl UplinkStore for LmdbStore {
    fn uplink_progress(
        &self,
        uplink: &str,
    ) -> Result<Vec<(PartitionId, UplinkProgress)>, StoreError> {
        let _gate = self.shared.read_gate();
        let txn = self.shared.env.read_txn()?;
        uplinks::load(&txn, self.shared.dbs.uplinks, uplink)
    }

    fn save_uplink_progress(&self, entries: Vec<ProgressEntry>) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::SaveUplinkProgress { entries, reply })
    }
}

impl SecurityStore for LmdbStore {
    fn scram_credentials(&self) -> Result<Vec<ScramCredential>, StoreError> {
        let _gate = self.shared.read_gate();
        let txn = self.shared.env.read_txn()?;
        security::load_scram(&txn, self.shared.dbs.scram)
    }

    fn alter_scram_credentials(
        &self,
        upserts: Vec<ScramCredential>,
        deletions: Vec<(String, ScramMechanism)>,
    ) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::AlterScram {
            upserts,
            deletions,
            reply,
        })
    }

    fn acls(&self) -> Result<Vec<AclBinding>, StoreError> {
        let _gate = self.shared.read_gate();
        let txn = self.shared.env.read_txn()?;
        security::load_acls(&txn, self.shared.dbs.acls)
    }

    fn alter_acls(
        &self,
        create: Vec<AclBinding>,
        delete: Vec<AclBinding>,
    ) -> Pending<Result<(), StoreError>> {
        self.send(|reply| Op::AlterAcls {
            create,
            delete,
            reply,
        })
    }
}

impl Shared {
    fn partition(&self, id: PartitionId) -> Option<Arc<PartitionLog>> {
        self.partitions.read().ok()?.get(&id).cloned()
    }

    /// Held by every reader for the life of its transaction; see the module docs.
    fn read_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn disk_usage(&self) -> DiskUsage {
        let info = self.env.info();
        let page = page_size();
        DiskUsage {
            budget: self.budget.budget,
            used: (info.last_page_number as u64 + 1) * page,
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_replica;
