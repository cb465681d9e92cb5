//! The MQTT bridge embedded in the broker (`[[bridge]]` tables in the broker's config): a
//! [`Backend`] that writes straight into the log and reads and commits offsets through the
//! stores — no TCP hop, no Kafka client.
//!
//! Writes take the same path as Produce: the records are encoded as one RecordBatch v2 per
//! partition, checked by [`crate::handlers::produce::prepare`] (size limit, CRC, offsets),
//! appended, and answered once the group commit made them durable. Egress offsets are
//! committed like a simple consumer's (generation -1, no member), so the group shows in
//! ListGroups/DescribeGroups and a live group with the same id is not overwritten.
//!
//! Bridges are trusted internal components: their writes, reads and commits do not go through
//! the request handlers and are not checked against ACLs ([`crate::acl`]) — whoever can edit
//! the broker's config file decides what they do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use runnel_bridge::backend::{
    Backend, BoxFuture, ReadResult, SourceRecord, TopicBatch, out_record,
};
use runnel_bridge::config::StartFrom;
use runnel_bridge::{BridgeConfig, BridgeError, SinkError};
use runnel_client::Compression;
use runnel_client::records::{BatchIdentity, OutRecord, decode_batches, encode_batch};
use tokio_util::sync::CancellationToken;

use crate::handlers::Ctx;
use crate::handlers::produce::prepare;
use crate::log::{CommittedOffset, OffsetCommit, StoreError, TopicPartition, now_ms, wait};

/// Most bytes one egress read returns.
const READ_MAX_BYTES: usize = 1 << 20;

/// Starts the configured bridges against the broker's own log.
///
/// The broker owns its topics, so there is no moment before start to create a bridge's
/// topics: with `topics.auto_create` on, missing ones are created here (default partitions,
/// logged), the way a Metadata request would; with it off, the bridge refuses to start and
/// names the topic.
pub async fn start(
    ctx: Arc<Ctx>,
    configs: Vec<BridgeConfig>,
    shutdown: CancellationToken,
) -> Result<runnel_bridge::Running, BridgeError> {
    if ctx.config.topics.auto_create {
        for config in &configs {
            let topics = config
                .ingress
                .iter()
                .flat_map(|r| std::iter::once(&r.topic).chain(r.dead_letter_topic.as_ref()))
                .chain(config.egress.iter().map(|r| &r.topic));
            for topic in topics {
                if ctx.topics.get(topic).is_some() {
                    continue;
                }
                let partitions = ctx.config.topics.default_partitions;
                match crate::handlers::topics::create_with_defaults(
                    &ctx,
                    topic,
                    partitions,
                    BTreeMap::new(),
                )
                .await
                {
                    Ok(_) => {
                        tracing::info!(bridge = %config.name, %topic, partitions, "created the bridge's topic")
                    }
                    Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
                    Err(e) => {
                        return Err(BridgeError::Startup {
                            bridge: config.name.clone(),
                            message: format!("cannot create topic {topic:?}: {}", e.message),
                        });
                    }
                }
            }
        }
    }
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend { ctx });
    runnel_bridge::start(configs, backend, shutdown).await
}

/// The broker's log as a bridge backend (also how uplinks write their status records).
pub struct EmbeddedBackend {
    ctx: Arc<Ctx>,
}

impl EmbeddedBackend {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        EmbeddedBackend { ctx }
    }
}

fn store_failure(e: StoreError) -> SinkError {
    SinkError::failed(e.to_string())
}

