//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! latest tiered (-5, always "none" here) and by timestamp (>= 0).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Ctx, Session, blocking};
use crate::acl::{Operation, ResourceType};
use crate::log::{PartitionLog, StoreError, TimestampOffset};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// Needs DESCRIBE on each topic (TOPIC_AUTHORIZATION_FAILED per partition otherwise).
pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // leader_epoch exists from v4; the codec refuses to encode it for older versions.
    let epoch = if version >= 4 { 0 } else { -1 };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let authorized = ctx.acl.allows(
            session,
            Operation::Describe,
            ResourceType::Topic,
            t.name.as_str(),
        );
        let topic = ctx.topics.get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            if !authorized {
                partitions.push(
                    r.with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            }
            let Some(part) = topic
                .as_ref()
                .and_then(|tp| tp.partition(p.partition_index))
                .cloned()
            else {
                partitions.push(
                    r.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            };
            if p.timestamp == MAX_TIMESTAMP && version < 7 {
                // KIP-734: MAX_TIMESTAMP exists from v7; older versions must not see it work.
                partitions.push(
                    r.with_error_code(ResponseError::UnsupportedVersion.code())
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            }
            let (end, epoch) = match super::leadership(ctx, &part) {
                Ok(None) => (part.next_offset(), epoch),
                Ok(Some(replica)) => (
                    replica.high_watermark(),
                    if version >= 4 { replica.role().1 } else { -1 },
                ),
                Err(code) => {
                    partitions.push(
                        r.with_error_code(code.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    );
                    continue;
                }
            };
            let r = match lookup(ctx, part, p.timestamp, end).await {
                Ok(Some(found)) => r
                    .with_offset(found.offset)
                    .with_timestamp(found.timestamp)
                    .with_leader_epoch(epoch),
                Ok(None) => r.with_offset(-1).with_timestamp(-1),
                Err(e) => {
                    tracing::error!(error = %e, "ListOffsets failed");
                    r.with_error_code(ResponseError::KafkaStorageError.code())
                        .with_offset(-1)
                        .with_timestamp(-1)
                }
            };
            partitions.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup(
    ctx: &Ctx,
    part: std::sync::Arc<PartitionLog>,
    timestamp: i64,
    end: i64,
) -> Result<Option<TimestampOffset>, StoreError> {
    let at = |offset| {
        Ok(Some(TimestampOffset {
            timestamp: -1,
            offset,
        }))
    };
    match timestamp {
        // The high watermark: what consumers can read (the log end on a single node).
        LATEST => at(end),
        EARLIEST | EARLIEST_LOCAL => at(part.log_start()),
        LATEST_TIERED => Ok(None),
        MAX_TIMESTAMP => {
            let log = ctx.log.clone();
            blocking(move || log.max_timestamp(part.id)).await
        }
        ts if ts >= 0 => {
            let log = ctx.log.clone();
            blocking(move || log.offset_for_timestamp(part.id, ts)).await
        }
        _ => Ok(None),
    }
}
