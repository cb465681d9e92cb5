//! What the nodes say: Metadata as one node sees it ([`MetadataView`], [`PartitionState`]),
//! agreed partition state, leaders, ISR, controller, group coordinator, high watermark, a
//! Produce sent to one node, and the waits built on them.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;

use anyhow::{Context, Result, anyhow, bail, ensure};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};

use super::Cluster;

use crate::harness::clients;
use crate::harness::raw::{self, RawConnection};
use crate::harness::wait::wait_until;

/// One partition as a node's Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// A node's answer to Metadata: brokers, controller and the asked topics' partitions.
#[derive(Debug, Clone, Default)]
pub struct MetadataView {
    pub brokers: Vec<i32>,
    pub controller: i32,
    /// topic → (topic error code, partitions by index).
    pub topics: BTreeMap<String, (i16, BTreeMap<i32, PartitionState>)>,
}

impl PartitionState {
    /// A leader, and an ISR equal to the (non-empty) replica set.
    pub fn full_isr(&self) -> bool {
        let isr: BTreeSet<_> = self.isr.iter().collect();
        let replicas: BTreeSet<_> = self.replicas.iter().collect();
        self.leader >= 0 && !self.replicas.is_empty() && isr == replicas
    }
}

impl MetadataView {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic)?.1.get(&partition)
    }
}

