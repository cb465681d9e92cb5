//! Cluster administration the workspace needs so far: creating a topic.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::error::{ClientError, Result};

/// CreateTopics versions whose request fields we fill.
const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);

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
