//! What an uplink is doing: counters kept with atomics by its lanes, read as an
//! [`UplinkSnapshot`] by the status publisher (a JSON record per uplink, keyed by its name,
//! in [`STATUS_TOPIC`] — how the admin GUI sees uplinks over the Kafka protocol), by the
//! Prometheus text of [`render_metrics`], and by tests.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::log::{PartitionLog, now_ms};

/// The topic uplink status records go to (one partition, newest record per key wins).
pub const STATUS_TOPIC: &str = "__runnel_uplink_status";

/// Live state of one forwarded partition.
#[derive(Debug)]
pub struct LaneStats {
    pub topic: String,
    pub partition: i32,
    pub remote_topic: String,
    pub log: Arc<PartitionLog>,
    pub remote_partition: AtomicI32,
    /// First offset not yet forwarded.
    pub next_offset: AtomicI64,
    /// Timestamp of the record at `next_offset` when known and not yet forwarded; 0: none.
    pub oldest_unforwarded_ms: AtomicI64,
}

/// Live state of one uplink.
#[derive(Debug)]
pub struct UplinkStats {
    pub name: String,
    pub device_id: String,
    pub upstream: String,
    pub connected: AtomicBool,
    pub window_open: AtomicBool,
    pub forwarded_records: AtomicU64,
    pub forwarded_bytes: AtomicU64,
    pub dropped_records: AtomicU64,
    pub rejected_records: AtomicU64,
    /// Records re-sent under a new producer id, which the upstream may hold twice.
    pub possible_duplicates: AtomicU64,
    pub errors: AtomicU64,
    /// Records per second forwarded over the last status interval (f64 bits).
    rate_bits: AtomicU64,
    lanes: Mutex<Vec<Arc<LaneStats>>>,
    last_error: Mutex<Option<(i64, String)>>,
}

impl UplinkStats {
    pub fn new(name: &str, device_id: &str, upstream: &str) -> Self {
        UplinkStats {
            name: name.into(),
            device_id: device_id.into(),
            upstream: upstream.into(),
            connected: AtomicBool::new(false),
            window_open: AtomicBool::new(true),
            forwarded_records: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
            dropped_records: AtomicU64::new(0),
            rejected_records: AtomicU64::new(0),
            possible_duplicates: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rate_bits: AtomicU64::new(0f64.to_bits()),
            lanes: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
        }
    }

