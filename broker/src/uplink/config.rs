//! `[[uplink]]` tables of the broker's config: where to forward, what, under which name, how
//! fast and when. [`UplinkConfig::validate`] checks everything that can be checked before the
//! first connection, naming the key at fault.

use std::time::Duration;

use serde::Deserialize;

use crate::topics::name;

/// One uplink: local topics mirrored to an upstream Kafka-compatible cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Unique among uplinks; keys the stored progress, so renaming restarts from the log start.
    pub name: String,
    /// Upstream `host:port` bootstrap servers.
    pub bootstrap: Vec<String>,
    /// This device's id for `${device_id}` and the `runnel.origin.device` header. Default: the
    /// host name.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Local topics to forward: exact names, or prefixes written `sensors.*`. Patterns never
    /// match internal topics (names starting with `__`); name those exactly.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Also forward local topics whose whole name matches this regular expression.
    #[serde(default)]
    pub topic_regex: Option<String>,
    /// Upstream topic name; `${device_id}` and `${topic}` are replaced.
    #[serde(default = "default_remote_topic")]
    pub remote_topic: String,
    /// Create missing upstream topics (with the local partition count).
    #[serde(default = "yes")]
    pub create_remote_topics: bool,
    /// Replication factor of created upstream topics; -1: the upstream's default.
    #[serde(default = "minus_one")]
    pub remote_replication_factor: i16,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Largest batch sent upstream, before compression; below Kafka's default
    /// `message.max.bytes` (1 MB) so a stock upstream takes it.
    #[serde(default = "default_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Bandwidth cap in bytes per second (as sent, after compression); unset: no cap.
    #[serde(default)]
    pub max_bytes_per_sec: Option<u64>,
    /// Forward only inside this daily UTC window, `HH:MM-HH:MM` (may wrap midnight).
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
    #[serde(default = "default_backoff_min_ms")]
    pub retry_backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
    /// Deadline of one upstream request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `[uplink.tls]`: TLS to the upstream (Kafka's `security.protocol=SSL`/`SASL_SSL`):
    /// `ca_file` (unset: the system trust store), `cert_file` + `key_file` for mTLS,
    /// `server_name`.
    #[serde(default)]
    pub tls: Option<runnel_client::TlsSettings>,
    /// `[uplink.sasl]`: `mechanism` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), `username`,
    /// `password`.
    #[serde(default)]
    pub sasl: Option<runnel_client::SaslSettings>,
}

fn default_remote_topic() -> String {
    "${topic}".into()
}
fn yes() -> bool {
    true
}
fn minus_one() -> i16 {
    -1
}
fn default_compression() -> String {
    "lz4".into()
}
fn default_batch_bytes() -> usize {
    900 * 1024
}
fn default_status_interval_ms() -> u64 {
    5_000
}
fn default_backoff_min_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}

/// Why an uplink cannot start.
#[derive(Debug, thiserror::Error)]
#[error("uplink {uplink:?}: invalid `{key}`: {reason}")]
pub struct UplinkConfigError {
    pub uplink: String,
    pub key: &'static str,
    pub reason: String,
}

/// Which local topics an uplink forwards.
#[derive(Debug, Clone)]
pub struct TopicSelector {
    exact: Vec<String>,
    prefixes: Vec<String>,
    regex: Option<regex_lite::Regex>,
}

impl TopicSelector {
    pub fn matches(&self, topic: &str) -> bool {
        if self.exact.iter().any(|t| t == topic) {
            return true;
        }
        if topic.starts_with("__") {
            return false;
        }
        self.prefixes.iter().any(|p| topic.starts_with(p.as_str()))
            || self.regex.as_ref().is_some_and(|r| r.is_match(topic))
    }
}

/// A daily UTC time window, minutes after midnight; `start > end` wraps midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_min: u32,
    pub end_min: u32,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Window {
    pub fn parse(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM"))?;
        let minute = |t: &str| -> Result<u32, String> {
            let (h, m) = t
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{t:?} is not HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| format!("bad hour in {t:?}"))?,
                m.parse().map_err(|_| format!("bad minute in {t:?}"))?,
            );
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(format!("{t:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let w = Window {
            start_min: minute(a)?,
            end_min: minute(b)?,
        };
        if w.start_min == w.end_min {
            return Err(format!(
                "{s:?} is empty; leave `window` unset to forward all day"
            ));
        }
        Ok(w)
    }

    /// How long from `now_ms` until the window is open; zero when it is open now.
    pub fn wait_from(&self, now_ms: i64) -> Duration {
        let minute_ms = 60_000i64;
        let day_ms = now_ms.rem_euclid(DAY_MS);
        let start = i64::from(self.start_min) * minute_ms;
        let end = i64::from(self.end_min) * minute_ms;
        let open = if self.start_min < self.end_min {
            day_ms >= start && day_ms < end
        } else {
            day_ms >= start || day_ms < end
        };
        if open {
            return Duration::ZERO;
        }
        let wait = (start - day_ms).rem_euclid(DAY_MS);
        Duration::from_millis(u64::try_from(wait).unwrap_or(0))
    }
}

