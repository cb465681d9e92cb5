//! Reading partitions: Fetch from the leader, and ListOffsets to find where to start.
//!
//! These are single-partition calls for simple consumers (the bridge's egress, the admin
//! GUI's message browser, the uplink); group membership is not part of this client.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::error::{ClientError, Result};
use crate::records::{InRecord, decode_batches};

/// Fetch versions whose fields we fill (topic names; v13+ uses topic ids).
const FETCH_VERSIONS: (i16, i16) = (4, 12);
/// ListOffsets versions with a single timestamp per partition.
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 8);

/// What a fetch may wait for and return.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// How long the broker may hold the request open waiting for data.
    pub max_wait: Duration,
    pub min_bytes: i32,
    pub max_bytes: i32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 1 << 20,
        }
    }
}

/// Records of one partition from one fetch.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub records: Vec<InRecord>,
    pub high_watermark: i64,
    pub log_start: i64,
}

/// Where ListOffsets should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl Client {
    /// Fetches `topic`/`partition` from `offset` (records below `offset` in the first batch
    /// are dropped).
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<Fetched> {
        let conn = self.leader_connection(topic, partition).await?;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(i32::try_from(options.max_wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(options.min_bytes)
            .with_max_bytes(options.max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(options.max_bytes),
                    ]),
            ]);
        let response = conn.call(&request, FETCH_VERSIONS).await?;
        let context = || format!("fetching {topic}/{partition} at {offset}");
        if let Some(e) = ClientError::kafka(context(), response.error_code) {
            return Err(e);
        }
        let data = response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "Fetch",
                message: format!("no answer for {topic}/{partition}"),
            })?;
        if let Some(e) = ClientError::kafka(context(), data.error_code) {
            if e.needs_metadata() {
                self.forget_topic(topic);
            }
            return Err(e);
        }
        let records = decode_batches(data.records.clone().unwrap_or_else(Bytes::new), offset)
            .map_err(|message| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "Fetch",
                message: format!("{}: {message}", context()),
            })?;
        Ok(Fetched {
            records,
            high_watermark: data.high_watermark,
            log_start: data.log_start_offset,
        })
    }

    /// The offset `spec` names in `topic`/`partition`.
    pub async fn list_offset(&self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<i64> {
        let conn = self.leader_connection(topic, partition).await?;
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        };
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let response = conn.call(&request, LIST_OFFSETS_VERSIONS).await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "ListOffsets",
                message: format!("no answer for {topic}/{partition}"),
            })?;
        match ClientError::kafka(
            format!("listing offsets of {topic}/{partition}"),
            p.error_code,
        ) {
            Some(e) => {
                if e.needs_metadata() {
                    self.forget_topic(topic);
                }
                Err(e)
            }
            None => Ok(p.offset),
        }
    }
}
