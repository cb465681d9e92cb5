//! A cluster of real `runnel` processes for a test: n nodes (usually 3 voters, optionally more
//! non-voting brokers added later), each a [`Broker`] with its own data directory, Kafka listener
//! and Raft listener, configured through a `[cluster]` table (see `/work/cluster-plan.md`).
//!
//! Networking. As root, every node runs in its own network namespace (`ip netns exec NS runnel
//! …`, which execs, so the harness's pid is runnel's and kill -9 hits it), connected by a veth
//! pair to a Linux bridge in the root namespace; clients in the test process reach the nodes at
//! their `10.x.y.(i+1)` addresses through the bridge's `10.x.y.254`. That is plain L2 switching
//! between the veths and local delivery to the bridge: no forwarding, no iptables. It lets a
//! test
//! - [`Cluster::cut_off`] a node: its root-side veth goes down, so nobody reaches it and it
//!   reaches nobody (clients included) until [`Cluster::reconnect`];
//! - [`Cluster::isolate_from_peers`] a node: blackhole routes between it and every other node,
//!   in both directions, while clients in the root namespace still reach it (so a test can
//!   show that a stale leader accepts no `acks=all` write); [`Cluster::heal`] removes them.
//!
//! Without root, or when `ip netns add` fails (or `RUNNEL_CLUSTER_NETNS=0`, or
//! [`ClusterOptions::netns`] is false), the nodes run on 127.0.0.1 with reserved free ports
//! instead; [`Cluster::netns_unavailable`] then says why, and tests that need to cut a node off
//! skip with that reason.
//!
//! This is the one launcher of local clusters: the integration tests, the benchmark's
//! `cluster` scenario (its own binary, loopback, broker-default timings) and the admin GUI's
//! tests all start theirs here, choosing through [`ClusterOptions`].
//!
//! Invariants:
//! - names derive from the test process's pid and a per-process counter (`rb<pid>x<n>` bridge,
//!   `rv<pid>x<n>n<i>` veths, `runnel-<pid>x<n>-n<i>` namespaces; interface names stay within
//!   15 bytes), and each cluster gets its own `10.x.y.0/24`, so clusters of parallel tests and
//!   parallel test binaries never share a name or a subnet;
//! - `Drop` kills every node first, then deletes the namespaces (which deletes the veths) and
//!   the bridge, also while unwinding from a panic; namespaces left behind by a test process
//!   that died (SIGKILL) are removed by the next [`Cluster::start`];
//! - the node with index `i` has node id `i + 1`.
//!
//! Everything here blocks. Queries aimed at one node use plain sockets ([`super::raw`]), so a
//! test can ask *that* node (rdkafka would pick any broker).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientContext;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tempfile::TempDir;

use super::broker::{Broker, BrokerOptions};
use super::clients;
use super::groups;
use super::raw::{self, RawConnection};
use super::wait::wait_until;

/// Kafka listener port of every node in a namespace (each node has its own address).
const NETNS_KAFKA_PORT: u16 = 9092;
/// Raft listener port of every node in a namespace.
const NETNS_RAFT_PORT: u16 = 9093;
/// How long a node may take to start, or a leader to be elected, before a wait fails.
pub const SETTLE: Duration = Duration::from_secs(40);

/// A node's Kafka address, Raft address, and namespace with root-side veth (if namespaced).
type Placement = (SocketAddr, SocketAddr, Option<(String, String)>);

static CLUSTER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Timings and defaults of the cluster; [`ClusterOptions::default`] suits most tests.
///
/// A `None` timing or default leaves its line out of the `[cluster]` table, so the broker's
/// own default applies.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub session_timeout_ms: Option<u64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub replica_lag_time_max_ms: Option<u64>,
    pub min_insync_replicas: Option<i32>,
    pub default_replication_factor: Option<i16>,
    /// Extra lines appended to every node's `[cluster]` table.
    pub extra_cluster_toml: String,
    /// Flags for every node (e.g. the short group timings of [`groups::broker_options`]).
    pub flags: Vec<(String, String)>,
    /// Network namespaces when possible (see the module documentation); false: always
    /// 127.0.0.1.
    pub netns: bool,
    /// The broker binary; `None`: the one [`crate::runnel_bin`] finds.
    pub binary: Option<PathBuf>,
    /// How long a node may take to start, or a wait of the cluster's (brokers listed, a
    /// leader, a full ISR) may take, before it fails.
    pub settle: Duration,
}

