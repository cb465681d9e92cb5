//! One node: its process ([`Node`]), and how the cluster places (addresses, namespace) and
//! spawns it with its `[cluster]` config.

use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::process::ExitStatus;

use anyhow::{Context, Result, ensure};

use super::Cluster;
use super::net::{NETNS_KAFKA_PORT, NETNS_RAFT_PORT};

use crate::harness::broker::{Broker, BrokerOptions};

/// A node's Kafka address, Raft address, and namespace with root-side veth (if namespaced).
type Placement = (SocketAddr, SocketAddr, Option<(String, String)>);

/// One node of the cluster.
#[derive(Debug)]
pub struct Node {
    pub id: i32,
    pub kafka: SocketAddr,
    pub raft: SocketAddr,
    pub voter: bool,
    pub(super) broker: Broker,
    /// The namespace and the root-side veth, when networking is namespaced.
    pub(super) ns: Option<(String, String)>,
    pub(super) cut: bool,
    pub(super) isolated: bool,
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

impl Cluster {
    pub(super) fn allocate(&self, index: usize) -> Result<Placement> {
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

    pub(super) fn spawn_node(
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

/// A free loopback port (bound, then released: another process could take it, rarely).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("reserving a loopback port")?;
    Ok(listener.local_addr()?)
}
