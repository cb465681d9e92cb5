//! The partition log: what is stored, behind five narrow traits.
//!
//! [`LogStore`] owns record batches: append (durable before the returned [`Pending`]
//! resolves), read a range, look up offsets by time, truncate the front; for replication also
//! append a leader's batches as they are, truncate the back, restart empty at an offset, and
//! answer from the leader-epoch index. [`MetaStore`] owns
//! topic definitions. [`OffsetStore`] owns consumer groups' committed offsets.
//! [`UplinkStore`] owns the uplinks' forwarding progress, [`SecurityStore`] SCRAM credentials
//! and ACLs. All are implemented by
//! [`lmdb::LmdbStore`]. The traits are object safe so handlers hold
//! `Arc<dyn …>` and never see LMDB.
//!
//! Invariants every implementation keeps:
//! - the stored offsets of a partition are dense and strictly increasing; `log_start <= next`;
//! - `next_offset` grows with appends and moves down only by an explicit
//!   [`LogStore::truncate_back`] or [`LogStore::reset_to`] (a follower discarding what its
//!   leader does not have); `log_start` moves down only by `reset_to`;
//! - an append is visible to readers (and counted in `next_offset`) only once durable;
//! - batches are returned byte-for-byte as appended, except `baseOffset`/`partitionLeaderEpoch`
//!   of a leader's append (a replica's append keeps even those);
//! - the leader-epoch index maps each recorded epoch to the offset where it starts; epochs and
//!   start offsets both increase, and no entry starts at or after `next_offset`;
//! - a committed offset is visible to readers only once durable, and a batch of commits
//!   becomes durable all together or not at all.

pub mod lmdb;
mod partition;
pub mod producers;
pub mod security;
pub mod uplink;

use bytes::Bytes;
use tokio::sync::oneshot;

pub use partition::{PartitionId, PartitionLog};
pub use security::{AclBinding, ScramCredential, ScramMechanism, SecurityStore};
pub use uplink::{ProgressEntry, UplinkProgress, UplinkStore};

/// A result that arrives once the store's writer has committed (or failed).
pub type Pending<T> = oneshot::Receiver<T>;

/// Wall-clock milliseconds since the Unix epoch, the unit of Kafka timestamps (0 if the
/// clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Awaits a store result; a writer that went away is [`StoreError::Closed`].
pub async fn wait<T>(pending: Pending<T>) -> Result<T, StoreError> {
    pending.await.map_err(|_| StoreError::Closed)
}

/// Batches deleted per [`LogStore::truncate_front`] call by [`truncate`], so one caller
/// cannot hold the writer for long.
pub const TRUNCATE_CHUNK: usize = 4096;

/// Moves a partition's log start to `target` in bounded chunks; returns the new log start.
pub async fn truncate(
    log: &dyn LogStore,
    part: &PartitionLog,
    target: i64,
) -> Result<i64, StoreError> {
    loop {
        let done = wait(log.truncate_front(part.id, target, TRUNCATE_CHUNK)).await??;
        if !done.more {
            return Ok(done.log_start);
        }
    }
}

/// Storage failures. Handlers map them to Kafka error codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("disk budget exhausted: log.max.disk.bytes = {budget} bytes is in use")]
    DiskFull { budget: u64 },
    #[error("partition {0} is not stored here")]
    UnknownPartition(PartitionId),
    #[error("offset {offset} is outside [{log_start}, {next}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        next: i64,
    },
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("producer epoch {got} is older than the current epoch {current}")]
    ProducerFenced { current: i16, got: i16 },
    #[error("storage failure: {0}")]
    Io(String),
    #[error("the store is shutting down")]
    Closed,
    /// Cluster mode: the leadership of the partition moved while the write waited.
    #[error("this broker is no longer the partition's leader")]
    NotLeader,
    /// Cluster mode: the in-sync replicas did not all confirm the write in time.
    #[error("the in-sync replicas did not confirm the write within the request timeout")]
    ReplicationTimeout,
}

