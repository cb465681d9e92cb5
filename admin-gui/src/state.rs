//! Plain data the panels draw: what the background worker last learned about each cluster.
//! No I/O, no egui. The worker replaces parts of a [`ClusterView`] when an answer arrives; a
//! cluster that stops answering keeps its last values, and [`Freshness`] says how old they
//! are.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runnel_client::admin::users::ScramUser;
use runnel_client::{AclBinding, ClusterMeta, ConfigEntry, GroupDescription};
use serde::{Deserialize, Serialize};

use crate::replication::BrokersView;
use crate::status::{StatusRecord, UplinkStatus};

/// (topic, partition) → offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

pub use crate::profile::{Profile, SaslProfile};

/// How current a cluster's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No answer yet.
    Connecting,
    /// The last refresh succeeded.
    Online,
    /// The last refresh failed, but earlier data is shown; `since` is the last success.
    Stale { since: Instant },
    /// Never answered.
    Offline,
}

impl Freshness {
    pub fn label(&self, now: Instant) -> String {
        match self {
            Freshness::Connecting => "connecting…".into(),
            Freshness::Online => "online".into(),
            Freshness::Stale { since } => format!("stale (last seen {} ago)", age(now - *since)),
            Freshness::Offline => "offline".into(),
        }
    }
}

/// `12s`, `3m 05s`, `2h 10m`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// What one broker told about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    pub reachable: bool,
    pub error: Option<String>,
    /// `runnel.version`, `runnel.uptime.ms`, `runnel.disk.used.bytes`, `runnel.rss.bytes`,
    /// `log.max.disk.bytes`, when the broker reports them.
    pub stats: BTreeMap<String, String>,
}

/// One topic row.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRow {
    pub name: String,
    pub partitions: usize,
    pub replication: usize,
    /// Records in the topic (sum over partitions of end − start).
    pub records: i64,
    /// Records per second over the last two refreshes, once known.
    pub rate: Option<f64>,
    pub under_replicated: usize,
    /// Bytes stored over all partitions (DescribeLogDirs); `None` when the cluster does not
    /// say.
    pub size: Option<u64>,
    pub retention: Retention,
}

/// A topic's `retention.ms` and `retention.bytes` (-1: no limit); `None` while unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub ms: Option<i64>,
    pub bytes: Option<i64>,
}

impl Retention {
    /// `7 d`, `1 GiB`, `7 d / 1 GiB` (whichever limit is reached first), `forever`; `-` when
    /// unknown.
    pub fn label(&self) -> String {
        if self.ms.is_none() && self.bytes.is_none() {
            return "-".into();
        }
        let time = self.ms.filter(|ms| *ms >= 0).map(duration_label);
        let size = self
            .bytes
            .and_then(|b| u64::try_from(b).ok())
            .map(bytes_label);
        match (time, size) {
            (None, None) => "forever".into(),
            (Some(t), None) => t,
            (None, Some(s)) => s,
            (Some(t), Some(s)) => format!("{t} / {s}"),
        }
    }
}

/// `512 B`, `1.2 KiB`, `35 MiB`, `1 GiB`: binary units, one decimal below 10.
pub fn bytes_label(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", short_number(value, unit > 0), UNITS[unit])
}

/// `500 ms`, `45 s`, `30 min`, `12 h`, `7 d`, `1.5 d`: the largest unit that is at least 1.
pub fn duration_label(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    match UNITS.iter().find(|(unit, _)| ms >= *unit) {
        Some((unit, name)) => format!("{} {name}", short_number(ms as f64 / *unit as f64, true)),
        None => format!("{ms} ms"),
    }
}

/// `45 s`, `12 min 5 s`, `3 h 12 min`, `2 d 3 h`: the two largest units (the second left out
/// when it is zero), for how long something has waited.
pub fn elapsed_label(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    let ms = ms.max(0);
    let Some(i) = UNITS.iter().position(|(unit, _)| ms >= *unit) else {
        return "0 s".into();
    };
    let (unit, name) = UNITS[i];
    let mut out = format!("{} {name}", ms / unit);
    if let Some((next, next_name)) = UNITS.get(i + 1) {
        let rest = ms % unit / next;
        if rest > 0 {
            out.push_str(&format!(" {rest} {next_name}"));
        }
    }
    out
}

