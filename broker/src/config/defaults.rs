//! Default values. Kafka's defaults where Kafka has one, so clients see familiar numbers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::{GroupConfig, LogConfig, ServerConfig, StorageConfig, TopicDefaults};

pub const DEFAULT_PORT: u16 = 9092;
/// Kafka's `socket.request.max.bytes`.
pub const MAX_REQUEST_SIZE: u32 = 100 * 1024 * 1024;
/// Kafka's `message.max.bytes`.
pub const MAX_MESSAGE_BYTES: i32 = 1_048_588;
/// Kafka's `log.retention.hours` = 168.
pub const RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `log.retention.check.interval.ms`.
pub const RETENTION_CHECK_INTERVAL_MS: u64 = 300_000;
/// Kafka's `connections.max.idle.ms`.
pub const CONNECTIONS_MAX_IDLE_MS: u64 = 600_000;
/// Kafka has no per-IP limit by default; a quarter of `max_connections` keeps one runaway
/// client (or one NAT gateway's worth of them) from taking every slot.
pub const MAX_CONNECTIONS_PER_IP: usize = 256;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            advertised_listener: None,
            node_id: 0,
            max_request_size: MAX_REQUEST_SIZE,
            max_connections: 1024,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
            connections_max_idle_ms: CONNECTIONS_MAX_IDLE_MS,
            metrics_listen: None,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./runnel-data"),
            max_disk_bytes: None,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS,
        }
    }
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            auto_create: true,
            default_partitions: 1,
            retention_ms: RETENTION_MS,
            retention_bytes: -1,
            max_message_bytes: MAX_MESSAGE_BYTES,
            min_insync_replicas: 1,
        }
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_minutes: 10_080,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}
