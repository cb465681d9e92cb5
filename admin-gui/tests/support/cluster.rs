//! A cluster of real `runnel` processes for the GUI tests: `n` voters on 127.0.0.1, each a
//! [`Broker`] (the binary found as `runnel_tests` finds it, its own fresh data directory, its
//! log kept and shown when a test fails) configured through a `[cluster]` table.
//!
//! Invariants:
//! - the node with index `i` has node id `i + 1`;
//! - every node keeps its Kafka and Raft ports for its whole life, so a node restarted after
//!   [`Cluster::kill9`] comes back at the address the others (and the GUI) know;
//! - `Drop` kills every node (SIGKILL) before any log is printed, also while unwinding from a
//!   panic; each [`Broker`] reaps its own process.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use runnel_client::{Client, ClientConfig, ClusterDescription};
use runnel_tests::{Broker, BrokerOptions, wait_until};
use tempfile::TempDir;

/// How long a node may take to listen, and the cluster to list every node.
const SETTLE: Duration = Duration::from_secs(30);

/// One node: its id, where clients reach it, and its process.
#[derive(Debug)]
pub struct Node {
    pub id: i32,
    pub kafka: SocketAddr,
    pub raft: SocketAddr,
    broker: Broker,
}

/// `n` voting nodes forming one cluster.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    /// Holds each node's TOML config.
    _config_dir: TempDir,
}

impl Cluster {
    /// Starts `voters` nodes (all at once: none can finish starting alone) and waits until
    /// DescribeCluster lists every one of them, unfenced.
    pub fn start(voters: usize) -> Result<Cluster> {
        ensure!((1..=9).contains(&voters), "1 to 9 voters, not {voters}");
        let config_dir = tempfile::Builder::new()
            .prefix("runnel-gui-cluster-")
            .tempdir()
            .context("creating the config directory")?;
        let mut placements = Vec::with_capacity(voters);
        for _ in 0..voters {
            placements.push((free_port()?, free_port()?));
        }
        let voter_list = placements
            .iter()
            .enumerate()
            .map(|(i, (_, raft))| format!("\"{}@{raft}\"", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let mut options = Vec::with_capacity(voters);
        for (i, (kafka, raft)) in placements.iter().enumerate() {
            let path = config_dir.path().join(format!("node{}.toml", i + 1));
            let config = format!(
                "[server]\nnode_id = {id}\nlisten = \"{kafka}\"\n\n\
                 [cluster]\nlisten = \"{raft}\"\nvoters = [{voter_list}]\n",
                id = i + 1
            );
            std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
            options.push(
                BrokerOptions::new()
                    .listen(kafka.to_string())
                    .flag("--config", path.display())
                    .startup_timeout(SETTLE),
            );
        }
        let started: Vec<Result<Broker>> = std::thread::scope(|scope| {
            let handles: Vec<_> = options
                .into_iter()
                .map(|o| scope.spawn(move || Broker::start(o)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a start thread panicked")))
                })
                .collect()
        });
        // Collect every started node first, so that one failure still kills the others.
        let mut nodes = Vec::with_capacity(voters);
        let mut failure = None;
        for (i, (result, (kafka, raft))) in started.into_iter().zip(placements).enumerate() {
            match result {
                Ok(broker) => nodes.push(Node {
                    id: i32::try_from(i + 1)?,
                    kafka,
                    raft,
                    broker,
                }),
                Err(e) => {
                    failure.get_or_insert(e.context(format!("starting node {}", i + 1)));
                }
            }
        }
        let cluster = Cluster {
            nodes,
            _config_dir: config_dir,
        };
        if let Some(e) = failure {
            return Err(e);
        }
        cluster.wait_for_unfenced(voters)?;
        Ok(cluster)
    }

    /// Every node's address, comma-separated (a bootstrap list that survives any one node).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.kafka.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, id: i32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    /// `kill -9` of node `id` (no controlled shutdown, nothing flushed).
    pub fn kill9(&mut self, id: i32) -> Result<ExitStatus> {
        self.node_mut(id)?.broker.kill9()
    }

    /// Starts node `id` again on its data directory and ports; waits until it listens.
    pub fn restart(&mut self, id: i32) -> Result<()> {
        self.node_mut(id)?.broker.restart()
    }

    /// DescribeCluster (v2, fenced brokers included) asked of any live node.
    pub fn describe(&self) -> Result<ClusterDescription> {
        let client = Client::new(ClientConfig::new(self.bootstrap(), "gui-cluster-test"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(client.describe_cluster(true))?)
    }

    /// Waits until DescribeCluster lists `count` brokers, none fenced, and a controller.
    pub fn wait_for_unfenced(&self, count: usize) -> Result<ClusterDescription> {
        wait_until(
            &format!("{count} unfenced brokers and a controller"),
            SETTLE,
            || {
                let d = self.describe()?;
                let ok = d.brokers.len() == count
                    && d.brokers.iter().all(|b| !b.fenced)
                    && d.controller_id >= 0;
                Ok(ok.then_some(d))
            },
        )
        .with_context(|| self.log_paths())
    }

    /// Which node is which, for failure messages.
    pub fn log_paths(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "node {} (kafka {}, raft {}): {}\n",
                    n.id,
                    n.kafka,
                    n.raft,
                    n.broker.log_path().display()
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill all first, so no node logs errors about the others for the whole teardown;
        // each Broker then prints its log tail (libtest shows it for failed tests only).
        eprint!("--- cluster nodes ---\n{}", self.log_paths());
        for node in &mut self.nodes {
            if node.broker.is_running().unwrap_or(true) {
                let _ = node.broker.kill9();
            }
        }
    }
}

/// A free loopback port (bound, then released: another process could take it, rarely).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("reserving a loopback port")?;
    Ok(listener.local_addr()?)
}
