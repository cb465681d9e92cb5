//! `[cluster]`: what makes this broker one node of a replicated cluster. Absent, the broker is
//! a single node exactly as before (no Raft, no replication, high watermark = log end).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::validate::ConfigError;

/// The cluster table. Kafka's names are given where they exist.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's Raft/controller RPC listener (Kafka's `CONTROLLER` listener).
    pub listen: SocketAddr,
    /// `host:port` the other nodes use to reach `listen`; defaults to `listen`.
    #[serde(default)]
    pub advertised: Option<String>,
    /// Every voter of the metadata quorum as `id@host:port` (`controller.quorum.voters`).
    /// A node whose `server.node_id` is not listed joins as a non-voting broker.
    pub voters: Vec<String>,
    /// The controller fences a broker that has not heartbeated for this long
    /// (`broker.session.timeout.ms`; Kafka's 9000 is too slow for the 5 s failover target:
    /// a dead leader costs a Raft election, when it was the controller, plus this).
    #[serde(default = "defaults::session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    #[serde(default = "defaults::heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// A follower that has not caught up for this long leaves the ISR
    /// (`replica.lag.time.max.ms`).
    #[serde(default = "defaults::replica_lag_time_max_ms")]
    pub replica_lag_time_max_ms: u64,
    /// `default.replication.factor` for CreateTopics without one and for auto-created
    /// topics; capped at the number of registered brokers.
    #[serde(default = "defaults::replication_factor")]
    pub default_replication_factor: i16,
    /// Default `min.insync.replicas` of topics created in the cluster.
    #[serde(default = "defaults::min_insync_replicas")]
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`: elect a replica outside the ISR when no ISR member
    /// is left (loses acknowledged records). Off, as in Kafka.
    #[serde(default)]
    pub unclean_leader_election: bool,
}

mod defaults {
    pub fn session_timeout_ms() -> u64 {
        2000
    }
    pub fn heartbeat_interval_ms() -> u64 {
        250
    }
    pub fn replica_lag_time_max_ms() -> u64 {
        10_000
    }
    pub fn replication_factor() -> i16 {
        3
    }
    pub fn min_insync_replicas() -> i32 {
        2
    }
}

impl ClusterConfig {
    /// The voters as node id -> `host:port`, validated.
    pub fn voter_map(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for v in &self.voters {
            let bad = || ConfigError::Invalid {
                key: "cluster.voters",
                reason: format!("{v:?} is not id@host:port"),
            };
            let (id, addr) = v.split_once('@').ok_or_else(bad)?;
            let id: u64 = id.trim().parse().map_err(|_| bad())?;
            let (_, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            port.parse::<u16>().map_err(|_| bad())?;
            if out.insert(id, addr.trim().to_owned()).is_some() {
                return Err(ConfigError::Invalid {
                    key: "cluster.voters",
                    reason: format!("node id {id} is listed twice"),
                });
            }
        }
        if out.is_empty() {
            return Err(ConfigError::Invalid {
                key: "cluster.voters",
                reason: "at least one voter is needed".into(),
            });
        }
        Ok(out)
    }

    /// Checks every key; `node_id` is `server.node_id`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.voter_map()?;
        let invalid = |key: &'static str, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.into(),
        };
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return Err(invalid(
                "cluster.heartbeat_interval_ms",
                "must be > 0 and below cluster.session_timeout_ms",
            ));
        }
        if self.replica_lag_time_max_ms == 0 {
            return Err(invalid("cluster.replica_lag_time_max_ms", "must be > 0"));
        }
        if self.default_replication_factor < 1 {
            return Err(invalid(
                "cluster.default_replication_factor",
                "must be >= 1",
            ));
        }
        if self.min_insync_replicas < 1 {
            return Err(invalid("cluster.min_insync_replicas", "must be >= 1"));
        }
        Ok(())
    }
}
