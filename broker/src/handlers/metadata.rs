//! Metadata: brokers (just this one), and topics with their partitions, led by this node.
//! Unknown topics named in the request are auto-created when both the request and
//! `topics.auto_create` allow it, as librdkafka and the Java client expect.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{Ctx, Session, str_bytes, topic_name};
use crate::topics::Topic;

pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0 has no null list: an empty one means "all topics".
    let wanted = req.topics.filter(|t| version > 0 || !t.is_empty());
    let topics = match wanted {
        None => ctx.topics.list().iter().map(|t| describe(ctx, t)).collect(),
        Some(wanted) => {
            // v0–v3 have no flag: those clients always expect auto-creation.
            let auto =
                ctx.config.topics.auto_create && (version < 4 || req.allow_auto_topic_creation);
            let mut out = Vec::with_capacity(wanted.len());
            for t in wanted {
                out.push(match t.name {
                    Some(name) => by_name(ctx, name.as_str(), auto).await,
                    None => by_id(ctx, t.topic_id),
                });
            }
            out
        }
    };
    let (host, port) = &*session.advertised;
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(ctx.node_id))
                .with_host(str_bytes(host))
                .with_port(*port),
        ])
        .with_cluster_id(Some(str_bytes(&ctx.cluster_id)))
        .with_controller_id(BrokerId(ctx.node_id))
        .with_topics(topics)
}

async fn by_name(ctx: &Ctx, name: &str, auto: bool) -> MetadataResponseTopic {
    if let Some(topic) = ctx.topics.get(name) {
        return describe(ctx, &topic);
    }
    let error = if !auto {
        ResponseError::UnknownTopicOrPartition
    } else {
        let partitions = ctx.config.topics.default_partitions;
        match ctx
            .topics
            .create(name, partitions, Default::default())
            .await
        {
            Ok(topic) => return describe(ctx, &topic),
            // Lost a race with another creator: fine, describe what exists.
            Err(e) if e.code == ResponseError::TopicAlreadyExists => match ctx.topics.get(name) {
                Some(topic) => return describe(ctx, &topic),
                None => e.code,
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

fn by_id(ctx: &Ctx, id: uuid::Uuid) -> MetadataResponseTopic {
    match ctx.topics.get_by_id(id) {
        Some(topic) => describe(ctx, &topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

fn describe(ctx: &Ctx, topic: &Topic) -> MetadataResponseTopic {
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