impl Cluster {
    /// Node `id`'s Metadata for `topics` (all topics when empty).
    pub fn metadata_at(&self, id: i32, topics: &[&str]) -> Result<MetadataView> {
        let node = &self.nodes[self.index_of(id)?];
        let request = MetadataRequest::default()
            .with_topics(if topics.is_empty() {
                None
            } else {
                Some(
                    topics
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string((*t).into()))))
                        })
                        .collect(),
                )
            })
            .with_allow_auto_topic_creation(false);
        let response = RawConnection::connect(node.kafka)?.call(&request, 12, 11)?;
        let mut view = MetadataView {
            brokers: response.brokers.iter().map(|b| b.node_id.0).collect(),
            controller: response.controller_id.0,
            topics: BTreeMap::new(),
        };
        view.brokers.sort_unstable();
        for topic in response.topics {
            let Some(name) = topic.name else { continue };
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        PartitionState {
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            error_code: p.error_code,
                        },
                    )
                })
                .collect();
            view.topics
                .insert(name.0.to_string(), (topic.error_code, partitions));
        }
        Ok(view)
    }

    /// The partition as the healthy nodes agree on it; `None` while they disagree, a node
    /// does not answer, or the partition has an error or no leader.
    pub fn agreed_state(&mut self, topic: &str, partition: i32) -> Result<Option<PartitionState>> {
        let mut agreed: Option<PartitionState> = None;
        for id in self.healthy_ids() {
            let view = self.metadata_at(id, &[topic])?;
            let Some(state) = view.partition(topic, partition) else {
                return Ok(None);
            };
            if state.error_code != 0 || state.leader < 0 {
                return Ok(None);
            }
            match &agreed {
                None => agreed = Some(state.clone()),
                Some(a) if a == state => {}
                Some(_) => return Ok(None),
            }
        }
        Ok(agreed)
    }

    /// The partition's state: the answer of the healthy nodes if they agree, else of the
    /// controller, else of the first healthy node that answers.
    pub fn partition_state(&mut self, topic: &str, partition: i32) -> Result<PartitionState> {
        if let Some(state) = self.agreed_state(topic, partition)? {
            return Ok(state);
        }
        let mut ids = self.healthy_ids();
        if let Ok(controller) = self.controller_id() {
            ids.insert(0, controller);
        }
        for id in ids {
            if let Ok(view) = self.metadata_at(id, &[topic])
                && let Some(state) = view.partition(topic, partition)
            {
                return Ok(state.clone());
            }
        }
        bail!("no healthy node describes {topic}/{partition}")
    }

    /// Waits until the healthy nodes agree on a leader of `topic`/`partition` that is itself
    /// healthy (running, reachable, not isolated), and returns its id.
    pub fn wait_for_leader(&mut self, topic: &str, partition: i32) -> Result<i32> {
        self.wait_for_leader_where(topic, partition, |_| true)
    }

    /// Like [`Cluster::wait_for_leader`], for a leader other than `old`.
    pub fn wait_for_new_leader(&mut self, topic: &str, partition: i32, old: i32) -> Result<i32> {
        self.wait_for_leader_where(topic, partition, |s| s.leader != old)
    }

    /// Waits for an agreed, healthy leader whose state satisfies `accept`.
    pub fn wait_for_leader_where(
        &mut self,
        topic: &str,
        partition: i32,
        mut accept: impl FnMut(&PartitionState) -> bool,
    ) -> Result<i32> {
        let what = format!("an agreed, healthy leader of {topic}/{partition}");
        let mut last = None;
        let settle = self.options.settle;
        let result = wait_until(&what, settle, || {
            let healthy = self.healthy_ids();
            let state = self.agreed_state(topic, partition)?;
            last.clone_from(&state);
            Ok(state
                .filter(|s| healthy.contains(&s.leader) && accept(s))
                .map(|s| s.leader))
        });
        result.with_context(|| format!("last agreed state {last:?}\n{}", self.log_paths()))
    }

    /// Waits until every healthy node reports the ISR of `topic`/`partition` equal to its
    /// replica set (and a leader), and returns that state.
    pub fn wait_for_full_isr(&mut self, topic: &str, partition: i32) -> Result<PartitionState> {
        let what = format!("a full ISR of {topic}/{partition} on every healthy node");
        let mut last = None;
        let settle = self.options.settle;
        let result = wait_until(&what, settle, || {
            let state = self.agreed_state(topic, partition)?;
            last.clone_from(&state);
            Ok(state.filter(PartitionState::full_isr))
        });
        result.with_context(|| format!("last agreed state {last:?}\n{}", self.log_paths()))
    }

    /// Creates `topic` (CreateTopics through rdkafka's admin client, which finds the
    /// controller) and waits until every partition has a full ISR on every healthy node.
    /// Blocks; callable from inside an async test too (the admin client runs on a thread of
    /// its own).
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
    ) -> Result<()> {
        let bootstrap = self.bootstrap();
        thread::scope(|scope| {
            scope
                .spawn(|| -> Result<()> {
                    let admin = clients::admin(&bootstrap)?;
                    let new = NewTopic::new(
                        topic,
                        partitions,
                        TopicReplication::Fixed(replication_factor),
                    );
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("building a runtime for the admin client")?;
                    let results = runtime
                        .block_on(admin.create_topics([&new], &clients::admin_options()))
                        .with_context(|| format!("CreateTopics {topic}"))?;
                    match results.as_slice() {
                        [Ok(_)] => Ok(()),
                        other => bail!("CreateTopics {topic}: {other:?}"),
                    }
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow!("CreateTopics {topic} panicked")))
        })?;
        self.wait_for_full_isr_all(topic, partitions)
    }

    /// [`Cluster::wait_for_full_isr`] for partitions `0..partitions`.
    pub fn wait_for_full_isr_all(&mut self, topic: &str, partitions: i32) -> Result<()> {
        for partition in 0..partitions {
            self.wait_for_full_isr(topic, partition)?;
        }
        Ok(())
    }

    /// The controller as DescribeCluster on a healthy node names it.
    pub fn controller_id(&mut self) -> Result<i32> {
        let ids = self.healthy_ids();
        let mut errors = Vec::new();
        for id in ids {
            let node = &self.nodes[self.index_of(id)?];
            match raw::describe_cluster(node.kafka) {
                Ok(r) if r.error_code == 0 && r.controller_id.0 >= 0 => {
                    return Ok(r.controller_id.0);
                }
                Ok(r) => errors.push(format!(
                    "node {id}: error {}, controller {}",
                    r.error_code, r.controller_id.0
                )),
                Err(e) => errors.push(format!("node {id}: {e:#}")),
            }
        }
        bail!("no healthy node named a controller: {}", errors.join("; "))
    }

    /// The group coordinator of `group` as FindCoordinator (v3) on a healthy node answers it.
    pub fn coordinator_id(&mut self, group: &str) -> Result<i32> {
        let ids = self.healthy_ids();
        let mut errors = Vec::new();
        for id in ids {
            let node = &self.nodes[self.index_of(id)?];
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_owned()))
                .with_key_type(0);
            match RawConnection::connect(node.kafka).and_then(|mut c| c.call(&request, 3, 12)) {
                Ok(r) if r.error_code == 0 => return Ok(r.node_id.0),
                Ok(r) => errors.push(format!("node {id}: error {}", r.error_code)),
                Err(e) => errors.push(format!("node {id}: {e:#}")),
            }
        }
        bail!("no coordinator for {group}: {}", errors.join("; "))
    }

    /// ListOffsets (latest, read-uncommitted: the high watermark) sent to node `id` itself:
    /// `Err` carries the error code (e.g. 6 NOT_LEADER_OR_FOLLOWER on a follower).
    pub fn high_watermark_at(&self, id: i32, topic: &str, partition: i32) -> Result<i64> {
        let node = &self.nodes[self.index_of(id)?];
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(-1),
                    ]),
            ]);
        let response = RawConnection::connect(node.kafka)?.call(&request, 7, 13)?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("ListOffsets answer without the partition")?;
        ensure!(
            p.error_code == 0,
            "ListOffsets {topic}/{partition} at node {id}: error {}",
            p.error_code
        );
        Ok(p.offset)
    }

    /// Sends one `acks=all` Produce (v8, one unkeyed record per value, no producer id) for
    /// `topic`/`partition` to node `id` itself, with the broker-side `timeout_ms`. `Ok(offset)`
    /// only when the node acknowledged it; an error code, a closed connection or no answer
    /// within 10 s are errors.
    pub fn produce_at(
        &self,
        id: i32,
        topic: &str,
        partition: i32,
        values: &[String],
        timeout_ms: i32,
    ) -> Result<i64> {
        let node = &self.nodes[self.index_of(id)?];
        let records: Vec<runnel_client::OutRecord> = values
            .iter()
            .map(|v| runnel_client::OutRecord {
                key: None,
                value: Some(bytes::Bytes::from(v.clone())),
                headers: Vec::new(),
                timestamp_ms: 0,
            })
            .collect();
        let batch = runnel_client::records::encode_batch(
            &records,
            runnel_client::records::BatchIdentity::NONE,
            runnel_client::Compression::None,
        )
        .map_err(|e| anyhow!("encoding a batch: {e}"))?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch)),
                    ]),
            ]);
        let response = RawConnection::connect(node.kafka)?.call(&request, 8, 14)?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .context("Produce answer without the partition")?;
        ensure!(
            p.error_code == 0,
            "Produce to {topic}/{partition} at node {id}: error {}",
            p.error_code
        );
        Ok(p.base_offset)
    }

    pub(super) fn wait_for_brokers(&mut self, count: usize) -> Result<()> {
        let expected: Vec<i32> = (1..=i32::try_from(count)?).collect();
        let ids = self.healthy_ids();
        let settle = self.options.settle;
        for id in ids {
            let mut last = None;
            wait_until(
                &format!("node {id} to list brokers {expected:?}"),
                settle,
                || {
                    let view = self.metadata_at(id, &[])?;
                    let ok = view.brokers == expected;
                    last = Some(view.brokers);
                    Ok(ok.then_some(()))
                },
            )
            .with_context(|| format!("last listed {last:?}\n{}", self.log_paths()))?;
        }
        Ok(())
    }
}
