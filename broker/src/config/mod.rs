//! Broker configuration: one struct per concern, their defaults, and validation.
//!
//! Sources are layered `flags > RUNNEL_* environment > TOML file > defaults`. The layering
//! happens in [`load`]: clap resolves flags and environment variables into a [`cli::Args`]
//! of `Option`s, the file is parsed into a [`Config`] whose every field has a serde default,
//! and each `Some` from the command line overwrites the file's value. [`Config::validate`]
//! then checks the merged result, so a bad value is reported once, naming its key, no
//! matter which source it came from.

pub mod authorization;
pub mod cli;
pub mod cluster;
mod defaults;
pub mod listeners;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cli::Args;
pub use validate::ConfigError;

/// The whole broker configuration, as read from TOML.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub topics: TopicDefaults,
    pub groups: GroupConfig,
    pub log: LogConfig,
    /// MQTT bridges run inside the broker, writing straight into the log (`[[bridge]]`
    /// tables, the same format `runnel-bridge` reads).
    pub bridge: Vec<runnel_bridge::BridgeConfig>,
    /// Store-and-forward uplinks to upstream Kafka clusters (`[[uplink]]` tables).
    pub uplink: Vec<crate::uplink::UplinkConfig>,
    /// Named listeners (`[[listener]]` tables); none: one PLAINTEXT listener on
    /// `server.listen`.
    pub listener: Vec<listeners::ListenerConfig>,
    /// `super.users` and `allow.everyone.if.no.acl.found` (`[authorization]`).
    pub authorization: authorization::AuthorizationConfig,
    /// Replication and the metadata quorum (`[cluster]`); absent: a single node.
    pub cluster: Option<cluster::ClusterConfig>,
}

/// Network listener and request limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind. Port 0 picks a free port (the log line names the real one).
    pub listen: SocketAddr,
    /// `host:port` returned to clients in Metadata; defaults to the bound address.
    pub advertised_listener: Option<String>,
    /// This broker's node id (`node.id`).
    pub node_id: i32,
    /// Largest request frame accepted (`socket.request.max.bytes`), checked before allocating.
    pub max_request_size: u32,
    /// Connections accepted at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Connections from one client IP address at once (`max.connections.per.ip`); more are
    /// closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// A connection that sends nothing for this long is closed (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Serve Prometheus metrics (embedded bridges and uplinks) over HTTP here; unset: off.
    pub metrics_listen: Option<SocketAddr>,
}

/// Where and how the log is stored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding the LMDB environment.
    pub data_dir: PathBuf,
    /// Broker-wide disk budget (`log.max.disk.bytes`). `None`: 80% of the space free on the
    /// data directory's file system at start-up (plus what the data already uses).
    pub max_disk_bytes: Option<u64>,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
}

/// Defaults for topics: what auto-creation and CreateTopics use when a config is not given.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// `auto.create.topics.enable`.
    pub auto_create: bool,
    /// `num.partitions`.
    pub default_partitions: i32,
    /// `log.retention.ms` (-1: keep forever).
    pub retention_ms: i64,
    /// `log.retention.bytes` per partition (-1: no limit).
    pub retention_bytes: i64,
    /// `message.max.bytes`: largest record batch accepted.
    pub max_message_bytes: i32,
    /// `min.insync.replicas` of topics without an override (cluster mode sets it from
    /// `cluster.min_insync_replicas`).
    pub min_insync_replicas: i32,
}

/// Consumer-group coordinator settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: a new group's first rebalance waits this long
    /// for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `offsets.retention.minutes`: committed offsets of an empty group expire after this.
    pub offsets_retention_minutes: u64,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive, e.g. `info` or `runnel=debug`.
    pub level: String,
}

/// Reads the file named by `args.config` (if any), applies flags and environment on top,
/// and validates the result.
pub fn load(args: &Args) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => from_file(path)?,
        None => Config::default(),
    };
    args.apply(&mut config);
    config.validate()?;
    Ok(config)
}

fn from_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}