impl ClusterOptions {
    /// Nodes on 127.0.0.1 with the broker's own timings and defaults and no extra flags.
    pub fn broker_defaults() -> Self {
        ClusterOptions {
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            replica_lag_time_max_ms: None,
            min_insync_replicas: None,
            default_replication_factor: None,
            extra_cluster_toml: String::new(),
            flags: Vec::new(),
            netns: false,
            binary: None,
            settle: SETTLE,
        }
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            session_timeout_ms: Some(1500),
            heartbeat_interval_ms: Some(250),
            replica_lag_time_max_ms: Some(3000),
            min_insync_replicas: Some(2),
            default_replication_factor: Some(3),
            extra_cluster_toml: String::new(),
            netns: true,
            binary: None,
            settle: SETTLE,
            flags: vec![
                (
                    "--group-initial-rebalance-delay-ms".into(),
                    groups::INITIAL_REBALANCE_DELAY_MS.to_string(),
                ),
                (
                    "--group-min-session-timeout-ms".into(),
                    groups::MIN_SESSION_TIMEOUT_MS.to_string(),
                ),
            ],
        }
    }
}

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

/// One node of the cluster.
#[derive(Debug)]
pub struct Node {
    pub id: i32,
    pub kafka: SocketAddr,
    pub raft: SocketAddr,
    pub voter: bool,
    broker: Broker,
    /// The namespace and the root-side veth, when networking is namespaced.
    ns: Option<(String, String)>,
    cut: bool,
    isolated: bool,
}

impl Node {
    /// `host:port` of the Kafka listener.
    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }
    /// Whether the process is alive (reaps it if it exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.broker.is_running().unwrap_or(false)
    }
    pub fn broker(&self) -> &Broker {
        &self.broker
    }
    /// kill -9.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.broker.kill9()
    }
    /// SIGTERM; fails unless the process exits successfully within 20 s.
    pub fn stop(&mut self) -> Result<()> {
        let status = self.broker.terminate()?;
        ensure!(
            status.success(),
            "node {} exited with {status} on SIGTERM",
            self.id
        );
        Ok(())
    }
    /// Starts the process again on the same data directory and addresses (stopping it
    /// gracefully first if it runs).
    pub fn restart(&mut self) -> Result<()> {
        self.broker
            .restart()
            .with_context(|| format!("restarting node {}", self.id))
    }
}

/// Network namespaces, veths and the bridge of one cluster. Dropped after the nodes.
#[derive(Debug)]
struct Net {
    tag: String,
    bridge: String,
    subnet: (u8, u8),
    namespaces: Vec<String>,
}

/// n `runnel` processes forming one cluster. See the module documentation.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: the processes go before their namespaces.
    nodes: Vec<Node>,
    net: Option<Net>,
    netns_unavailable: Option<String>,
    voters: Vec<String>,
    options: ClusterOptions,
    config_dir: TempDir,
}

impl Cluster {
    /// Starts `voters` voting nodes with [`ClusterOptions::default`] and waits until every
    /// node lists all of them in Metadata.
    pub fn start(voters: usize) -> Result<Cluster> {
        Cluster::start_with(voters, ClusterOptions::default())
    }

