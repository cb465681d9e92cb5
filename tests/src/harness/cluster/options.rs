//! [`ClusterOptions`]: the timings, defaults, flags and binary every node of a cluster gets,
//! and whether the nodes run in network namespaces.

use std::path::PathBuf;
use std::time::Duration;

use super::SETTLE;

use crate::harness::groups;

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
