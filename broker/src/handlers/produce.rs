//! Produce: validate each partition's RecordBatch, append them all in one store call (one
//! group commit), and answer once they are durable. `acks=0` requests are appended the same
//! way; the connection simply sends no response.
//!
//! [`start`] does the validation and queues the appends before it returns; only waiting for
//! durability is left in the returned future. A connection can therefore read the next
//! produce request while earlier ones are being committed — the store's queue keeps their
//! order — and many pipelined requests share one commit.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use std::sync::Arc;
use std::time::Duration;

use super::{Ctx, Session, str_bytes};
use crate::acl::{Operation, ResourceType};
use crate::cluster::replica::Replica;
use crate::log::producers::{ProducerBatch, increment_seq};
use crate::log::{AppendItem, StoreError, wait};
use crate::protocol::batch::{self, BatchError};
use crate::topics::ApiError;

/// Where each partition's answer comes from.
enum Slot {
    Ready(ApiError),
    Appended(usize),
}

/// Validates `req` and queues its batches now; the returned future resolves to the response
/// once they are durable (or refused). Topics `session` may not WRITE are refused with
/// TOPIC_AUTHORIZATION_FAILED before anything else is looked at (Kafka's order: no hint
/// whether they exist). Idempotent batches need no more than that (KIP-679: the producer id
/// was authorized by InitProducerId).
pub fn start(
    ctx: &Ctx,
    session: &Session,
    req: ProduceRequest,
) -> impl std::future::Future<Output = ProduceResponse> + Send + 'static {
    let acks_ok = matches!(req.acks, -1..=1);
    let mut items = Vec::new();
    // In cluster mode, per item: the replica this node leads and the batch's record count.
    let mut leaders: Vec<Option<(Arc<Replica>, i32)>> = Vec::new();
    let mut plan: Plan = Vec::new();
    for topic in req.topic_data {
        let authorized = ctx.acl.allows(
            session,
            Operation::Write,
            ResourceType::Topic,
            topic.name.as_str(),
        );
        let found = ctx.topics.get(topic.name.as_str());
        let mut slots = Vec::with_capacity(topic.partition_data.len());
        for part in topic.partition_data {
            let slot = if !authorized {
                Slot::Ready(ApiError::new(
                    ResponseError::TopicAuthorizationFailed,
                    format!("not authorized to write to topic {:?}", topic.name.as_str()),
                ))
            } else if !acks_ok {
                Slot::Ready(ApiError::new(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, got {}", req.acks),
                ))
            } else if req.transactional_id.is_some() {
                Slot::Ready(ApiError::new(
                    ResponseError::InvalidRequest,
                    "transactions are not supported by Runnel",
                ))
            } else {
                let prepared = prepare(req.acks, found.as_deref(), part.index, part.records)
                    .and_then(|item| lead(ctx, req.acks, found.as_deref(), item));
                match prepared {
                    Ok((item, replica)) => {
                        let last = item.record_count;
                        items.push(item);
                        leaders.push(replica.map(|r| (r, last)));
                        Slot::Appended(items.len() - 1)
                    }
                    Err(e) => Slot::Ready(e),
                }
            };
            slots.push((part.index, slot));
        }
        plan.push((topic.name, slots));
    }
    let queued = (!items.is_empty()).then(|| ctx.log.append(items));
    let pressure = ctx.disk_pressure.clone();
    let cluster = ctx.cluster.clone();
    let acks = req.acks;
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let shutdown = ctx.shutdown.clone();
    async move {
        let results = match queued {
            Some(queued) => wait(queued).await,
            None => Ok(Vec::new()),
        };
        let results = match (cluster, results) {
            (Some(cluster), Ok(results)) => {
                replicated(&cluster, acks, timeout, &shutdown, leaders, results).await
            }
            (_, results) => results,
        };
        if let Ok(results) = &results
            && results
                .iter()
                .any(|r| matches!(r, Err(StoreError::DiskFull { .. })))
        {
            pressure.notify_one();
        }
        respond(plan, results)
    }
}

/// Cluster mode: this node must lead the partition; the batch gets the leader epoch, and
/// acks=all needs `min.insync.replicas` in the ISR before anything is appended.
fn lead(
    ctx: &Ctx,
    acks: i16,
    topic: Option<&crate::topics::Topic>,
    mut item: AppendItem,
) -> Result<(AppendItem, Option<Arc<Replica>>), ApiError> {
    let replica = super::leadership(ctx, &item.partition)
        .map_err(|code| ApiError::new(code, "this broker is not the partition's leader"))?;
    let Some(replica) = replica else {
        return Ok((item, None));
    };
    item.leader_epoch = replica.role().1;
    // Capped at the replication factor, so a topic with fewer replicas than the cluster's
    // default min.insync.replicas (e.g. replication factor 1) stays writable.
    let min_isr = topic
        .map_or(1, |t| t.config.min_insync_replicas)
        .min(replica.replica_count() as i32);
    if acks == -1 && (replica.isr_len() as i32) < min_isr {
        return Err(ApiError::new(
            ResponseError::NotEnoughReplicas,
            format!(
                "{} in-sync replicas, min.insync.replicas is {min_isr}",
                replica.isr_len()
            ),
        ));
    }
    Ok((item, Some(replica)))
}