    /// [`Cluster::start`] with explicit options.
    pub fn start_with(voters: usize, options: ClusterOptions) -> Result<Cluster> {
        ensure!((1..=9).contains(&voters), "1 to 9 voters, not {voters}");
        let counter = CLUSTER_COUNTER.fetch_add(1, Ordering::SeqCst);
        let (net, netns_unavailable) = if options.netns {
            match Net::create(counter) {
                Ok(net) => (Some(net), None),
                Err(error) => {
                    let reason = format!("{error:#}");
                    eprintln!(
                        "cluster: network namespaces unavailable ({reason}); using 127.0.0.1"
                    );
                    (None, Some(reason))
                }
            }
        } else {
            (None, Some("ClusterOptions::netns is false".to_owned()))
        };
        let config_dir = tempfile::Builder::new()
            .prefix("runnel-cluster-")
            .tempdir()
            .context("creating the cluster's config directory")?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            net,
            netns_unavailable,
            voters: Vec::new(),
            options,
            config_dir,
        };
        let mut planned = Vec::new();
        for index in 0..voters {
            let (kafka, raft, ns) = cluster.allocate(index)?;
            cluster.voters.push(format!("{}@{raft}", index + 1));
            planned.push((index, kafka, raft, ns));
        }
        // In parallel: a node may not open its Kafka listener before the quorum has a leader.
        let started: Vec<Result<Node>> = thread::scope(|scope| {
            let handles: Vec<_> = planned
                .into_iter()
                .map(|(index, kafka, raft, ns)| {
                    let cluster = &cluster;
                    scope.spawn(move || cluster.spawn_node(index, kafka, raft, ns, true))
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
        let mut first_error = None;
        for node in started {
            match node {
                Ok(node) => cluster.nodes.push(node),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        cluster.wait_for_brokers(voters)?;
        Ok(cluster)
    }

    /// Adds a non-voting broker (the next node id) and waits until every node lists it.
    pub fn add_node(&mut self) -> Result<usize> {
        let index = self.nodes.len();
        let (kafka, raft, ns) = self.allocate(index)?;
        let node = self.spawn_node(index, kafka, raft, ns, false)?;
        self.nodes.push(node);
        self.wait_for_brokers(self.nodes.len())?;
        Ok(index)
    }

    /// Why nodes run on 127.0.0.1 instead of in namespaces; `None` when namespaced.
    pub fn netns_unavailable(&self) -> Option<&str> {
        self.netns_unavailable.as_deref()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node with index `i` (node id `i + 1`).
    pub fn node(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// The index of node `id`.
    pub fn index_of(&self, id: i32) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("no node has id {id}"))
    }

    /// The node with node id `id`.
    pub fn node_by_id(&mut self, id: i32) -> Result<&mut Node> {
        let index = self.index_of(id)?;
        Ok(&mut self.nodes[index])
    }

    /// Every node's Kafka listener, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node ids whose process runs and that are neither cut off nor isolated: the nodes
    /// whose answers reflect the majority's state.
    pub fn healthy_ids(&mut self) -> Vec<i32> {
        self.nodes
            .iter_mut()
            .filter_map(|n| (!n.cut && !n.isolated && n.is_running()).then_some(n.id))
            .collect()
    }

    /// Node ids that are running and reachable from the test (not cut off).
    pub fn reachable_ids(&mut self) -> Vec<i32> {
        self.nodes
            .iter_mut()
            .filter_map(|n| (!n.cut && n.is_running()).then_some(n.id))
            .collect()
    }

    /// Where every node's log is, for failure messages.
    pub fn log_paths(&self) -> String {
        self.node_logs(None)
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        self.node_logs(Some(lines))
    }

    fn node_logs(&self, tail: Option<usize>) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let path = node.broker.log_path().display();
            let _ = match tail {
                None => writeln!(out, "node {} ({}): {path}", node.id, node.kafka),
                Some(lines) => writeln!(
                    out,
                    "--- node {} ({}), {path} ---\n{}",
                    node.id,
                    node.kafka,
                    node.broker.log_tail(lines)
                ),
            };
        }
        out
    }

    // ----- network faults -----

    /// Takes node `i` off the network: its root-side veth goes down.
    pub fn cut_off(&mut self, i: usize) -> Result<()> {
        let veth = self.veth(i)?;
        ip(&["link", "set", &veth, "down"])?;
        self.nodes[i].cut = true;
        Ok(())
    }

    /// Undoes [`Cluster::cut_off`].
    pub fn reconnect(&mut self, i: usize) -> Result<()> {
        let veth = self.veth(i)?;
        ip(&["link", "set", &veth, "up"])?;
        self.nodes[i].cut = false;
        Ok(())
    }

    /// Blackhole routes between node `i` and every other node (both directions); clients in
    /// the root namespace still reach it.
    pub fn isolate_from_peers(&mut self, i: usize) -> Result<()> {
        self.peer_routes(i, "add")?;
        self.nodes[i].isolated = true;
        Ok(())
    }

    /// Undoes [`Cluster::isolate_from_peers`].
    pub fn heal(&mut self, i: usize) -> Result<()> {
        self.peer_routes(i, "del")?;
        self.nodes[i].isolated = false;
        Ok(())
    }

    fn peer_routes(&self, i: usize, op: &str) -> Result<()> {
        self.veth(i)?;
        let me = &self.nodes[i];
        let (my_ns, _) = me.ns.as_ref().context("not namespaced")?;
        for other in self.nodes.iter().filter(|n| n.id != me.id) {
            let (other_ns, _) = other.ns.as_ref().context("not namespaced")?;
            let other_ip = format!("{}/32", other.kafka.ip());
            let my_ip = format!("{}/32", me.kafka.ip());
            ip(&["-n", my_ns, "route", op, "blackhole", &other_ip])?;
            ip(&["-n", other_ns, "route", op, "blackhole", &my_ip])?;
        }
        Ok(())
    }

    fn veth(&self, i: usize) -> Result<String> {
        if let Some(reason) = &self.netns_unavailable {
            bail!("nodes are not in network namespaces: {reason}");
        }
        let node = self.nodes.get(i).with_context(|| format!("no node {i}"))?;
        Ok(node
            .ns
            .as_ref()
            .context("node without namespace")?
            .1
            .clone())
    }

    // ----- queries -----

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

    fn wait_for_brokers(&mut self, count: usize) -> Result<()> {
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

    // ----- rolling leadership: compare every replica's copy -----

    /// Compares every replica's copy of `topic` (partitions `0..partitions`, which must be
    /// quiet: nothing produced while this runs).
    ///
    /// Only a partition's leader serves reads, so each node's copy is read while that node
    /// leads: read every partition from its current leader (the whole log up to the high
    /// watermark, checking the leader did not change meanwhile), remember which node's copy
    /// was read, then gracefully stop the leader of a partition that still has unread
    /// replicas, wait for a new leader, restart the stopped node and wait for a full ISR
    /// again; repeat until every replica's copy of every partition has been read (at most
    /// `6 × nodes` rounds). The copies must be identical record for record (offset, key,
    /// value); so are their high watermarks. A replica whose log diverged shows as soon as
    /// it leads. Requires a full ISR on entry; leaves the cluster with one.
    pub fn compare_replicas(&mut self, topic: &str, partitions: i32) -> Result<()> {
        type Copy = Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)>;
        let mut reference: BTreeMap<i32, (i32, Copy)> = BTreeMap::new();
        let mut read: BTreeSet<(i32, i32)> = BTreeSet::new();
        let mut wanted: BTreeSet<(i32, i32)> = BTreeSet::new();
        self.wait_for_full_isr_all(topic, partitions)?;
        for partition in 0..partitions {
            for replica in self.partition_state(topic, partition)?.replicas {
                wanted.insert((partition, replica));
            }
        }
        let max_rounds = 6 * self.nodes.len();
        for round in 0..=max_rounds {
            let leaders: BTreeMap<i32, i32> = (0..partitions)
                .map(|p| Ok((p, self.wait_for_leader(topic, p)?)))
                .collect::<Result<_>>()?;
            let records = clients::consume_all(&self.bootstrap(), topic, SETTLE)?;
            let after: BTreeMap<i32, i32> = (0..partitions)
                .map(|p| Ok((p, self.wait_for_leader(topic, p)?)))
                .collect::<Result<_>>()?;
            if after != leaders {
                continue;
            }
            for (partition, leader) in &leaders {
                let copy: Copy = records
                    .iter()
                    .filter(|r| r.partition == *partition)
                    .map(|r| (r.offset, r.key.clone(), r.value.clone()))
                    .collect();
                match reference.get(partition) {
                    None => {
                        reference.insert(*partition, (*leader, copy));
                    }
                    Some((first, expected)) => {
                        if *expected != copy {
                            let diverged = expected
                                .iter()
                                .zip(&copy)
                                .find(|(a, b)| a != b)
                                .map(|(a, b)| format!("{a:?} vs {b:?}"))
                                .unwrap_or_else(|| "one is a prefix of the other".into());
                            bail!(
                                "{topic}/{partition}: node {leader}'s copy ({} records, ends at \
                                 {:?}) differs from node {first}'s ({} records, ends at {:?}); \
                                 first difference: {diverged}\n{}",
                                copy.len(),
                                copy.last().map(|r| r.0),
                                expected.len(),
                                expected.last().map(|r| r.0),
                                self.log_paths()
                            );
                        }
                    }
                }
                read.insert((*partition, *leader));
            }
            let unread: Vec<(i32, i32)> = wanted.difference(&read).copied().collect();
            let Some(&(partition, _)) = unread.first() else {
                eprintln!(
                    "compare_replicas({topic}): {} copies identical after {round} leader moves",
                    read.len()
                );
                return Ok(());
            };
            if round == max_rounds {
                break;
            }
            let leader = leaders[&partition];
            let index = self.index_of(leader)?;
            self.nodes[index].stop()?;
            for p in 0..partitions {
                self.wait_for_leader(topic, p)?;
            }
            self.nodes[index].restart()?;
            self.wait_for_full_isr_all(topic, partitions)?;
        }
        bail!(
            "compare_replicas({topic}): copies read {read:?}, wanted {wanted:?}, after \
             {max_rounds} leader moves (all that were read are identical)"
        )
    }

    // ----- node set-up -----

    fn allocate(&self, index: usize) -> Result<Placement> {
        match &self.net {
            Some(net) => {
                let (ns, veth, ip) = net.add_node(index)?;
                Ok((
                    SocketAddr::V4(SocketAddrV4::new(ip, NETNS_KAFKA_PORT)),
                    SocketAddr::V4(SocketAddrV4::new(ip, NETNS_RAFT_PORT)),
                    Some((ns, veth)),
                ))
            }
            None => Ok((free_port()?, free_port()?, None)),
        }
    }

    fn spawn_node(
        &self,
        index: usize,
        kafka: SocketAddr,
        raft: SocketAddr,
        ns: Option<(String, String)>,
        voter: bool,
    ) -> Result<Node> {
        let id = i32::try_from(index + 1)?;
        let o = &self.options;
        let voters = self
            .voters
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut config = format!(
            "[server]\nnode_id = {id}\nlisten = \"{kafka}\"\n\n[cluster]\nlisten = \"{raft}\"\n\
             voters = [{voters}]\n"
        );
        let settings = [
            (
                "session_timeout_ms",
                o.session_timeout_ms.map(|v| v.to_string()),
            ),
            (
                "heartbeat_interval_ms",
                o.heartbeat_interval_ms.map(|v| v.to_string()),
            ),
            (
                "replica_lag_time_max_ms",
                o.replica_lag_time_max_ms.map(|v| v.to_string()),
            ),
            (
                "min_insync_replicas",
                o.min_insync_replicas.map(|v| v.to_string()),
            ),
            (
                "default_replication_factor",
                o.default_replication_factor.map(|v| v.to_string()),
            ),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                let _ = writeln!(config, "{key} = {value}");
            }
        }
        let _ = writeln!(config, "{}", o.extra_cluster_toml);
        let config_path: PathBuf = self.config_dir.path().join(format!("node{id}.toml"));
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut options = BrokerOptions::new()
            .listen(kafka.to_string())
            .flag("--config", config_path.display())
            .startup_timeout(o.settle);
        if let Some(binary) = &o.binary {
            options = options.binary(binary);
        }
        for (flag, value) in &o.flags {
            options = options.flag(flag, value);
        }
        if let Some((namespace, _)) = &ns {
            options = options.launcher("ip", ["netns", "exec", namespace.as_str()]);
        }
        let broker =
            Broker::start(options).with_context(|| format!("starting node {id} at {kafka}"))?;
        Ok(Node {
            id,
            kafka,
            raft,
            voter,
            broker,
            ns,
            cut: false,
            isolated: false,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Each Broker prints its own log tail; this says which node each one was.
        eprint!("--- cluster nodes ---\n{}", self.log_paths());
        // Kill all first, so no node logs errors about the others for the whole teardown.
        for node in &mut self.nodes {
            if node.is_running() {
                let _ = node.kill9();
            }
        }
    }
}

impl Net {
    /// A bridge with `10.x.y.254/24` for this cluster; namespaces come with [`Net::add_node`].
    fn create(counter: u32) -> Result<Net> {
        if std::env::var("RUNNEL_CLUSTER_NETNS").is_ok_and(|v| v == "0") {
            bail!("RUNNEL_CLUSTER_NETNS=0");
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        ensure!(euid == 0, "not root (euid {euid})");
        remove_stale();
        let pid = std::process::id();
        let tag = format!("{pid:x}x{counter:x}");
        let bridge = format!("rb{tag}");
        ensure!(bridge.len() <= 11, "tag {tag} too long");
        let subnet = pick_subnet(pid, counter)?;
        // Probe: can this process create namespaces at all?
        let mut net = Net {
            tag,
            bridge,
            subnet,
            namespaces: Vec::new(),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        let address = format!("10.{}.{}.254/24", subnet.0, subnet.1);
        ip(&["addr", "add", &address, "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        // A namespace now, so a failure shows before any node is planned.
        let probe = format!("runnel-{}-probe", net.tag);
        ip(&["netns", "add", &probe])?;
        net.namespaces.push(probe);
        Ok(net)
    }

    /// Namespace, root-side veth and address of node `index`.
    fn add_node(&self, index: usize) -> Result<(String, String, Ipv4Addr)> {
        ensure!(index < 200, "too many nodes");
        let ns = format!("runnel-{}-n{index}", self.tag);
        let veth = format!("rv{}n{index}", self.tag);
        ensure!(veth.len() <= 15, "interface name {veth} too long");
        let ip_addr = Ipv4Addr::new(10, self.subnet.0, self.subnet.1, u8::try_from(index + 1)?);
        ip(&["netns", "add", &ns])?;
        // Record it at once so Drop removes it even if the rest fails.
        NET_NAMESPACES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns.clone());
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok((ns, veth, ip_addr))
    }
}

/// Namespaces created by [`Net::add_node`] (the `Net` itself is shared immutably while nodes
/// start in parallel); `Net::drop` removes those with its tag.
static NET_NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Drop for Net {
    fn drop(&mut self) {
        let prefix = format!("runnel-{}-", self.tag);
        let mut ours: Vec<String> = std::mem::take(&mut self.namespaces);
        {
            let mut all = NET_NAMESPACES.lock().unwrap_or_else(|p| p.into_inner());
            ours.extend(all.iter().filter(|n| n.starts_with(&prefix)).cloned());
            all.retain(|n| !n.starts_with(&prefix));
        }
        for ns in ours {
            remove_namespace(&ns);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Kills whatever still runs in `ns` and deletes it (with the veth end inside, which takes
/// its peer along).
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                // SAFETY: kill(2) with integer arguments; the pid runs in our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Removes namespaces and bridges of test processes that no longer exist.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let mut dead_tags = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("runnel-") else {
            continue;
        };
        let Some((tag, _)) = rest.split_once('-') else {
            continue;
        };
        let Some((pid_hex, _)) = tag.split_once('x') else {
            continue;
        };
        let Ok(pid) = u32::from_str_radix(pid_hex, 16) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(&name);
            dead_tags.insert(tag.to_owned());
        }
    }
    for tag in dead_tags {
        let _ = ip(&["link", "del", &format!("rb{tag}")]);
    }
}

/// A `10.x.y.0/24` no interface of the root namespace uses yet, derived from pid and counter.
fn pick_subnet(pid: u32, counter: u32) -> Result<(u8, u8)> {
    let used = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .context("running ip addr show")?;
    let used = String::from_utf8_lossy(&used.stdout).into_owned();
    let mut h = u64::from(pid)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(counter).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    for _ in 0..64 {
        h ^= h >> 29;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        let x = 64 + u8::try_from((h >> 8) % 180)?;
        let y = u8::try_from((h >> 24) % 256)?;
        if !used.contains(&format!("inet 10.{x}.{y}.")) {
            return Ok((x, y));
        }
    }
    bail!("no free 10.x.y.0/24 found")
}

/// Runs `ip ARGS…`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A free loopback port (bound, then released: another process could take it, rarely).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("reserving a loopback port")?;
    Ok(listener.local_addr()?)
}

// ----- a continuous acks=all producer that records what was acknowledged -----

/// A record the cluster acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub key: String,
    pub value: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Default)]
struct DeliveryLog {
    acked: Mutex<Vec<Acked>>,
    /// (value, error) of records that were not delivered.
    failed: Mutex<Vec<(String, String)>>,
    acked_count: AtomicU64,
}

/// Records every delivery report.
#[derive(Debug, Default, Clone)]
pub struct RecordingContext {
    log: Arc<DeliveryLog>,
}

impl ClientContext for RecordingContext {}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        match result {
            Ok(message) => {
                self.log
                    .acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Acked {
                        key: text(message.key()),
                        value: text(message.payload()),
                        partition: message.partition(),
                        offset: message.offset(),
                    });
                self.log.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            Err((error, message)) => self
                .log
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((text(message.payload()), error.to_string())),
        }
    }
}

/// What a [`ProduceLoop`] did.
#[derive(Debug, Default)]
pub struct ProduceReport {
    pub sent: u64,
    pub acked: Vec<Acked>,
    pub failed: Vec<(String, String)>,
    /// Records still neither acknowledged nor failed when the loop gave up flushing.
    pub unresolved: usize,
    /// librdkafka's fatal error (idempotence broken), if any.
    pub fatal: Option<String>,
}

/// An idempotent `acks=all` producer sending `key=k-TAG-SEQ`, `value=v-TAG-SEQ` round robin
/// over partitions `0..partitions`, at most `rate` records per second, on its own thread,
/// until [`ProduceLoop::stop`].
#[derive(Debug)]
pub struct ProduceLoop {
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<DeliveryLog>,
    thread: Option<JoinHandle<ProduceReport>>,
}

impl ProduceLoop {
    /// `overrides` win over the defaults (`acks=all`, `enable.idempotence=true`,
    /// `message.timeout.ms=30000`, `request.timeout.ms=5000`, `socket.timeout.ms=5000`,
    /// `linger.ms=5`).
    pub fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        tag: &str,
        rate: u32,
        overrides: &[(&str, &str)],
    ) -> Result<ProduceLoop> {
        let mut config = clients::base_config(bootstrap);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .set("request.timeout.ms", "5000")
            // The client-side deadline of a request (else min(60 s, message timeout)): a
            // request in flight to a node that was cut off must fail over within seconds.
            .set("socket.timeout.ms", "5000")
            .set("retry.backoff.ms", "50")
            .set("linger.ms", "5");
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        let context = RecordingContext::default();
        let log = Arc::clone(&context.log);
        let producer: ThreadedProducer<RecordingContext> = config
            .create_with_context(context)
            .context("creating the produce loop's producer")?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let topic = topic.to_owned();
            let tag = tag.to_owned();
            let log = Arc::clone(&log);
            thread::spawn(move || run_loop(&producer, &topic, partitions, &tag, rate, &stop, &log))
        };
        Ok(ProduceLoop {
            stop,
            log,
            thread: Some(thread),
        })
    }

