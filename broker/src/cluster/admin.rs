//! Topic changes in cluster mode: validated on the node that received the request, placed
//! on brokers, committed through the quorum, and answered once this node's local copy has
//! caught up (so the client's next request to this node sees the change).
//!
//! Placement is Kafka's round robin: partition `p` of a topic gets the `rf` live brokers
//! starting at `(hash(name) + p) mod n`, so leaders spread over the brokers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use super::Cluster;
use super::state::Command;
use crate::topics::{ApiError, Topic, TopicRegistry};

/// How long an answer waits for the local copy after the quorum committed.
const LOCAL_WAIT: Duration = Duration::from_secs(5);

/// Replica lists for `count` new partitions starting at index `first`.
pub fn place(
    cluster: &Cluster,
    name: &str,
    first: i32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let live = cluster.state().live_brokers();
    let rf = if replication_factor < 0 {
        (cluster.config.default_replication_factor as usize).min(live.len().max(1))
    } else {
        replication_factor as usize
    };
    if rf == 0 || rf > live.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {rf} is larger than the {} available brokers",
                live.len()
            ),
        ));
    }
    let n = live.len();
    let start = name
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Ok((first..first + count)
        .map(|p| {
            (0..rf)
                .map(|j| live[(start + p as usize + j) % n])
                .collect()
        })
        .collect())
}

/// Creates a topic in the cluster and returns the local copy.
pub async fn create_topic(
    cluster: &Cluster,
    topics: &TopicRegistry,
    name: &str,
    replicas: Vec<Vec<i32>>,
    configs: BTreeMap<String, String>,
) -> Result<Arc<Topic>, ApiError> {
    topics.check_new(name, replicas.len() as i32, &configs)?;
    let id = uuid::Uuid::new_v4();
    cluster
        .commit(&Command::CreateTopic {
            name: name.to_owned(),
            id,
            replicas,
            configs,
        })
        .await?;
    local(topics, name, |t| t.id() == id).await
}

pub async fn delete_topic(
    cluster: &Cluster,
    topics: &TopicRegistry,
    name: &str,
) -> Result<(), ApiError> {
    cluster
        .commit(&Command::DeleteTopic {
            name: name.to_owned(),
        })
        .await?;
    let deadline = tokio::time::Instant::now() + LOCAL_WAIT;
    while topics.get(name).is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub async fn add_partitions(
    cluster: &Cluster,
    topics: &TopicRegistry,
    name: &str,
    count: i32,
) -> Result<(), ApiError> {
    let state = cluster.state();
    let Some(t) = state.topics.get(name) else {
        return Err(ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        ));
    };
    let current = t.partitions.len() as i32;
    let rf = t.partitions.first().map_or(1, |p| p.target().len()) as i16;
    let replicas = place(cluster, name, current, count - current, rf)?;
    cluster
        .commit(&Command::CreatePartitions {
            name: name.to_owned(),
            replicas,
        })
        .await?;
    local(topics, name, |t| t.partitions.len() as i32 >= count)
        .await
        .map(|_| ())
}

pub async fn alter_configs(
    cluster: &Cluster,
    topics: &TopicRegistry,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<(), ApiError> {
    cluster
        .commit(&Command::AlterConfigs {
            name: name.to_owned(),
            configs: configs.clone(),
        })
        .await?;
    local(topics, name, |t| t.record.configs == configs)
        .await
        .map(|_| ())
}

/// Waits for the local copy of `name` to satisfy `done`.
async fn local(
    topics: &TopicRegistry,
    name: &str,
    done: impl Fn(&Topic) -> bool,
) -> Result<Arc<Topic>, ApiError> {
    let deadline = tokio::time::Instant::now() + LOCAL_WAIT;
    loop {
        if let Some(t) = topics.get(name).filter(|t| done(t)) {
            return Ok(t);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                ResponseError::RequestTimedOut,
                format!(
                    "topic {name:?} was changed in the cluster but this broker has not caught up yet"
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
