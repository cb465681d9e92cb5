//! The edge broker of the uplink scenario: a fresh `runnel` with one `[[uplink]]` table
//! pointing at a port where nothing listens yet, and Prometheus metrics on another free port,
//! which the scenario scrapes for the uplink's backlog and counters.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use runnel_tests::harness::mosquitto::free_port;
use tempfile::TempDir;

use super::super::broker::{Broker, BrokerSpec};

/// The uplink's name, the `uplink` label of its metrics.
pub const UPLINK: &str = "central";
/// `device_id` of the uplink; the upstream topic is `edge.<device>.<local topic>`.
pub const DEVICE: &str = "bench";
/// The edge retries a refused connection after at most this long, so the central's start is
/// noticed within it (the broker's default grows to 30 s while the central is down).
const RETRY_BACKOFF_MAX_MS: u64 = 100;
/// Deadline of one scrape of `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the edge forwards, and how.
pub struct EdgeSettings<'a> {
    /// The local topic to forward.
    pub topic: &'a str,
    /// Where the central broker will listen.
    pub central_port: u16,
    /// The uplink's `compression`.
    pub compression: &'a str,
}

/// The running edge, killed when dropped.
pub struct Edge {
    pub broker: Broker,
    metrics: SocketAddr,
    /// Holds the config file.
    _dir: TempDir,
}

/// The uplink's counters, as the edge's `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UplinkStatus {
    pub connected: bool,
    pub backlog_records: u64,
    pub forwarded_records: u64,
    pub forwarded_bytes: u64,
    pub dropped_records: u64,
    pub rejected_records: u64,
    pub possible_duplicates: u64,
    pub errors: u64,
}

impl Edge {
    pub fn start(spec: &BrokerSpec, settings: &EdgeSettings<'_>) -> anyhow::Result<Edge> {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let dir = tempfile::Builder::new()
            .prefix("runnel-bench-uplink-")
            .tempdir()
            .context("creating a temporary directory for the edge config")?;
        let path = dir.path().join("edge.toml");
        fs::write(&path, edge_toml(settings, metrics))
            .with_context(|| format!("writing {}", path.display()))?;
        let broker = Broker::start_with_config(spec, Some(&path))?;
        Ok(Edge {
            broker,
            metrics,
            _dir: dir,
        })
    }

    /// The uplink's counters now.
    pub fn status(&self) -> anyhow::Result<UplinkStatus> {
        let text = scrape(self.metrics)?;
        parse_status(&text, UPLINK).with_context(|| {
            format!("no runnel_uplink_* metrics for uplink {UPLINK:?} in:\n{text}")
        })
    }
}

/// The edge's config: metrics, and the uplink with the broker's defaults except a short retry
/// backoff (see [`RETRY_BACKOFF_MAX_MS`]) and the chosen compression. Partitions come from
/// the bench's `--default-partitions` flag.
fn edge_toml(settings: &EdgeSettings<'_>, metrics: SocketAddr) -> String {
    let EdgeSettings {
        topic,
        central_port,
        compression,
    } = settings;
    format!(
        "[server]\nmetrics_listen = \"{metrics}\"\n\n\
         [[uplink]]\nname = \"{UPLINK}\"\nbootstrap = [\"127.0.0.1:{central_port}\"]\n\
         device_id = \"{DEVICE}\"\ntopics = [\"{topic}\"]\n\
         remote_topic = \"edge.${{device_id}}.${{topic}}\"\ncompression = \"{compression}\"\n\
         status_interval_ms = 500\nretry_backoff_min_ms = 50\n\
         retry_backoff_max_ms = {RETRY_BACKOFF_MAX_MS}\n"
    )
}

/// The upstream topic the edge forwards `topic` to.
pub fn remote_topic(topic: &str) -> String {
    format!("edge.{DEVICE}.{topic}")
}

/// `GET /metrics` over a fresh connection (the endpoint closes it after each answer).
fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .with_context(|| format!("connecting to the edge's metrics on {addr}"))?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the edge's metrics from {addr}"))?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("malformed HTTP answer from {addr}: {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET /metrics on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// The `runnel_uplink_*{uplink="<uplink>"}` samples of a Prometheus text page.
fn parse_status(text: &str, uplink: &str) -> Option<UplinkStatus> {
    let label = format!("{{uplink=\"{uplink}\"}} ");
    let value = |name: &str| -> Option<u64> {
        let prefix = format!("runnel_uplink_{name}{label}");
        let sample = text.lines().find_map(|l| l.strip_prefix(&prefix))?;
        let number: f64 = sample.trim().parse().ok()?;
        (number >= 0.0).then_some(number as u64)
    };
    Some(UplinkStatus {
        connected: value("connected")? == 1,
        backlog_records: value("backlog_records")?,
        forwarded_records: value("forwarded_records_total")?,
        forwarded_bytes: value("forwarded_bytes_total")?,
        dropped_records: value("dropped_records_total")?,
        rejected_records: value("rejected_records_total")?,
        possible_duplicates: value("possible_duplicates_total")?,
        errors: value("errors_total")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_settings_when_writing_the_toml_should_point_the_uplink_at_the_central_port() {
        let settings = EdgeSettings {
            topic: "gps",
            central_port: 9092,
            compression: "lz4",
        };
        let toml = edge_toml(&settings, SocketAddr::from(([127, 0, 0, 1], 9100)));
        assert!(
            toml.starts_with("[server]\nmetrics_listen = \"127.0.0.1:9100\"\n"),
            "{toml}"
        );
        assert!(
            toml.contains("bootstrap = [\"127.0.0.1:9092\"]\n"),
            "{toml}"
        );
        assert!(toml.contains("topics = [\"gps\"]\n"), "{toml}");
        assert!(
            toml.contains("remote_topic = \"edge.${device_id}.${topic}\"\n"),
            "{toml}"
        );
        assert_eq!(remote_topic("gps"), "edge.bench.gps");
    }

    #[test]
    fn given_prometheus_text_when_parsing_should_read_the_named_uplink() {
        let text = "# HELP runnel_uplink_connected 1 when …\n\
                    runnel_uplink_connected{uplink=\"other\"} 0\n\
                    runnel_uplink_connected{uplink=\"central\"} 1\n\
                    runnel_uplink_backlog_records{uplink=\"central\"} 250\n\
                    runnel_uplink_forwarded_records_total{uplink=\"central\"} 1000000\n\
                    runnel_uplink_forwarded_bytes_total{uplink=\"central\"} 123456789\n\
                    runnel_uplink_dropped_records_total{uplink=\"central\"} 0\n\
                    runnel_uplink_rejected_records_total{uplink=\"central\"} 0\n\
                    runnel_uplink_possible_duplicates_total{uplink=\"central\"} 3\n\
                    runnel_uplink_errors_total{uplink=\"central\"} 12\n";
        let status = parse_status(text, "central").expect("parses");
        assert!(status.connected);
        assert_eq!(status.backlog_records, 250);
        assert_eq!(status.forwarded_records, 1_000_000);
        assert_eq!(status.forwarded_bytes, 123_456_789);
        assert_eq!(status.possible_duplicates, 3);
        assert_eq!(status.errors, 12);
        assert_eq!(parse_status(text, "missing"), None);
    }
}