impl UplinkConfig {
    fn err(&self, key: &'static str, reason: impl Into<String>) -> UplinkConfigError {
        UplinkConfigError {
            uplink: self.name.clone(),
            key,
            reason: reason.into(),
        }
    }

    /// The upstream security settings, as the client takes them.
    pub fn security(&self) -> runnel_client::SecurityConfig {
        runnel_client::SecurityConfig {
            tls: self.tls.clone(),
            sasl: self.sasl.clone(),
        }
    }

    /// The device id: configured, or the host name.
    pub fn device_id(&self) -> String {
        self.device_id.clone().unwrap_or_else(host_name)
    }

    pub fn selector(&self) -> Result<TopicSelector, UplinkConfigError> {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for t in &self.topics {
            match t.strip_suffix('*') {
                Some(prefix) => {
                    if prefix.contains('*') {
                        return Err(self.err("topics", format!("{t:?}: `*` may only end a prefix")));
                    }
                    prefixes.push(prefix.to_string());
                }
                None => {
                    name::validate(t).map_err(|reason| self.err("topics", reason))?;
                    exact.push(t.clone());
                }
            }
        }
        let regex = match &self.topic_regex {
            Some(r) => Some(
                regex_lite::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| self.err("topic_regex", e.to_string()))?,
            ),
            None => None,
        };
        if exact.is_empty() && prefixes.is_empty() && regex.is_none() {
            return Err(self.err("topics", "names no topic (and no `topic_regex` is set)"));
        }
        Ok(TopicSelector {
            exact,
            prefixes,
            regex,
        })
    }

    /// The upstream topic for `topic`.
    pub fn remote_name(&self, device_id: &str, topic: &str) -> String {
        self.remote_topic
            .replace("${device_id}", device_id)
            .replace("${topic}", topic)
    }

    pub fn compression(&self) -> Result<runnel_client::Compression, UplinkConfigError> {
        use runnel_client::Compression as C;
        Ok(match self.compression.as_str() {
            "none" => C::None,
            "gzip" => C::Gzip,
            "snappy" => C::Snappy,
            "lz4" => C::Lz4,
            "zstd" => C::Zstd,
            other => {
                return Err(self.err(
                    "compression",
                    format!("{other:?}; use none, gzip, snappy, lz4 or zstd"),
                ));
            }
        })
    }

    pub fn window(&self) -> Result<Option<Window>, UplinkConfigError> {
        self.window
            .as_deref()
            .map(Window::parse)
            .transpose()
            .map_err(|reason| self.err("window", reason))
    }

    pub fn validate(&self) -> Result<(), UplinkConfigError> {
        if self.name.is_empty() || self.name.len() > 200 {
            return Err(self.err("name", "must be 1 to 200 characters"));
        }
        if self.bootstrap.is_empty() {
            return Err(self.err("bootstrap", "names no server"));
        }
        for b in &self.bootstrap {
            crate::server::parse_host_port(b).map_err(|reason| self.err("bootstrap", reason))?;
        }
        let device = self.device_id();
        if device.is_empty()
            || !device
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(self.err(
                "device_id",
                format!("{device:?}: use ASCII letters, digits, '.', '_' and '-' (it goes into topic names)"),
            ));
        }
        let mut rest = self
            .remote_topic
            .replace("${device_id}", "")
            .replace("${topic}", "");
        if let Some(at) = rest.find("${") {
            rest.drain(..at);
            return Err(self.err(
                "remote_topic",
                format!("unknown placeholder in {rest:?}; use ${{device_id}} and ${{topic}}"),
            ));
        }
        // The longest local name must still give a legal upstream name.
        name::validate(&self.remote_name(&device, "t"))
            .map_err(|reason| self.err("remote_topic", reason))?;
        self.selector()?;
        self.compression()?;
        self.window()?;
        if !(1024..=64 * 1024 * 1024).contains(&self.max_batch_bytes) {
            return Err(self.err("max_batch_bytes", "must be between 1 KiB and 64 MiB"));
        }
        if self.max_bytes_per_sec == Some(0) {
            return Err(self.err("max_bytes_per_sec", "must be > 0 (leave unset for no cap)"));
        }
        if self.retry_backoff_min_ms == 0 || self.retry_backoff_min_ms > self.retry_backoff_max_ms {
            return Err(self.err(
                "retry_backoff_min_ms",
                "must be > 0 and <= retry_backoff_max_ms",
            ));
        }
        if self.request_timeout_ms < 1000 {
            return Err(self.err("request_timeout_ms", "must be at least 1000"));
        }
        if self.status_interval_ms < 100 {
            return Err(self.err("status_interval_ms", "must be at least 100"));
        }
        // Certificates and keys are read now, so a wrong path stops the broker at start.
        self.security().load().map_err(|e| {
            self.err(
                if self.tls.is_some() { "tls" } else { "sasl" },
                e.to_string(),
            )
        })?;
        Ok(())
    }
}

