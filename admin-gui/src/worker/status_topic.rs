//! The newest record per key of a status topic: Runnel's MQTT bridges and uplinks each write a
//! JSON record keyed by their name every status interval to a one-partition topic
//! (`__runnel_bridge_status`, `__runnel_uplink_status`). A [`StatusTopic`] follows such a topic
//! from refresh to refresh: the first read starts a bounded tail back from the end, later reads
//! continue where the last one stopped. It keeps only the newest record of each key (and the
//! time since that key's previous one, its writer's interval, to judge staleness), so memory
//! grows with the number of writers, never with the topic.

use std::collections::BTreeMap;
use std::time::Duration;

use runnel_client::{ClusterMeta, FetchOptions, InRecord, PartitionOffsets};
use serde::de::DeserializeOwned;

use super::ClusterCtx;
use crate::status::StatusRecord;

/// The topic Runnel's MQTT bridges write their status to.
pub const BRIDGE_STATUS_TOPIC: &str = "__runnel_bridge_status";
/// The topic Runnel's uplinks write their status to.
pub const UPLINK_STATUS_TOPIC: &str = "__runnel_uplink_status";

/// Records read back at most: on the first read, and when the writers got further ahead than
/// this since the last one (the records skipped are older records of the same writers).
const TAIL: i64 = 500;
/// Fetches per read at most (each up to the client's default 1 MiB).
const MAX_FETCHES: usize = 4;

/// The newest record of each writer of one status topic (partition 0), parsed as `T`.
#[derive(Debug)]
pub struct StatusTopic<T> {
    topic: &'static str,
    /// The next offset to read; `None` before the first read.
    next: Option<i64>,
    latest: BTreeMap<String, StatusRecord<T>>,
}

impl<T: DeserializeOwned + Clone> StatusTopic<T> {
    pub fn new(topic: &'static str) -> Self {
        StatusTopic {
            topic,
            next: None,
            latest: BTreeMap::new(),
        }
    }

    /// Reads what was written since the last read and returns the newest record per key. A
    /// cluster without the topic has none; a failed fetch keeps the records known so far (the
    /// next read tries again from the same offset).
    pub async fn read(
        &mut self,
        ctx: &ClusterCtx,
        meta: &ClusterMeta,
        starts: &PartitionOffsets,
        ends: &PartitionOffsets,
    ) -> BTreeMap<String, StatusRecord<T>> {
        if !meta.topics.iter().any(|t| t.name == self.topic) {
            self.next = None;
            self.latest.clear();
            return BTreeMap::new();
        }
        let key = (self.topic.to_string(), 0);
        let end = ends.get(&key).copied().unwrap_or(0);
        let mut from = read_from(self.next, starts.get(&key).copied().unwrap_or(0), end);
        let options = FetchOptions {
            max_wait: Duration::ZERO,
            ..FetchOptions::default()
        };
        for _ in 0..MAX_FETCHES {
            if from >= end {
                break;
            }
            match ctx.client.fetch(self.topic, 0, from, options).await {
                Ok(fetched) if !fetched.records.is_empty() => {
                    for record in fetched.records {
                        from = from.max(record.offset + 1);
                        self.take(record);
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(topic = self.topic, error = %e, "status records unavailable");
                    break;
                }
            }
        }
        self.next = Some(from);
        self.latest.clone()
    }

    /// Keeps `record` as its key's newest, if it is a keyed JSON `T`.
    fn take(&mut self, record: InRecord) {
        let (Some(key), Some(value)) = (record.key, record.value) else {
            return;
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&value) else {
            return;
        };
        let at_ms = json
            .get("at_ms")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(record.timestamp_ms);
        let Ok(value) = serde_json::from_value::<T>(json) else {
            return;
        };
        let key = String::from_utf8_lossy(&key).into_owned();
        let interval_ms = match self.latest.get(&key) {
            Some(previous) if at_ms > previous.at_ms => Some(at_ms - previous.at_ms),
            Some(previous) => previous.interval_ms,
            None => None,
        };
        self.latest.insert(
            key,
            StatusRecord {
                value,
                at_ms,
                interval_ms,
            },
        );
    }
}

/// Where a read starts: after the last one (`next`), but within the partition's log
/// (`start..end`) and at most [`TAIL`] records back. A `next` past the end means the topic was
/// recreated: the tail again.
fn read_from(next: Option<i64>, start: i64, end: i64) -> i64 {
    let after_last = next.filter(|n| *n <= end).unwrap_or(start);
    after_last.max(start).max(end - TAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: &str, json: &str) -> InRecord {
        InRecord {
            offset,
            timestamp_ms: 7,
            key: Some(bytes::Bytes::from(key.to_string())),
            value: Some(bytes::Bytes::from(json.to_string())),
            headers: Vec::new(),
        }
    }

    #[test]
    fn given_records_of_two_writers_when_taking_them_should_keep_the_newest_with_its_interval() {
        let mut t = StatusTopic::<serde_json::Value>::new(UPLINK_STATUS_TOPIC);
        t.take(record(0, "a", r#"{"n":1,"at_ms":1000}"#));
        t.take(record(1, "b", r#"{"n":2}"#));
        t.take(record(2, "a", r#"{"n":3,"at_ms":1300}"#));
        t.take(record(3, "a", "not json"));
        t.take(record(4, "b", r#"{"n":4,"at_ms":900}"#));
        assert_eq!(t.latest.len(), 2);
        let a = &t.latest["a"];
        assert_eq!(
            (a.value["n"].as_i64(), a.at_ms, a.interval_ms),
            (Some(3), 1300, Some(300))
        );
        // Without `at_ms` the record's timestamp stands in.
        let b = &t.latest["b"];
        assert_eq!(
            (b.value["n"].as_i64(), b.at_ms, b.interval_ms),
            (Some(4), 900, Some(893))
        );
    }

    #[test]
    fn given_a_record_of_another_shape_when_taking_it_should_skip_it() {
        let mut t = StatusTopic::<crate::status::UplinkStatus>::new(UPLINK_STATUS_TOPIC);
        t.take(record(0, "a", r#"{"backlog_records":"many"}"#));
        t.take(record(1, "b", r#"{"backlog_records":5}"#));
        assert_eq!(t.latest.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn given_earlier_reads_when_choosing_where_to_read_should_continue_within_the_tail() {
        assert_eq!(read_from(None, 0, 100), 0);
        assert_eq!(read_from(None, 0, 10_000), 10_000 - TAIL);
        assert_eq!(read_from(Some(9_900), 0, 10_000), 9_900);
        assert_eq!(read_from(Some(100), 0, 10_000), 10_000 - TAIL);
        assert_eq!(read_from(Some(5), 20, 100), 20, "retention moved the start");
        assert_eq!(read_from(Some(300), 0, 100), 0, "the topic was recreated");
    }
}