    pub fn acked_count(&self) -> u64 {
        self.log.acked_count.load(Ordering::SeqCst)
    }

    /// Waits until more than `count` records are acknowledged in total.
    pub fn wait_for_acks_beyond(&self, count: u64, timeout: Duration) -> Result<u64> {
        wait_until(
            &format!("more than {count} acknowledged records"),
            timeout,
            || {
                let now = self.acked_count();
                if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                    bail!("the produce loop ended after {now} acknowledgements");
                }
                Ok((now > count).then_some(now))
            },
        )
    }

    /// Stops sending, waits (up to 45 s, longer than `message.timeout.ms`) for every
    /// outstanding delivery report and returns the report.
    pub fn stop(mut self) -> Result<ProduceReport> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().context("stopped twice")?;
        let mut report = thread
            .join()
            .map_err(|_| anyhow!("the produce loop panicked"))?;
        report.acked =
            std::mem::take(&mut *self.log.acked.lock().unwrap_or_else(|p| p.into_inner()));
        report.failed =
            std::mem::take(&mut *self.log.failed.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(report)
    }
}

impl Drop for ProduceLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How long [`ProduceLoop`] waits for outstanding deliveries once stopped: longer than
/// `message.timeout.ms`, so every record ends acknowledged or failed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(45);

