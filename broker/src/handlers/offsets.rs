//! OffsetCommit (v2–9), OffsetFetch (v1–9) and OffsetDelete (v0) for classic consumer groups.
//!
//! Offsets live in the [`crate::log::OffsetStore`]; the group coordinator only says who may
//! commit ([`crate::group::GroupCoordinator::check_commit`]) and which topics a live group
//! still consumes. Invariants:
//! - a commit is answered only once durable; all accepted partitions of one request are
//!   stored in one writer op, so they become durable together;
//! - a refused partition is never stored; a refusal of the whole request (bad group id,
//!   stale generation, unknown member) applies to every partition;
//! - storage failures answer COORDINATOR_NOT_AVAILABLE, which clients retry (Kafka answers
//!   the same when its offsets log cannot be written);
//! - the response builders set only fields the requested version has (the codec refuses
//!   to encode others), which the tests check at every advertised version;
//! - authorization as in Kafka: OffsetCommit needs READ on the group and on each topic,
//!   OffsetFetch DESCRIBE on both (topics the client may not DESCRIBE are left out of a fetch
//!   of all offsets), OffsetDelete DELETE on the group and READ on each topic. A refused group
//!   refuses the whole request (GROUP_AUTHORIZATION_FAILED); a refused topic only its
//!   partitions (TOPIC_AUTHORIZATION_FAILED), checked before whether it exists.

use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{Ctx, Session, blocking, str_bytes};
use crate::acl::{Operation, ResourceType};
use crate::log::{
    CommittedOffset, MAX_GROUP_ID_BYTES, OffsetCommit, StoreError, TopicPartition, wait,
};

/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Per-topic, per-partition error codes (0 = success), in request order.
type Codes = Vec<(TopicName, Vec<(i32, i16)>)>;
/// Requested partitions of one group; `None` asks for every committed one.
type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;
/// Per-topic, per-partition refusals (`None`: accepted), in request order.
type Plan = Vec<(TopicName, Vec<(i32, Option<ResponseError>)>)>;
/// Offsets of one group as answered: `None` for partitions without a commit, with the
/// partition's own error (a topic the client may not DESCRIBE).
type Found = Vec<(
    TopicName,
    Vec<(i32, Option<CommittedOffset>, Option<ResponseError>)>,
)>;

fn may(ctx: &Ctx, session: &Session, op: Operation, rt: ResourceType, name: &str) -> bool {
    ctx.acl.allows(session, op, rt, name)
}

pub async fn commit(
    ctx: &Ctx,
    session: &Session,
    req: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let whole = if !may(ctx, session, Operation::Read, ResourceType::Group, &group) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else if !valid_group_id(&group) {
        Some(ResponseError::InvalidGroupId)
    } else if let Some(e) = super::groups::not_coordinator(ctx, &group) {
        Some(e)
    } else {
        let instance = req.group_instance_id.as_deref();
        let (generation, member) = (req.generation_id_or_member_epoch, req.member_id.as_str());
        ctx.groups
            .check_commit(&group, generation, member, instance)
            .err()
    };
    let now = crate::log::now_ms();
    let mut commits = Vec::new();
    let mut plan = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.as_str();
        let topic_refusal = (whole.is_none()
            && !may(ctx, session, Operation::Read, ResourceType::Topic, name))
        .then_some(ResponseError::TopicAuthorizationFailed);
        let found = ctx.topics.get(name);
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let exists = found
                .as_ref()
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let refusal = whole
                .or(topic_refusal)
                .or_else(|| partition_refusal(exists, metadata));
            if refusal.is_none() {
                commits.push(OffsetCommit {
                    group: group.clone(),
                    partition: TopicPartition {
                        topic: topic.name.to_string(),
                        partition: p.partition_index,
                    },
                    offset: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_owned(),
                        commit_timestamp_ms: now,
                    },
                });
            }
            parts.push((p.partition_index, refusal));
        }
        plan.push((topic.name, parts));
    }
    let stored = if commits.is_empty() {
        None
    } else {
        let result = wait(ctx.offsets.commit_offsets(commits)).await;
        result
            .and_then(|r| r)
            .err()
            .map(|e| storage_failed(&group, &e))
    };
    commit_response(answer(plan, stored))
}