/// `12,345`: digits grouped by thousands.
pub fn count_label(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One decimal below 10 when `fraction` (dropped when it is .0), none from 10 up.
fn short_number(value: f64, fraction: bool) -> String {
    if fraction && value < 10.0 {
        let s = format!("{value:.1}");
        s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
    } else {
        format!("{value:.0}")
    }
}

/// One partition in a topic's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub low: i64,
    pub high: i64,
    /// Bytes stored (DescribeLogDirs); `None` when the cluster does not say.
    pub size: Option<u64>,
}

/// A topic's detail, loaded on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDetail {
    pub name: String,
    pub partitions: Vec<PartitionRow>,
    pub configs: Vec<ConfigEntry>,
}

/// How a group is doing, judged over a window of lag samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupStatus {
    Ok,
    /// Lag grew over the window.
    Lagging,
    /// Lag > 0 and committed offsets did not move over the window.
    Stalled,
    /// No members.
    Empty,
    /// Not enough samples yet.
    Unknown,
}

/// One group row.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub group_id: String,
    pub state: String,
    pub members: usize,
    pub lag: i64,
    pub status: GroupStatus,
}

/// Committed offset, end and owner of one partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionRow {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub end: i64,
    pub lag: i64,
    pub owner: Option<String>,
}

/// A group's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetail {
    pub description: GroupDescription,
    pub partitions: Vec<GroupPartitionRow>,
}

/// A record shown in the message browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The outcome of a user action, shown next to what caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// What was done, e.g. `create topic gps`.
    pub action: String,
    pub ok: bool,
    pub message: String,
}

/// Everything known about one cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub profile: Profile,
    pub freshness: Freshness,
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
    pub meta: Option<ClusterMeta>,
    /// Per broker: whether it answered this refresh, and the `runnel.*` and disk entries of
    /// its configs (empty for brokers that are not Runnel).
    pub brokers: BTreeMap<i32, BrokerStatus>,
    /// The Brokers screen: brokers (fenced ones too) and partitions that need attention.
    pub brokers_view: Option<BrokersView>,
    pub topics: Vec<TopicRow>,
    pub groups: Vec<GroupRow>,
    pub topic_detail: Option<TopicDetail>,
    pub group_detail: Option<GroupDetail>,
    pub messages: Vec<MessageRow>,
    /// Bridge name → its latest status record (JSON, as the bridge wrote it).
    pub bridges: BTreeMap<String, StatusRecord<serde_json::Value>>,
    /// Uplink name → its latest status record.
    pub uplinks: BTreeMap<String, StatusRecord<UplinkStatus>>,
    /// Newest first, bounded.
    pub results: Vec<ActionResult>,
    /// The offsets an offset reset would commit, for the preview: (topic, partition) → offset.
    pub reset_preview: Option<(String, Offsets)>,
    /// ACL bindings and SCRAM users, once the Access screen asked for them.
    pub access: AccessView,
}

/// What the Access screen shows: a list the cluster refused keeps its last value, and says
/// why in plain words.
#[derive(Debug, Clone, Default)]
pub struct AccessView {
    pub acls: Listing<AclBinding>,
    pub users: Listing<ScramUser>,
}

/// A list loaded with the refresh, and why the last load failed.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// `None` until the cluster first answered.
    pub items: Option<Vec<T>>,
    /// In plain words: why the cluster refused, or what went wrong.
    pub error: Option<String>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            items: None,
            error: None,
        }
    }
}

