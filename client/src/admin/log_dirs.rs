//! How many bytes each partition holds, from DescribeLogDirs asked of every broker.
//!
//! Each broker reports the replicas in its own log dirs. A partition's size is its leader's
//! answer (the replica clients read), else the largest a follower reports. Brokers that do
//! not serve DescribeLogDirs (or do not answer) are left out, so a mixed or partly reachable
//! cluster still gives the sizes it can; only when no broker at all serves the API is the
//! answer `None`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinSet;

use crate::cluster::{Client, ClusterMeta};
use crate::error::{ClientError, Result};

/// v1–v4 name topics and partitions the same way; v4 adds the volume's sizes, unused here.
const DESCRIBE_LOG_DIRS_VERSIONS: (i16, i16) = (1, 4);

/// (topic, partition) → bytes stored.
pub type PartitionSizes = BTreeMap<(String, i32), u64>;

/// What one broker said: `None` when it does not serve DescribeLogDirs.
type BrokerAnswer = Option<Vec<((String, i32), u64)>>;

impl Client {
    /// The bytes stored for each partition of `topics` (every topic when empty), asked of
    /// every broker in the metadata. `Ok(None)`: no broker serves DescribeLogDirs (an older
    /// Kafka or another Kafka-compatible broker). Unknown topics are simply absent. An error
    /// only when no broker answered at all.
    pub async fn log_dir_sizes(&self, topics: &[&str]) -> Result<Option<PartitionSizes>> {
        let meta = self.metadata(topics, false).await?;
        let request = match request(&meta, topics) {
            Some(r) => r,
            None => return Ok(Some(PartitionSizes::new())),
        };
        let mut calls = JoinSet::new();
        for b in &meta.brokers {
            let (client, request, node) = (self.clone(), request.clone(), b.node_id);
            calls.spawn(async move { (node, client.ask_log_dirs(node, &request).await) });
        }
        let mut answers = HashMap::new();
        let mut first_error = None;
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((node, Ok(answer))) => {
                    answers.insert(node, answer);
                }
                Ok((node, Err(e))) => {
                    tracing::debug!(node, error = %e, "DescribeLogDirs failed");
                    first_error.get_or_insert(e);
                }
                Err(e) => tracing::warn!(error = %e, "DescribeLogDirs task failed"),
            }
        }
        if answers.is_empty()
            && let Some(e) = first_error
        {
            return Err(e);
        }
        Ok(pick_sizes(&meta, answers))
    }

    /// One broker's replicas and their sizes.
    async fn ask_log_dirs(
        &self,
        node: i32,
        request: &DescribeLogDirsRequest,
    ) -> Result<BrokerAnswer> {
        let conn = self.broker_connection(node).await?;
        let version = match conn.pick_version::<DescribeLogDirsRequest>(DESCRIBE_LOG_DIRS_VERSIONS)
        {
            Ok(v) => v,
            Err(ClientError::UnsupportedApi { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let response = conn.call_at(request, version).await?;
        if let Some(e) = ClientError::kafka(
            format!("describing the log dirs of broker {node}"),
            response.error_code,
        ) {
            return Err(e);
        }
        Ok(Some(replicas(&response)))
    }
}

/// The request for `topics` (all when empty), or `None` when none of them exists.
fn request(meta: &ClusterMeta, topics: &[&str]) -> Option<DescribeLogDirsRequest> {
    if topics.is_empty() {
        // A null list: every topic the broker has.
        return Some(DescribeLogDirsRequest::default().with_topics(None));
    }
    let wanted: Vec<DescribableLogDirTopic> = meta
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && topics.contains(&t.name.as_str()))
        .map(|t| {
            DescribableLogDirTopic::default()
                .with_topic(TopicName(StrBytes::from_string(t.name.clone())))
                .with_partitions(t.partitions.iter().map(|p| p.partition).collect())
        })
        .collect();
    (!wanted.is_empty()).then(|| DescribeLogDirsRequest::default().with_topics(Some(wanted)))
}

/// The current (not future) replicas in the healthy log dirs of one answer.
fn replicas(response: &DescribeLogDirsResponse) -> Vec<((String, i32), u64)> {
    response
        .results
        .iter()
        .filter(|dir| dir.error_code == 0)
        .flat_map(|dir| &dir.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| !p.is_future_key)
                .map(move |p| {
                    let size = u64::try_from(p.partition_size).unwrap_or(0);
                    ((t.name.0.to_string(), p.partition_index), size)
                })
        })
        .collect()
}

