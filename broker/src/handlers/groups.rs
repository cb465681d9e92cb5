//! Group membership APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! ListGroups, DescribeGroups and DeleteGroups. The state machine is in [`crate::group`];
//! these functions translate requests and responses and never block the coordinator.
//!
//! Authorization as in Kafka: FindCoordinator and DescribeGroups need DESCRIBE on the group,
//! membership (join, sync, heartbeat, leave) READ, DeleteGroups DELETE — refused with
//! GROUP_AUTHORIZATION_FAILED; ListGroups shows every group to clients with DESCRIBE on the
//! cluster and otherwise only the groups they may DESCRIBE.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Ctx, Session, str_bytes};
use crate::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::group::{GroupState, JoinOutcome, JoinRequest};

/// FindCoordinator key type of transactional ids; transactions are not supported.
const KEY_TYPE_TRANSACTION: i8 = 1;

fn opt(s: &Option<StrBytes>) -> Option<&str> {
    s.as_ref().map(|s| s.as_str())
}

/// Whether `session` may `op` the group `group`.
fn may(ctx: &Ctx, session: &Session, op: Operation, group: &str) -> bool {
    ctx.acl.allows(session, op, ResourceType::Group, group)
}

const GROUP_AUTH: ResponseError = ResponseError::GroupAuthorizationFailed;

/// Cluster mode: NOT_COORDINATOR when another broker coordinates `group` (the client asks
/// FindCoordinator again), COORDINATOR_NOT_AVAILABLE while no broker can.
pub(crate) fn not_coordinator(ctx: &Ctx, group: &str) -> Option<ResponseError> {
    let cluster = ctx.cluster.as_ref()?;
    match cluster.coordinator(group) {
        Some(id) if id == cluster.node_id && cluster.serving() => None,
        Some(id) if id == cluster.node_id => Some(ResponseError::CoordinatorNotAvailable),
        Some(_) => Some(ResponseError::NotCoordinator),
        None => Some(ResponseError::CoordinatorNotAvailable),
    }
}

/// The broker coordinating `key` and its address on the client's listener.
fn coordinator_of(
    ctx: &Ctx,
    session: &Session,
    key: &str,
) -> Result<(i32, String, i32), ResponseError> {
    let Some(cluster) = &ctx.cluster else {
        let (host, port) = &*session.advertised;
        return Ok((ctx.node_id, host.clone(), *port));
    };
    let state = cluster.state();
    let id = crate::cluster::coordinator_in(&state, key)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let ep = state
        .brokers
        .get(&id)
        .and_then(|b| b.endpoint(&session.listener))
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((id, ep.host.clone(), ep.port))
}

pub fn find_coordinator(
    ctx: &Ctx,
    session: &Session,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let transactional = req.key_type == KEY_TYPE_TRANSACTION;
    let refusal = |key: &str| {
        if transactional {
            Err((
                ResponseError::InvalidRequest,
                "transactions are not supported by Runnel",
            ))
        } else if !may(ctx, session, Operation::Describe, key) {
            Err((GROUP_AUTH, "not authorized to describe the group"))
        } else {
            coordinator_of(ctx, session, key)
                .map_err(|e| (e, "no broker can coordinate the group now"))
        }
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let refused = refusal(key.as_str());
                let c = Coordinator::default().with_key(key);
                match refused {
                    Err((e, message)) => c
                        .with_error_code(e.code())
                        .with_error_message(Some(str_bytes(message)))
                        .with_node_id(BrokerId(-1)),
                    Ok((id, host, port)) => c
                        .with_node_id(BrokerId(id))
                        .with_host(str_bytes(&host))
                        .with_port(port),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let r = FindCoordinatorResponse::default();
    match refusal(req.key.as_str()) {
        Err((e, message)) => {
            let r = r.with_error_code(e.code()).with_node_id(BrokerId(-1));
            if version >= 1 {
                r.with_error_message(Some(str_bytes(message)))
            } else {
                r
            }
        }
        Ok((id, host, port)) => r
            .with_node_id(BrokerId(id))
            .with_host(str_bytes(&host))
            .with_port(port),
    }
}

pub async fn join(
    ctx: &Ctx,
    session: &Session,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
) -> JoinGroupResponse {
    let outcome = if !may(ctx, session, Operation::Read, req.group_id.as_str()) {
        JoinOutcome::error(GROUP_AUTH, "")
    } else if let Some(e) = not_coordinator(ctx, req.group_id.as_str()) {
        JoinOutcome::error(e, "")
    } else {
        join_group(ctx, &req, version, client_id).await
    };
    join_response(outcome, version)
}

async fn join_group(
    ctx: &Ctx,
    req: &JoinGroupRequest,
    version: i16,
    client_id: &str,
) -> JoinOutcome {
    let request = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_owned(),
        client_host: String::new(),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: Duration::from_millis(if version >= 1 {
            req.rebalance_timeout_ms.max(0) as u64
        } else {
            req.session_timeout_ms.max(0) as u64
        }),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    tokio::select! {
        o = ctx.groups.join(req.group_id.as_str(), request) => o,
        _ = ctx.shutdown.cancelled() => JoinOutcome::error(ResponseError::CoordinatorNotAvailable, req.member_id.as_str()),
    }
}

fn join_response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let r = JoinGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |e| e.code()))
        .with_generation_id(outcome.generation)
        .with_protocol_name(outcome.protocol_name.as_deref().map(str_bytes))
        .with_leader(str_bytes(&outcome.leader))
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let m = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&id))
                        .with_metadata(metadata);
                    if version >= 5 {
                        m.with_group_instance_id(instance.as_deref().map(str_bytes))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    // v0–v6 cannot carry a null protocol name; v7 adds the protocol type.
    if version < 7 {
        let name = r.protocol_name.clone().unwrap_or_default();
        r.with_protocol_name(Some(name))
    } else {
        r.with_protocol_type(outcome.protocol_type.as_deref().map(str_bytes))
    }
}