impl EmbeddedBackend {
    async fn write_all(&self, batches: Vec<TopicBatch>) -> Vec<Result<(), SinkError>> {
        let mut results: Vec<Result<(), SinkError>> = Vec::with_capacity(batches.len());
        let mut items = Vec::new();
        let mut slots = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let records: Vec<OutRecord> = b.records.iter().map(out_record).collect();
            let prepared = encode_batch(&records, BatchIdentity::NONE, Compression::None)
                .map_err(|e| SinkError::rejected(format!("encoding a batch for {}: {e}", b.topic)))
                .and_then(|bytes| {
                    let topic = self.ctx.topics.get(&b.topic);
                    prepare(-1, topic.as_deref(), b.partition, Some(bytes)).map_err(|e| {
                        let message = format!("{}/{}: {}", b.topic, b.partition, e.message);
                        // Only the size is the record's fault; anything else about a batch
                        // we encoded is a bug, retried (and shown) rather than dropped.
                        match e.code {
                            ResponseError::MessageTooLarge => SinkError::rejected(message),
                            _ => SinkError::failed(message),
                        }
                    })
                });
            match prepared {
                Ok(item) => {
                    items.push(item);
                    slots.push(i);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if items.is_empty() {
            return results;
        }
        match wait(self.ctx.log.append(items)).await {
            Ok(appended) => {
                for (slot, outcome) in slots.into_iter().zip(appended) {
                    if let Err(e) = outcome {
                        if matches!(e, StoreError::DiskFull { .. }) {
                            self.ctx.disk_pressure.notify_one();
                        }
                        results[slot] = Err(store_failure(e));
                    }
                }
            }
            Err(e) => {
                for slot in slots {
                    results[slot] = Err(store_failure(e.clone()));
                }
            }
        }
        results
    }

    async fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<ReadResult, SinkError> {
        let part = self
            .ctx
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition).cloned())
            .ok_or_else(|| SinkError::rejected(format!("{topic}/{partition} does not exist")))?;
        let mut changes = self.ctx.changes.clone();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if offset < part.log_start() {
                return Ok(ReadResult {
                    records: Vec::new(),
                    reset_to: Some(part.log_start()),
                    high_watermark: part.next_offset(),
                });
            }
            if offset < part.next_offset() {
                let log = self.ctx.log.clone();
                let id = part.id;
                let chunk =
                    tokio::task::spawn_blocking(move || log.read(id, offset, READ_MAX_BYTES, true))
                        .await
                        .map_err(|e| SinkError::failed(e.to_string()))?;
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(StoreError::OffsetOutOfRange {
                        log_start, next, ..
                    }) => {
                        return Ok(ReadResult {
                            records: Vec::new(),
                            reset_to: Some(log_start),
                            high_watermark: next,
                        });
                    }
                    Err(e) => return Err(store_failure(e)),
                };
                let records = decode_batches(chunk.records, offset)
                    .map_err(|e| SinkError::failed(format!("{topic}/{partition}: {e}")))?;
                return Ok(ReadResult {
                    records: records
                        .into_iter()
                        .map(|r| SourceRecord {
                            offset: r.offset,
                            key: r.key,
                            value: r.value,
                        })
                        .collect(),
                    reset_to: None,
                    high_watermark: chunk.high_watermark,
                });
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(ReadResult { high_watermark: part.next_offset(), ..ReadResult::default() });
                }
                _ = self.ctx.shutdown.cancelled() => {
                    return Ok(ReadResult { high_watermark: part.next_offset(), ..ReadResult::default() });
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(SinkError::failed("the store is closing"));
                    }
                }
            }
        }
    }
}

impl Backend for EmbeddedBackend {
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, SinkError>> {
        Box::pin(async move {
            self.ctx
                .topics
                .get(topic)
                .map(|t| t.partitions.len() as i32)
                .ok_or_else(|| SinkError::rejected(format!("topic {topic} does not exist")))
        })
    }

    fn write(&self, batches: Vec<TopicBatch>) -> BoxFuture<'_, Vec<Result<(), SinkError>>> {
        Box::pin(self.write_all(batches))
    }

    fn ensure_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.ctx.topics.get(topic).is_some() {
                return Ok(());
            }
            let configs = BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())]);
            match crate::handlers::topics::create_with_defaults(&self.ctx, topic, 1, configs).await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(()),
                Err(e) => Err(SinkError::failed(format!(
                    "creating {topic}: {}",
                    e.message
                ))),
            }
        })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> BoxFuture<'a, Result<ReadResult, SinkError>> {
        Box::pin(self.read_partition(topic, partition, offset, max_wait))
    }

    fn start_offset<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        from: StartFrom,
    ) -> BoxFuture<'a, Result<i64, SinkError>> {
        Box::pin(async move {
            let part = self
                .ctx
                .topics
                .get(topic)
                .and_then(|t| t.partition(partition).cloned())
                .ok_or_else(|| {
                    SinkError::rejected(format!("{topic}/{partition} does not exist"))
                })?;
            Ok(match from {
                StartFrom::Earliest => part.log_start(),
                StartFrom::Latest => part.next_offset(),
            })
        })
    }

    fn committed<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Option<i64>, SinkError>> {
        Box::pin(async move {
            let offsets = self.ctx.offsets.clone();
            let group = group.to_string();
            let tp = TopicPartition {
                topic: topic.to_string(),
                partition,
            };
            tokio::task::spawn_blocking(move || {
                offsets
                    .fetch_offsets(&group, Some(std::slice::from_ref(&tp)))
                    .map(|found| found.get(&tp).map(|o| o.offset))
            })
            .await
            .map_err(|e| SinkError::failed(e.to_string()))?
            .map_err(store_failure)
        })
    }

    fn commit<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.ctx
                .groups
                .check_commit(group, -1, "", None)
                .map_err(|code| {
                    SinkError::failed(format!(
                        "group {group} refuses a simple-consumer commit ({code:?}): is a consumer group with the same id running?"
                    ))
                })?;
            let commit = OffsetCommit {
                group: group.to_string(),
                partition: TopicPartition {
                    topic: topic.to_string(),
                    partition,
                },
                offset: CommittedOffset {
                    offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: now_ms(),
                },
            };
            wait(self.ctx.offsets.commit_offsets(vec![commit]))
                .await
                .and_then(|r| r)
                .map_err(store_failure)
        })
    }
}
