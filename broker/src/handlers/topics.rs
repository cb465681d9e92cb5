//! CreateTopics, DeleteTopics and CreatePartitions.

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

use super::{Ctx, str_bytes};
use crate::topics::ApiError;

/// Kafka's config source code for a default value.
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config source code for a topic-level override.
const SOURCE_TOPIC: i8 = 1;

pub async fn create(ctx: &Ctx, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_owned();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = create_one(ctx, &t, req.validate_only).await;
        results.push(match outcome {
            Ok((id, partitions, configs)) => result
                .with_topic_id(id)
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(Some(configs)),
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
        check_assignment(ctx, t.assignments.iter().map(|a| &a.broker_ids[..]))?;
        t.assignments.len() as i32
    } else {
        t.num_partitions
    };
    if !matches!(t.replication_factor, -1 | 1) {
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
        (uuid::Uuid::nil(), config)
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

pub async fn delete(ctx: &Ctx, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
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
        let result = DeletableTopicResult::default().with_name(
            name.as_deref()
                .or(topic.as_ref().map(|t| t.name()))
                .map(super::topic_name),
        );
        let outcome = match &topic {
            None => Err(ApiError::new(
                if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                },
                "topic does not exist",
            )),
            Some(t) => ctx.topics.delete(t.name()).await,
        };
        let result = if version >= 6 {
            result.with_topic_id(topic.as_ref().map(|t| t.id()).unwrap_or(id))
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

pub async fn create_partitions(
    ctx: &Ctx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let outcome = match &t.assignments {
            Some(a) => check_assignment(ctx, a.iter().map(|x| &x.broker_ids[..])),
            None => Ok(()),
        };
        let outcome = match outcome {
            Ok(()) => {
                ctx.topics
                    .add_partitions(t.name.as_str(), t.count, req.validate_only)
                    .await
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