/// Per partition: the leader's size if the leader reported it, else the largest reported.
/// `None` when no broker served the API.
fn pick_sizes(meta: &ClusterMeta, answers: HashMap<i32, BrokerAnswer>) -> Option<PartitionSizes> {
    let leaders: HashMap<(&str, i32), i32> = meta
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.name.as_str(), p.partition), p.leader))
        })
        .collect();
    let mut served = false;
    let mut sizes = PartitionSizes::new();
    let mut from_leader = BTreeSet::new();
    for (node, answer) in answers {
        let Some(replicas) = answer else {
            continue;
        };
        served = true;
        for (key, size) in replicas {
            let is_leader = leaders.get(&(key.0.as_str(), key.1)) == Some(&node);
            if is_leader {
                sizes.insert(key.clone(), size);
                from_leader.insert(key);
            } else if !from_leader.contains(&key) {
                let entry = sizes.entry(key).or_insert(0);
                *entry = (*entry).max(size);
            }
        }
    }
    served.then_some(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{PartitionMeta, TopicMeta};

    fn meta() -> ClusterMeta {
        ClusterMeta {
            topics: vec![TopicMeta {
                name: "gps".into(),
                error_code: 0,
                partitions: (0..2)
                    .map(|p| PartitionMeta {
                        partition: p,
                        leader: p + 1,
                        replicas: vec![1, 2],
                        isr: vec![1, 2],
                        leader_epoch: 0,
                        error_code: 0,
                    })
                    .collect(),
            }],
            ..ClusterMeta::default()
        }
    }

    fn key(p: i32) -> (String, i32) {
        ("gps".into(), p)
    }

    #[test]
    fn given_a_leader_and_a_follower_when_picking_should_take_the_leaders_size() {
        // Broker 1 leads partition 0, broker 2 leads partition 1; followers lag behind or not.
        let answers = HashMap::from([
            (1, Some(vec![(key(0), 100), (key(1), 900)])),
            (2, Some(vec![(key(0), 500), (key(1), 300)])),
        ]);
        let sizes = pick_sizes(&meta(), answers).expect("served");
        assert_eq!(sizes.get(&key(0)), Some(&100));
        assert_eq!(sizes.get(&key(1)), Some(&300));
    }

    #[test]
    fn given_no_leader_answer_when_picking_should_take_the_largest() {
        let answers = HashMap::from([(2, Some(vec![(key(0), 70)])), (3, Some(vec![(key(0), 90)]))]);
        let sizes = pick_sizes(&meta(), answers).expect("served");
        assert_eq!(sizes.get(&key(0)), Some(&90));
    }

    #[test]
    fn given_brokers_without_the_api_when_picking_should_be_none_or_the_others() {
        assert_eq!(
            pick_sizes(&meta(), HashMap::from([(1, None), (2, None)])),
            None
        );
        let mixed = HashMap::from([(1, None), (2, Some(vec![(key(1), 5)]))]);
        assert_eq!(
            pick_sizes(&meta(), mixed),
            Some(PartitionSizes::from([(key(1), 5)]))
        );
    }

    #[test]
    fn given_named_topics_when_none_exists_should_send_nothing() {
        assert!(request(&meta(), &["nope"]).is_none());
        let all = request(&meta(), &[]).expect("all topics");
        assert_eq!(all.topics, None);
        let gps = request(&meta(), &["gps"]).expect("gps");
        let topics = gps.topics.expect("named");
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions, vec![0, 1]);
    }
}