/// Validates every uplink and that names are unique.
pub fn validate_all(uplinks: &[UplinkConfig]) -> Result<(), UplinkConfigError> {
    let mut seen = std::collections::HashSet::new();
    for u in uplinks {
        u.validate()?;
        if !seen.insert(u.name.as_str()) {
            return Err(u.err("name", "is used by another uplink"));
        }
    }
    Ok(())
}

/// The host name, or `runnel` if it cannot be read.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is passed; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "runnel".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "runnel".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> UplinkConfig {
        toml::from_str(toml_text).expect("parses")
    }

    const BASE: &str =
        "name = \"central\"\nbootstrap = [\"central:9092\"]\ndevice_id = \"truck-7\"\n";

    #[test]
    fn selects_exact_prefix_and_regex_but_not_internal_topics_by_pattern() {
        let c = config(&format!(
            "{BASE}topics = [\"gps\", \"sensors.*\", \"__runnel_uplink_status\"]\ntopic_regex = \"can-[0-9]+\"\n"
        ));
        c.validate().expect("valid");
        let s = c.selector().expect("selector");
        assert!(s.matches("gps"));
        assert!(!s.matches("gps2"));
        assert!(s.matches("sensors.temp"));
        assert!(s.matches("can-12"));
        assert!(!s.matches("can-12x"));
        assert!(s.matches("__runnel_uplink_status"));
        assert!(!s.matches("__runnel_bridge_status"));
    }

    #[test]
    fn renders_the_remote_name_and_rejects_unknown_placeholders() {
        let c = config(&format!(
            "{BASE}topics = [\"gps\"]\nremote_topic = \"trucks.${{device_id}}.${{topic}}\"\n"
        ));
        c.validate().expect("valid");
        assert_eq!(c.remote_name("truck-7", "gps"), "trucks.truck-7.gps");
        let bad = config(&format!(
            "{BASE}topics = [\"gps\"]\nremote_topic = \"x.${{region}}.${{topic}}\"\n"
        ));
        let e = bad.validate().expect_err("unknown placeholder").to_string();
        assert!(e.contains("remote_topic") && e.contains("${region}"), "{e}");
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        for (extra, key) in [
            ("topics = []\n", "topics"),
            ("topics = [\"a b\"]\n", "topics"),
            ("topics = [\"a\"]\ntopic_regex = \"(\"\n", "topic_regex"),
            (
                "topics = [\"a\"]\ncompression = \"brotli\"\n",
                "compression",
            ),
            ("topics = [\"a\"]\nwindow = \"25:00-01:00\"\n", "window"),
            (
                "topics = [\"a\"]\nmax_bytes_per_sec = 0\n",
                "max_bytes_per_sec",
            ),
            (
                "topics = [\"a\"]\n[tls]\nca_file = \"/nonexistent/ca.pem\"\n",
                "tls",
            ),
        ] {
            let e = config(&format!("{BASE}{extra}"))
                .validate()
                .expect_err(extra);
            assert_eq!(e.key, key, "{extra}: {e}");
        }
        let e =
            config("name = \"u\"\nbootstrap = [\"h:1\"]\ndevice_id = \"a/b\"\ntopics = [\"t\"]\n")
                .validate()
                .expect_err("bad device id");
        assert_eq!(e.key, "device_id");
    }

    #[test]
    fn window_wait_handles_wrapping_midnight() {
        let w = Window::parse("22:00-06:00").expect("window");
        let at = |h: i64, m: i64| (h * 60 + m) * 60_000 + 3 * DAY_MS;
        assert_eq!(w.wait_from(at(23, 0)), Duration::ZERO);
        assert_eq!(w.wait_from(at(5, 59)), Duration::ZERO);
        assert_eq!(w.wait_from(at(6, 0)), Duration::from_secs(16 * 3600));
        let day = Window::parse("09:30-17:00").expect("window");
        assert_eq!(day.wait_from(at(9, 0)), Duration::from_secs(30 * 60));
        assert_eq!(day.wait_from(at(12, 0)), Duration::ZERO);
        assert_eq!(
            day.wait_from(at(17, 0)),
            Duration::from_secs((16 * 60 + 30) * 60)
        );
        assert!(Window::parse("10:00-10:00").is_err());
    }
}