pub async fn sync(
    ctx: &Ctx,
    session: &Session,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    if !may(ctx, session, Operation::Read, req.group_id.as_str()) {
        return SyncGroupResponse::default()
            .with_error_code(GROUP_AUTH.code())
            .with_assignment(Bytes::new());
    }
    if let Some(e) = not_coordinator(ctx, req.group_id.as_str()) {
        return SyncGroupResponse::default()
            .with_error_code(e.code())
            .with_assignment(Bytes::new());
    }
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let outcome = tokio::select! {
        o = ctx.groups.sync(
            req.group_id.as_str(),
            req.member_id.as_str(),
            opt(&req.group_instance_id),
            req.generation_id,
            assignments,
        ) => o,
        _ = ctx.shutdown.cancelled() => Err(ResponseError::CoordinatorNotAvailable),
    };
    let r = match outcome {
        Ok(assignment) => SyncGroupResponse::default().with_assignment(assignment),
        Err(e) => SyncGroupResponse::default()
            .with_error_code(e.code())
            .with_assignment(Bytes::new()),
    };
    if version >= 5 {
        let view = ctx.groups.describe(req.group_id.as_str());
        r.with_protocol_type(view.as_ref().map(|v| str_bytes(&v.protocol_type)))
            .with_protocol_name(view.as_ref().map(|v| str_bytes(&v.protocol_name)))
    } else {
        r
    }
}

pub fn heartbeat(ctx: &Ctx, session: &Session, req: HeartbeatRequest) -> HeartbeatResponse {
    if !may(ctx, session, Operation::Read, req.group_id.as_str()) {
        return HeartbeatResponse::default().with_error_code(GROUP_AUTH.code());
    }
    if let Some(e) = not_coordinator(ctx, req.group_id.as_str()) {
        return HeartbeatResponse::default().with_error_code(e.code());
    }
    let result = ctx.groups.heartbeat(
        req.group_id.as_str(),
        req.member_id.as_str(),
        opt(&req.group_instance_id),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}

pub fn leave(
    ctx: &Ctx,
    session: &Session,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = req.group_id.as_str();
    if !may(ctx, session, Operation::Read, group) {
        return LeaveGroupResponse::default().with_error_code(GROUP_AUTH.code());
    }
    if let Some(e) = not_coordinator(ctx, group) {
        return LeaveGroupResponse::default().with_error_code(e.code());
    }
    if version < 3 {
        let result = ctx.groups.leave(group, req.member_id.as_str(), None);
        return LeaveGroupResponse::default().with_error_code(result.err().map_or(0, |e| e.code()));
    }
    let members = req
        .members
        .iter()
        .map(|m| {
            let result = ctx
                .groups
                .leave(group, m.member_id.as_str(), opt(&m.group_instance_id));
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(result.err().map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub fn list(
    ctx: &Ctx,
    session: &Session,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let acl = &ctx.acl;
    let all = acl.allows_quiet(
        session,
        Operation::Describe,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    let groups = ctx
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
        .filter(|g| g.state != GroupState::Dead)
        .filter(|g| {
            all || acl.allows_quiet(
                session,
                Operation::Describe,
                ResourceType::Group,
                &g.group_id,
            )
        })
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(str_bytes(g.state.name()))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(str_bytes("classic"))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe(
    ctx: &Ctx,
    session: &Session,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let with_ops = version >= 3 && req.include_authorized_operations;
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            if !may(ctx, session, Operation::Describe, id.as_str()) {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(GROUP_AUTH.code());
            }
            if let Some(e) = not_coordinator(ctx, id.as_str()) {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(e.code());
            }
            let described = describe_one(ctx, id, version);
            if with_ops {
                let ops = ctx.acl.authorized_operations(
                    session,
                    ResourceType::Group,
                    described.group_id.as_str(),
                );
                described.with_authorized_operations(ops)
            } else {
                described
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

fn describe_one(ctx: &Ctx, id: GroupId, version: i16) -> DescribedGroup {
    let Some(view) = ctx.groups.describe(id.as_str()) else {
        return DescribedGroup::default()
            .with_group_id(id)
            .with_group_state(str_bytes(GroupState::Dead.name()));
    };
    let members = view
        .members
        .into_iter()
        .map(|m| {
            let d = DescribedGroupMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment);
            if version >= 4 {
                d.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
            } else {
                d
            }
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(id)
        .with_group_state(str_bytes(view.state.name()))
        .with_protocol_type(str_bytes(&view.protocol_type))
        .with_protocol_data(str_bytes(&view.protocol_name))
        .with_members(members)
}

pub async fn delete(
    ctx: &Ctx,
    session: &Session,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let result = if may(ctx, session, Operation::Delete, id.as_str()) {
            ctx.groups.delete(id.as_str())
        } else {
            Err(GROUP_AUTH)
        };
        let result = match result {
            Ok(()) => super::offsets::delete_group(ctx, id.as_str()).await,
            Err(e) => Err(e),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(result.err().map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
