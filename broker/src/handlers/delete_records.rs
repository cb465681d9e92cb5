//! DeleteRecords: move a partition's log start forward (offset -1 means the high
//! watermark); whole batches below it are deleted. Needs DELETE on the topic
//! (TOPIC_AUTHORIZATION_FAILED per partition otherwise).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Ctx, Session};
use crate::acl::{Operation, ResourceType};
use crate::log;
use crate::topics::ApiError;

pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str();
        let authorized = ctx
            .acl
            .allows(session, Operation::Delete, ResourceType::Topic, name);
        let topic = ctx.topics.get(name).filter(|_| authorized);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let part = topic
                .as_ref()
                .and_then(|tp| tp.partition(p.partition_index))
                .cloned();
            let result = match part {
                None if !authorized => Err(ResponseError::TopicAuthorizationFailed),
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(part) => {
                    let target = if p.offset == -1 {
                        part.next_offset()
                    } else {
                        p.offset
                    };
                    log::truncate(&*ctx.log, &part, target)
                        .await
                        .map_err(|e| ApiError::from(e).code)
                }
            };
            partitions.push(match result {
                Ok(low) => r.with_low_watermark(low),
                Err(code) => r.with_error_code(code.code()).with_low_watermark(-1),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
