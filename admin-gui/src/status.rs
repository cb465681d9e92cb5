//! Status records of Runnel's MQTT bridges and uplinks, as plain data: the newest record of
//! each writer with when it was written and how often its writer writes ([`StatusRecord`]),
//! and the fields of an uplink's record ([`UplinkStatus`]) with the words the screens use for
//! them. No I/O, no egui; the worker reads the records ([`crate::worker::status_topic`]).
//!
//! A status record is stale when it is older than three of its writer's intervals — the
//! writer stopped, or its broker lost the clock — and then its values are shown with the
//! record's age instead of as current.

use serde::Deserialize;

use crate::state::{bytes_label, count_label, elapsed_label};

/// How old a record may get before it is stale while its writer's interval is unknown (only
/// one record of that writer seen so far).
pub const STALE_WITHOUT_INTERVAL_MS: i64 = 30_000;
/// How many intervals a record may miss before it is stale.
const STALE_INTERVALS: i64 = 3;

/// The newest status record of one writer (a bridge or an uplink), keyed by its name.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord<T> {
    pub value: T,
    /// When the writer made it (its `at_ms`, else the record's timestamp), ms since the epoch.
    pub at_ms: i64,
    /// The time between this record and the writer's previous one, once two were seen.
    pub interval_ms: Option<i64>,
}

impl<T> StatusRecord<T> {
    /// How old the record is at `now_ms` (never negative: clocks differ a little).
    pub fn age_ms(&self, now_ms: i64) -> i64 {
        (now_ms - self.at_ms).max(0)
    }

    /// The age after which the record is stale: three intervals, or 30 s while unknown.
    pub fn stale_after_ms(&self) -> i64 {
        self.interval_ms
            .filter(|i| *i > 0)
            .map_or(STALE_WITHOUT_INTERVAL_MS, |i| i * STALE_INTERVALS)
    }

    /// The record's age when it is stale at `now_ms`.
    pub fn stale_age_ms(&self, now_ms: i64) -> Option<i64> {
        let age = self.age_ms(now_ms);
        (age > self.stale_after_ms()).then_some(age)
    }

    /// `2 s ago`, or `stale: 5 min 3 s old` (with `true`).
    pub fn age_label(&self, now_ms: i64) -> (String, bool) {
        match self.stale_age_ms(now_ms) {
            Some(age) => (format!("stale: {} old", elapsed_label(age)), true),
            None => (format!("{} ago", elapsed_label(self.age_ms(now_ms))), false),
        }
    }
}

/// One uplink's status record (`UplinkSnapshot` of the broker's `uplink::status`). Missing
/// fields take their defaults, so records of older or newer brokers still show.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UplinkStatus {
    pub uplink: String,
    pub device_id: String,
    pub upstream: String,
    pub connected: bool,
    pub window_open: bool,
    pub backlog_records: i64,
    /// Estimated by the broker from each partition's average record size.
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
    pub partitions: Vec<UplinkPartition>,
    pub at_ms: i64,
}

/// One forwarded partition of an uplink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UplinkPartition {
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

/// `12,345 records (3.4 MiB)`.
pub fn backlog_label(records: i64, bytes: u64) -> String {
    format!("{} records ({})", count_label(records), bytes_label(bytes))
}

/// How long a record stamped `at_ms` has waited at `now_ms`.
fn waited(at_ms: i64, now_ms: i64) -> String {
    elapsed_label(now_ms - at_ms)
}

impl UplinkStatus {
    /// `connected`, `not connected`, or `outside window` (the link is idle by design then);
    /// `true` when it is a problem.
    pub fn link_label(&self) -> (&'static str, bool) {
        if !self.window_open {
            ("outside window", false)
        } else if self.connected {
            ("connected", false)
        } else {
            ("not connected", true)
        }
    }

    /// How long the oldest unforwarded record has waited at `now_ms`; `None` when caught up.
    pub fn oldest_label(&self, now_ms: i64) -> Option<String> {
        if self.backlog_records == 0 {
            return None;
        }
        let measured = self
            .oldest_unforwarded_age_ms
            .or_else(|| Some(self.at_ms - self.oldest_unforwarded_ms?))?;
        Some(self.waited_label(measured, now_ms))
    }

    /// How long one partition's oldest unforwarded record has waited at `now_ms`.
    pub fn partition_oldest_label(&self, p: &UplinkPartition, now_ms: i64) -> Option<String> {
        let oldest = p.oldest_unforwarded_ms.filter(|_| p.backlog_records > 0)?;
        Some(self.waited_label(self.at_ms - oldest, now_ms))
    }

    /// An age the uplink measured when it wrote the record, plus the time since: the same as
    /// `now − oldest` when the clocks agree, and never negative when they do not.
    fn waited_label(&self, measured_ms: i64, now_ms: i64) -> String {
        elapsed_label(measured_ms.max(0) + (now_ms - self.at_ms).max(0))
    }

    /// `12,345 records (3.4 MiB)`, or `caught up`.
    pub fn backlog_summary(&self) -> String {
        if self.backlog_records == 0 {
            "caught up".into()
        } else {
            backlog_label(self.backlog_records, self.backlog_bytes)
        }
    }

