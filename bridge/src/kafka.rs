//! [`KafkaBackend`]: the standalone bridge's [`Backend`], over the Kafka protocol through the
//! workspace's client (`runnel-client`): an idempotent acks=all producer, so a produce retry
//! after a lost response is deduplicated by the broker instead of written twice.

use std::sync::Arc;
use std::time::Duration;

use runnel_client::{
    Client, ClientConfig, ClientError, FetchOptions, NewTopic, OffsetSpec, PartitionBatch,
    Producer, ProducerConfig, ResponseError, SecurityConfig,
};

use crate::backend::{Backend, BoxFuture, ReadResult, SourceRecord, TopicBatch, out_record};
use crate::config::StartFrom;
use crate::error::SinkError;

/// Writes and reads through a Kafka-compatible cluster.
#[derive(Debug)]
pub struct KafkaBackend {
    client: Client,
    producer: Producer,
}

impl KafkaBackend {
    /// A backend for `bootstrap` (`host:port[,host:port…]`) secured as `security` says;
    /// connects lazily, but reads the PEM files of `security` now and fails on a bad one.
    pub fn new(
        bootstrap: &str,
        client_id: &str,
        security: SecurityConfig,
    ) -> Result<Arc<Self>, ClientError> {
        let client = Client::try_new(ClientConfig {
            security,
            ..ClientConfig::new(bootstrap, client_id)
        })?;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                // The bridge retries forever itself, and must notice a dead broker to report it.
                delivery_timeout: Duration::from_secs(10),
                ..ProducerConfig::default()
            },
        );
        Ok(Arc::new(KafkaBackend { client, producer }))
    }
}

/// Only a property of the records themselves (their size, their timestamp) rejects them; see
/// [`SinkError`]. INVALID_RECORD or CORRUPT_MESSAGE for a batch this client encoded would be
/// a bug on one side or the other: retried (and visible in the status), never dropped.
fn sink_error(e: ClientError) -> SinkError {
    let rejected = matches!(
        e.code(),
        Some(
            ResponseError::MessageTooLarge
                | ResponseError::RecordListTooLarge
                | ResponseError::InvalidTimestamp
        )
    );
    SinkError {
        rejected,
        message: e.to_string(),
    }
}

impl Backend for KafkaBackend {
    fn partitions<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<i32, SinkError>> {
        Box::pin(async move {
            self.client.forget_topic(topic);
            match self.client.topic(topic).await {
                Ok(meta) => Ok(meta.partitions.len() as i32),
                Err(e) if e.code() == Some(ResponseError::UnknownTopicOrPartition) => {
                    Err(SinkError::rejected(format!("topic {topic} does not exist")))
                }
                Err(e) => Err(sink_error(e)),
            }
        })
    }

    fn write(&self, batches: Vec<TopicBatch>) -> BoxFuture<'_, Vec<Result<(), SinkError>>> {
        Box::pin(async move {
            let batches = batches
                .iter()
                .map(|b| PartitionBatch {
                    topic: b.topic.to_string(),
                    partition: b.partition,
                    records: b.records.iter().map(out_record).collect(),
                })
                .collect();
            self.producer
                .send(batches)
                .await
                .into_iter()
                .map(|r| r.map(|_| ()).map_err(sink_error))
                .collect()
        })
    }

    fn ensure_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.client.topic(topic).await.is_ok() {
                return Ok(());
            }
            self.client
                .create_topic(&NewTopic {
                    name: topic.to_string(),
                    partitions: 1,
                    replication_factor: -1,
                    configs: vec![("retention.ms".into(), "86400000".into())],
                })
                .await
                .map(|_| ())
                .map_err(sink_error)
        })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> BoxFuture<'a, Result<ReadResult, SinkError>> {
        Box::pin(async move {
            let options = FetchOptions {
                max_wait,
                ..FetchOptions::default()
            };
            match self.client.fetch(topic, partition, offset, options).await {
                Ok(f) => Ok(ReadResult {
                    records: f
                        .records
                        .into_iter()
                        .map(|r| SourceRecord {
                            offset: r.offset,
                            key: r.key,
                            value: r.value,
                        })
                        .collect(),
                    reset_to: None,
                    high_watermark: f.high_watermark,
                }),
                Err(e) if e.code() == Some(ResponseError::OffsetOutOfRange) => {
                    let start = self
                        .client
                        .list_offset(topic, partition, OffsetSpec::Earliest)
                        .await
                        .map_err(sink_error)?;
                    Ok(ReadResult {
                        records: Vec::new(),
                        reset_to: Some(start),
                        high_watermark: start,
                    })
                }
                Err(e) => Err(sink_error(e)),
            }
        })
    }

    fn start_offset<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        from: StartFrom,
    ) -> BoxFuture<'a, Result<i64, SinkError>> {
        Box::pin(async move {
            let spec = match from {
                StartFrom::Earliest => OffsetSpec::Earliest,
                StartFrom::Latest => OffsetSpec::Latest,
            };
            self.client
                .list_offset(topic, partition, spec)
                .await
                .map_err(sink_error)
        })
    }

    fn committed<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Option<i64>, SinkError>> {
        Box::pin(async move {
            self.client
                .committed_offsets(group, topic, &[partition])
                .await
                .map(|v| v.first().copied().flatten())
                .map_err(sink_error)
        })
    }

    fn commit<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.client
                .commit_offsets(group, &[(topic.to_string(), partition, offset)])
                .await
                .map_err(sink_error)
        })
    }
}
