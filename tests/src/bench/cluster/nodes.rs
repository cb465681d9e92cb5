//! Three fresh `runnel` processes on 127.0.0.1 forming one cluster, for the `cluster`
//! scenario: the bench's broker binary and log level, fixed loopback ports (a node keeps its
//! addresses across a restart, as the cluster registered them), and a data directory per node
//! that survives [`Nodes::kill9`] and [`Nodes::restart`].
//!
//! The processes are the integration harness's [`Broker`]s (log file per node, SIGKILL in
//! `Drop`), not its `Cluster`: that one runs the debug binary unless `RUNNEL_BIN` is set, and
//! puts nodes into network namespaces when run as root. Partition state is read with a raw
//! Metadata request to each running node, so "agreed" means every live node says the same.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::raw::RawConnection;
use runnel_tests::{Broker, BrokerOptions, clients};
use tempfile::TempDir;

use super::super::broker::BrokerSpec;

/// Voters of the bench cluster.
pub const NODES: usize = 3;
/// Replication factor and `min.insync.replicas` of every topic the scenario creates.
pub const REPLICATION_FACTOR: i32 = 3;
pub const MIN_INSYNC_REPLICAS: i32 = 2;
/// Lines of each node's log shown when something fails.
const LOG_TAIL_LINES: usize = 30;
/// Metadata poll interval while waiting for a partition state.
const POLL: Duration = Duration::from_millis(20);

/// A partition as every running node describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionView {
    pub fn full_isr(&self) -> bool {
        let isr: BTreeSet<_> = self.isr.iter().collect();
        let replicas: BTreeSet<_> = self.replicas.iter().collect();
        self.leader >= 0 && self.replicas.len() == NODES && isr == replicas
    }
}

struct Node {
    id: i32,
    kafka: SocketAddr,
    broker: Broker,
    /// False between [`Nodes::kill9`] and [`Nodes::restart`].
    up: bool,
}

/// The cluster's processes; every one is killed when this is dropped.
pub struct Nodes {
    nodes: Vec<Node>,
    _config_dir: TempDir,
}

impl Nodes {
    /// Starts [`NODES`] voters in parallel (none opens its Kafka listener before the quorum
    /// has a leader) and waits until each lists all of them.
    pub fn start(spec: &BrokerSpec, timeout: Duration) -> anyhow::Result<Nodes> {
        ensure!(
            spec.bin.is_file(),
            "broker binary {} not found: build it with `cargo build --release -p runnel-broker`",
            spec.bin.display()
        );
        let config_dir = tempfile::Builder::new()
            .prefix("runnel-bench-cluster-")
            .tempdir()
            .context("creating the cluster's config directory")?;
        let mut addrs = Vec::new();
        for id in 1..=NODES {
            let kafka: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let raft: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            addrs.push((i32::try_from(id)?, kafka, raft));
        }
        let voters = addrs
            .iter()
            .map(|(id, _, raft)| format!("\"{id}@{raft}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut options = Vec::new();
        for (id, kafka, raft) in &addrs {
            let config = format!(
                "[server]\nnode_id = {id}\nlisten = \"{kafka}\"\n\n[cluster]\nlisten = \"{raft}\"\n\
                 voters = [{voters}]\ndefault_replication_factor = {REPLICATION_FACTOR}\n\
                 min_insync_replicas = {MIN_INSYNC_REPLICAS}\n"
            );
            let path = config_dir.path().join(format!("node{id}.toml"));
            fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
            let node = BrokerOptions::new()
                .binary(&spec.bin)
                .listen(kafka.to_string())
                .flag("--config", path.display())
                .flag("--log-level", &spec.log_level)
                .flag("--auto-create-topics", "true")
                .flag("--default-partitions", spec.partitions)
                .startup_timeout(timeout);
            options.push((*id, *kafka, node));
        }
        let started: Vec<anyhow::Result<Node>> = thread::scope(|scope| {
            let handles: Vec<_> = options
                .into_iter()
                .map(|(id, kafka, options)| {
                    scope.spawn(move || {
                        let broker = Broker::start(options)
                            .with_context(|| format!("starting cluster node {id} at {kafka}"))?;
                        Ok(Node {
                            id,
                            kafka,
                            broker,
                            up: true,
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("node start panicked")))
                })
                .collect()
        });
        let mut nodes = Vec::new();
        for node in started {
            nodes.push(node?);
        }
        let nodes = Nodes {
            nodes,
            _config_dir: config_dir,
        };
        nodes.wait_for_brokers(timeout)?;
        Ok(nodes)
    }

    /// Every node's Kafka listener, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.kafka.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL to node `id`.
    pub fn kill9(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        node.broker.kill9()?;
        node.up = false;
        Ok(())
    }

    /// Starts node `id` again on its data directory and addresses.
    pub fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        node.broker.restart()?;
        node.up = true;
        Ok(())
    }

    /// Fails, with every node's log tail, if a node that should run has exited.
    pub fn ensure_running(&mut self, during: &str) -> anyhow::Result<()> {
        let mut dead = Vec::new();
        for node in &mut self.nodes {
            if node.up && !node.broker.is_running().unwrap_or(false) {
                dead.push(node.id);
            }
        }
        if !dead.is_empty() {
            bail!(
                "cluster node(s) {dead:?} died during {during}\n{}",
                self.log_tails()
            );
        }
        Ok(())
    }

    /// The last lines of every node's log, for error messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let _ = writeln!(
                out,
                "--- node {} ({}), {} ---\n{}",
                node.id,
                node.kafka,
                node.broker.log_path().display(),
                node.broker.log_tail(LOG_TAIL_LINES)
            );
        }
        out
    }

