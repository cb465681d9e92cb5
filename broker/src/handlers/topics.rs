//! CreateTopics, DeleteTopics and CreatePartitions.
//!
//! Authorization as in Kafka: creating needs CREATE on the cluster or on the topic (and its
//! configs are only shown with DESCRIBE_CONFIGS on it), deleting needs DELETE on the topic,
//! adding partitions ALTER on it; a topic the client may not DESCRIBE is refused with
//! TOPIC_AUTHORIZATION_FAILED before its existence is checked.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};

use super::{Ctx, Session, str_bytes};
use crate::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::topics::ApiError;

/// Kafka's config source code for a default value.
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config source code for a topic-level override.
const SOURCE_TOPIC: i8 = 1;

pub async fn create(
    ctx: &Ctx,
    session: &Session,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let acl = &ctx.acl;
    let cluster_create = acl.allows_quiet(
        session,
        Operation::Create,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_owned();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = if cluster_create
            || acl.allows(session, Operation::Create, ResourceType::Topic, &name)
        {
            create_one(ctx, &t, req.validate_only).await
        } else {
            Err(ApiError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("not authorized to create topic {name:?}"),
            ))
        };
        let describable = || {
            acl.allows_quiet(
                session,
                Operation::DescribeConfigs,
                ResourceType::Topic,
                &name,
            )
        };
        results.push(match outcome {
            Ok((id, partitions, configs)) if describable() => result
                .with_topic_id(id)
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor(ctx, &name))
                .with_configs(Some(configs)),
            // Created, but its settings are not the client's to see (Kafka's rule).
            Ok((id, _, _)) => {
                let result = result
                    .with_topic_id(id)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(Some(Vec::new()));
                if version >= 5 {
                    let code = ResponseError::TopicAuthorizationFailed.code();
                    result.with_topic_config_error_code(code)
                } else {
                    result
                }
            }
            Err(e) => {
                tracing::debug!(topic = %name, error = %e.message, "CreateTopics refused");
                result
                    .with_error_code(e.code.code())
                    .with_error_message(Some(str_bytes(&e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

type Created = (uuid::Uuid, i32, Vec<CreatableTopicConfigs>);

/// The topic's replication factor: 1 on a single node, else its first partition's replicas.
fn replication_factor(ctx: &Ctx, name: &str) -> i16 {
    ctx.cluster
        .as_ref()
        .and_then(|c| {
            c.state()
                .partition(name, 0)
                .map(|p| p.target().len() as i16)
        })
        .unwrap_or(1)
}

async fn create_one(
    ctx: &Ctx,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<Created, ApiError> {
    let name = t.name.as_str();
    let partitions = if t.num_partitions == -1 && t.assignments.is_empty() {
        ctx.config.topics.default_partitions
    } else if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "give either assignments or num_partitions/replication_factor, not both",
            ));
        }
        if ctx.cluster.is_none() {
            check_assignment(ctx, t.assignments.iter().map(|a| &a.broker_ids[..]))?;
        }
        t.assignments.len() as i32
    } else {
        t.num_partitions
    };
    if ctx.cluster.is_none() && !matches!(t.replication_factor, -1 | 1) {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 available broker",
                t.replication_factor
            ),
        ));
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        match &c.value {
            Some(v) => {
                configs.insert(c.name.as_str().to_owned(), v.as_str().to_owned());
            }
            None => {
                return Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("config {} has a null value", c.name.as_str()),
                ));
            }
        }
    }
    let (id, config) = if validate_only {
        let config = ctx.topics.check_new(name, partitions, &configs)?;
        if let Some(cluster) = &ctx.cluster {
            crate::cluster::admin::place(cluster, name, 0, partitions, t.replication_factor)?;
        }
        (uuid::Uuid::nil(), config)
    } else if let Some(cluster) = &ctx.cluster {
        let replicas = if t.assignments.is_empty() {
            crate::cluster::admin::place(cluster, name, 0, partitions, t.replication_factor)?
        } else {
            t.assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        };
        let topic =
            crate::cluster::admin::create_topic(cluster, &ctx.topics, name, replicas, configs)
                .await?;
        (topic.id(), topic.config.clone())
    } else {
        let topic = ctx.topics.create(name, partitions, configs).await?;
        (topic.id(), topic.config.clone())
    };
    let described = config
        .describe()
        .into_iter()
        .map(|d| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(&d.name))
                .with_value(Some(str_bytes(&d.value)))
                .with_read_only(d.read_only)
                .with_config_source(if d.is_default {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_TOPIC
                })
        })
        .collect();
    Ok((id, partitions, described))
}

