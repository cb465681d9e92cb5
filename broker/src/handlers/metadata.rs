//! Metadata: brokers and topics with their partitions. A single node lists itself as the
//! only broker and leader; in cluster mode brokers, leaders, epochs, replicas and ISRs come
//! from the replicated state (fenced brokers are left out, as in Kafka).
//! Unknown topics named in the request are auto-created when both the request and
//! `topics.auto_create` allow it, as librdkafka and the Java client expect.
//!
//! Authorization as in Kafka: "all topics" lists only the topics the client may DESCRIBE; a
//! named topic it may not DESCRIBE is answered TOPIC_AUTHORIZATION_FAILED whether it exists or
//! not; auto-creation also needs CREATE on the cluster or on the topic.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{Ctx, Session, str_bytes, topic_name};
use crate::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::topics::Topic;

pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0 has no null list: an empty one means "all topics".
    let wanted = req.topics.filter(|t| version > 0 || !t.is_empty());
    let mut topics: Vec<MetadataResponseTopic> = match wanted {
        None => ctx
            .topics
            .list()
            .iter()
            .filter(|t| {
                let acl = &ctx.acl;
                acl.allows_quiet(session, Operation::Describe, ResourceType::Topic, t.name())
            })
            .map(|t| describe(ctx, t))
            .collect(),
        Some(wanted) => {
            // v0–v3 have no flag: those clients always expect auto-creation.
            let auto =
                ctx.config.topics.auto_create && (version < 4 || req.allow_auto_topic_creation);
            let mut out = Vec::with_capacity(wanted.len());
            for t in wanted {
                out.push(match t.name {
                    Some(name) => by_name(ctx, session, name.as_str(), auto).await,
                    None => by_id(ctx, session, t.topic_id),
                });
            }
            out
        }
    };
    if version >= 8 && req.include_topic_authorized_operations {
        for t in &mut topics {
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    ctx.acl
                        .authorized_operations(session, ResourceType::Topic, name.as_str());
            }
        }
    }
    let (host, port) = &*session.advertised;
    let response = MetadataResponse::default();
    // v8–v10 carry the cluster's authorized operations (0 without DESCRIBE on it, as Kafka).
    let response = if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        let ops = if ctx.acl.allows_cluster(session, Operation::Describe) {
            ctx.acl
                .authorized_operations(session, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            0
        };
        response.with_cluster_authorized_operations(ops)
    } else {
        response
    };
    let (brokers, controller) = match &ctx.cluster {
        None => (
            vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(ctx.node_id))
                    .with_host(str_bytes(host))
                    .with_port(*port),
            ],
            ctx.node_id,
        ),
        Some(cluster) => {
            let state = cluster.state();
            // A node that is not serving leaves itself out, so clients ask the others.
            let me_out = (!cluster.serving()).then_some(cluster.node_id);
            let brokers = state
                .brokers
                .iter()
                .filter(|(id, b)| !b.fenced && Some(**id) != me_out)
                .filter_map(|(id, b)| {
                    let ep = b.endpoint(&session.listener)?;
                    Some(
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(str_bytes(&ep.host))
                            .with_port(ep.port),
                    )
                })
                .collect();
            (brokers, cluster.controller().unwrap_or(-1))
        }
    };
    response
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&ctx.cluster_id)))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

async fn by_name(ctx: &Ctx, session: &Session, name: &str, auto: bool) -> MetadataResponseTopic {
    let acl = &ctx.acl;
    let error = if !acl.allows(session, Operation::Describe, ResourceType::Topic, name) {
        ResponseError::TopicAuthorizationFailed
    } else if let Some(topic) = ctx.topics.get(name) {
        return describe(ctx, &topic);
    } else if !auto {
        ResponseError::UnknownTopicOrPartition
    } else if !acl.allows_quiet(
        session,
        Operation::Create,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) && !acl.allows(session, Operation::Create, ResourceType::Topic, name)
    {
        ResponseError::TopicAuthorizationFailed
    } else {
        let partitions = ctx.config.topics.default_partitions;
        match super::topics::create_with_defaults(ctx, name, partitions, Default::default()).await {
            Ok(topic) => return describe(ctx, &topic),
            // Lost a race with another creator: fine, describe what exists.
            Err(e) if e.code == ResponseError::TopicAlreadyExists => match ctx.topics.get(name) {
                Some(topic) => return describe(ctx, &topic),
                // Created by another broker of the cluster; not mirrored here yet.
                None => ResponseError::LeaderNotAvailable,
            },
            Err(e) => {
                tracing::debug!(topic = name, error = %e.message, "auto-create refused");
                e.code
            }
        }
    };
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(error.code())
}

/// Topic ids are not secret (Kafka's rule): an existing topic the client may not DESCRIBE is
/// answered TOPIC_AUTHORIZATION_FAILED with its id and no name.
fn by_id(ctx: &Ctx, session: &Session, id: uuid::Uuid) -> MetadataResponseTopic {
    let error = match ctx.topics.get_by_id(id) {
        Some(topic) => {
            let acl = &ctx.acl;
            if acl.allows(
                session,
                Operation::Describe,
                ResourceType::Topic,
                topic.name(),
            ) {
                return describe(ctx, &topic);
            }
            ResponseError::TopicAuthorizationFailed
        }
        None => ResponseError::UnknownTopicId,
    };
    MetadataResponseTopic::default()
        .with_topic_id(id)
        .with_error_code(error.code())
}

fn describe(ctx: &Ctx, topic: &Topic) -> MetadataResponseTopic {
    if let Some(cluster) = &ctx.cluster {
        // A node that is not serving (cut off, or just restarted) does not name itself
        // leader: clients then ask another broker instead of retrying here.
        let me = (!cluster.serving()).then_some(cluster.node_id);
        return describe_replicated(&cluster.state(), topic, me);
    }
    let node = BrokerId(ctx.node_id);
    let partitions = (0..topic.partitions.len() as i32)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name())))
        .with_topic_id(topic.id())
        .with_partitions(partitions)
}

fn describe_replicated(
    state: &crate::cluster::ClusterState,
    topic: &Topic,
    not_serving: Option<i32>,
) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = (0..topic.partitions.len() as i32)
        .map(|p| {
            let r = MetadataResponsePartition::default().with_partition_index(p);
            match state.partition(topic.name(), p) {
                Some(info) => {
                    let leader = if Some(info.leader) == not_serving {
                        -1
                    } else {
                        info.leader
                    };
                    let r = r
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(info.leader_epoch)
                        .with_replica_nodes(ids(&info.replicas))
                        .with_isr_nodes(ids(&info.isr))
                        .with_offline_replicas(ids(&info
                            .replicas
                            .iter()
                            .copied()
                            .filter(|b| state.brokers.get(b).is_none_or(|b| b.fenced))
                            .collect::<Vec<_>>()));
                    if leader < 0 {
                        r.with_error_code(ResponseError::LeaderNotAvailable.code())
                    } else {
                        r
                    }
                }
                None => r
                    .with_leader_id(BrokerId(-1))
                    .with_error_code(ResponseError::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name())))
        .with_topic_id(topic.id())
        .with_partitions(partitions)
}