impl<T> Listing<T> {
    /// Stores a load's outcome, keeping the last items on failure.
    pub fn store(&mut self, outcome: Result<Vec<T>, String>) {
        match outcome {
            Ok(items) => {
                self.items = Some(items);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

impl ClusterView {
    pub fn new(profile: Profile) -> Self {
        ClusterView {
            profile,
            freshness: Freshness::Connecting,
            last_ok: None,
            last_error: None,
            meta: None,
            brokers: BTreeMap::new(),
            brokers_view: None,
            topics: Vec::new(),
            groups: Vec::new(),
            topic_detail: None,
            group_detail: None,
            messages: Vec::new(),
            bridges: BTreeMap::new(),
            uplinks: BTreeMap::new(),
            results: Vec::new(),
            reset_preview: None,
            access: AccessView::default(),
        }
    }

    /// Records a refresh outcome: success makes the view online, failure keeps the data and
    /// marks it stale (or offline if nothing ever arrived).
    pub fn mark(&mut self, outcome: Result<(), String>, now: Instant) {
        match outcome {
            Ok(()) => {
                self.freshness = Freshness::Online;
                self.last_ok = Some(now);
                self.last_error = None;
            }
            Err(e) => {
                self.freshness = match self.last_ok {
                    Some(since) => Freshness::Stale { since },
                    None => Freshness::Offline,
                };
                self.last_error = Some(e);
            }
        }
    }

    /// Keeps the newest results, at most 20.
    pub fn push_result(&mut self, result: ActionResult) {
        self.results.insert(0, result);
        self.results.truncate(20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ClusterView {
        ClusterView::new(Profile::new("edge", "127.0.0.1:9092"))
    }

    #[test]
    fn given_a_failure_after_success_when_marking_should_be_stale_since_the_last_success() {
        let mut v = view();
        let t0 = Instant::now();
        v.mark(Ok(()), t0);
        assert_eq!(v.freshness, Freshness::Online);
        v.mark(
            Err("connection refused".into()),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(v.freshness, Freshness::Stale { since: t0 });
        assert_eq!(v.last_error.as_deref(), Some("connection refused"));
        assert!(
            v.freshness
                .label(t0 + Duration::from_secs(75))
                .contains("1m 15s")
        );
    }

    #[test]
    fn given_sizes_and_durations_when_labelling_should_use_short_human_units() {
        assert_eq!(bytes_label(0), "0 B");
        assert_eq!(bytes_label(1023), "1023 B");
        assert_eq!(bytes_label(1024), "1 KiB");
        assert_eq!(bytes_label(1_258_291), "1.2 MiB");
        assert_eq!(bytes_label(35 << 20), "35 MiB");
        assert_eq!(bytes_label(1 << 30), "1 GiB");
        assert_eq!(duration_label(500), "500 ms");
        assert_eq!(duration_label(45_000), "45 s");
        assert_eq!(duration_label(1_800_000), "30 min");
        assert_eq!(duration_label(604_800_000), "7 d");
        assert_eq!(duration_label(129_600_000), "1.5 d");
    }

    #[test]
    fn given_waits_and_counts_when_labelling_should_use_two_units_and_group_thousands() {
        assert_eq!(elapsed_label(0), "0 s");
        assert_eq!(elapsed_label(999), "0 s");
        assert_eq!(elapsed_label(45_000), "45 s");
        assert_eq!(elapsed_label(725_000), "12 min 5 s");
        assert_eq!(elapsed_label(3_600_000), "1 h");
        assert_eq!(elapsed_label(11_520_000 + 59_999), "3 h 12 min");
        assert_eq!(elapsed_label(183_600_000), "2 d 3 h");
        assert_eq!(count_label(0), "0");
        assert_eq!(count_label(999), "999");
        assert_eq!(count_label(12_345), "12,345");
        assert_eq!(count_label(1_234_567), "1,234,567");
        assert_eq!(count_label(-1_000), "-1,000");
    }

    #[test]
    fn given_retention_limits_when_labelling_should_name_each_limit_or_forever() {
        let r = |ms, bytes| Retention { ms, bytes }.label();
        assert_eq!(r(Some(604_800_000), Some(-1)), "7 d");
        assert_eq!(r(Some(-1), Some(1 << 30)), "1 GiB");
        assert_eq!(r(Some(3_600_000), Some(1 << 30)), "1 h / 1 GiB");
        assert_eq!(r(Some(-1), Some(-1)), "forever");
        assert_eq!(r(None, None), "-");
    }

    #[test]
    fn given_only_failures_when_marking_should_be_offline() {
        let mut v = view();
        v.mark(Err("no route".into()), Instant::now());
        assert_eq!(v.freshness, Freshness::Offline);
    }
}
