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
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{Ctx, Session, blocking};
use crate::acl::{Operation, ResourceType};
use crate::log::{LogStore, PartitionLog, StoreError};

/// Longest wait honoured, whatever a client asks for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// One requested partition, resolved.
struct Wanted {
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    log: Result<std::sync::Arc<PartitionLog>, ResponseError>,
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
        let wanted: Vec<Wanted> = t
            .partitions
            .iter()
            .map(|p| Wanted {
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                log: if denied {
                    Err(ResponseError::TopicAuthorizationFailed)
                } else {
                    topic
                        .as_ref()
                        .and_then(|tp| tp.partition(p.partition).cloned())
                        .ok_or(missing)
                },
            })
            .collect();
        topics.push((t.topic.clone(), t.topic_id, wanted));
    }
    let topics = std::sync::Arc::new(topics);
    let mut changes = ctx.changes.clone();
    loop {
        changes.borrow_and_update();
        let log = ctx.log.clone();
        let pass = topics.clone();
        let result = blocking(move || Ok(read_pass(&*log, &pass, max_bytes))).await;
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
        tokio::select! {
            _ = changes.changed() => {}
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
            let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
            let read = log.read(part.id, w.fetch_offset, budget, total == 0);
            let data = match read {
                Ok(chunk) => {
                    total += chunk.records.len();
                    data.with_high_watermark(chunk.high_watermark)
                        .with_last_stable_offset(chunk.high_watermark)
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
