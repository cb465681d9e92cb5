//! Consumer groups as an operator sees them: the list, each group's state and members with
//! their assignments, committed offsets, and the end offsets lag is measured against.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, DescribeGroupsRequest, GroupId, ListGroupsRequest,
    ListOffsetsRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::cluster::Client;
use crate::error::{ClientError, Result};

const LIST_GROUPS_VERSIONS: (i16, i16) = (0, 4);
/// v5 and below: no KIP-848 fields to fill.
const DESCRIBE_GROUPS_VERSIONS: (i16, i16) = (0, 5);
/// OffsetFetch versions with a single group and `topics: None` meaning all.
const OFFSET_FETCH_ALL_VERSIONS: (i16, i16) = (2, 7);
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 8);

/// A group as ListGroups names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty when the broker's ListGroups version has no state (below v4).
    pub state: String,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partition) pairs, decoded from the consumer protocol assignment.
    pub assignment: Vec<(String, i32)>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

/// A leader's connection and the partitions asked of it.
type LeaderPartitions = (std::sync::Arc<crate::Connection>, Vec<(String, i32)>);

/// (topic, partition) → offset.
pub type PartitionOffsets = BTreeMap<(String, i32), i64>;

impl Client {
    /// Every group the cluster's brokers know.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let meta = self.metadata(&[], false).await?;
        let mut out = Vec::new();
        let nodes: Vec<i32> = if meta.brokers.is_empty() {
            vec![-1]
        } else {
            meta.brokers.iter().map(|b| b.node_id).collect()
        };
        for node in nodes {
            let conn = if node < 0 {
                self.any_connection().await?
            } else {
                self.broker_connection(node).await?
            };
            let response = conn
                .call(&ListGroupsRequest::default(), LIST_GROUPS_VERSIONS)
                .await?;
            if let Some(e) = ClientError::kafka("listing groups", response.error_code) {
                return Err(e);
            }
            out.extend(response.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// `group`'s state, members and their assignments (from its coordinator).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let conn = self.coordinator(group).await?;
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let response = conn.call(&request, DESCRIBE_GROUPS_VERSIONS).await?;
        let g = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "DescribeGroups",
                message: format!("no answer for group {group}"),
            })?;
        if let Some(e) = ClientError::kafka(format!("describing group {group}"), g.error_code) {
            return Err(e);
        }
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(m.member_assignment.clone())
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// Every offset `group` has committed.
    pub async fn group_offsets(&self, group: &str) -> Result<PartitionOffsets> {
        let conn = self.coordinator(group).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(None);
        let response = conn.call(&request, OFFSET_FETCH_ALL_VERSIONS).await?;
        if let Some(e) = ClientError::kafka(
            format!("fetching offsets of group {group}"),
            response.error_code,
        ) {
            return Err(e);
        }
        let mut out = PartitionOffsets::new();
        for t in &response.topics {
            for p in &t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// The log end offset (high watermark) of each partition, asking each leader once.
    pub async fn end_offsets(&self, partitions: &[(String, i32)]) -> Result<PartitionOffsets> {
        self.offsets_at(partitions, -1).await
    }

    /// The first offset at or after `timestamp` (ms) of each partition; partitions with no
    /// such record answer their end offset.
    pub async fn offsets_for_time(
        &self,
        partitions: &[(String, i32)],
        timestamp: i64,
    ) -> Result<PartitionOffsets> {
        let found = self.offsets_at(partitions, timestamp).await?;
        let ends = self.end_offsets(partitions).await?;
        Ok(ends
            .into_iter()
            .map(|(k, end)| {
                let at = found.get(&k).copied().filter(|o| *o >= 0).unwrap_or(end);
                (k, at)
            })
            .collect())
    }

    /// The log start offset of each partition.
    pub async fn start_offsets(&self, partitions: &[(String, i32)]) -> Result<PartitionOffsets> {
        self.offsets_at(partitions, -2).await
    }

    async fn offsets_at(
        &self,
        partitions: &[(String, i32)],
        timestamp: i64,
    ) -> Result<PartitionOffsets> {
        let mut by_leader: HashMap<String, LeaderPartitions> = HashMap::new();
        for (topic, partition) in partitions {
            let conn = self.leader_connection(topic, *partition).await?;
            by_leader
                .entry(conn.addr().to_string())
                .or_insert_with(|| (conn.clone(), Vec::new()))
                .1
                .push((topic.clone(), *partition));
        }
        let mut out = PartitionOffsets::new();
        for (_, (conn, parts)) in by_leader {
            let mut topics: Vec<ListOffsetsTopic> = Vec::new();
            for (topic, partition) in &parts {
                let p = ListOffsetsPartition::default()
                    .with_partition_index(*partition)
                    .with_timestamp(timestamp);
                match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partitions.push(p),
                    None => topics.push(
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(topics);
            let response = conn.call(&request, LIST_OFFSETS_VERSIONS).await?;
            for t in &response.topics {
                for p in &t.partitions {
                    let context = format!(
                        "listing offsets of {}/{}",
                        t.name.0.as_str(),
                        p.partition_index
                    );
                    if let Some(e) = ClientError::kafka(context, p.error_code) {
                        return Err(e);
                    }
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        Ok(out)
    }
}

/// The (topic, partition) pairs of a consumer-protocol assignment; empty if it does not
/// decode (a non-consumer protocol, or a newer format).
fn decode_assignment(mut bytes: Bytes) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes.split_to(2);
    match ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(move |p| (tp.topic.0.to_string(), *p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}
