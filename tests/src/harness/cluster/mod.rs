//! A cluster of real `runnel` processes for a test: n nodes (usually 3 voters, optionally more
//! non-voting brokers added later), each a [`Broker`](super::broker::Broker) with its own data
//! directory, Kafka listener and Raft listener, configured through a `[cluster]` table (see
//! `/work/cluster-plan.md`).
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

mod compare;
mod net;
mod node;
mod options;
mod produce_loop;
mod queries;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use tempfile::TempDir;

use net::Net;

pub use node::Node;
pub use options::ClusterOptions;
pub use produce_loop::{
    Acked, ProduceLoop, ProduceReport, RecordingContext, verify_acked_exactly_once,
};
pub use queries::{MetadataView, PartitionState};

/// How long a node may take to start, or a leader to be elected, before a wait fails.
pub const SETTLE: Duration = Duration::from_secs(40);

static CLUSTER_COUNTER: AtomicU32 = AtomicU32::new(0);

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
