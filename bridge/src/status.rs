//! What a bridge is doing, counted with atomics by the ingest and egress tasks and read as a
//! [`StatusSnapshot`]: by the status publisher (a JSON record per bridge, keyed by the bridge
//! name, in [`STATUS_TOPIC`] — how the admin GUI sees bridges over the Kafka protocol), by
//! the Prometheus text of [`render_metrics`], and by tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

use crate::config::BridgeConfig;

/// The topic bridge status records go to (one partition, latest record per key wins).
pub const STATUS_TOPIC: &str = "__runnel_bridge_status";

/// Counters of one ingress rule.
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub received: AtomicU64,
    pub written: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
}

/// Counters of one egress rule.
#[derive(Debug, Default)]
pub struct EgressCounters {
    pub delivered: AtomicU64,
    /// Records of the topic not yet delivered (end offset − position, summed over partitions).
    pub lag: AtomicI64,
}

/// Live state of one bridge.
#[derive(Debug)]
pub struct BridgeStats {
    pub name: String,
    pub connected: AtomicBool,
    pub connected_since_ms: AtomicI64,
    pub reconnects: AtomicU64,
    /// Messages received from MQTT and not yet acknowledged (the bridge's MQTT lag).
    pub pending: AtomicI64,
    /// Receive time of the oldest message still pending, 0 when none.
    pub oldest_pending_ms: AtomicI64,
    pub rules: Vec<(String, String, RuleCounters)>,
    pub egress: Vec<(String, String, EgressCounters)>,
    last_error: Mutex<Option<(i64, String)>>,
}

impl BridgeStats {
    pub fn new(config: &BridgeConfig) -> Self {
        BridgeStats {
            name: config.name.clone(),
            connected: AtomicBool::new(false),
            connected_since_ms: AtomicI64::new(0),
            reconnects: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            oldest_pending_ms: AtomicI64::new(0),
            rules: config
                .ingress
                .iter()
                .map(|r| (r.filter.clone(), r.topic.clone(), RuleCounters::default()))
                .collect(),
            egress: config
                .egress
                .iter()
                .map(|r| {
                    (
                        r.topic.clone(),
                        r.mqtt_topic.clone(),
                        EgressCounters::default(),
                    )
                })
                .collect(),
            last_error: Mutex::new(None),
        }
    }

    /// Records `message` as the latest problem (shown until replaced).
    pub fn set_error(&self, message: impl Into<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((crate::mqtt::now_ms(), message.into()));
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last_error = self.last_error.lock().ok().and_then(|e| e.clone());
        StatusSnapshot {
            bridge: self.name.clone(),
            at_ms: crate::mqtt::now_ms(),
            connected: self.connected.load(Ordering::Relaxed),
            connected_since_ms: self.connected_since_ms.load(Ordering::Relaxed),
            reconnects: get(&self.reconnects),
            pending: self.pending.load(Ordering::Relaxed),
            oldest_pending_ms: self.oldest_pending_ms.load(Ordering::Relaxed),
            last_error: last_error.as_ref().map(|(_, m)| m.clone()),
            last_error_ms: last_error.map(|(t, _)| t),
            ingress: self
                .rules
                .iter()
                .map(|(filter, topic, c)| RuleSnapshot {
                    filter: filter.clone(),
                    topic: topic.clone(),
                    received: get(&c.received),
                    written: get(&c.written),
                    dead_lettered: get(&c.dead_lettered),
                    dropped: get(&c.dropped),
                })
                .collect(),
            egress: self
                .egress
                .iter()
                .map(|(topic, mqtt_topic, c)| EgressSnapshot {
                    topic: topic.clone(),
                    mqtt_topic: mqtt_topic.clone(),
                    delivered: get(&c.delivered),
                    lag: c.lag.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// A bridge's state at one moment; the JSON value of its status record.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StatusSnapshot {
    pub bridge: String,
    pub at_ms: i64,
    pub connected: bool,
    pub connected_since_ms: i64,
    pub reconnects: u64,
    pub pending: i64,
    pub oldest_pending_ms: i64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub ingress: Vec<RuleSnapshot>,
    pub egress: Vec<EgressSnapshot>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RuleSnapshot {
    pub filter: String,
    pub topic: String,
    pub received: u64,
    pub written: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EgressSnapshot {
    pub topic: String,
    pub mqtt_topic: String,
    pub delivered: u64,
    pub lag: i64,
}

/// The snapshots in Prometheus' text exposition format.
pub fn render_metrics(snapshots: &[StatusSnapshot]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let b = |s: &StatusSnapshot| format!("bridge=\"{}\"", escape(&s.bridge));
    family(
        "runnel_bridge_connected",
        "gauge",
        "1 while the MQTT connection is up",
        snapshots
            .iter()
            .map(|s| (b(s), u8::from(s.connected).to_string()))
            .collect(),
    );
    family(
        "runnel_bridge_reconnects_total",
        "counter",
        "MQTT connections lost",
        snapshots
            .iter()
            .map(|s| (b(s), s.reconnects.to_string()))
            .collect(),
    );
    family(
        "runnel_bridge_pending_messages",
        "gauge",
        "MQTT messages received and not yet durable and acknowledged",
        snapshots
            .iter()
            .map(|s| (b(s), s.pending.to_string()))
            .collect(),
    );
    let rule_rows = |f: fn(&RuleSnapshot) -> u64| {
        snapshots
            .iter()
            .flat_map(|s| {
                s.ingress.iter().map(move |r| {
                    (
                        format!(
                            "{},filter=\"{}\",topic=\"{}\"",
                            b(s),
                            escape(&r.filter),
                            escape(&r.topic)
                        ),
                        f(r).to_string(),
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "runnel_bridge_received_total",
        "counter",
        "MQTT messages received",
        rule_rows(|r| r.received),
    );
    family(
        "runnel_bridge_written_total",
        "counter",
        "records made durable",
        rule_rows(|r| r.written),
    );
    family(
        "runnel_bridge_dead_lettered_total",
        "counter",
        "messages written to the dead-letter topic",
        rule_rows(|r| r.dead_lettered),
    );
    family(
        "runnel_bridge_dropped_total",
        "counter",
        "messages that could be written nowhere (logged at error)",
        rule_rows(|r| r.dropped),
    );
    let egress_rows = |f: fn(&EgressSnapshot) -> i64| {
        snapshots
            .iter()
            .flat_map(|s| {
                s.egress.iter().map(move |e| {
                    (
                        format!("{},topic=\"{}\"", b(s), escape(&e.topic)),
                        f(e).to_string(),
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    family(
        "runnel_bridge_egress_delivered_total",
        "counter",
        "records published to MQTT and acknowledged",
        egress_rows(|e| e.delivered as i64),
    );
    family(
        "runnel_bridge_egress_lag",
        "gauge",
        "records not yet published to MQTT",
        egress_rows(|e| e.lag),
    );
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
