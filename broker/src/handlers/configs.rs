//! DescribeConfigs and IncrementalAlterConfigs for topics (settable) and the broker
//! (described read-only: broker settings come from the config file, not from clients).
//!
//! Authorization: DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic (TOPIC_AUTHORIZATION_FAILED),
//! or on the cluster for the broker resource (CLUSTER_AUTHORIZATION_FAILED), per resource.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

use super::{Ctx, Session, str_bytes};
use crate::acl::{Operation, ResourceType};
use crate::topics::config::{ConfigType, Described};
use crate::topics::{ApiError, ConfigChange};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Refusal of a resource `session` may not `op`, if any (unknown resource types are left to
/// the handler).
fn refusal(
    ctx: &Ctx,
    session: &Session,
    op: Operation,
    resource_type: i8,
    name: &str,
) -> Option<ApiError> {
    let (code, rt) = match resource_type {
        TOPIC => (ResponseError::TopicAuthorizationFailed, ResourceType::Topic),
        BROKER => (
            ResponseError::ClusterAuthorizationFailed,
            ResourceType::Cluster,
        ),
        _ => return None,
    };
    let allowed = match rt {
        ResourceType::Cluster => ctx.acl.allows_cluster(session, op),
        _ => ctx.acl.allows(session, op, rt, name),
    };
    (!allowed).then(|| ApiError::new(code, format!("not authorized to {op:?} {name:?}")))
}

pub fn describe(
    ctx: &Ctx,
    session: &Session,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results =
        req.resources
            .into_iter()
            .map(|r| {
                let result = DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
                let name = r.resource_name.as_str();
                let refused = refusal(
                    ctx,
                    session,
                    Operation::DescribeConfigs,
                    r.resource_type,
                    name,
                );
                let described = match r.resource_type {
                    _ if let Some(e) = refused => Err(e),
                    TOPIC => match ctx.topics.get(r.resource_name.as_str()) {
                        Some(t) => Ok((t.config.describe(), SOURCE_TOPIC)),
                        None => Err(ApiError::new(
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic {:?} does not exist", r.resource_name.as_str()),
                        )),
                    },
                    BROKER => broker_configs(ctx, r.resource_name.as_str())
                        .map(|d| (d, SOURCE_STATIC_BROKER)),
                    other => Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("resource type {other} is not supported"),
                    )),
                };
                match described {
                    Ok((configs, override_source)) => {
                        let wanted = r.configuration_keys.as_ref();
                        let configs = configs
                            .into_iter()
                            .filter(|d| {
                                wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == d.name))
                            })
                            .map(|d| entry(d, override_source, req.include_documentation))
                            .collect();
                        result.with_configs(configs)
                    }
                    Err(e) => result
                        .with_error_code(e.code.code())
                        .with_error_message(Some(str_bytes(&e.message))),
                }
            })
            .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(d: Described, override_source: i8, docs: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&d.name))
        .with_value(Some(str_bytes(&d.value)))
        .with_read_only(d.read_only)
        .with_config_source(if d.is_default {
            SOURCE_DEFAULT
        } else {
            override_source
        })
        .with_config_type(d.config_type as i8)
        .with_documentation(docs.then(|| str_bytes(d.doc)))
}

fn broker_configs(ctx: &Ctx, name: &str) -> Result<Vec<Described>, ApiError> {
    if !name.is_empty() && name != ctx.node_id.to_string() {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("this is broker {}, not {name:?}", ctx.node_id),
        ));
    }
    let c = &ctx.config;
    let usage = ctx.log.disk_usage();
    let item = |name: &str, value: String, config_type| Described {
        name: name.to_owned(),
        value,
        read_only: true,
        is_default: false,
        config_type,
        doc: "Set in the broker's config file.",
    };
    Ok(vec![
        item(
            "auto.create.topics.enable",
            c.topics.auto_create.to_string(),
            ConfigType::Boolean,
        ),
        item("broker.id", ctx.node_id.to_string(), ConfigType::Int),
        item("node.id", ctx.node_id.to_string(), ConfigType::Int),
        item(
            "num.partitions",
            c.topics.default_partitions.to_string(),
            ConfigType::Int,
        ),
        item(
            "log.retention.ms",
            c.topics.retention_ms.to_string(),
            ConfigType::Long,
        ),
        item(
            "log.retention.bytes",
            c.topics.retention_bytes.to_string(),
            ConfigType::Long,
        ),
        item(
            "log.retention.check.interval.ms",
            c.storage.retention_check_interval_ms.to_string(),
            ConfigType::Long,
        ),
        item(
            "log.max.disk.bytes",
            usage.budget.to_string(),
            ConfigType::Long,
        ),
        item(
            "message.max.bytes",
            c.topics.max_message_bytes.to_string(),
            ConfigType::Int,
        ),
        item(
            "socket.request.max.bytes",
            c.server.max_request_size.to_string(),
            ConfigType::Int,
        ),
        item("default.replication.factor", "1".into(), ConfigType::Int),
        // Runnel's own state, read-only, so any Kafka admin tool (and runnel-admin) can show
        // it over the Kafka protocol: there is no second (HTTP) interface to secure.
        item(
            "runnel.version",
            env!("CARGO_PKG_VERSION").into(),
            ConfigType::String,
        ),
        item(
            "runnel.uptime.ms",
            (crate::log::now_ms() - ctx.started_at_ms)
                .max(0)
                .to_string(),
            ConfigType::Long,
        ),
        item(
            "runnel.disk.used.bytes",
            usage.used.to_string(),
            ConfigType::Long,
        ),
        item(
            "runnel.rss.bytes",
            resident_bytes().to_string(),
            ConfigType::Long,
        ),
    ])
}

/// This process's resident set size from `/proc/self/statm` (0 where that is unavailable).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

pub async fn alter(
    ctx: &Ctx,
    session: &Session,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.as_str();
        let refused = refusal(ctx, session, Operation::AlterConfigs, r.resource_type, name);
        let outcome = match r.resource_type {
            _ if let Some(e) = refused => Err(e),
            TOPIC => match changes(&r.configs) {
                Ok(changes) => match &ctx.cluster {
                    Some(cluster) => match ctx.topics.changed_configs(name, &changes) {
                        Ok(_) if req.validate_only => Ok(()),
                        Ok(configs) => {
                            crate::cluster::admin::alter_configs(
                                cluster,
                                &ctx.topics,
                                name,
                                configs,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    },
                    None => {
                        ctx.topics
                            .alter_configs(r.resource_name.as_str(), &changes, req.validate_only)
                            .await
                    }
                },
                Err(e) => Err(e),
            },
            BROKER => Err(ApiError::new(
                ResponseError::InvalidConfig,
                "broker configs are static in Runnel: change the config file and restart",
            )),
            other => Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(&e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn changes(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<ConfigChange>, ApiError> {
    configs
        .iter()
        .map(|c| {
            let name = c.name.as_str().to_owned();
            match (c.config_operation, &c.value) {
                (0, Some(v)) => Ok(ConfigChange::Set(name, v.as_str().to_owned())),
                (0, None) => Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("SET of {name} needs a value"),
                )),
                (1, _) => Ok(ConfigChange::Delete(name)),
                (2 | 3, _) => Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("APPEND/SUBTRACT are not supported for {name}: it is not a list Runnel can change"),
                )),
                (op, _) => Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {op} for {name}"),
                )),
            }
        })
        .collect()
}
