//! Cluster administration for the admin GUI and the bridge: topics and their configs here,
//! consumer groups in [`groups`], partition sizes on disk in [`log_dirs`], ACLs in [`acls`],
//! SCRAM users in [`users`], brokers and controller (fenced brokers too) in [`cluster`].

pub mod acls;
pub mod cluster;
pub mod groups;
pub mod log_dirs;
pub mod users;

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::error::{ClientError, Result};

/// CreateTopics versions whose request fields we fill.
const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);
/// DeleteTopics versions naming topics by `topic_names` (v6 moved to `topics`).
const DELETE_TOPICS_VERSIONS: (i16, i16) = (1, 5);
const DESCRIBE_CONFIGS_VERSIONS: (i16, i16) = (1, 4);
const INCREMENTAL_ALTER_CONFIGS_VERSIONS: (i16, i16) = (0, 1);
/// `resource_type` of a topic and of a broker in the configs APIs.
const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;

/// One config entry of a topic as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    /// Kafka's `ConfigSource`: 1 = set on the topic, 5 = static broker config, 4 = default …
    pub source: i8,
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value was set on the topic itself rather than inherited.
    pub fn is_override(&self) -> bool {
        self.source == 1
    }
}

/// One change of [`Client::alter_topic_configs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String, String),
    /// Back to the inherited value.
    Delete(String),
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    /// -1 lets the broker choose (`default.replication.factor`).
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl Client {
    /// Creates `topic`; `Ok(false)` when it already existed.
    pub async fn create_topic(&self, topic: &NewTopic) -> Result<bool> {
        let conn = self.any_connection().await?;
        let timeout_ms =
            i32::try_from(self.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(topic.replication_factor)
                    .with_configs(
                        topic
                            .configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    ),
            ]);
        let response = conn.call(&request, CREATE_TOPICS_VERSIONS).await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == topic.name)
            .ok_or_else(|| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "CreateTopics",
                message: format!("no answer for topic {}", topic.name),
            })?;
        match ResponseError::try_from_code(result.error_code) {
            None => Ok(true),
            Some(ResponseError::TopicAlreadyExists) => Ok(false),
            Some(error) => Err(ClientError::Kafka {
                context: format!(
                    "creating topic {}{}",
                    topic.name,
                    result
                        .error_message
                        .as_ref()
                        .map(|m| format!(" ({})", m.as_str()))
                        .unwrap_or_default()
                ),
                error,
            }),
        }
    }
}

impl Client {
    /// Deletes `topic`.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let conn = self.any_connection().await?;
        let timeout_ms =
            i32::try_from(self.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
        let name = TopicName(StrBytes::from_string(topic.to_string()));
        let version = conn.pick_version::<DeleteTopicsRequest>(DELETE_TOPICS_VERSIONS)?;
        let request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
        let request = if version >= 6 {
            request.with_topics(vec![DeleteTopicState::default().with_name(Some(name))])
        } else {
            request.with_topic_names(vec![name])
        };
        let response = conn.call_at(&request, version).await?;
        self.forget_topic(topic);
        for r in &response.responses {
            if let Some(e) = ClientError::kafka(format!("deleting topic {topic}"), r.error_code) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every config of `topic`, with where each value comes from.
    pub async fn describe_topic_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let conn = self.any_connection().await?;
        self.describe_configs(&conn, TOPIC_RESOURCE, topic).await
    }

    /// Broker `node_id`'s configs, asked of that broker itself (Runnel adds its live state
    /// as read-only `runnel.*` entries: version, uptime, disk used, RSS).
    pub async fn describe_broker_configs(&self, node_id: i32) -> Result<Vec<ConfigEntry>> {
        let conn = self.broker_connection(node_id).await?;
        self.describe_configs(&conn, BROKER_RESOURCE, &node_id.to_string())
            .await
    }

    async fn describe_configs(
        &self,
        conn: &crate::Connection,
        resource_type: i8,
        name: &str,
    ) -> Result<Vec<ConfigEntry>> {
        let topic = name;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None),
        ]);
        let response = conn.call(&request, DESCRIBE_CONFIGS_VERSIONS).await?;
        let result = response
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "DescribeConfigs",
                message: format!("no answer for topic {topic}"),
            })?;
        if let Some(e) =
            ClientError::kafka(format!("describing configs of {topic}"), result.error_code)
        {
            return Err(e);
        }
        Ok(entries(result))
    }

    /// The configs of many topics in one DescribeConfigs request — only `keys` when given —
    /// with each topic's own outcome (a topic deleted meanwhile is an error for it alone).
    pub async fn describe_configs_of_topics(
        &self,
        topics: &[&str],
        keys: Option<&[&str]>,
    ) -> Result<BTreeMap<String, Result<Vec<ConfigEntry>>>> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let conn = self.any_connection().await?;
        let keys: Option<Vec<StrBytes>> = keys.map(|k| {
            k.iter()
                .map(|k| StrBytes::from_string(k.to_string()))
                .collect()
        });
        let request = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(TOPIC_RESOURCE)
                        .with_resource_name(StrBytes::from_string(t.to_string()))
                        .with_configuration_keys(keys.clone())
                })
                .collect(),
        );
        let response = conn.call(&request, DESCRIBE_CONFIGS_VERSIONS).await?;
        Ok(response
            .results
            .iter()
            .filter(|r| r.resource_type == TOPIC_RESOURCE)
            .map(|r| {
                let name = r.resource_name.to_string();
                let outcome =
                    match ClientError::kafka(format!("describing configs of {name}"), r.error_code)
                    {
                        Some(e) => Err(e),
                        None => Ok(entries(r)),
                    };
                (name, outcome)
            })
            .collect())
    }

    /// Applies `changes` to `topic`'s configs (IncrementalAlterConfigs).
    pub async fn alter_topic_configs(&self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        let conn = self.any_connection().await?;
        let configs = changes
            .iter()
            .map(|c| match c {
                ConfigChange::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                ConfigChange::Delete(k) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(configs),
        ]);
        let response = conn
            .call(&request, INCREMENTAL_ALTER_CONFIGS_VERSIONS)
            .await?;
        for r in &response.responses {
            let context = format!(
                "altering configs of {topic}{}",
                r.error_message
                    .as_ref()
                    .map(|m| format!(" ({})", m.as_str()))
                    .unwrap_or_default()
            );
            if let Some(e) = ClientError::kafka(context, r.error_code) {
                return Err(e);
            }
        }
        Ok(())
    }
}

fn entries(
    result: &kafka_protocol::messages::describe_configs_response::DescribeConfigsResult,
) -> Vec<ConfigEntry> {
    result
        .configs
        .iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()),
            read_only: c.read_only,
            source: c.config_source,
            sensitive: c.is_sensitive,
        })
        .collect()
}