pub async fn fetch(
    ctx: &Ctx,
    session: &Session,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut answers = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let wanted = g.topics.map(|ts| {
                let pairs = ts.into_iter().map(|t| (t.name, t.partition_indexes));
                pairs.collect()
            });
            let (error, found) = fetch_group(ctx, session, &g.group_id, wanted).await;
            answers.push((g.group_id, error, found));
        }
        return fetch_response_batched(answers);
    }
    let wanted: Wanted = req.topics.map(|ts| {
        let pairs = ts.into_iter().map(|t| (t.name, t.partition_indexes));
        pairs.collect()
    });
    let group = req.group_id.as_str();
    if version < 2
        && !may(
            ctx,
            session,
            Operation::Describe,
            ResourceType::Group,
            group,
        )
    {
        // v1 has no top-level error: Kafka answers it on every requested partition.
        let refused = ResponseError::GroupAuthorizationFailed.code();
        let each = wanted.unwrap_or_default().into_iter();
        let found = each.map(|(name, parts)| (name, parts.into_iter().map(|p| (p, None, None))));
        let found = found.map(|(name, parts)| (name, parts.collect())).collect();
        return fetch_response_single(refused, found, version);
    }
    let (error, found) = fetch_group(ctx, session, group, wanted).await;
    fetch_response_single(error, found, version)
}

pub async fn delete(
    ctx: &Ctx,
    session: &Session,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    if !may(ctx, session, Operation::Delete, ResourceType::Group, &group) {
        return delete_response(ResponseError::GroupAuthorizationFailed.code(), Vec::new());
    }
    if group.is_empty() {
        return delete_response(ResponseError::InvalidGroupId.code(), Vec::new());
    }
    let store = ctx.offsets.clone();
    let g = group.clone();
    let stored = match blocking(move || store.fetch_offsets(&g, None)).await {
        Ok(stored) => stored,
        Err(e) => return delete_response(storage_failed(&group, &e).code(), Vec::new()),
    };
    if stored.is_empty() && ctx.groups.describe(&group).is_none() {
        return delete_response(ResponseError::GroupIdNotFound.code(), Vec::new());
    }
    let subscribed = if ctx.groups.is_empty(&group) {
        HashSet::new()
    } else {
        ctx.groups.subscribed_topics(&group)
    };
    let mut doomed = Vec::new();
    let mut plan = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.as_str();
        let authorized = may(ctx, session, Operation::Read, ResourceType::Topic, name);
        let found = ctx.topics.get(name);
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let index = p.partition_index;
            let refusal = if !authorized {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if found.as_ref().is_none_or(|t| t.partition(index).is_none()) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if subscribed.contains(topic.name.as_str()) {
                Some(ResponseError::GroupSubscribedToTopic)
            } else {
                doomed.push(TopicPartition {
                    topic: topic.name.to_string(),
                    partition: index,
                });
                None
            };
            parts.push((index, refusal));
        }
        plan.push((topic.name, parts));
    }
    let stored = if doomed.is_empty() {
        None
    } else {
        let result = wait(ctx.offsets.delete_offsets(group.clone(), Some(doomed))).await;
        result
            .and_then(|r| r)
            .err()
            .map(|e| storage_failed(&group, &e))
    };
    delete_response(0, answer(plan, stored))
}

/// Deletes every committed offset of a group (DeleteGroups, after the coordinator let the
/// group go). Resolves once durable.
pub async fn delete_group(ctx: &Ctx, group: &str) -> Result<(), ResponseError> {
    let result = wait(ctx.offsets.delete_offsets(group.to_owned(), None)).await;
    match result.and_then(|r| r) {
        Ok(_) => Ok(()),
        Err(e) => Err(storage_failed(group, &e)),
    }
}

fn valid_group_id(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_GROUP_ID_BYTES
}

/// Why one partition of an otherwise acceptable commit is refused.
fn partition_refusal(exists: bool, metadata: &str) -> Option<ResponseError> {
    if !exists {
        Some(ResponseError::UnknownTopicOrPartition)
    } else if metadata.len() > MAX_METADATA_BYTES {
        Some(ResponseError::OffsetMetadataTooLarge)
    } else {
        None
    }
}

fn storage_failed(group: &str, e: &StoreError) -> ResponseError {
    tracing::warn!(group_id = group, error = %e, "committed-offset storage failed");
    ResponseError::CoordinatorNotAvailable
}

/// Error codes: a partition's own refusal, else the store's verdict on the accepted ones.
fn answer(plan: Plan, stored: Option<ResponseError>) -> Codes {
    let code = |refusal: Option<ResponseError>| refusal.or(stored).map_or(0, |e| e.code());
    plan.into_iter()
        .map(|(name, parts)| (name, parts.into_iter().map(|(i, r)| (i, code(r))).collect()))
        .collect()
}