    /// `1,234 (1.1 MiB)`: records and bytes forwarded since the broker started.
    pub fn forwarded_label(&self) -> String {
        format!(
            "{} ({})",
            count_label(i64::try_from(self.forwarded_records).unwrap_or(i64::MAX)),
            bytes_label(self.forwarded_bytes)
        )
    }

    /// `1,200/s`, `0.5/s`: records forwarded per second.
    pub fn rate_label(&self) -> String {
        let r = self.forwarded_per_sec.max(0.0);
        if r > 0.0 && r < 10.0 {
            format!("{r:.1}/s")
        } else {
            format!("{}/s", count_label(r.round() as i64))
        }
    }

    /// `2 min 5 s ago`: when the last error happened; `None` without one.
    pub fn last_error_ago(&self, now_ms: i64) -> Option<String> {
        self.last_error.as_ref()?;
        Some(format!("{} ago", waited(self.last_error_at_ms?, now_ms)))
    }
}

impl StatusRecord<UplinkStatus> {
    /// The fleet overview's line: `truck-042 -> central: 12,345 records (3.4 MiB), oldest 2 h`
    /// or `truck-042 -> central: caught up`, with `, not connected` or `, outside window`
    /// while records wait, and `(status stale: 5 min old)` when the record is. (`->`, not an
    /// arrow: egui's default fonts have no arrow glyphs.)
    pub fn fleet_line(&self, now_ms: i64) -> String {
        let s = &self.value;
        let mut line = format!("{} -> {}: {}", s.device_id, s.uplink, s.backlog_summary());
        if let Some(oldest) = s.oldest_label(now_ms) {
            line.push_str(&format!(", oldest {oldest}"));
        }
        let (link, problem) = s.link_label();
        if s.backlog_records > 0 && (problem || !s.window_open) {
            line.push_str(&format!(", {link}"));
        }
        if let Some(age) = self.stale_age_ms(now_ms) {
            line.push_str(&format!(" (status stale: {} old)", elapsed_label(age)));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: UplinkStatus, interval_ms: Option<i64>) -> StatusRecord<UplinkStatus> {
        StatusRecord {
            at_ms: value.at_ms,
            value,
            interval_ms,
        }
    }

    fn waiting(at_ms: i64) -> UplinkStatus {
        UplinkStatus {
            uplink: "central".into(),
            device_id: "truck-042".into(),
            window_open: true,
            backlog_records: 12_345,
            backlog_bytes: 3_565_158,
            oldest_unforwarded_ms: Some(at_ms - 7_200_000),
            oldest_unforwarded_age_ms: Some(7_200_000),
            at_ms,
            ..UplinkStatus::default()
        }
    }

    #[test]
    fn given_a_record_when_judging_staleness_should_allow_three_intervals_or_30_s() {
        let r = record(waiting(1_000_000), Some(5_000));
        assert_eq!(r.stale_age_ms(1_015_000), None);
        assert_eq!(r.stale_age_ms(1_015_001), Some(15_001));
        assert_eq!(r.age_label(1_002_000), ("2 s ago".into(), false));
        assert_eq!(
            r.age_label(1_303_000),
            ("stale: 5 min 3 s old".into(), true)
        );
        let first = record(waiting(1_000_000), None);
        assert_eq!(first.stale_age_ms(1_030_000), None);
        assert_eq!(first.stale_age_ms(1_030_001), Some(30_001));
        // A clock a little ahead of ours: not negative, not stale.
        assert_eq!(first.age_label(999_000), ("0 s ago".into(), false));
    }

    #[test]
    fn given_a_backlog_when_summarising_for_the_fleet_should_name_records_size_and_age() {
        let now = 10_000_000;
        let mut s = waiting(now);
        s.connected = true;
        assert_eq!(
            record(s.clone(), Some(5_000)).fleet_line(now),
            "truck-042 -> central: 12,345 records (3.4 MiB), oldest 2 h"
        );
        s.connected = false;
        assert_eq!(
            record(s.clone(), Some(5_000)).fleet_line(now + 60_000),
            "truck-042 -> central: 12,345 records (3.4 MiB), oldest 2 h 1 min, not connected \
             (status stale: 1 min old)"
        );
        s.backlog_records = 0;
        s.backlog_bytes = 0;
        assert_eq!(
            record(s, Some(5_000)).fleet_line(now),
            "truck-042 -> central: caught up"
        );
    }

    #[test]
    fn given_a_status_json_when_parsing_should_take_known_fields_and_default_the_rest() {
        let json = r#"{"uplink":"central","device_id":"truck-7","upstream":"c:9092",
            "connected":false,"window_open":false,"backlog_records":3,"backlog_bytes":300,
            "forwarded_per_sec":0.5,"last_error":"refused","last_error_at_ms":1000,
            "partitions":[{"topic":"gps","partition":1,"backlog_records":3}],"at_ms":61000,
            "added_later":true}"#;
        let s: UplinkStatus = serde_json::from_str(json).expect("parses");
        assert_eq!(s.link_label(), ("outside window", false));
        assert_eq!(s.rate_label(), "0.5/s");
        assert_eq!(s.last_error_ago(121_000).as_deref(), Some("2 min ago"));
        assert_eq!(s.partitions[0].backlog_records, 3);
        assert_eq!(s.oldest_label(61_000), None, "the age is unknown");
        assert_eq!(
            record(s, None).fleet_line(61_000),
            "truck-7 -> central: 3 records (300 B), outside window"
        );
    }
}
