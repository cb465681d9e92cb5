//! A cluster of real `runnel` processes for the GUI tests: the integration harness's
//! [`harness::Cluster`] with `n` voters on 127.0.0.1 (never in network namespaces) and the
//! broker's own cluster timings, plus what the GUI tests ask of it through `runnel-client`
//! (DescribeCluster, unfenced brokers).
//!
//! The harness keeps the invariants: node index `i` has node id `i + 1`; a node restarted
//! after [`Cluster::kill9`] comes back at its old addresses; `Drop` kills every node.

use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};
use runnel_client::{Client, ClientConfig, ClusterDescription};
use runnel_tests::harness::cluster::{self as harness, ClusterOptions, Node};
use runnel_tests::wait_until;

/// How long a node may take to listen, and the cluster to list every node.
const SETTLE: Duration = Duration::from_secs(30);

/// `n` voting nodes forming one cluster.
#[derive(Debug)]
pub struct Cluster {
    inner: harness::Cluster,
}

impl Cluster {
    /// Starts `voters` nodes (all at once: none can finish starting alone) and waits until
    /// DescribeCluster lists every one of them, unfenced.
    pub fn start(voters: usize) -> Result<Cluster> {
        let options = ClusterOptions {
            settle: SETTLE,
            ..ClusterOptions::broker_defaults()
        };
        let cluster = Cluster {
            inner: harness::Cluster::start_with(voters, options)?,
        };
        cluster.wait_for_unfenced(voters)?;
        Ok(cluster)
    }

    /// Every node's address, comma-separated (a bootstrap list that survives any one node).
    pub fn bootstrap(&self) -> String {
        self.inner.bootstrap()
    }

    pub fn node(&mut self, id: i32) -> Result<&Node> {
        Ok(self.inner.node_by_id(id)?)
    }

    /// `kill -9` of node `id` (no controlled shutdown, nothing flushed).
    pub fn kill9(&mut self, id: i32) -> Result<ExitStatus> {
        self.inner.node_by_id(id)?.kill9()
    }

    /// Starts node `id` again on its data directory and ports; waits until it listens.
    pub fn restart(&mut self, id: i32) -> Result<()> {
        self.inner.node_by_id(id)?.restart()
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
        self.inner.log_paths()
    }
}
