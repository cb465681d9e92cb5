//! DescribeLogDirs: one log dir (the data directory, where the LMDB environment lives) with the
//! stored size of each partition, so admin tools can show how big a topic is.
//!
//! `partition_size` is the bytes of record batches the partition holds (what retention.bytes
//! counts), not LMDB's pages; `offset_lag` is 0 (no future replicas here). From v4 the dir also
//! carries the disk budget as `total_bytes` and what is left of it as `usable_bytes`. As in
//! Kafka, a null topic list means every topic and unknown topics or partitions are left out
//! rather than reported as errors. Needs DESCRIBE on the cluster: without it the answer has no
//! log dir (and, from v3, CLUSTER_AUTHORIZATION_FAILED).

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{Ctx, Session, str_bytes, topic_name};
use crate::acl::Operation;
use crate::topics::Topic;

pub fn handle(
    ctx: &Ctx,
    session: &Session,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    if !ctx.acl.allows_cluster(session, Operation::Describe) {
        let refused = DescribeLogDirsResponse::default();
        return if version >= 3 {
            refused
                .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code())
        } else {
            refused
        };
    }
    let topics = match req.topics {
        None => ctx
            .topics
            .list()
            .iter()
            .map(|t| describe(t, None))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|w| describe_wanted(ctx, w))
            .collect(),
    };
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&ctx.config.storage.data_dir.to_string_lossy()))
        .with_topics(topics);
    // total_bytes and usable_bytes exist from v4; the codec refuses them for older versions.
    let dir = if version >= 4 {
        let usage = ctx.log.disk_usage();
        dir.with_total_bytes(clamp(usage.budget))
            .with_usable_bytes(clamp(usage.budget.saturating_sub(usage.used)))
    } else {
        dir
    };
    DescribeLogDirsResponse::default().with_results(vec![dir])
}

/// The partitions of `w` that exist, or nothing when the topic does not.
fn describe_wanted(ctx: &Ctx, w: &DescribableLogDirTopic) -> Option<DescribeLogDirsTopic> {
    let topic = ctx.topics.get(w.topic.as_str())?;
    let described = describe(&topic, Some(&w.partitions));
    (!described.partitions.is_empty()).then_some(described)
}

/// `topic` with its partitions (only those in `only`, when given).
fn describe(topic: &Topic, only: Option<&[i32]>) -> DescribeLogDirsTopic {
    let partitions = (0..topic.partitions.len() as i32)
        .filter(|p| only.is_none_or(|only| only.contains(p)))
        .filter_map(|p| {
            let log = topic.partition(p)?;
            Some(
                DescribeLogDirsPartition::default()
                    .with_partition_index(p)
                    .with_partition_size(clamp(log.size_bytes()))
                    .with_offset_lag(0)
                    .with_is_future_key(false),
            )
        })
        .collect();
    DescribeLogDirsTopic::default()
        .with_name(topic_name(topic.name()))
        .with_partitions(partitions)
}

fn clamp(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