impl From<heed::Error> for StoreError {
    fn from(e: heed::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// One validated batch to append to one partition.
#[derive(Debug)]
pub struct AppendItem {
    pub partition: std::sync::Arc<PartitionLog>,
    pub batch: Bytes,
    pub record_count: i32,
    pub max_timestamp: i64,
    /// The leader's partition leader epoch, stamped into the batch's `partitionLeaderEpoch`
    /// (0 on a single node).
    pub leader_epoch: i32,
    /// Set for batches of idempotent producers: checked and deduplicated on append.
    pub producer: Option<producers::ProducerBatch>,
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start: i64,
}

/// Batches read from one partition.
#[derive(Debug, Clone, Default)]
pub struct ReadChunk {
    /// Concatenated batches, the first one containing the requested offset.
    pub records: Bytes,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    pub log_start: i64,
}

/// A leader epoch and the offset where it starts in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: i32,
    pub start_offset: i64,
}

/// A leader epoch and its end offset (exclusive: the first offset not written in it), as
/// OffsetsForLeaderEpoch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

/// An offset found by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// Record batches of all partitions.
pub trait LogStore: Send + Sync {
    /// The partition's shared state, if it exists.
    fn partition(&self, id: PartitionId) -> Option<std::sync::Arc<PartitionLog>>;
    /// Appends batches in order; each result arrives once durable (group-committed).
    fn append(&self, items: Vec<AppendItem>) -> Pending<Vec<Result<Appended, StoreError>>>;
    /// Reads whole batches from the one containing `offset`, up to `max_bytes` (at least one
    /// batch when `at_least_one`). Blocking: call from a blocking thread.
    fn read(
        &self,
        id: PartitionId,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadChunk, StoreError>;
    /// [`LogStore::read`] (at least one batch) for a reader that will not come back to these
    /// batches, like an uplink forwarding a backlog once: an implementation may drop the
    /// pages it read from the process's memory (they stay in the page cache), so a long
    /// sequential read does not grow the resident set by the size of the data. Blocking.
    fn read_once(
        &self,
        id: PartitionId,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadChunk, StoreError> {
        self.read(id, offset, max_bytes, true)
    }
    /// The first record with timestamp >= `timestamp`. Blocking.
    fn offset_for_timestamp(
        &self,
        id: PartitionId,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StoreError>;
    /// The record with the largest timestamp (its first occurrence). Blocking.
    fn max_timestamp(&self, id: PartitionId) -> Result<Option<TimestampOffset>, StoreError>;
    /// Moves the log start to `new_start` (<= next offset), deleting batches wholly below it.
    /// Deletes at most `limit` batches per call; the result says the new log start and
    /// whether batches below it remain.
    fn truncate_front(
        &self,
        id: PartitionId,
        new_start: i64,
        limit: usize,
    ) -> Pending<Result<Truncated, StoreError>>;
    /// The log start retention wants for this partition (>= the current one). Blocking.
    fn retention_point(&self, id: PartitionId, policy: Retention) -> Result<i64, StoreError>;
    /// Forgets idempotent-producer state not appended to since `before_ms` (Kafka's
    /// `producer.id.expiration.ms`). Returns how many entries were removed.
    fn expire_producers(&self, before_ms: i64) -> Pending<Result<usize, StoreError>>;
    /// Bytes of the disk budget, and bytes LMDB has in use (high-water mark of the file).
    fn disk_usage(&self) -> DiskUsage;
    /// Appends batches fetched from the partition's leader (a follower's replication), byte
    /// for byte at their own base offsets: `batches` is whole v2 record batches back to back
    /// as a Fetch response carries them (a trailing partial batch is ignored). Batches wholly
    /// below next_offset are skipped (overlap with what we have is allowed); the first
    /// appended batch must start exactly at next_offset, otherwise
    /// [`StoreError::OffsetOutOfRange`] (a gap). Updates next_offset, size, time index, the
    /// epoch index and idempotent-producer state (taken from each batch header without checks,
    /// so a follower that becomes leader deduplicates retries). Returns the new next offset.
    /// All or nothing: a gap or a corrupt batch (CRC) anywhere appends none of them. Respects
    /// the disk budget like append ([`StoreError::DiskFull`]).
    fn append_replica(
        &self,
        partition: std::sync::Arc<PartitionLog>,
        batches: Bytes,
    ) -> Pending<Result<i64, StoreError>>;
    /// Removes every batch containing an offset >= `offset` (Kafka's truncateTo: the batch
    /// that contains `offset` goes entirely); returns the new next offset (<= offset, except
    /// that it never goes below log_start). Also drops epoch-index entries starting at or
    /// after it, time-index entries pointing at removed batches (the partition's max timestamp
    /// is recomputed), size, and remembered producer batches at removed offsets (a producer
    /// left with none is deleted). `offset` below log_start truncates to log_start;
    /// `offset >= next_offset` is a no-op. Done in one transaction (partitions on edge devices
    /// are small, and a follower truncates only what diverged).
    fn truncate_back(&self, id: PartitionId, offset: i64) -> Pending<Result<i64, StoreError>>;
    /// Deletes all of the partition's batches, producer state and epochs, and restarts it
    /// empty at `start` (log_start = next_offset = start): a follower whose leader no longer
    /// has the follower's offsets. Done in one transaction.
    fn reset_to(&self, id: PartitionId, start: i64) -> Pending<Result<(), StoreError>>;
    /// The latest leader epoch recorded in the log and its start offset (None: no batch yet /
    /// none recorded). Blocking.
    fn latest_epoch(&self, id: PartitionId) -> Result<Option<EpochStart>, StoreError>;
    /// Kafka's OffsetsForLeaderEpoch answer: the largest recorded epoch <= `epoch`, and that
    /// epoch's end offset = the start offset of the next larger recorded epoch, or next_offset
    /// if it is the latest. None when no recorded epoch is <= `epoch`. Blocking.
    fn epoch_end_offset(&self, id: PartitionId, epoch: i32)
    -> Result<Option<EpochEnd>, StoreError>;
}

/// What retention keeps: batches whose max timestamp is at or after `before_timestamp`, and
/// at least `max_bytes` per partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub before_timestamp: Option<i64>,
    pub max_bytes: Option<u64>,
}

/// Outcome of a [`LogStore::truncate_front`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub log_start: i64,
    pub more: bool,
}

/// Disk use versus budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub budget: u64,
    pub used: u64,
}

/// A topic as persisted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicRecord {
    pub name: String,
    /// Kafka topic id.
    pub id: uuid::Uuid,
    /// Internal number used in storage keys; never reused, so a re-created topic never sees
    /// data of a deleted one.
    pub num: u32,
    pub partitions: u32,
    /// Topic-level config overrides (`retention.ms` …), as strings like Kafka keeps them.
    pub configs: std::collections::BTreeMap<String, String>,
}

