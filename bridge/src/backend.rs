//! [`Backend`]: where a bridge writes records and (for egress) reads them, behind one narrow
//! trait with two implementations — [`crate::kafka::KafkaBackend`] (the Kafka protocol, to
//! Runnel or any Kafka-compatible cluster) and the broker's embedded one (straight into the
//! log, no TCP hop).
//!
//! Contract: [`Backend::write`] answers `Ok` for a batch only once it is durable; a batch
//! answered `Err` that is not `rejected` may have been written or not (the caller re-sends it,
//! which is where at-least-once duplicates come from).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::StartFrom;
use crate::error::SinkError;
use crate::mapping::Record;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `record` as the Kafka client (and the broker's encoder) takes it: every header has a value.
pub fn out_record(record: &Record) -> runnel_client::OutRecord {
    runnel_client::OutRecord {
        key: record.key.clone(),
        value: Some(record.value.clone()),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect(),
        timestamp_ms: record.timestamp_ms,
    }
}

/// Records for one partition, in order.
#[derive(Debug, Clone)]
pub struct TopicBatch {
    pub topic: Arc<str>,
    pub partition: i32,
    pub records: Vec<Record>,
}

/// A record read for egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// What a read returned.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Vec<SourceRecord>,
    /// Set when the requested offset no longer exists (retention): continue from here.
    pub reset_to: Option<i64>,
    /// The partition's end (high watermark) when read, for lag.
    pub high_watermark: i64,
}

/// Where records go and come from.
pub trait Backend: Send + Sync {
    /// How many partitions `topic` has; a `rejected` error when it does not exist.
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, SinkError>>;
    /// Makes `batches` durable; one result per batch, in order.
    fn write(&self, batches: Vec<TopicBatch>) -> BoxFuture<'_, Vec<Result<(), SinkError>>>;
    /// Creates `topic` (one partition) unless it exists.
    fn ensure_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Records of `topic`/`partition` from `offset`, waiting up to `max_wait` for some.
    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> BoxFuture<'a, Result<ReadResult, SinkError>>;
    /// Where a group with nothing committed starts.
    fn start_offset<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        from: StartFrom,
    ) -> BoxFuture<'a, Result<i64, SinkError>>;
    /// `group`'s committed offset of `topic`/`partition`.
    fn committed<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Option<i64>, SinkError>>;
    /// Commits `offset` (the next one to read) for `group`.
    fn commit<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}