/// After a cluster leader's local append: moves the high watermark, and for acks=all waits
/// until every ISR member has the batch (the high watermark passed it), the leadership is
/// lost (NOT_LEADER_OR_FOLLOWER) or the request's timeout ends (REQUEST_TIMED_OUT).
async fn replicated(
    cluster: &crate::cluster::Cluster,
    acks: i16,
    timeout: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    leaders: Vec<Option<(Arc<Replica>, i32)>>,
    mut results: Vec<Result<crate::log::Appended, StoreError>>,
) -> Result<Vec<Result<crate::log::Appended, StoreError>>, StoreError> {
    for (r, _) in leaders.iter().flatten() {
        cluster.replicas.appended(r);
    }
    if acks != -1 {
        return Ok(results);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = cluster.replicas.changes();
    let epochs: Vec<Option<i32>> = leaders
        .iter()
        .map(|l| l.as_ref().map(|(r, _)| r.role().1))
        .collect();
    loop {
        changes.borrow_and_update();
        let mut waiting = false;
        for (i, leader) in leaders.iter().enumerate() {
            let (Some((r, count)), Some(Ok(a))) = (leader, results.get(i)) else {
                continue;
            };
            let end = a.base_offset + i64::from(*count);
            let (role, epoch) = r.role();
            // A leader that stopped serving (cut off from the controller) answers at once:
            // the producer retries at the new leader instead of holding its in-flight
            // batches (and its idempotent sequence) here until the request times out.
            if role != crate::cluster::Role::Leader
                || Some(epoch) != epochs[i]
                || !cluster.serving()
            {
                results[i] = Err(StoreError::NotLeader);
            } else if r.high_watermark() < end {
                waiting = true;
            }
        }
        if !waiting {
            return Ok(results);
        }
        if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
            for (i, leader) in leaders.iter().enumerate() {
                if let (Some((r, count)), Some(Ok(a))) = (leader, results.get(i))
                    && r.high_watermark() < a.base_offset + i64::from(*count)
                {
                    results[i] = Err(StoreError::ReplicationTimeout);
                }
            }
            return Ok(results);
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // `serving` lapses without a state change: look again now and then.
            _ = tokio::time::sleep(SERVING_RECHECK) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// How often an acks=all wait re-checks that this node still serves as leader.
const SERVING_RECHECK: Duration = Duration::from_millis(200);

type Plan = Vec<(kafka_protocol::messages::TopicName, Vec<(i32, Slot)>)>;

/// Builds the response; `results` has one entry per queued item, or is the error that kept
/// the whole append from being answered.
fn respond(
    plan: Plan,
    results: Result<Vec<Result<crate::log::Appended, StoreError>>, StoreError>,
) -> ProduceResponse {
    let responses = plan
        .into_iter()
        .map(|(name, slots)| {
            let partitions = slots
                .into_iter()
                .map(|(index, slot)| {
                    let r = PartitionProduceResponse::default().with_index(index);
                    let outcome = match slot {
                        Slot::Ready(e) => Err(e),
                        Slot::Appended(i) => match results.as_ref().map(|r| r.get(i)) {
                            Ok(Some(Ok(a))) => Ok(*a),
                            Ok(Some(Err(e))) | Err(e) => Err(store_error(e)),
                            Ok(None) => Err(store_error(&StoreError::Closed)),
                        },
                    };
                    match outcome {
                        Ok(a) => r
                            .with_base_offset(a.base_offset)
                            .with_log_start_offset(a.log_start),
                        Err(e) => r
                            .with_error_code(e.code.code())
                            .with_base_offset(-1)
                            .with_error_message(Some(str_bytes(&e.message))),
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn store_error(e: &StoreError) -> ApiError {
    if matches!(e, StoreError::DiskFull { .. }) {
        tracing::warn!(error = %e, "produce refused");
    }
    e.clone().into()
}

/// Checks one partition's records like Produce does (topic and partition exist, size limit,
/// batch header and CRC) and makes the append item. Shared with the embedded bridge.
pub(crate) fn prepare(
    acks: i16,
    topic: Option<&crate::topics::Topic>,
    index: i32,
    records: Option<bytes::Bytes>,
) -> Result<AppendItem, ApiError> {
    let topic = topic
        .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, "unknown topic"))?;
    let partition = topic.partition(index).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {:?} has no partition {index}", topic.name()),
        )
    })?;
    let records = records.unwrap_or_default();
    let max = topic.config.max_message_bytes;
    if records.len() > max as usize {
        return Err(ApiError::new(
            ResponseError::MessageTooLarge,
            format!(
                "record batch of {} bytes exceeds max.message.bytes {max}",
                records.len()
            ),
        ));
    }
    let valid = batch::validate(records).map_err(|e| {
        let code = match e {
            BatchError::Magic(_) => ResponseError::UnsupportedForMessageFormat,
            BatchError::Crc { .. }
            | BatchError::TooShort(_)
            | BatchError::LengthMismatch { .. } => ResponseError::CorruptMessage,
            _ => ResponseError::InvalidRecord,
        };
        ApiError::new(code, e.to_string())
    })?;
    let producer = (valid.producer_id >= 0).then(|| ProducerBatch {
        producer_id: valid.producer_id,
        epoch: valid.producer_epoch,
        first_seq: valid.base_sequence,
        last_seq: increment_seq(valid.base_sequence, valid.record_count - 1),
    });
    if producer.is_some() && acks != -1 {
        return Err(ApiError::new(
            ResponseError::InvalidRequiredAcks,
            "idempotent producers must use acks=all (-1)",
        ));
    }
    Ok(AppendItem {
        partition: partition.clone(),
        batch: valid.bytes,
        record_count: valid.record_count,
        max_timestamp: valid.max_timestamp,
        leader_epoch: 0,
        producer,
    })
}