/// Creates a topic with the default replication (auto-creation, bridges' topics): locally on
/// a single node, through the quorum in a cluster.
pub(crate) async fn create_with_defaults(
    ctx: &Ctx,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<std::sync::Arc<crate::topics::Topic>, ApiError> {
    match &ctx.cluster {
        None => ctx.topics.create(name, partitions, configs).await,
        Some(cluster) => {
            let replicas = crate::cluster::admin::place(cluster, name, 0, partitions, -1)?;
            crate::cluster::admin::create_topic(cluster, &ctx.topics, name, replicas, configs).await
        }
    }
}

/// Manual assignments may only name this broker, one replica per partition.
fn check_assignment<'a>(
    ctx: &Ctx,
    mut replicas: impl Iterator<Item = &'a [kafka_protocol::messages::BrokerId]>,
) -> Result<(), ApiError> {
    if replicas.all(|r| r.len() == 1 && r[0].0 == ctx.node_id) {
        Ok(())
    } else {
        Err(ApiError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "this is a single broker: every partition must have exactly one replica, broker {}",
                ctx.node_id
            ),
        ))
    }
}

pub async fn delete(
    ctx: &Ctx,
    session: &Session,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6+ names topics by name or id in `topics`; earlier versions list names.
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.as_str().to_owned()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.as_str().to_owned()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let topic = match &name {
            Some(n) => ctx.topics.get(n),
            None => ctx.topics.get_by_id(id),
        };
        let checked = delete_check(ctx, session, name.as_deref(), topic.as_deref());
        // What the client may not DESCRIBE keeps its name (asked by id) or id (asked by name).
        let hide_id = matches!(checked, Err((_, Hidden::Id)));
        let shown = match &checked {
            Err((_, Hidden::Name)) => None,
            _ => name.as_deref().or(topic.as_ref().map(|t| t.name())),
        };
        let result = DeletableTopicResult::default().with_name(shown.map(super::topic_name));
        let outcome = match (checked, &topic) {
            (Err((e, _)), _) => Err(e),
            (Ok(()), None) => Err(ApiError::new(
                if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                },
                "topic does not exist",
            )),
            (Ok(()), Some(t)) => match &ctx.cluster {
                Some(cluster) => {
                    crate::cluster::admin::delete_topic(cluster, &ctx.topics, t.name()).await
                }
                None => ctx.topics.delete(t.name()).await,
            },
        };
        let result = if version >= 6 {
            let known = topic.as_ref().map(|t| t.id()).unwrap_or(id);
            result.with_topic_id(if hide_id { id } else { known })
        } else {
            result
        };
        responses.push(match outcome {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// What a refused deletion must not show of the topic.
enum Hidden {
    Nothing,
    Name,
    Id,
}

/// Kafka's DeleteTopics checks: DESCRIBE (by name) before existence, DELETE after it; a topic
/// named by id that the client may not DESCRIBE is refused without its name.
fn delete_check(
    ctx: &Ctx,
    session: &Session,
    name: Option<&str>,
    topic: Option<&crate::topics::Topic>,
) -> Result<(), (ApiError, Hidden)> {
    let refused = |what: &str, name: &str, hidden| {
        let message = format!("not authorized to {what} topic {name:?}");
        let error = ApiError::new(ResponseError::TopicAuthorizationFailed, message);
        Err((error, hidden))
    };
    let acl = &ctx.acl;
    let can = |op, name: &str| acl.allows(session, op, ResourceType::Topic, name);
    match (name, topic) {
        (Some(n), _) if !can(Operation::Describe, n) => refused("describe", n, Hidden::Id),
        (_, None) => Ok(()),
        (_, Some(t)) if can(Operation::Delete, t.name()) => Ok(()),
        (None, Some(t)) if !can(Operation::Describe, t.name()) => {
            let id = t.id().to_string();
            refused("describe", &id, Hidden::Name)
        }
        (_, Some(t)) => refused("delete", t.name(), Hidden::Nothing),
    }
}

pub async fn create_partitions(
    ctx: &Ctx,
    session: &Session,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str();
        let outcome = if !ctx
            .acl
            .allows(session, Operation::Alter, ResourceType::Topic, name)
        {
            Err(ApiError::new(
                ResponseError::TopicAuthorizationFailed,
                format!("not authorized to alter topic {name:?}"),
            ))
        } else {
            match &t.assignments {
                Some(a) if ctx.cluster.is_none() => {
                    check_assignment(ctx, a.iter().map(|x| &x.broker_ids[..]))
                }
                _ => Ok(()),
            }
        };
        let outcome = match outcome {
            Ok(()) => {
                let checked = ctx
                    .topics
                    .add_partitions(t.name.as_str(), t.count, true)
                    .await;
                match (&ctx.cluster, checked) {
                    (Some(cluster), Ok(())) if !req.validate_only => {
                        crate::cluster::admin::add_partitions(
                            cluster,
                            &ctx.topics,
                            t.name.as_str(),
                            t.count,
                        )
                        .await
                    }
                    (None, Ok(())) if !req.validate_only => {
                        ctx.topics
                            .add_partitions(t.name.as_str(), t.count, false)
                            .await
                    }
                    (_, checked) => checked,
                }
            }
            Err(e) => Err(e),
        };
        let r = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => r,
            Err(e) => r
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