/// Reads one group's offsets; the error code is group-wide.
async fn fetch_group(ctx: &Ctx, session: &Session, group: &str, wanted: Wanted) -> (i16, Found) {
    if !may(
        ctx,
        session,
        Operation::Describe,
        ResourceType::Group,
        group,
    ) {
        return (ResponseError::GroupAuthorizationFailed.code(), Vec::new());
    }
    if let Some(e) = super::groups::not_coordinator(ctx, group) {
        return (e.code(), Vec::new());
    }
    let acl = &ctx.acl;
    let denied: HashSet<TopicName> = wanted
        .iter()
        .flatten()
        .map(|(name, _)| name)
        .filter(|name| !acl.allows(session, Operation::Describe, ResourceType::Topic, name))
        .cloned()
        .collect();
    let only: Option<Vec<TopicPartition>> = wanted.as_ref().map(|ts| {
        let allowed = ts.iter().filter(|(name, _)| !denied.contains(name));
        let each = allowed.flat_map(|(name, parts)| {
            parts.iter().map(|p| TopicPartition {
                topic: name.to_string(),
                partition: *p,
            })
        });
        each.collect()
    });
    let store = ctx.offsets.clone();
    let g = group.to_owned();
    let (error, mut stored) = match blocking(move || store.fetch_offsets(&g, only.as_deref())).await
    {
        Ok(stored) => (0, stored),
        Err(e) => (storage_failed(group, &e).code(), Default::default()),
    };
    let found = match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let refused = denied
                    .contains(&name)
                    .then_some(ResponseError::TopicAuthorizationFailed);
                let topic = name.to_string();
                let parts = parts.into_iter().map(|p| {
                    let key = TopicPartition {
                        topic: topic.clone(),
                        partition: p,
                    };
                    (p, stored.remove(&key), refused)
                });
                (name, parts.collect())
            })
            .collect(),
        None => {
            let mut found: Found = Vec::new();
            for (tp, offset) in stored {
                match found.last_mut() {
                    Some((name, parts)) if name.as_str() == tp.topic => {
                        parts.push((tp.partition, Some(offset), None))
                    }
                    _ => found.push((
                        super::topic_name(&tp.topic),
                        vec![(tp.partition, Some(offset), None)],
                    )),
                }
            }
            // Offsets of topics the client may not DESCRIBE are left out, as in Kafka.
            found.retain(|(name, _)| {
                acl.allows_quiet(session, Operation::Describe, ResourceType::Topic, name)
            });
            found
        }
    };
    (error, found)
}

fn commit_response(codes: Codes) -> OffsetCommitResponse {
    let topics = codes.into_iter().map(|(name, parts)| {
        let parts = parts.into_iter().map(|(index, code)| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(code)
        });
        OffsetCommitResponseTopic::default()
            .with_name(name)
            .with_partitions(parts.collect())
    });
    OffsetCommitResponse::default().with_topics(topics.collect())
}

/// `(offset, leader epoch, metadata)` to answer; -1 / -1 / "" without a commit.
fn shown(o: Option<CommittedOffset>) -> (i64, i32, String) {
    o.map_or((-1, -1, String::new()), |o| {
        (o.offset, o.leader_epoch, o.metadata)
    })
}

/// OffsetFetch v1–7: one group; the group error is top-level from v2 and repeated on each
/// partition (v1 has no top-level error).
fn fetch_response_single(error: i16, found: Found, version: i16) -> OffsetFetchResponse {
    let topics = found.into_iter().map(|(name, parts)| {
        let parts = parts.into_iter().map(|(index, o, own)| {
            let (offset, epoch, metadata) = shown(o);
            OffsetFetchResponsePartition::default()
                .with_partition_index(index)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_metadata(Some(str_bytes(&metadata)))
                .with_error_code(own.map_or(error, |e| e.code()))
        });
        OffsetFetchResponseTopic::default()
            .with_name(name)
            .with_partitions(parts.collect())
    });
    let response = OffsetFetchResponse::default().with_topics(topics.collect());
    if version >= 2 {
        response.with_error_code(error)
    } else {
        response
    }
}

/// OffsetFetch v8+: one entry per requested group.
fn fetch_response_batched(groups: Vec<(GroupId, i16, Found)>) -> OffsetFetchResponse {
    let groups = groups.into_iter().map(|(group_id, error, found)| {
        let topics = found.into_iter().map(|(name, parts)| {
            let parts = parts.into_iter().map(|(index, o, own)| {
                let (offset, epoch, metadata) = shown(o);
                OffsetFetchResponsePartitions::default()
                    .with_partition_index(index)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(epoch)
                    .with_metadata(Some(str_bytes(&metadata)))
                    .with_error_code(own.map_or(0, |e| e.code()))
            });
            OffsetFetchResponseTopics::default()
                .with_name(name)
                .with_partitions(parts.collect())
        });
        OffsetFetchResponseGroup::default()
            .with_group_id(group_id)
            .with_topics(topics.collect())
            .with_error_code(error)
    });
    OffsetFetchResponse::default().with_groups(groups.collect())
}

