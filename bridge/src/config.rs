//! Bridge configuration: the `[[bridge]]` tables, their defaults and their validation.
//!
//! The same tables are read from a standalone file ([`load_file`]: `[[bridge]]` tables and an
//! optional `[kafka]` table securing the standalone bridge's Kafka connection) and from the
//! broker's own TOML config (a `bridge: Vec<BridgeConfig>` field), so everything here is plain
//! serde with `deny_unknown_fields` and the defaults live beside the fields (the `default_*`
//! functions at the end of the types).
//!
//! Validation is pure (it never touches the file system or the network) and reports the
//! first problem as a [`ConfigError`] naming the bridge, the rule (numbered from 1, in file
//! order) and the key exactly as spelled in TOML. Invariants of a config that passed
//! [`validate_all`]:
//! - every bridge has a unique `name` and a unique MQTT client id, and at least one rule;
//! - every ingress filter parses and no two filters of one bridge overlap, so each MQTT
//!   message is written at most once per bridge;
//! - an ingress rule that reads JSON has a `dead_letter_topic`, so no message is silently
//!   dropped;
//! - every JSON field path and egress topic template parses (see [`crate::mapping`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runnel_client::SecurityConfig;
use serde::{Deserialize, Serialize};

use crate::filter::TopicFilter;
use crate::mapping::{FieldPath, TopicTemplate};

/// A standalone bridge config file: `[[bridge]]` tables, and `[kafka]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeFile {
    /// TLS and SASL of the connections to the Kafka cluster (`[kafka.tls]`, `[kafka.sasl]`,
    /// see [`runnel_client::security`]); absent: plaintext. The embedded bridge writes to its
    /// broker directly and has no such table.
    #[serde(default, skip_serializing_if = "is_plaintext")]
    pub kafka: SecurityConfig,
    #[serde(default)]
    pub bridge: Vec<BridgeConfig>,
}

fn is_plaintext(security: &SecurityConfig) -> bool {
    *security == SecurityConfig::default()
}

/// One bridge: an MQTT connection and the rules that move messages across it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// 1..=64 characters of `[A-Za-z0-9._-]`; names the bridge in logs, status and defaults.
    pub name: String,
    pub mqtt: MqttConfig,
    /// MQTT → Kafka rules (`[[bridge.ingress]]`).
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
    /// Kafka → MQTT rules (`[[bridge.egress]]`).
    #[serde(default)]
    pub egress: Vec<EgressRule>,
    /// How often the bridge publishes its status.
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
}

/// The MQTT connection of one bridge (`[bridge.mqtt]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    /// 1883 unless set; TLS does not change it (set 8883 yourself).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `None`: `runnel-bridge-{name}` (see [`BridgeConfig::client_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// 5..=65535.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// First reconnect delay; doubles up to `reconnect_max_ms`. At least 1.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Outgoing QoS 1 window (egress), at least 1.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// Largest MQTT packet accepted or sent, 1 KiB..=256 MiB.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
    /// Messages received but not yet durable and acknowledged, at least 1.
    #[serde(default = "default_ingest_buffer")]
    pub ingest_buffer: usize,
}

/// MQTT protocol version: `"3.1.1"` or `"5"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum MqttProtocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// TLS to the MQTT server (`[bridge.mqtt.tls]`). Paths are read when connecting.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that sign the server's certificate.
    pub ca_file: PathBuf,
    /// Client certificate (PEM) for mutual TLS; set together with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// Name checked against the server certificate; `None`: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// MQTT → Kafka (`[[bridge.ingress]]`): messages matching `filter` become records of `topic`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    /// MQTT topic filter to subscribe to.
    pub filter: String,
    /// Kafka topic the records are written to.
    pub topic: String,
    /// Subscription QoS, 0..=2.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Record key = this 0-based level of the MQTT topic (`trucks/+/gps` → 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_level: Option<usize>,
    /// Record key = this JSON field of the payload (`truck.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_json: Option<String>,
    /// Record timestamp = this numeric JSON field of the payload; `None`: time received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_json: Option<String>,
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    #[serde(default)]
    pub validate: Validation,
    /// JSON field paths that must be present (a `null` value counts as present).
    #[serde(default)]
    pub require: Vec<String>,
    /// Where messages that fail the JSON checks go; required when the rule reads JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// Unit of `timestamp_json`: `"ms"` or `"s"` (seconds may be fractional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TimestampUnit {
    #[default]
    #[serde(rename = "ms")]
    Millis,
    #[serde(rename = "s")]
    Seconds,
}

/// Payload check of an ingress rule: `"none"` or `"json"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Validation {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "json")]
    Json,
}