    /// Creates `topic` with [`REPLICATION_FACTOR`] and [`MIN_INSYNC_REPLICAS`], then waits
    /// until every node reports a leader and the full ISR.
    pub fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let admin = clients::admin(&self.bootstrap())?;
        let min_isr = MIN_INSYNC_REPLICAS.to_string();
        let new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(REPLICATION_FACTOR),
        )
        .set("min.insync.replicas", &min_isr);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a runtime for the admin client")?;
        let results = runtime
            .block_on(admin.create_topics([&new], &clients::admin_options()))
            .with_context(|| format!("CreateTopics {topic}"))?;
        match results.as_slice() {
            [Ok(_)] => {}
            [Err((_, code))] => bail!("CreateTopics {topic} failed: {code:?}"),
            other => bail!("CreateTopics {topic}: unexpected results {other:?}"),
        }
        for partition in 0..partitions {
            self.wait_for(
                topic,
                partition,
                "a full ISR",
                timeout,
                PartitionView::full_isr,
            )?;
        }
        Ok(())
    }

    /// Polls the running nodes until they agree on a state of `topic`/`partition` that
    /// `accept` takes, and returns it.
    pub fn wait_for(
        &mut self,
        topic: &str,
        partition: i32,
        what: &str,
        timeout: Duration,
        mut accept: impl FnMut(&PartitionView) -> bool,
    ) -> anyhow::Result<PartitionView> {
        let start = Instant::now();
        loop {
            let last = match self.agreed(topic, partition) {
                Ok(Some(view)) if accept(&view) => return Ok(view),
                Ok(view) => format!("{view:?}"),
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() >= timeout {
                bail!(
                    "no {what} of {topic}/{partition} on every running node within {timeout:?}; \
                     last: {last}\n{}",
                    self.log_tails()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The partition as every running node describes it; `None` while they disagree or it
    /// has an error.
    pub fn agreed(&self, topic: &str, partition: i32) -> anyhow::Result<Option<PartitionView>> {
        let mut agreed: Option<PartitionView> = None;
        for node in self.nodes.iter().filter(|n| n.up) {
            let Some(view) = partition_at(node.kafka, topic, partition)? else {
                return Ok(None);
            };
            match &agreed {
                None => agreed = Some(view),
                Some(a) if *a == view => {}
                Some(_) => return Ok(None),
            }
        }
        Ok(agreed)
    }

    fn wait_for_brokers(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        for node in &self.nodes {
            loop {
                match brokers_at(node.kafka) {
                    Ok(n) if n == NODES => break,
                    Ok(_) | Err(_) if start.elapsed() < timeout => thread::sleep(POLL),
                    Ok(n) => bail!(
                        "node {} lists {n} brokers, not {NODES}, after {timeout:?}\n{}",
                        node.id,
                        self.log_tails()
                    ),
                    Err(e) => return Err(e.context(self.log_tails())),
                }
            }
        }
        Ok(())
    }

    fn node_mut(&mut self, id: i32) -> anyhow::Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no cluster node {id}"))
    }
}

fn metadata_request(topic: Option<&str>) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(topic.map(|t| {
            vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.to_owned())))),
            ]
        }))
        .with_allow_auto_topic_creation(false)
}

fn brokers_at(addr: SocketAddr) -> anyhow::Result<usize> {
    let response = RawConnection::connect(addr)?.call(&metadata_request(None), 12, 1)?;
    Ok(response.brokers.len())
}

/// Node `addr`'s view of one partition; `None` when it has an error or is missing.
fn partition_at(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<PartitionView>> {
    let response = RawConnection::connect(addr)
        .and_then(|mut c| c.call(&metadata_request(Some(topic)), 12, 2))
        .with_context(|| format!("Metadata for {topic} from {addr}"))?;
    let view = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition && p.error_code == 0)
        .map(|p| PartitionView {
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        });
    Ok(view)
}