/// Topic definitions.
pub trait MetaStore: Send + Sync {
    /// All topics, at start-up.
    fn load_topics(&self) -> Result<Vec<TopicRecord>, StoreError>;
    /// A fresh producer id for InitProducerId; never handed out twice.
    fn next_producer_id(&self) -> Pending<Result<i64, StoreError>>;
    /// A fresh internal topic number.
    fn next_topic_num(&self) -> Pending<Result<u32, StoreError>>;
    /// Creates or updates a topic and creates its missing partitions.
    fn put_topic(&self, topic: TopicRecord) -> Pending<Result<(), StoreError>>;
    /// Deletes a topic; its data is purged in the background.
    fn delete_topic(&self, topic: TopicRecord) -> Pending<Result<(), StoreError>>;
    /// The cluster id, created on first start.
    fn cluster_id(&self) -> String;
}

/// Longest group id whose offsets can be stored: LMDB keys are at most 511 bytes, and an
/// offset key holds the group id, a topic name (at most 249 bytes) and 8 bytes of framing.
pub const MAX_GROUP_ID_BYTES: usize = 254;

/// A partition named the way consumer groups name it (topic name, not internal number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// One committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One entry of an [`OffsetStore::commit_offsets`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    pub partition: TopicPartition,
    pub offset: CommittedOffset,
}

/// A group's committed offsets, in key order.
pub type GroupOffsets = std::collections::BTreeMap<TopicPartition, CommittedOffset>;

/// Consumer groups' committed offsets, keyed by (group id, topic name, partition).
///
/// Writes resolve once durable; reads are blocking (call them from a blocking thread).
/// Offsets of a deleted topic are removed with the topic.
pub trait OffsetStore: Send + Sync {
    /// Stores every entry (overwriting older commits) in one transaction.
    fn commit_offsets(&self, commits: Vec<OffsetCommit>) -> Pending<Result<(), StoreError>>;
    /// The group's offsets: all of them, or those of the given partitions that exist.
    /// Blocking.
    fn fetch_offsets(
        &self,
        group: &str,
        only: Option<&[TopicPartition]>,
    ) -> Result<GroupOffsets, StoreError>;
    /// Deletes the group's offsets (all, or the given partitions); returns how many went.
    fn delete_offsets(
        &self,
        group: String,
        only: Option<Vec<TopicPartition>>,
    ) -> Pending<Result<usize, StoreError>>;
    /// Every group id that has at least one committed offset, sorted. Blocking.
    fn offset_groups(&self) -> Result<Vec<String>, StoreError>;
    /// For each of `groups` (the caller passes only groups allowed to expire), deletes all
    /// its offsets if its newest commit is older than `before_ms`. Returns the groups whose
    /// offsets were deleted.
    fn expire_offsets(
        &self,
        groups: Vec<String>,
        before_ms: i64,
    ) -> Pending<Result<Vec<String>, StoreError>>;
}