/// Kafka → MQTT (`[[bridge.egress]]`): records of `topic` are published to `mqtt_topic`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// Kafka topic to read.
    pub topic: String,
    /// MQTT topic template with `{key}`, `{topic}` and `{partition}` placeholders.
    pub mqtt_topic: String,
    /// Publish QoS, 0..=1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    /// Consumer group holding the offsets; `None`: `runnel-bridge-{name}-egress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where a group without committed offsets starts.
    #[serde(default)]
    pub start: StartFrom,
}

/// `"earliest"` or `"latest"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum StartFrom {
    #[serde(rename = "earliest")]
    Earliest,
    #[default]
    #[serde(rename = "latest")]
    Latest,
}

fn default_status_interval_ms() -> u64 {
    5_000
}
fn default_port() -> u16 {
    1883
}
fn default_keep_alive_secs() -> u64 {
    30
}
fn default_reconnect_min_ms() -> u64 {
    200
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_max_inflight() -> u16 {
    100
}
fn default_max_packet_bytes() -> usize {
    1024 * 1024
}
/// 1,000: the benchmark showed the same QoS 0/1 throughput as with 10,000 and a peak RSS of
/// 13 MB instead of up to 45 MB when the bridge falls behind (runnel-bench --scenarios bridge).
fn default_ingest_buffer() -> usize {
    1_000
}
fn default_qos() -> u8 {
    1
}

/// Bounds of `mqtt.max_packet_bytes`.
pub const MIN_PACKET_BYTES: usize = 1024;
pub const MAX_PACKET_BYTES: usize = 256 * 1024 * 1024;

/// Why a bridge configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read bridge config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid bridge config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("bridge config file {}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
    #[error("bridge {bridge:?}: invalid `{key}`: {reason}")]
    Bridge {
        bridge: String,
        key: &'static str,
        reason: String,
    },
    #[error(
        "bridge {bridge:?} has no [[bridge.ingress]] or [[bridge.egress]] rules, so it would do nothing"
    )]
    NoRules { bridge: String },
    #[error(
        "bridge {bridge:?} ingress rule {number} (filter {filter:?}): invalid `{key}`: {reason}"
    )]
    Ingress {
        bridge: String,
        number: usize,
        filter: String,
        key: &'static str,
        reason: String,
    },
    /// Like `Ingress`, from [`crate::mapping::Router::new`], which does not know the bridge.
    #[error("ingress rule {number} (filter {filter:?}): invalid `{key}`: {reason}")]
    Rule {
        number: usize,
        filter: String,
        key: &'static str,
        reason: String,
    },
    #[error("bridge {bridge:?} egress rule {number} (topic {topic:?}): invalid `{key}`: {reason}")]
    Egress {
        bridge: String,
        number: usize,
        topic: String,
        key: &'static str,
        reason: String,
    },
    #[error(
        "bridge {bridge:?}: ingress rules {first} (filter {first_filter:?}) and {second} \
         (filter {second_filter:?}) overlap: a message on a topic both match, such as \
         {example:?}, is delivered once per subscription and would be written twice; \
         make the `filter`s disjoint"
    )]
    Overlap {
        bridge: String,
        first: usize,
        first_filter: String,
        second: usize,
        second_filter: String,
        example: String,
    },
    #[error("bridge `name` {name:?} is used by [[bridge]] tables {first} and {second}")]
    DuplicateName {
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "bridges {first:?} and {second:?} use the same MQTT client id {client_id:?}; the MQTT \
         server would disconnect one whenever the other connects (set `mqtt.client_id`)"
    )]
    DuplicateClientId {
        client_id: String,
        first: String,
        second: String,
    },
}

/// One invalid key of one table, before the table is named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{key}`: {reason}")]
pub struct InvalidKey {
    /// The key as spelled in TOML, relative to its table (`mqtt.port` for a bridge).
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidKey {
    InvalidKey {
        key,
        reason: reason.into(),
    }
}

impl BridgeConfig {
    /// The MQTT client id: `mqtt.client_id`, or `runnel-bridge-{name}`.
    pub fn client_id(&self) -> String {
        match &self.mqtt.client_id {
            Some(id) => id.clone(),
            None => format!("runnel-bridge-{}", self.name),
        }
    }