fn run_loop(
    producer: &ThreadedProducer<RecordingContext>,
    topic: &str,
    partitions: i32,
    tag: &str,
    rate: u32,
    stop: &std::sync::atomic::AtomicBool,
    log: &DeliveryLog,
) -> ProduceReport {
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut fatal = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            fatal = Some(format!("{code:?}: {reason}"));
            break;
        }
        if seq as f64 >= started.elapsed().as_secs_f64() * f64::from(rate) {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let key = format!("k-{tag}-{seq:08}");
        let value = format!("v-{tag}-{seq:08}");
        let partition =
            i32::try_from(seq % u64::from(partitions.unsigned_abs().max(1))).unwrap_or(0);
        let record = BaseRecord::to(topic)
            .key(key.to_bytes())
            .payload(value.to_bytes())
            .partition(partition);
        match producer.send(record) {
            Ok(()) => seq += 1,
            Err((
                rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                _,
            )) => {
                thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => {
                log.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((value, format!("enqueue: {error}")));
                seq += 1;
            }
        }
    }
    let _ = producer.flush(FLUSH_TIMEOUT);
    if fatal.is_none()
        && let Some((code, reason)) = producer.client().fatal_error()
    {
        fatal = Some(format!("{code:?}: {reason}"));
    }
    ProduceReport {
        sent: seq,
        acked: Vec::new(),
        failed: Vec::new(),
        unresolved: usize::try_from(producer.in_flight_count()).unwrap_or(0),
        fatal,
    }
}

