//! Committed offsets of a group, for simple consumers: FindCoordinator, then OffsetCommit
//! with generation -1 and no member id (Kafka accepts those for a group with no active
//! members) and OffsetFetch.

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

use crate::cluster::Client;
use crate::conn::Connection;
use crate::error::{ClientError, Result};

/// FindCoordinator versions with the single `key` field (v4 batches keys).
const FIND_COORDINATOR_VERSIONS: (i16, i16) = (0, 3);
/// OffsetCommit versions with topic names and classic generations.
const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 8);
/// OffsetFetch versions with a single group.
const OFFSET_FETCH_VERSIONS: (i16, i16) = (1, 7);

impl Client {
    /// The connection to `group`'s coordinator.
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let conn = self.any_connection().await?;
        let response = conn
            .call(
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(group.to_string())),
                FIND_COORDINATOR_VERSIONS,
            )
            .await?;
        if let Some(e) = ClientError::kafka(
            format!("finding the coordinator of group {group}"),
            response.error_code,
        ) {
            return Err(e);
        }
        let addr = format!("{}:{}", response.host.as_str(), response.port);
        self.connection_at(response.node_id.0, addr).await
    }

    /// Commits `offsets` (topic, partition, next offset to read) for `group`.
    pub async fn commit_offsets(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<()> {
        let conn = self.coordinator(group).await?;
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let p = OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(topics);
        let response = conn.call(&request, OFFSET_COMMIT_VERSIONS).await?;
        for t in &response.topics {
            for p in &t.partitions {
                let context = format!(
                    "committing group {group} offset of {}/{}",
                    t.name.0.as_str(),
                    p.partition_index
                );
                if let Some(e) = ClientError::kafka(context, p.error_code) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `group`'s committed offset of each of `partitions` of `topic` (`None` when nothing
    /// is committed).
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<Option<i64>>> {
        let conn = self.coordinator(group).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_indexes(partitions.to_vec()),
            ]));
        let response = conn.call(&request, OFFSET_FETCH_VERSIONS).await?;
        if let Some(e) = ClientError::kafka(
            format!("fetching offsets of group {group}"),
            response.error_code,
        ) {
            return Err(e);
        }
        let mut out = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let found = response
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition);
            match found {
                Some(p) => {
                    let context = format!("group {group} offset of {topic}/{partition}");
                    if let Some(e) = ClientError::kafka(context, p.error_code) {
                        return Err(e);
                    }
                    out.push((p.committed_offset >= 0).then_some(p.committed_offset));
                }
                None => out.push(None),
            }
        }
        Ok(out)
    }
}
