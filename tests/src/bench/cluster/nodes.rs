//! Three fresh `runnel` processes on 127.0.0.1 forming one cluster, for the `cluster`
//! scenario: the harness's [`Cluster`] started with the bench's broker binary and log level,
//! on loopback (never in network namespaces, whoever runs the bench), with the broker's own
//! cluster timings, and the scenario's time limit for every wait. A node keeps its data
//! directory and addresses across [`Nodes::kill9`] and [`Nodes::restart`].
//!
//! Partition state is read with a raw Metadata request to each running node, so "agreed"
//! means every live node says the same.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use runnel_tests::harness::cluster::{Cluster, ClusterOptions, PartitionState};

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

/// The cluster's processes; every one is killed when this is dropped.
pub struct Nodes {
    cluster: Cluster,
    /// Nodes between [`Nodes::kill9`] and [`Nodes::restart`].
    down: BTreeSet<i32>,
}

impl Nodes {
    /// Starts [`NODES`] voters in parallel and waits until each lists all of them.
    pub fn start(spec: &BrokerSpec, timeout: Duration) -> anyhow::Result<Nodes> {
        ensure!(
            spec.bin.is_file(),
            "broker binary {} not found: build it with `cargo build --release -p runnel-broker`",
            spec.bin.display()
        );
        let options = ClusterOptions {
            min_insync_replicas: Some(MIN_INSYNC_REPLICAS),
            default_replication_factor: Some(i16::try_from(REPLICATION_FACTOR)?),
            flags: vec![
                ("--log-level".into(), spec.log_level.clone()),
                ("--auto-create-topics".into(), "true".into()),
                ("--default-partitions".into(), spec.partitions.to_string()),
            ],
            binary: Some(spec.bin.clone()),
            settle: timeout,
            ..ClusterOptions::broker_defaults()
        };
        Ok(Nodes {
            cluster: Cluster::start_with(NODES, options)?,
            down: BTreeSet::new(),
        })
    }

    /// Every node's Kafka listener, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap()
    }

    /// SIGKILL to node `id`.
    pub fn kill9(&mut self, id: i32) -> anyhow::Result<()> {
        self.cluster.node_by_id(id)?.kill9()?;
        self.down.insert(id);
        Ok(())
    }

    /// Starts node `id` again on its data directory and addresses.
    pub fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        self.cluster.node_by_id(id)?.restart()?;
        self.down.remove(&id);
        Ok(())
    }

    /// Fails, with every node's log tail, if a node that should run has exited.
    pub fn ensure_running(&mut self, during: &str) -> anyhow::Result<()> {
        let running = self.cluster.reachable_ids();
        let dead: Vec<i32> = (1..=i32::try_from(self.cluster.len())?)
            .filter(|id| !self.down.contains(id) && !running.contains(id))
            .collect();
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
        self.cluster.log_tails(LOG_TAIL_LINES)
    }

    /// Creates `topic` with [`REPLICATION_FACTOR`] (the cluster's `min.insync.replicas` is
    /// [`MIN_INSYNC_REPLICAS`]), then waits until every node reports a leader and the full
    /// ISR (within the time limit the cluster was started with).
    pub fn create_topic(&mut self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        self.cluster
            .create_topic(topic, partitions, REPLICATION_FACTOR)
    }

    /// Polls the running nodes until they agree on a state of `topic`/`partition` that
    /// `accept` takes, and returns it.
    pub fn wait_for(
        &mut self,
        topic: &str,
        partition: i32,
        what: &str,
        timeout: Duration,
        mut accept: impl FnMut(&PartitionState) -> bool,
    ) -> anyhow::Result<PartitionState> {
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
    /// has an error (a partition without a leader is a state they can agree on).
    pub fn agreed(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<Option<PartitionState>> {
        let mut agreed: Option<PartitionState> = None;
        for id in self.cluster.reachable_ids() {
            let view = self.cluster.metadata_at(id, &[topic])?;
            let Some(state) = view
                .partition(topic, partition)
                .filter(|s| s.error_code == 0)
            else {
                return Ok(None);
            };
            match &agreed {
                None => agreed = Some(state.clone()),
                Some(a) if a == state => {}
                Some(_) => return Ok(None),
            }
        }
        Ok(agreed)
    }
}