/// Reads the whole topic and checks the report against it: every acknowledged record is
/// stored exactly once, at its acknowledged partition and offset, and no record of `tag` is
/// stored twice. Returns how many records of `tag` are stored.
pub fn verify_acked_exactly_once(
    bootstrap: &str,
    topic: &str,
    tag: &str,
    report: &ProduceReport,
) -> Result<usize> {
    ensure!(
        report.fatal.is_none(),
        "the idempotent producer hit a fatal error: {:?}",
        report.fatal
    );
    let records = clients::consume_all(bootstrap, topic, Duration::from_secs(120))?;
    let prefix = format!("v-{tag}-");
    let mut stored: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for r in &records {
        let value = r.value_str();
        if value.starts_with(&prefix) {
            stored
                .entry(value)
                .or_default()
                .push((r.partition, r.offset));
        }
    }
    let mut problems = Vec::new();
    for (value, places) in &stored {
        if places.len() > 1 {
            problems.push(format!(
                "{value} stored {} times at {places:?}",
                places.len()
            ));
        }
    }
    for acked in &report.acked {
        match stored.get(&acked.value).map(Vec::as_slice) {
            None => problems.push(format!(
                "{} acknowledged at {}/{} is missing",
                acked.value, acked.partition, acked.offset
            )),
            Some([(p, o)]) if (*p, *o) != (acked.partition, acked.offset) => {
                problems.push(format!(
                    "{} acknowledged at {}/{} is stored at {p}/{o}",
                    acked.value, acked.partition, acked.offset
                ));
            }
            Some(_) => {}
        }
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, reason) in &report.failed {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    let failed_stored = report
        .failed
        .iter()
        .filter(|(value, _)| stored.contains_key(value))
        .count();
    eprintln!(
        "verify({topic}, {tag}): sent {}, acknowledged {}, failed {} ({failed_stored} of them \
         stored anyway; from {:?} to {:?}; reasons {reasons:?}), unresolved {}, stored {}",
        report.sent,
        report.acked.len(),
        report.failed.len(),
        report.failed.iter().map(|f| &f.0).min(),
        report.failed.iter().map(|f| &f.0).max(),
        report.unresolved,
        stored.len()
    );
    ensure!(
        problems.is_empty(),
        "{} problems among {} acknowledged records ({} stored); first ones:\n{}",
        problems.len(),
        report.acked.len(),
        stored.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(stored.len())
}
