//! Command-line flags. Every flag can also be given as a `RUNNEL_*` environment variable;
//! clap resolves `flag > env`, and [`Args::apply`] lays the result over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::Config;

/// Runnel: a Kafka-compatible event-streaming broker for small devices.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "runnel", version, about)]
pub struct Args {
    /// Without a subcommand, the broker runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file.
    #[arg(long, env = "RUNNEL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Only load and validate the configuration (file, environment, flags), print the
    /// verdict and exit: 0 when valid, 2 naming the bad key otherwise.
    #[arg(long)]
    pub check_config: bool,
    /// Address to listen on [server.listen].
    #[arg(long, env = "RUNNEL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// host:port returned to clients in Metadata [server.advertised_listener].
    #[arg(long, env = "RUNNEL_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// This broker's node id [server.node_id].
    #[arg(long, env = "RUNNEL_NODE_ID")]
    pub node_id: Option<i32>,
    /// Largest request frame in bytes [server.max_request_size].
    #[arg(long, env = "RUNNEL_MAX_REQUEST_SIZE")]
    pub max_request_size: Option<u32>,
    /// Maximum concurrent connections [server.max_connections].
    #[arg(long, env = "RUNNEL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Data directory [storage.data_dir].
    #[arg(long, env = "RUNNEL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Disk budget in bytes [storage.max_disk_bytes].
    #[arg(long, env = "RUNNEL_MAX_DISK_BYTES")]
    pub max_disk_bytes: Option<u64>,
    /// Retention check interval in ms [storage.retention_check_interval_ms].
    #[arg(long, env = "RUNNEL_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Create topics on first use [topics.auto_create].
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [topics.default_partitions].
    #[arg(long, env = "RUNNEL_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Default retention.ms of topics [topics.retention_ms].
    #[arg(long, env = "RUNNEL_RETENTION_MS", allow_hyphen_values = true)]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of topics [topics.retention_bytes].
    #[arg(long, env = "RUNNEL_RETENTION_BYTES", allow_hyphen_values = true)]
    pub retention_bytes: Option<i64>,
    /// Largest record batch in bytes [topics.max_message_bytes].
    #[arg(long, env = "RUNNEL_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<i32>,
    /// First-rebalance delay of new groups in ms [groups.initial_rebalance_delay_ms].
    #[arg(long, env = "RUNNEL_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a consumer may ask for [groups.min_session_timeout_ms].
    #[arg(long, env = "RUNNEL_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Committed offsets of empty groups expire after this [groups.offsets_retention_minutes].
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// Log filter, e.g. `info` or `runnel=debug` [log.level].
    #[arg(long, env = "RUNNEL_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Subcommands; the broker itself runs without one.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage SCRAM users in the data directory (the broker must be stopped; while it runs,
    /// use AlterUserScramCredentials instead).
    #[command(subcommand)]
    User(crate::auth::users::UserCommand),
}

impl Args {
    /// Overwrites every field of `config` that was given on the command line or in the
    /// environment.
    pub fn apply(&self, config: &mut Config) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        let s = &mut config.server;
        set(&mut s.listen, &self.listen);
        if self.advertised_listener.is_some() {
            s.advertised_listener.clone_from(&self.advertised_listener);
        }
        set(&mut s.node_id, &self.node_id);
        set(&mut s.max_request_size, &self.max_request_size);
        set(&mut s.max_connections, &self.max_connections);
        let st = &mut config.storage;
        set(&mut st.data_dir, &self.data_dir);
        if self.max_disk_bytes.is_some() {
            st.max_disk_bytes = self.max_disk_bytes;
        }
        set(
            &mut st.retention_check_interval_ms,
            &self.retention_check_interval_ms,
        );
        let t = &mut config.topics;
        set(&mut t.auto_create, &self.auto_create_topics);
        set(&mut t.default_partitions, &self.default_partitions);
        set(&mut t.retention_ms, &self.retention_ms);
        set(&mut t.retention_bytes, &self.retention_bytes);
        set(&mut t.max_message_bytes, &self.max_message_bytes);
        let g = &mut config.groups;
        set(
            &mut g.initial_rebalance_delay_ms,
            &self.group_initial_rebalance_delay_ms,
        );
        set(
            &mut g.min_session_timeout_ms,
            &self.group_min_session_timeout_ms,
        );
        set(
            &mut g.offsets_retention_minutes,
            &self.offsets_retention_minutes,
        );
        set(&mut config.log.level, &self.log_level);
    }
}
