//! Configuration of one quorum node, with defaults and validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::QuorumError;

/// Configuration of one quorum node. Build with [`QuorumConfig::new`] for the defaults.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: u64,
    /// Where this node's RPC server binds.
    pub listen: SocketAddr,
    /// host:port others use to reach this node (usually `listen`).
    pub advertised: String,
    /// Node id -> host:port of every voter. A node not listed here joins as a learner.
    pub voters: BTreeMap<u64, String>,
    /// LMDB directory for log, vote and state machine (created if missing).
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries; the log before it is purged.
    pub snapshot_every_logs: u64,
}

impl QuorumConfig {
    pub const DEFAULT_HEARTBEAT_MS: u64 = 150;
    pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 600;
    pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 1200;
    pub const DEFAULT_SNAPSHOT_EVERY_LOGS: u64 = 5000;

    /// A configuration with default timings; `advertised` is `listen`.
    pub fn new(
        node_id: u64,
        listen: SocketAddr,
        voters: BTreeMap<u64, String>,
        dir: impl Into<PathBuf>,
    ) -> Self {
        QuorumConfig {
            node_id,
            listen,
            advertised: listen.to_string(),
            voters,
            dir: dir.into(),
            heartbeat_ms: Self::DEFAULT_HEARTBEAT_MS,
            election_timeout_min_ms: Self::DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: Self::DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            snapshot_every_logs: Self::DEFAULT_SNAPSHOT_EVERY_LOGS,
        }
    }

    /// Checks what openraft would otherwise reject later with a less clear message.
    pub fn validate(&self) -> Result<(), QuorumError> {
        let bad = |why: String| Err(QuorumError::Config(why));
        if self.voters.is_empty() {
            return bad("no voters configured".into());
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms >= self.election_timeout_min_ms {
            return bad(format!(
                "heartbeat_ms ({}) must be > 0 and below election_timeout_min_ms ({})",
                self.heartbeat_ms, self.election_timeout_min_ms
            ));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return bad(format!(
                "election_timeout_min_ms ({}) must be below election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.snapshot_every_logs == 0 {
            return bad("snapshot_every_logs must be > 0".into());
        }
        if let Some(addr) = self.voters.get(&self.node_id)
            && addr != &self.advertised
        {
            return bad(format!(
                "node {} is listed among the voters as {addr} but advertises {}",
                self.node_id, self.advertised
            ));
        }
        Ok(())
    }

    /// The openraft runtime configuration derived from this one.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        let config = openraft::Config {
            cluster_name: "runnel".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_logs),
            // Everything in a snapshot is purged from the log: lagging nodes get the snapshot.
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| QuorumError::Config(e.to_string()))
    }
}