    pub fn add_lane(&self, lane: Arc<LaneStats>) {
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lane);
    }

    pub fn remove_lane(&self, lane: &Arc<LaneStats>) {
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|l| !Arc::ptr_eq(l, lane));
    }

    pub fn set_error(&self, message: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((now_ms(), message.into()));
    }

    pub fn set_rate(&self, per_sec: f64) {
        self.rate_bits.store(per_sec.to_bits(), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UplinkSnapshot {
        let now = now_ms();
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut partitions: Vec<PartitionSnapshot> = lanes
            .iter()
            .map(|l| {
                let next = l.next_offset.load(Ordering::Relaxed);
                let end = l.log.next_offset();
                let start = l.log.log_start();
                let backlog = (end - next.max(start)).max(0);
                // Bytes are known per partition, not per record: estimate the backlog's
                // share from the partition's average record size.
                let stored = (end - start).max(1);
                let backlog_bytes =
                    (u128::from(l.log.size_bytes()) * backlog as u128 / stored as u128) as u64;
                let oldest = l.oldest_unforwarded_ms.load(Ordering::Relaxed);
                PartitionSnapshot {
                    topic: l.topic.clone(),
                    partition: l.partition,
                    remote_topic: l.remote_topic.clone(),
                    remote_partition: l.remote_partition.load(Ordering::Relaxed),
                    next_offset: next,
                    end_offset: end,
                    backlog_records: backlog,
                    backlog_bytes,
                    oldest_unforwarded_ms: (backlog > 0 && oldest > 0).then_some(oldest),
                }
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let oldest = partitions
            .iter()
            .filter_map(|p| p.oldest_unforwarded_ms)
            .min();
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        UplinkSnapshot {
            uplink: self.name.clone(),
            device_id: self.device_id.clone(),
            upstream: self.upstream.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            window_open: self.window_open.load(Ordering::Relaxed),
            backlog_records: partitions.iter().map(|p| p.backlog_records).sum(),
            backlog_bytes: partitions.iter().map(|p| p.backlog_bytes).sum(),
            oldest_unforwarded_ms: oldest,
            oldest_unforwarded_age_ms: oldest.map(|t| (now - t).max(0)),
            forwarded_records: self.forwarded_records.load(Ordering::Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Ordering::Relaxed),
            forwarded_per_sec: f64::from_bits(self.rate_bits.load(Ordering::Relaxed)),
            dropped_records: self.dropped_records.load(Ordering::Relaxed),
            rejected_records: self.rejected_records.load(Ordering::Relaxed),
            possible_duplicates: self.possible_duplicates.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_error_at_ms: last_error.as_ref().map(|(at, _)| *at),
            last_error: last_error.map(|(_, e)| e),
            partitions,
            at_ms: now,
        }
    }
}

/// One uplink's status, as published.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct UplinkSnapshot {
    pub uplink: String,
    pub device_id: String,
    pub upstream: String,
    pub connected: bool,
    pub window_open: bool,
    pub backlog_records: i64,
    /// Estimated from each partition's average record size.
    pub backlog_bytes: u64,
    pub oldest_unforwarded_ms: Option<i64>,
    pub oldest_unforwarded_age_ms: Option<i64>,
    pub forwarded_records: u64,
    pub forwarded_bytes: u64,
    pub forwarded_per_sec: f64,
    pub dropped_records: u64,
    pub rejected_records: u64,
    pub possible_duplicates: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub partitions: Vec<PartitionSnapshot>,
    pub at_ms: i64,
}

/// One forwarded partition's status.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub remote_topic: String,
    pub remote_partition: i32,
    pub next_offset: i64,
    pub end_offset: i64,
    pub backlog_records: i64,
    pub backlog_bytes: u64,
    pub oldest_unforwarded_ms: Option<i64>,
}

/// One metric: name, type, help text and how to read it from a snapshot.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&UplinkSnapshot) -> f64,
);

/// Prometheus text exposition of every uplink.
pub fn render_metrics(snapshots: &[UplinkSnapshot]) -> String {
    let mut out = String::new();
    let metrics: [Metric; 10] = [
        (
            "runnel_uplink_connected",
            "gauge",
            "1 when the last upstream request succeeded",
            |s| f64::from(u8::from(s.connected)),
        ),
        (
            "runnel_uplink_backlog_records",
            "gauge",
            "records not yet forwarded",
            |s| s.backlog_records as f64,
        ),
        (
            "runnel_uplink_backlog_bytes",
            "gauge",
            "bytes not yet forwarded (estimated)",
            |s| s.backlog_bytes as f64,
        ),
        (
            "runnel_uplink_oldest_unforwarded_age_seconds",
            "gauge",
            "age of the oldest record not yet forwarded",
            |s| s.oldest_unforwarded_age_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        (
            "runnel_uplink_forwarded_records_total",
            "counter",
            "records acknowledged upstream",
            |s| s.forwarded_records as f64,
        ),
        (
            "runnel_uplink_forwarded_bytes_total",
            "counter",
            "bytes sent upstream and acknowledged",
            |s| s.forwarded_bytes as f64,
        ),
        (
            "runnel_uplink_dropped_records_total",
            "counter",
            "records deleted by the disk budget before they were forwarded",
            |s| s.dropped_records as f64,
        ),
        (
            "runnel_uplink_rejected_records_total",
            "counter",
            "records the upstream refused for good",
            |s| s.rejected_records as f64,
        ),
        (
            "runnel_uplink_possible_duplicates_total",
            "counter",
            "records re-sent under a new producer id",
            |s| s.possible_duplicates as f64,
        ),
        (
            "runnel_uplink_errors_total",
            "counter",
            "failed upstream attempts",
            |s| s.errors as f64,
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in snapshots {
            let _ = writeln!(
                out,
                "{name}{{uplink=\"{}\"}} {}",
                escape(&s.uplink),
                value(s)
            );
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
