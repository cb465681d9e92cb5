//! Fetch with long polling. Each pass reads every requested partition; the response goes out
//! once `min_bytes` are collected, `max_wait_ms` has passed, an error must be reported, or
//! the broker is shutting down. Between passes it sleeps until the next storage commit.
//!
//! Sizes follow KIP-74: partitions are filled in request order up to `max_bytes`, each up to
//! its `partition_max_bytes`, and the first non-empty partition always gets at least one
//! whole batch so a batch larger than the limits cannot stall a consumer.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{Ctx, Session, blocking};
use crate::acl::{Operation, ResourceType};
use crate::cluster::replica::Replica;
use crate::log::{LogStore, PartitionLog, StoreError};

/// Longest wait honoured, whatever a client asks for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// One requested partition, resolved.
struct Wanted {
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    log: Result<std::sync::Arc<PartitionLog>, ResponseError>,
    /// Cluster mode: the replica this node leads (its high watermark is reported, and
    /// consumers read only below it).
    replica: Option<std::sync::Arc<Replica>>,
    /// A follower's log diverged: answer with this epoch and end offset, no records.
    diverging: Option<(i32, i64)>,
}

/// Consumers need READ on each topic (TOPIC_AUTHORIZATION_FAILED per partition otherwise);
/// a follower's fetch (replica id >= 0) needs CLUSTER_ACTION on the cluster instead.
pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: FetchRequest,
    version: i16,
) -> FetchResponse {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let by_id = version >= 13;
    let missing = if by_id {
        ResponseError::UnknownTopicId
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let follower_allowed =
        (replica_id >= 0).then(|| ctx.acl.allows_cluster(session, Operation::ClusterAction));
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let topic = if by_id {
            ctx.topics.get_by_id(t.topic_id)
        } else {
            ctx.topics.get(t.topic.as_str())
        };
        let name = topic.as_ref().map_or(t.topic.as_str(), |tp| tp.name());
        let denied = match follower_allowed {
            Some(allowed) => !allowed,
            // Unknown ids stay UNKNOWN_TOPIC_ID: there is no name to authorize.
            None if by_id && topic.is_none() => false,
            None => !ctx
                .acl
                .allows(session, Operation::Read, ResourceType::Topic, name),
        };
        let mut wanted: Vec<Wanted> = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let log = if denied {
                Err(ResponseError::TopicAuthorizationFailed)
            } else {
                topic
                    .as_ref()
                    .and_then(|tp| tp.partition(p.partition).cloned())
                    .ok_or(missing)
            };
            let mut w = Wanted {
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                log,
                replica: None,
                diverging: None,
            };
            if let (Ok(part), Some(_)) = (&w.log, &ctx.cluster) {
                match lead_check(ctx, part, p.current_leader_epoch) {
                    Ok(r) => w.replica = r,
                    Err(code) => w.log = Err(code),
                }
            }
            if replica_id >= 0 {
                follower_fetch(ctx, replica_id, p.last_fetched_epoch, &mut w).await;
            }
            wanted.push(w);
        }
        topics.push((t.topic.clone(), t.topic_id, wanted));
    }
    let topics = std::sync::Arc::new(topics);
    let mut changes = ctx.changes.clone();
    let mut hw_changes = ctx.cluster.as_ref().map(|c| c.replicas.changes());
    let consumer = replica_id < 0;
    loop {
        changes.borrow_and_update();
        if let Some(h) = &mut hw_changes {
            h.borrow_and_update();
        }
        let log = ctx.log.clone();
        let pass = topics.clone();
        let result = blocking(move || Ok(read_pass(&*log, &pass, max_bytes, consumer))).await;
        let (responses, bytes, errors) = match result {
            Ok(r) => r,
            Err(e) => {
                // Only v7+ has a top-level error code; every partition carries it instead.
                tracing::error!(error = %e, "fetch read failed");
                return FetchResponse::default().with_responses(failed(&topics));
            }
        };
        // min_bytes 0 (or a fetch naming no partition) answers at once, as in Kafka.
        let done = bytes >= min_bytes
            || errors
            || tokio::time::Instant::now() >= deadline
            || ctx.shutdown.is_cancelled();
        if done {
            return FetchResponse::default().with_responses(responses);
        }
        let wait_commits = !consumer || hw_changes.is_none();
        let hw_moved = async {
            match &mut hw_changes {
                Some(h) => {
                    let _ = h.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changes.changed(), if wait_commits => {}
            _ = hw_moved => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = ctx.shutdown.cancelled() => {}
        }
    }
}

/// Every requested partition with KAFKA_STORAGE_ERROR.
fn failed(topics: &Pass) -> Vec<FetchableTopicResponse> {
    topics
        .iter()
        .map(|(name, id, wanted)| {
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
                .with_partitions(
                    wanted
                        .iter()
                        .map(|w| {
                            PartitionData::default()
                                .with_partition_index(w.partition)
                                .with_error_code(ResponseError::KafkaStorageError.code())
                                .with_records(Some(Bytes::new()))
                        })
                        .collect(),
                )
        })
        .collect()
}

type Pass = Vec<(kafka_protocol::messages::TopicName, uuid::Uuid, Vec<Wanted>)>;

/// Reads every partition once. Returns the response topics, the record bytes collected and
/// whether any partition carries an error.
fn read_pass(
    log: &dyn LogStore,
    topics: &Pass,
    max_bytes: usize,
    consumer: bool,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut out = Vec::with_capacity(topics.len());
    for (name, id, wanted) in topics {
        let mut partitions = Vec::with_capacity(wanted.len());
        for w in wanted {
            let data = PartitionData::default().with_partition_index(w.partition);
            let part = match &w.log {
                Ok(part) => part,
                Err(code) => {
                    errors = true;
                    partitions.push(
                        data.with_error_code(code.code())
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            };
            let hw = w.replica.as_ref().map(|r| r.high_watermark());
            if let Some((epoch, end_offset)) = w.diverging {
                partitions.push(
                    data.with_high_watermark(hw.unwrap_or(-1))
                        .with_last_stable_offset(hw.unwrap_or(-1))
                        .with_log_start_offset(part.log_start())
                        .with_diverging_epoch(
                            EpochEndOffset::default()
                                .with_epoch(epoch)
                                .with_end_offset(end_offset),
                        )
                        .with_records(Some(Bytes::new())),
                );
                errors = true;
                continue;
            }
            // Consumers of a replicated partition read only below the high watermark.
            let visible = hw.filter(|_| consumer);
            let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
            let read = match visible {
                Some(limit) if w.fetch_offset >= limit && w.fetch_offset <= part.next_offset() => {
                    Ok(crate::log::ReadChunk {
                        records: Bytes::new(),
                        high_watermark: limit,
                        log_start: part.log_start(),
                    })
                }
                _ => log.read(part.id, w.fetch_offset, budget, total == 0),
            };
            let data = match read {
                Ok(mut chunk) => {
                    if let Some(limit) = visible {
                        chunk.records = clip(chunk.records, limit);
                    }
                    let hw = hw.unwrap_or(chunk.high_watermark);
                    total += chunk.records.len();
                    data.with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(chunk.log_start)
                        .with_records(Some(chunk.records))
                }
                Err(e) => {
                    errors = true;
                    let code = match e {
                        StoreError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                        StoreError::UnknownPartition(_) => ResponseError::UnknownTopicOrPartition,
                        _ => ResponseError::KafkaStorageError,
                    };
                    data.with_error_code(code.code())
                        .with_high_watermark(part.next_offset())
                        .with_last_stable_offset(part.next_offset())
                        .with_log_start_offset(part.log_start())
                        .with_records(Some(Bytes::new()))
                }
            };
            partitions.push(data);
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
                .with_partitions(partitions),
        );
    }
    (out, total, errors)
}

/// Cluster mode: this node must lead the partition, in the epoch the client knows if it
/// says one (KIP-320: an older epoch is FENCED_LEADER_EPOCH, a newer one
/// UNKNOWN_LEADER_EPOCH; both make the client refresh its metadata).
fn lead_check(
    ctx: &Ctx,
    part: &PartitionLog,
    client_epoch: i32,
) -> Result<Option<std::sync::Arc<Replica>>, ResponseError> {
    let replica = super::leadership(ctx, part)?;
    if let Some(r) = &replica {
        let epoch = r.role().1;
        if client_epoch >= 0 && client_epoch < epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if client_epoch > epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
    }
    Ok(replica)
}

/// A follower's fetch: checks its last epoch against this leader's log (KIP-595 style
/// divergence), and records how far it got — which may move the high watermark or let it
/// back into the ISR.
async fn follower_fetch(ctx: &Ctx, follower: i32, last_epoch: i32, w: &mut Wanted) {
    let (Some(cluster), Some(replica), Ok(part)) = (&ctx.cluster, &w.replica, &w.log) else {
        return;
    };
    if last_epoch >= 0 {
        let log = ctx.log.clone();
        let id = part.id;
        let end = blocking(move || log.epoch_end_offset(id, last_epoch)).await;
        match end {
            Ok(Some(e)) if e.epoch == last_epoch && e.end_offset >= w.fetch_offset => {}
            Ok(Some(e)) => {
                w.diverging = Some((e.epoch, e.end_offset));
                return;
            }
            Ok(None) => {
                w.diverging = Some((-1, part.log_start()));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the epoch index");
                w.log = Err(ResponseError::KafkaStorageError);
                return;
            }
        }
    }
    if let Some(change) = cluster
        .replicas
        .follower_fetched(replica, follower, w.fetch_offset)
    {
        tracing::info!(topic = %change.topic, partition = change.partition, follower, "follower caught up: adding it to the ISR");
        let cluster = cluster.clone();
        let replica = replica.clone();
        tokio::spawn(crate::cluster::change_isr(cluster, replica, change));
    }
}

/// Drops the batches at or above `limit` (the high watermark, always a batch boundary).
fn clip(records: Bytes, limit: i64) -> Bytes {
    let mut end = 0usize;
    for b in crate::protocol::batch::split(&records) {
        match crate::protocol::batch::stored_header(&b) {
            Some(h) if h.base_offset < limit => end += b.len(),
            _ => break,
        }
    }
    records.slice(..end)
}