    /// Checks this bridge on its own; [`validate_all`] also checks bridges against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bridge_error = |e: InvalidKey| ConfigError::Bridge {
            bridge: self.name.clone(),
            key: e.key,
            reason: e.reason,
        };
        check_name(&self.name).map_err(bridge_error)?;
        if self.status_interval_ms == 0 {
            return Err(bridge_error(invalid("status_interval_ms", "must be > 0")));
        }
        self.mqtt.check().map_err(bridge_error)?;
        if self.ingress.is_empty() && self.egress.is_empty() {
            return Err(ConfigError::NoRules {
                bridge: self.name.clone(),
            });
        }
        for (index, rule) in self.ingress.iter().enumerate() {
            rule.check().map_err(|e| ConfigError::Ingress {
                bridge: self.name.clone(),
                number: index + 1,
                filter: rule.filter.clone(),
                key: e.key,
                reason: e.reason,
            })?;
        }
        self.check_overlaps()?;
        for (index, rule) in self.egress.iter().enumerate() {
            rule.check().map_err(|e| ConfigError::Egress {
                bridge: self.name.clone(),
                number: index + 1,
                topic: rule.topic.clone(),
                key: e.key,
                reason: e.reason,
            })?;
        }
        Ok(())
    }

    /// No two ingress filters may match the same topic (the filters already parse).
    fn check_overlaps(&self) -> Result<(), ConfigError> {
        let filters: Vec<TopicFilter> = self
            .ingress
            .iter()
            .filter_map(|rule| TopicFilter::parse(&rule.filter).ok())
            .collect();
        for (i, a) in filters.iter().enumerate() {
            for (j, b) in filters.iter().enumerate().skip(i + 1) {
                if let Some(example) = a.overlap_example(b) {
                    return Err(ConfigError::Overlap {
                        bridge: self.name.clone(),
                        first: i + 1,
                        first_filter: a.to_string(),
                        second: j + 1,
                        second_filter: b.to_string(),
                        example,
                    });
                }
            }
        }
        Ok(())
    }
}

impl MqttConfig {
    fn check(&self) -> Result<(), InvalidKey> {
        if self.host.trim().is_empty() {
            return Err(invalid("mqtt.host", "must not be empty"));
        }
        if self.port == 0 {
            return Err(invalid("mqtt.port", "must be 1..=65535"));
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > crate::filter::MAX_TOPIC_BYTES)
        {
            return Err(invalid("mqtt.client_id", "must be 1..=65535 bytes"));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid(
                "mqtt.password",
                "is set without `username`; MQTT 3.1.1 forbids that and the bridge sends a \
                 password only together with a user name",
            ));
        }
        if !(5..=65_535).contains(&self.keep_alive_secs) {
            return Err(invalid(
                "mqtt.keep_alive_secs",
                format!("{} is outside 5..=65535", self.keep_alive_secs),
            ));
        }
        if let Some(tls) = &self.tls {
            tls.check()?;
        }
        if self.reconnect_min_ms == 0 {
            return Err(invalid("mqtt.reconnect_min_ms", "must be > 0"));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(invalid(
                "mqtt.reconnect_max_ms",
                format!(
                    "{} is below `reconnect_min_ms` ({})",
                    self.reconnect_max_ms, self.reconnect_min_ms
                ),
            ));
        }
        if self.max_inflight == 0 {
            return Err(invalid("mqtt.max_inflight", "must be at least 1"));
        }
        if !(MIN_PACKET_BYTES..=MAX_PACKET_BYTES).contains(&self.max_packet_bytes) {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                format!(
                    "{} is outside {MIN_PACKET_BYTES}..={MAX_PACKET_BYTES} (1 KiB..=256 MiB)",
                    self.max_packet_bytes
                ),
            ));
        }
        if self.ingest_buffer == 0 {
            return Err(invalid("mqtt.ingest_buffer", "must be at least 1"));
        }
        Ok(())
    }
}

impl TlsConfig {
    fn check(&self) -> Result<(), InvalidKey> {
        if self.ca_file.as_os_str().is_empty() {
            return Err(invalid("mqtt.tls.ca_file", "must not be empty"));
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "mqtt.tls.client_key_file",
                    "is required when `client_cert_file` is set",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "mqtt.tls.client_cert_file",
                    "is required when `client_key_file` is set",
                ));
            }
            _ => {}
        }
        if self.server_name.as_ref().is_some_and(|n| n.is_empty()) {
            return Err(invalid("mqtt.tls.server_name", "must not be empty"));
        }
        Ok(())
    }
}

impl IngressRule {
    /// Whether routing a message needs its payload parsed as JSON.
    pub fn reads_json(&self) -> bool {
        !self.json_keys().is_empty()
    }

