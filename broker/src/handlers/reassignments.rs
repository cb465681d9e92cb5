//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455), cluster mode only.
//!
//! A reassignment is committed through the quorum: the partition's replicas become the
//! target plus the ones being removed, the new replicas start fetching, and once all of
//! them are in the ISR the controller's state drops the removed ones (moving leadership into
//! the target if needed). A single node answers both APIs with an error naming why.
//! Altering needs ALTER on the cluster, listing DESCRIBE on it (CLUSTER_AUTHORIZATION_FAILED).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{Ctx, Session, str_bytes};
use crate::acl::Operation;
use crate::cluster::Command;

const SINGLE_NODE: &str = "this broker is a single node: partitions cannot be reassigned";

pub async fn alter(
    ctx: &Ctx,
    session: &Session,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let whole = if !ctx.acl.allows_cluster(session, Operation::Alter) {
        Some((
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to alter the cluster",
        ))
    } else if ctx.cluster.is_none() {
        Some((ResponseError::InvalidRequest, SINGLE_NODE))
    } else {
        None
    };
    if let Some((code, message)) = whole {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)));
    }
    let Some(cluster) = &ctx.cluster else {
        return AlterPartitionReassignmentsResponse::default();
    };
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target = p
                .replicas
                .as_ref()
                .map(|r| r.iter().map(|b| b.0).collect::<Vec<i32>>());
            let current = cluster
                .state()
                .partition(t.name.as_str(), p.partition_index)
                .map(|info| info.target().len());
            let check = match (&target, current) {
                (_, None) => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("{}-{} does not exist", t.name.as_str(), p.partition_index),
                )),
                (Some(target), Some(n))
                    if target.len() != n && !req.allow_replication_factor_change =>
                {
                    Err((
                        ResponseError::InvalidReplicationFactor,
                        format!(
                            "the reassignment changes the replication factor from {n} to {}",
                            target.len()
                        ),
                    ))
                }
                _ => Ok(()),
            };
            let outcome = match check {
                Err(e) => Err(e),
                Ok(()) => cluster
                    .commit(&Command::Reassign {
                        topic: t.name.as_str().to_owned(),
                        partition: p.partition_index,
                        target,
                    })
                    .await
                    .map_err(|e| (e.code, e.message)),
            };
            let r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => r,
                Err((code, message)) => r
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change)
        .with_responses(responses)
}

pub fn list(
    ctx: &Ctx,
    session: &Session,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !ctx.acl.allows_cluster(session, Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let Some(cluster) = &ctx.cluster else {
        // Nothing can be in progress on a single node.
        return ListPartitionReassignmentsResponse::default();
    };
    let state = cluster.state();
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, t) in &state.topics {
        let wanted: Option<&Vec<i32>> = match &req.topics {
            None => None,
            Some(list) => match list.iter().find(|w| w.name.as_str() == name) {
                Some(w) => Some(&w.partition_indexes),
                None => continue,
            },
        };
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                (!p.adding.is_empty() || !p.removing.is_empty())
                    && wanted.is_none_or(|w| w.contains(&(*i as i32)))
            })
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(super::topic_name(name))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