fn delete_response(error: i16, codes: Codes) -> OffsetDeleteResponse {
    let topics = codes.into_iter().map(|(name, parts)| {
        let parts = parts.into_iter().map(|(index, code)| {
            OffsetDeleteResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(code)
        });
        OffsetDeleteResponseTopic::default()
            .with_name(name)
            .with_partitions(parts.collect())
    });
    OffsetDeleteResponse::default()
        .with_error_code(error)
        .with_topics(topics.collect())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn encodes(msg: &impl Encodable, version: i16) -> usize {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode at v{version}: {e}"));
        buf.len()
    }

    fn found() -> Found {
        let o = CommittedOffset {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".into(),
            commit_timestamp_ms: 1,
        };
        let refused = Some(ResponseError::TopicAuthorizationFailed);
        vec![(
            super::super::topic_name("t"),
            vec![(0, Some(o), None), (1, None, None), (2, None, refused)],
        )]
    }

    #[test]
    fn commit_and_delete_responses_encode_at_every_advertised_version() {
        let codes: Codes = vec![(super::super::topic_name("t"), vec![(0, 0), (1, 3)])];
        for v in 2..=9 {
            assert!(encodes(&commit_response(codes.clone()), v) > 0);
        }
        assert!(encodes(&delete_response(0, codes), 0) > 0);
        assert!(encodes(&delete_response(69, Vec::new()), 0) > 0);
    }

    #[test]
    fn fetch_responses_encode_at_every_advertised_version() {
        for v in 1..=7 {
            for error in [0, 15] {
                assert!(encodes(&fetch_response_single(error, found(), v), v) > 0);
            }
        }
        let groups = vec![
            (GroupId(str_bytes("g")), 0, found()),
            (GroupId(str_bytes("h")), 15, Vec::new()),
        ];
        for v in 8..=9 {
            assert!(encodes(&fetch_response_batched(groups.clone()), v) > 0);
        }
    }

    #[test]
    fn missing_offsets_show_minus_one_and_empty_metadata() {
        let r = fetch_response_single(0, found(), 5);
        let parts = &r.topics[0].partitions;
        assert_eq!(
            (parts[0].committed_offset, parts[0].committed_leader_epoch),
            (42, 7)
        );
        assert_eq!(parts[0].metadata.as_deref(), Some("meta"));
        assert_eq!(
            (parts[1].committed_offset, parts[1].committed_leader_epoch),
            (-1, -1)
        );
        assert_eq!(parts[1].metadata.as_deref(), Some(""));
    }

    #[test]
    fn a_partition_error_wins_over_the_group_error() {
        let codes = |r: &OffsetFetchResponse| -> Vec<i16> {
            r.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect()
        };
        assert_eq!(codes(&fetch_response_single(0, found(), 5)), [0, 0, 29]);
        assert_eq!(codes(&fetch_response_single(15, found(), 1)), [15, 15, 29]);
        let groups = vec![(GroupId(str_bytes("g")), 0, found())];
        let batched = fetch_response_batched(groups);
        let parts = &batched.groups[0].topics[0].partitions;
        let codes: Vec<i16> = parts.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, [0, 0, 29]);
    }

    #[test]
    fn refusals_win_over_the_store_verdict() {
        assert_eq!(partition_refusal(true, "x"), None);
        assert_eq!(
            partition_refusal(false, ""),
            Some(ResponseError::UnknownTopicOrPartition)
        );
        let big = "x".repeat(MAX_METADATA_BYTES + 1);
        assert_eq!(
            partition_refusal(true, &big),
            Some(ResponseError::OffsetMetadataTooLarge)
        );
        assert!(!valid_group_id("") && valid_group_id("g"));
        assert!(!valid_group_id(&"g".repeat(MAX_GROUP_ID_BYTES + 1)));
        let plan = vec![(
            super::super::topic_name("t"),
            vec![(0, None), (1, Some(ResponseError::OffsetMetadataTooLarge))],
        )];
        let codes = answer(plan, Some(ResponseError::CoordinatorNotAvailable));
        assert_eq!(codes[0].1, vec![(0, 15), (1, 12)]);
    }
}