    /// The keys that make this rule read JSON, for messages.
    fn json_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.key_json.is_some() {
            keys.push("key_json");
        }
        if self.timestamp_json.is_some() {
            keys.push("timestamp_json");
        }
        if self.validate == Validation::Json {
            keys.push("validate");
        }
        if !self.require.is_empty() {
            keys.push("require");
        }
        keys
    }

    /// Checks this rule on its own (overlaps with other rules are the bridge's check).
    pub fn check(&self) -> Result<(), InvalidKey> {
        let filter =
            TopicFilter::parse(&self.filter).map_err(|e| invalid("filter", e.to_string()))?;
        check_kafka_topic(&self.topic).map_err(|reason| invalid("topic", reason))?;
        if self.qos > 2 {
            return Err(invalid("qos", format!("{} is not 0, 1 or 2", self.qos)));
        }
        if self.key_level.is_some() && self.key_json.is_some() {
            return Err(invalid(
                "key_json",
                "cannot be combined with `key_level`; set one of them",
            ));
        }
        if let Some(level) = self.key_level {
            if level >= filter.level_count() {
                return Err(invalid(
                    "key_level",
                    format!(
                        "{level} is past the last level of the filter (levels count from 0; \
                         the filter has {})",
                        filter.level_count()
                    ),
                ));
            }
            if filter.is_multi_level(level) {
                return Err(invalid(
                    "key_level",
                    format!("level {level} of the filter is `#`, which may span several levels"),
                ));
            }
        }
        let path = |key: &'static str, text: &str| {
            FieldPath::parse(text)
                .map(drop)
                .map_err(|e| invalid(key, e.to_string()))
        };
        if let Some(text) = &self.key_json {
            path("key_json", text)?;
        }
        if let Some(text) = &self.timestamp_json {
            path("timestamp_json", text)?;
        }
        for text in &self.require {
            path("require", text)?;
        }
        self.check_dead_letter()
    }

    fn check_dead_letter(&self) -> Result<(), InvalidKey> {
        let Some(dlq) = &self.dead_letter_topic else {
            let keys = self.json_keys();
            if keys.is_empty() {
                return Ok(());
            }
            return Err(invalid(
                "dead_letter_topic",
                format!(
                    "is required because the rule reads JSON (`{}`); messages that fail the JSON \
                     checks go there instead of being dropped",
                    keys.join("`, `")
                ),
            ));
        };
        check_kafka_topic(dlq).map_err(|reason| invalid("dead_letter_topic", reason))?;
        if *dlq == self.topic {
            return Err(invalid(
                "dead_letter_topic",
                format!("must differ from `topic` ({:?})", self.topic),
            ));
        }
        Ok(())
    }
}

impl EgressRule {
    /// The consumer group holding this rule's offsets: `group`, or
    /// `runnel-bridge-{bridge_name}-egress`.
    pub fn group_id(&self, bridge_name: &str) -> String {
        match &self.group {
            Some(group) => group.clone(),
            None => format!("runnel-bridge-{bridge_name}-egress"),
        }
    }

    /// Checks this rule on its own.
    pub fn check(&self) -> Result<(), InvalidKey> {
        check_kafka_topic(&self.topic).map_err(|reason| invalid("topic", reason))?;
        TopicTemplate::parse(&self.mqtt_topic).map_err(|e| invalid("mqtt_topic", e.to_string()))?;
        if self.qos > 1 {
            return Err(invalid(
                "qos",
                format!("{} is not 0 or 1 (egress does not offer QoS 2)", self.qos),
            ));
        }
        if self.group.as_ref().is_some_and(|g| g.is_empty()) {
            return Err(invalid("group", "must not be empty"));
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), InvalidKey> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(invalid(
            "name",
            format!("{name:?} must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`"),
        ));
    }
    Ok(())
}

/// Kafka's topic name rule: 1..=249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
fn check_kafka_topic(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 249 || !valid_chars || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a Kafka topic name (1 to 249 characters of A-Z, a-z, 0-9, `.`, `_` \
             and `-`, not `.` or `..`)"
        ));
    }
    Ok(())
}

/// Validates each bridge, then that names and MQTT client ids are unique.
pub fn validate_all(bridges: &[BridgeConfig]) -> Result<(), ConfigError> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut client_ids: HashMap<String, &str> = HashMap::new();
    for (index, bridge) in bridges.iter().enumerate() {
        bridge.validate()?;
        if let Some(first) = names.insert(&bridge.name, index + 1) {
            return Err(ConfigError::DuplicateName {
                name: bridge.name.clone(),
                first,
                second: index + 1,
            });
        }
        let client_id = bridge.client_id();
        if let Some(first) = client_ids.get(&client_id) {
            return Err(ConfigError::DuplicateClientId {
                client_id,
                first: (*first).to_owned(),
                second: bridge.name.clone(),
            });
        }
        client_ids.insert(client_id, &bridge.name);
    }
    Ok(())
}

/// Reads a standalone bridge file and validates its bridges. Every error names the file. The
/// `[kafka]` PEM files are read when the Kafka client is built.
pub fn load_file(path: &Path) -> Result<BridgeFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: BridgeFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    validate_all(&file.bridge).map_err(|error| ConfigError::InFile {
        path: path.to_owned(),
        error: Box::new(error),
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[[bridge]]
name = "truck"
status_interval_ms = 1000

[bridge.mqtt]
host = "mqtt.local"
port = 8883
username = "edge"
password = "secret"
protocol = "5"

[bridge.mqtt.tls]
ca_file = "/etc/runnel/ca.pem"
client_cert_file = "/etc/runnel/client.pem"
client_key_file = "/etc/runnel/client.key"

[[bridge.ingress]]
filter = "trucks/+/gps"
topic = "gps"
key_level = 1
timestamp_json = "fix.ts"
timestamp_unit = "s"
validate = "json"
require = ["fix.lat", "fix.lon"]
dead_letter_topic = "gps-dlq"

[[bridge.ingress]]
filter = "trucks/+/temp"
topic = "temp"
qos = 0

[[bridge.egress]]
topic = "commands"
mqtt_topic = "trucks/{key}/cmd"
start = "earliest"
"#;

    /// A valid bridge with one ingress rule, to be broken by each test.
    fn minimal() -> BridgeConfig {
        toml::from_str::<BridgeFile>(
            r#"
[[bridge]]
name = "b"
mqtt = { host = "localhost" }
[[bridge.ingress]]
filter = "a/+"
topic = "t"
"#,
        )
        .expect("minimal config parses")
        .bridge
        .remove(0)
    }

    fn minimal_egress() -> EgressRule {
        EgressRule {
            topic: "out".into(),
            mqtt_topic: "x/{key}".into(),
            qos: 1,
            retain: false,
            group: None,
            start: StartFrom::Latest,
        }
    }

    fn error_of(bridge: &BridgeConfig) -> String {
        bridge
            .validate()
            .expect_err("config must be invalid")
            .to_string()
    }

    #[test]
    fn given_full_example_when_parsed_should_fill_defaults_and_validate() {
        let file: BridgeFile = toml::from_str(FULL).expect("example parses");
        validate_all(&file.bridge).expect("example is valid");
        let b = &file.bridge[0];
        assert_eq!(b.name, "truck");
        assert_eq!(b.status_interval_ms, 1000);
        assert_eq!(b.client_id(), "runnel-bridge-truck");
        let m = &b.mqtt;
        assert_eq!((m.port, m.protocol), (8883, MqttProtocol::V5));
        assert_eq!(m.keep_alive_secs, 30);
        assert_eq!((m.reconnect_min_ms, m.reconnect_max_ms), (200, 30_000));
        assert_eq!(m.max_inflight, 100);
        assert_eq!(m.max_packet_bytes, 1_048_576);
        assert_eq!(m.ingest_buffer, 1_000);
        let tls = m.tls.as_ref().expect("tls set");
        assert_eq!(tls.ca_file, PathBuf::from("/etc/runnel/ca.pem"));
        assert_eq!(tls.server_name, None);
        let gps = &b.ingress[0];
        assert_eq!(gps.qos, 1);
        assert_eq!(gps.key_level, Some(1));
        assert_eq!(gps.timestamp_unit, TimestampUnit::Seconds);
        assert_eq!(gps.validate, Validation::Json);
        assert!(gps.reads_json());
        let temp = &b.ingress[1];
        assert_eq!(temp.qos, 0);
        assert_eq!(temp.timestamp_unit, TimestampUnit::Millis);
        assert_eq!(temp.validate, Validation::None);
        assert!(temp.require.is_empty() && !temp.reads_json());
        let e = &b.egress[0];
        assert_eq!((e.qos, e.retain, e.start), (1, false, StartFrom::Earliest));
        assert_eq!(e.group_id("truck"), "runnel-bridge-truck-egress");
    }

    #[test]
    fn given_the_shipped_example_file_when_loaded_should_validate() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("runnel-bridge.example.toml");
        let bridges = load_file(&path)
            .expect("the example config is valid")
            .bridge;
        assert_eq!(bridges.len(), 1);
        assert_eq!(bridges[0].ingress.len(), 2);
        assert_eq!(bridges[0].egress.len(), 1);
    }

    #[test]
    fn given_minimal_bridge_when_parsed_should_use_every_default() {
        let b = minimal();
        b.validate().expect("minimal is valid");
        assert_eq!(b.status_interval_ms, 5000);
        assert_eq!(b.mqtt.port, 1883);
        assert_eq!(b.mqtt.protocol, MqttProtocol::V311);
        assert_eq!(b.mqtt.tls, None);
        assert_eq!(b.ingress[0].qos, 1);
        assert!(b.egress.is_empty());
        assert_eq!(minimal_egress().start, StartFrom::Latest);
    }

    #[test]
    fn given_config_when_serialized_to_toml_should_parse_back_equal() {
        let file: BridgeFile = toml::from_str(FULL).expect("example parses");
        let text = toml::to_string(&file).expect("serializes");
        let back: BridgeFile = toml::from_str(&text).expect("re-parses");
        assert_eq!(back, file);
    }

    #[test]
    fn given_a_kafka_table_when_parsed_should_secure_the_kafka_side() {
        use runnel_client::SaslMechanism;
        let text = format!(
            r#"
[kafka.tls]
ca_file = "/etc/runnel/kafka-ca.pem"
cert_file = "/etc/runnel/bridge.pem"
key_file = "/etc/runnel/bridge.key"

[kafka.sasl]
mechanism = "SCRAM-SHA-256"
username = "bridge"
password = "kafka-pw-42"
{FULL}"#
        );
        let file: BridgeFile = toml::from_str(&text).expect("parses");
        validate_all(&file.bridge).expect("valid");
        assert_eq!(file.kafka.protocol(), "SASL_SSL");
        let tls = file.kafka.tls.as_ref().expect("tls");
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(Path::new("/etc/runnel/kafka-ca.pem"))
        );
        let sasl = file.kafka.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha256);
        assert!(
            !format!("{file:?}").contains("kafka-pw-42"),
            "password in Debug"
        );
        let back: BridgeFile =
            toml::from_str(&toml::to_string(&file).expect("serializes")).expect("re-parses");
        assert_eq!(back, file);

        let plain: BridgeFile = toml::from_str(FULL).expect("parses");
        assert_eq!(plain.kafka.protocol(), "PLAINTEXT");
        for bad in [
            "[kafka]\nbootstrap = \"x:9092\"\n",
            "[kafka.tls]\nca = \"x\"\n",
            "[kafka.sasl]\nmechanism = \"GSSAPI\"\nusername = \"u\"\npassword = \"p\"\n",
        ] {
            assert!(toml::from_str::<BridgeFile>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn given_empty_file_when_parsed_should_have_no_bridges() {
        let file: BridgeFile = toml::from_str("").expect("empty parses");
        assert!(file.bridge.is_empty());
        validate_all(&file.bridge).expect("no bridges is valid");
    }

    #[test]
    fn given_unknown_key_when_parsed_should_name_it() {
        for (text, key) in [
            ("[[bridge]]\nname='b'\nmqtt={host='h'}\nfoo=1\n", "foo"),
            ("[[bridge]]\nname='b'\nmqtt={host='h', prot=1}\n", "prot"),
            (
                "[[bridge]]\nname='b'\nmqtt={host='h'}\n[[bridge.ingress]]\nfilter='a'\ntopic='t'\nkey_lvl=1\n",
                "key_lvl",
            ),
        ] {
            let err = toml::from_str::<BridgeFile>(text)
                .expect_err(key)
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn given_bad_enum_values_when_parsed_should_fail() {
        for text in [
            "[[bridge]]\nname='b'\nmqtt={host='h', protocol='4'}\n",
            "[[bridge]]\nname='b'\nmqtt={host='h'}\n[[bridge.ingress]]\nfilter='a'\ntopic='t'\ntimestamp_unit='us'\n",
            "[[bridge]]\nname='b'\nmqtt={host='h'}\n[[bridge.ingress]]\nfilter='a'\ntopic='t'\nvalidate='xml'\n",
            "[[bridge]]\nname='b'\nmqtt={host='h'}\n[[bridge.egress]]\ntopic='t'\nmqtt_topic='x'\nstart='now'\n",
        ] {
            assert!(toml::from_str::<BridgeFile>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn given_bad_bridge_values_when_validated_should_name_the_key() {
        type Breaker = fn(&mut BridgeConfig);
        let cases: [(&str, Breaker); 19] = [
            ("name", |b| b.name = String::new()),
            ("name", |b| b.name = "a b".into()),
            ("name", |b| b.name = "x".repeat(65)),
            ("status_interval_ms", |b| b.status_interval_ms = 0),
            ("mqtt.host", |b| b.mqtt.host = " ".into()),
            ("mqtt.port", |b| b.mqtt.port = 0),
            ("mqtt.client_id", |b| b.mqtt.client_id = Some(String::new())),
            ("mqtt.password", |b| b.mqtt.password = Some("p".into())),
            ("mqtt.keep_alive_secs", |b| b.mqtt.keep_alive_secs = 4),
            ("mqtt.keep_alive_secs", |b| b.mqtt.keep_alive_secs = 65_536),
            ("mqtt.reconnect_min_ms", |b| b.mqtt.reconnect_min_ms = 0),
            ("mqtt.reconnect_max_ms", |b| b.mqtt.reconnect_max_ms = 100),
            ("mqtt.max_inflight", |b| b.mqtt.max_inflight = 0),
            ("mqtt.max_packet_bytes", |b| b.mqtt.max_packet_bytes = 1023),
            ("mqtt.max_packet_bytes", |b| {
                b.mqtt.max_packet_bytes = MAX_PACKET_BYTES + 1
            }),
            ("mqtt.ingest_buffer", |b| b.mqtt.ingest_buffer = 0),
            ("mqtt.tls.ca_file", |b| b.mqtt.tls = Some(tls(|_| {}))),
            ("mqtt.tls.client_key_file", |b| {
                b.mqtt.tls = Some(tls(|t| t.client_cert_file = Some("c".into())))
            }),
            ("mqtt.tls.server_name", |b| {
                b.mqtt.tls = Some(tls(|t| t.server_name = Some(String::new())))
            }),
        ];
        for (key, breaker) in cases {
            let mut b = minimal();
            breaker(&mut b);
            let err = error_of(&b);
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
            assert!(err.starts_with("bridge "), "{err}");
        }
    }

    /// A TLS table with an empty `ca_file` unless `edit` sets one.
    fn tls(edit: impl FnOnce(&mut TlsConfig)) -> TlsConfig {
        let mut t = TlsConfig {
            ca_file: PathBuf::new(),
            client_cert_file: None,
            client_key_file: None,
            server_name: None,
        };
        edit(&mut t);
        if t.client_cert_file.is_some() || t.server_name.is_some() {
            t.ca_file = "ca.pem".into();
        }
        t
    }

    #[test]
    fn given_username_when_password_set_should_be_valid() {
        let mut b = minimal();
        b.mqtt.password = Some("p".into());
        b.mqtt.protocol = MqttProtocol::V5;
        assert!(error_of(&b).contains("`mqtt.password`"));
        b.mqtt.username = Some("u".into());
        b.validate().expect("username and password");
        b.mqtt.tls = Some(tls(|t| t.client_key_file = Some("k".into())));
        b.mqtt.tls.as_mut().expect("set").ca_file = "ca.pem".into();
        assert!(error_of(&b).contains("`mqtt.tls.client_cert_file`"));
    }

    #[test]
    fn given_bad_ingress_rule_when_validated_should_name_bridge_rule_and_key() {
        type Breaker = fn(&mut IngressRule);
        let cases: [(&str, Breaker); 16] = [
            ("filter", |r| r.filter = "a/#/b".into()),
            ("filter", |r| r.filter = String::new()),
            ("topic", |r| r.topic = "a/b".into()),
            ("topic", |r| r.topic = "..".into()),
            ("topic", |r| r.topic = "t".repeat(250)),
            ("qos", |r| r.qos = 3),
            ("key_json", |r| {
                r.key_level = Some(1);
                r.key_json = Some("id".into());
                r.dead_letter_topic = Some("dlq".into());
            }),
            ("key_level", |r| r.key_level = Some(2)),
            ("key_level", |r| {
                r.filter = "a/#".into();
                r.key_level = Some(1);
            }),
            ("key_json", |r| {
                r.key_json = Some("a..b".into());
                r.dead_letter_topic = Some("dlq".into());
            }),
            ("timestamp_json", |r| {
                r.timestamp_json = Some(".ts".into());
                r.dead_letter_topic = Some("dlq".into());
            }),
            ("require", |r| {
                r.require = vec!["ok".into(), "bad.".into()];
                r.dead_letter_topic = Some("dlq".into());
            }),
            ("dead_letter_topic", |r| r.validate = Validation::Json),
            ("dead_letter_topic", |r| r.require = vec!["a".into()]),
            ("dead_letter_topic", |r| {
                r.key_json = Some("id".into());
                r.dead_letter_topic = Some("t".into());
            }),
            ("dead_letter_topic", |r| {
                r.timestamp_json = Some("ts".into());
                r.dead_letter_topic = Some("bad topic".into());
            }),
        ];
        for (key, breaker) in cases {
            let mut b = minimal();
            b.ingress.insert(0, rule("other/#", "t"));
            breaker(&mut b.ingress[1]);
            let err = error_of(&b);
            let filter = &b.ingress[1].filter;
            let located = format!("bridge \"b\" ingress rule 2 (filter {filter:?})");
            assert!(err.starts_with(&located), "{err}");
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn given_rule_reading_json_without_dead_letter_when_validated_should_list_the_json_keys() {
        let mut b = minimal();
        b.ingress[0].key_json = Some("id".into());
        b.ingress[0].timestamp_json = Some("ts".into());
        let err = error_of(&b);
        assert!(err.contains("`key_json`, `timestamp_json`"), "{err}");
    }

    fn rule(filter: &str, topic: &str) -> IngressRule {
        IngressRule {
            filter: filter.into(),
            topic: topic.into(),
            qos: 1,
            key_level: None,
            key_json: None,
            timestamp_json: None,
            timestamp_unit: TimestampUnit::Millis,
            validate: Validation::None,
            require: Vec::new(),
            dead_letter_topic: None,
        }
    }

    #[test]
    fn given_overlapping_filters_when_validated_should_name_both_and_explain() {
        let mut b = minimal();
        b.ingress.push(rule("x/y", "t2"));
        b.ingress.push(rule("a/#", "t3"));
        let err = error_of(&b);
        assert!(
            err.contains("ingress rules 1 (filter \"a/+\") and 3 (filter \"a/#\") overlap"),
            "{err}"
        );
        assert!(
            err.contains("written twice") && err.contains("`filter`"),
            "{err}"
        );
        let mut ok = minimal();
        ok.ingress.push(rule("a/+/b", "t2"));
        ok.ingress.push(rule("$SYS/#", "t3"));
        ok.validate().expect("disjoint filters");
    }

    #[test]
    fn given_bad_egress_rule_when_validated_should_name_bridge_rule_and_key() {
        type Breaker = fn(&mut EgressRule);
        let cases: [(&str, Breaker); 6] = [
            ("topic", |r| r.topic = String::new()),
            ("mqtt_topic", |r| r.mqtt_topic = "x/{name}".into()),
            ("mqtt_topic", |r| r.mqtt_topic = "x/{key".into()),
            ("mqtt_topic", |r| r.mqtt_topic = "x/#".into()),
            ("qos", |r| r.qos = 2),
            ("group", |r| r.group = Some(String::new())),
        ];
        for (key, breaker) in cases {
            let mut b = minimal();
            b.egress.push(minimal_egress());
            breaker(&mut b.egress[0]);
            let err = error_of(&b);
            let topic = &b.egress[0].topic;
            let located = format!("bridge \"b\" egress rule 1 (topic {topic:?})");
            assert!(err.starts_with(&located), "{err}");
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn given_egress_only_bridge_when_validated_should_pass_and_use_group() {
        let mut b = minimal();
        b.ingress.clear();
        assert!(error_of(&b).contains("no [[bridge.ingress]] or [[bridge.egress]] rules"));
        let mut e = minimal_egress();
        e.group = Some("g".into());
        assert_eq!(e.group_id("b"), "g");
        b.egress.push(e);
        b.validate().expect("egress only");
    }

    #[test]
    fn given_duplicate_names_or_client_ids_when_validated_all_should_fail() {
        let a = minimal();
        let err = validate_all(&[a.clone(), a.clone()])
            .expect_err("duplicate")
            .to_string();
        assert!(
            err.contains("`name` \"b\"") && err.contains("1 and 2"),
            "{err}"
        );

        let mut c = minimal();
        c.name = "c".into();
        c.mqtt.client_id = Some("runnel-bridge-b".into());
        let err = validate_all(&[a.clone(), c.clone()])
            .expect_err("same client id")
            .to_string();
        assert!(
            err.contains("\"runnel-bridge-b\"") && err.contains("mqtt.client_id"),
            "{err}"
        );

        c.mqtt.client_id = None;
        assert_eq!(c.client_id(), "runnel-bridge-c");
        validate_all(&[a, c]).expect("distinct");
    }

    #[test]
    fn given_files_when_loaded_should_validate_and_name_the_file_in_errors() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path();
        let good = dir.join("good.toml");
        std::fs::write(&good, FULL).expect("write");
        assert_eq!(load_file(&good).expect("loads").bridge.len(), 1);

        let missing = dir.join("missing.toml");
        let err = load_file(&missing).expect_err("missing").to_string();
        assert!(
            err.contains("cannot read") && err.contains("missing.toml"),
            "{err}"
        );

        let syntax = dir.join("syntax.toml");
        std::fs::write(&syntax, "[[bridge]\n").expect("write");
        let err = load_file(&syntax).expect_err("syntax").to_string();
        assert!(err.contains("syntax.toml"), "{err}");

        let invalid = dir.join("invalid.toml");
        std::fs::write(&invalid, FULL.replace("key_level = 1", "key_level = 7")).expect("write");
        let err = load_file(&invalid).expect_err("invalid").to_string();
        assert!(
            err.contains("invalid.toml") && err.contains("`key_level`"),
            "{err}"
        );
        assert!(err.contains("bridge \"truck\" ingress rule 1"), "{err}");
    }
}
