//! A real `runnel-bridge` process for the MQTT bridge tests, and what those tests need around
//! it: a builder for its TOML config, its Prometheus metrics, its status records, the
//! subscriptions Mosquitto saw it make, GPS-like test messages and a reader that counts what
//! arrived in a topic.
//!
//! Invariants:
//! - at most one process per [`Bridge`] at a time; [`Bridge::restart`] starts a new one with the
//!   same config file and bootstrap address (the metrics port may change: the harness always
//!   passes `--metrics-listen 127.0.0.1:0` and reads the bound address from the log);
//! - "started" means the bridge logged `metrics on http://ADDR/metrics`, which `runnel-bridge`
//!   does only after every topic its rules name was found; it does NOT mean the MQTT
//!   subscriptions are in place (see [`wait_for_subscription`]);
//! - a `Bridge` never outlives its process: `Drop` kills it (SIGKILL) and reaps it, then prints
//!   the tail of its log to the (captured) test output, so libtest shows it for failing tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rumqttc::QoS;
use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::binary::{read_from, run_binary_to_exit, runnel_bridge_bin, strip_ansi};
use super::broker::send_signal;
use super::clients::{self, Record};
use super::mosquitto::Mosquitto;
use super::mqtt::{Message, PublishReport, Publisher};
use super::wait::wait_until;

/// The topic every bridge writes its status records to.
pub const STATUS_TOPIC: &str = "__runnel_bridge_status";
/// How long the bridge may take to find its topics and serve metrics.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown may take (the bridge waits up to 10 s for a write in progress).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a startup-error run may take before the test fails.
const RUN_TO_EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many log lines to show in errors and when a `Bridge` is dropped.
const LOG_TAIL_LINES: usize = 60;
/// How long [`TopicReader::read_until`] waits without a single new record before it fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(45);
/// What `runnel-bridge` logs once it serves metrics; the bound address follows.
const METRICS_MARKER: &str = "metrics on http://";

/// Builds the TOML of one `[[bridge]]` table for a Mosquitto on `127.0.0.1`. Test defaults:
/// status every 200 ms and MQTT reconnects between 100 ms and 1 s (the bridge's own defaults,
/// 5 s and up to 30 s, would only make the tests wait).
#[derive(Debug, Clone)]
pub struct BridgeToml {
    name: String,
    host: String,
    port: u16,
    status_interval_ms: u64,
    mqtt: Vec<String>,
    tls: Option<String>,
    rules: Vec<String>,
}

impl BridgeToml {
    /// A bridge called `name` for the MQTT server on `127.0.0.1:mqtt_port`, without rules yet.
    pub fn new(name: &str, mqtt_port: u16) -> BridgeToml {
        BridgeToml {
            name: name.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: mqtt_port,
            status_interval_ms: 200,
            mqtt: vec![
                "reconnect_min_ms = 100".to_owned(),
                "reconnect_max_ms = 1000".to_owned(),
            ],
            tls: None,
            rules: Vec::new(),
        }
    }

    /// The MQTT client id `runnel-bridge` derives from the name.
    pub fn client_id(&self) -> String {
        format!("runnel-bridge-{}", self.name)
    }

    /// The MQTT host (default `127.0.0.1`; TLS to the test CA needs `localhost`).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// Adds a `key = value` line (TOML syntax) to `[bridge.mqtt]`, e.g. `protocol = "5"`.
    pub fn mqtt(mut self, line: &str) -> Self {
        self.mqtt.push(line.to_owned());
        self
    }

    /// Adds `[bridge.mqtt.tls]` trusting the CA in `ca_file`.
    pub fn tls(mut self, ca_file: &Path) -> Self {
        self.tls = Some(format!(
            "ca_file = {}\n",
            toml_string(&ca_file.to_string_lossy())
        ));
        self
    }

    /// Adds an `[[bridge.ingress]]` rule; `extra` are more `key = value` lines (TOML syntax).
    pub fn ingress(mut self, filter: &str, topic: &str, extra: &[&str]) -> Self {
        let mut rule = format!(
            "[[bridge.ingress]]\nfilter = {}\ntopic = {}\n",
            toml_string(filter),
            toml_string(topic)
        );
        for line in extra {
            let _ = writeln!(rule, "{line}");
        }
        self.rules.push(rule);
        self
    }

    /// Adds an `[[bridge.egress]]` rule; `extra` are more `key = value` lines (TOML syntax).
    pub fn egress(mut self, topic: &str, mqtt_topic: &str, extra: &[&str]) -> Self {
        let mut rule = format!(
            "[[bridge.egress]]\ntopic = {}\nmqtt_topic = {}\n",
            toml_string(topic),
            toml_string(mqtt_topic)
        );
        for line in extra {
            let _ = writeln!(rule, "{line}");
        }
        self.rules.push(rule);
        self
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut toml = format!(
            "[[bridge]]\nname = {}\nstatus_interval_ms = {}\n\n[bridge.mqtt]\nhost = {}\nport = {}\n",
            toml_string(&self.name),
            self.status_interval_ms,
            toml_string(&self.host),
            self.port
        );
        for line in &self.mqtt {
            let _ = writeln!(toml, "{line}");
        }
        if let Some(tls) = &self.tls {
            let _ = write!(toml, "\n[bridge.mqtt.tls]\n{tls}");
        }
        for rule in &self.rules {
            let _ = write!(toml, "\n{rule}");
        }
        toml
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running (or stopped, between [`Bridge::kill9`]/[`Bridge::terminate`] and
/// [`Bridge::restart`]) `runnel-bridge` process.
#[derive(Debug)]
pub struct Bridge {
    dir: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    bootstrap: SocketAddr,
    log_level: String,
    child: Option<Child>,
    metrics_addr: SocketAddr,
    starts: u32,
}

impl Bridge {
    /// Writes `config_toml` to a temporary file and starts `runnel-bridge` on it against the
    /// Kafka bootstrap address `bootstrap`, at log level `info`; waits until it serves metrics.
    pub fn start(config_toml: &str, bootstrap: SocketAddr) -> Result<Bridge> {
        Self::start_with_log_level(config_toml, bootstrap, "info")
    }

    /// [`Bridge::start`] with `--log-level level`.
    pub fn start_with_log_level(
        config_toml: &str,
        bootstrap: SocketAddr,
        level: &str,
    ) -> Result<Bridge> {
        let dir = tempfile::Builder::new()
            .prefix("runnel-bridge-")
            .tempdir()
            .context("creating a temporary directory for the bridge")?;
        let config_path = dir.path().join("bridge.toml");
        fs::write(&config_path, config_toml)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log_path = dir.path().join("bridge.log");
        let mut bridge = Bridge {
            dir,
            config_path,
            log_path,
            bootstrap,
            log_level: level.to_owned(),
            child: None,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            starts: 0,
        };
        bridge.spawn()?;
        Ok(bridge)
    }

    /// Where the current (or last) process serves `GET /metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Whether the process is still alive (reaps it if it has exited).
    pub fn is_running(&mut self) -> Result<bool> {
        match self.child.as_mut() {
            None => Ok(false),
            Some(child) => Ok(child.try_wait().context("polling the bridge")?.is_none()),
        }
    }

    /// Kills the process with SIGKILL (nothing acknowledged, nothing flushed) and reaps it.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("kill9: the bridge is not running")?;
        child.kill().context("sending SIGKILL to the bridge")?;
        child.wait().context("reaping the killed bridge")
    }

    /// Sends SIGTERM and waits for the process to exit (it finishes the write in progress
    /// first). Fails, after SIGKILL, if it does not exit within 30 s. Returns the exit status,
    /// which the caller should check.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the bridge is not running")?;
        send_signal(&child, libc::SIGTERM).context("sending SIGTERM to the bridge")?;
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the bridge")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                // Best effort: the error below is what matters.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the bridge did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new process with the same config and bootstrap address (stopping the current
    /// one gracefully first if it is still running) and waits until it serves metrics.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running()? {
            let status = self.terminate()?;
            if !status.success() {
                bail!("restart: the bridge exited with {status} on SIGTERM");
            }
        }
        self.child = None;
        self.spawn()
    }

    /// The whole log of every process of this `Bridge`, each start preceded by a
    /// `=== harness: start #n ===` line.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| strip_ansi(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_else(|error| format!("<cannot read {}: {error}>", self.log_path.display()))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The current process's Prometheus metrics.
    pub fn metrics(&self) -> Result<Metrics> {
        read_metrics(self.metrics_addr)
    }

    /// One sample of the current process's metrics (see [`Metrics::value`]), as an integer;
    /// fails when the metric is missing.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<i64> {
        let metrics = self.metrics()?;
        let value = metrics
            .value(name, labels)
            .with_context(|| format!("no sample {name} {labels:?} in:\n{}", metrics.text()))?;
        Ok(value as i64)
    }

    /// The current samples (no comment lines), or why they could not be read: for failure
    /// messages.
    pub fn metrics_report(&self) -> String {
        match self.metrics() {
            Ok(metrics) => metrics
                .text()
                .lines()
                .filter(|line| !line.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("<metrics unavailable: {error:#}>"),
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = runnel_bridge_bin()?;
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut command = Command::new(&bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RUNNEL_") {
                command.env_remove(&key);
            }
        }
        command
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config_path)
            .arg("--bootstrap")
            .arg(self.bootstrap.to_string())
            .args(["--metrics-listen", "127.0.0.1:0", "--log-level"])
            .arg(&self.log_level)
            .stdin(Stdio::null());
        writeln!(
            log,
            "=== harness: start #{}: {} --config {} --bootstrap {} ===",
            self.starts,
            bin.display(),
            self.config_path.display(),
            self.bootstrap
        )?;
        let start_offset = log.metadata()?.len();
        command
            .stdout(log.try_clone().context("duplicating the log file handle")?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        self.metrics_addr = self.wait_for_metrics(start_offset)?;
        Ok(())
    }

    /// Reads the log from `offset` until the `metrics on http://ADDR/metrics` line shows up.
    fn wait_for_metrics(&mut self, offset: u64) -> Result<SocketAddr> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let text = read_from(&self.log_path, offset)?;
            if let Some(addr) = parse_metrics_addr(&text) {
                return addr;
            }
            let child = self.child.as_mut().context("the bridge is not running")?;
            if let Some(status) = child.try_wait().context("polling the starting bridge")? {
                self.child = None;
                bail!(
                    "the bridge exited with {status} before serving metrics; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                bail!(
                    "the bridge printed no `{METRICS_MARKER}ADDR/metrics` line within \
                     {STARTUP_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing useful can be done about a failure here.
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut report = String::new();
        let _ = writeln!(
            report,
            "--- tail of the runnel-bridge log ({}) ---\n{}\n--- end of the runnel-bridge log ---",
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        );
        if thread::panicking() {
            self.dir.disable_cleanup(true);
            let _ = writeln!(report, "(log kept at {})", self.log_path.display());
        }
        // libtest captures this and shows it only for tests that fail.
        eprint!("{report}");
    }
}

/// Finds `metrics on http://A.B.C.D:PORT/metrics` and parses the address.
fn parse_metrics_addr(text: &str) -> Option<Result<SocketAddr>> {
    let start = text.find(METRICS_MARKER)? + METRICS_MARKER.len();
    let rest = &text[start..];
    // A line still being written may end mid-address; wait for the `/`.
    let end = rest.find('/')?;
    let addr = &rest[..end];
    Some(
        addr.parse()
            .with_context(|| format!("cannot parse the metrics address {addr:?}")),
    )
}

/// Runs `runnel-bridge --config <config_toml in a file> --bootstrap <bootstrap>` until it exits
/// (for startup errors) and returns its exit status and everything it printed. Fails if it is
/// still running after 30 s.
pub fn run_to_exit(config_toml: &str, bootstrap: &str) -> Result<(ExitStatus, String)> {
    let dir = tempfile::Builder::new()
        .prefix("runnel-bridge-run-")
        .tempdir()
        .context("creating a temporary directory")?;
    let config = dir.path().join("bridge.toml");
    fs::write(&config, config_toml).with_context(|| format!("writing {}", config.display()))?;
    let config = config.to_string_lossy().into_owned();
    run_binary_to_exit(
        &runnel_bridge_bin()?,
        &["--config", &config, "--bootstrap", bootstrap],
        &[],
        RUN_TO_EXIT_TIMEOUT,
    )
}

/// A Prometheus text exposition, as served by the bridge.
#[derive(Debug, Clone)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// Parses nothing up front; [`Metrics::value`] reads the text.
    pub fn new(text: String) -> Metrics {
        Metrics { text }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value of the first sample of `name` whose labels include every one of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(parse_sample)
            .find(|(sample, sample_labels, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| sample_labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, value)| value)
    }
}

/// `name{k="v",…} value` → (name, labels, value).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), BTreeMap::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name.to_owned(), labels, value))
}

/// `GET /metrics` from `addr` over a plain socket.
pub fn read_metrics(addr: SocketAddr) -> Result<Metrics> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the metrics endpoint {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the metrics from {addr}"))?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no HTTP header end in the metrics response: {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("metrics endpoint answered {head:?}");
    }
    Ok(Metrics::new(body.to_owned()))
}

/// The latest status record of bridge `name` in [`STATUS_TOPIC`], as JSON; `None` while there
/// is none (an error while the topic does not exist yet).
pub fn latest_status(bootstrap: &str, name: &str) -> Result<Option<serde_json::Value>> {
    let records = clients::consume_all(bootstrap, STATUS_TOPIC, Duration::from_secs(30))?;
    let Some(record) = records
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some(name.as_bytes()))
    else {
        return Ok(None);
    };
    let value = serde_json::from_slice(record.value.as_deref().unwrap_or_default())
        .with_context(|| format!("status record {record:?} is not JSON"))?;
    Ok(Some(value))
}

/// Waits until Mosquitto's log shows that `client_id` subscribed to `filter` (the harness
/// configures `log_type subscribe`; Mosquitto logs it once the subscription is in place), so
/// that messages published from now on reach the bridge.
pub fn wait_for_subscription(mosquitto: &Mosquitto, client_id: &str, filter: &str) -> Result<()> {
    let what = format!("{client_id} to subscribe to {filter}");
    wait_until(&what, STARTUP_TIMEOUT, || {
        let subscribed = mosquitto.log().lines().any(|line| {
            line.contains(&format!(": {client_id} ")) && line.ends_with(&format!(" {filter}"))
        });
        Ok(subscribed.then_some(()))
    })
    .with_context(|| format!("mosquitto log tail:\n{}", mosquitto.log_tail(20)))
}

/// Reads every partition of a topic from the beginning and keeps what arrived, for tests that
/// wait until some condition on everything written holds (e.g. every message seen once).
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    records: Vec<Record>,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .field("records", &self.records.len())
            .finish()
    }
}

impl TopicReader {
    /// Assigns every partition of `topic` at its beginning.
    pub fn new(bootstrap: &str, topic: &str) -> Result<TopicReader> {
        let consumer = clients::consumer(bootstrap, &[])?;
        let partitions = clients::partition_count(&consumer, topic)?;
        let start: Vec<(i32, Offset)> = (0..partitions).map(|p| (p, Offset::Beginning)).collect();
        clients::assign(&consumer, topic, &start)?;
        Ok(TopicReader {
            consumer,
            topic: topic.to_owned(),
            records: Vec::new(),
        })
    }

    /// Everything read so far, in order of arrival (per partition: offset order).
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Polls until `done(everything read so far)` holds; fails on a consumer error, when no new
    /// record arrived for [`STALL_TIMEOUT`] (a bridge that stopped writing fails fast instead of
    /// at `timeout`), or after `timeout`, naming `what` and how many records were read.
    pub fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> Result<&[Record]> {
        let deadline = Instant::now() + timeout;
        let mut last_progress = Instant::now();
        loop {
            if done(&self.records) {
                return Ok(&self.records);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}: timed out after {timeout:?} waiting for {what}; {} records read",
                    self.topic,
                    self.records.len()
                );
            }
            if last_progress.elapsed() >= STALL_TIMEOUT {
                bail!(
                    "{}: no new record for {STALL_TIMEOUT:?} while waiting for {what}; {} \
                     records read",
                    self.topic,
                    self.records.len()
                );
            }
            // Drain what is there before asking `done` again: it may be costly.
            let mut wait = left.min(Duration::from_millis(200));
            for _ in 0..10_000 {
                match self.consumer.poll(wait) {
                    None => break,
                    Some(Ok(message)) => {
                        self.records.push(Record::from(&message));
                        last_progress = Instant::now();
                    }
                    Some(Err(error)) => bail!(
                        "{}: consumer error after {} records: {error}",
                        self.topic,
                        self.records.len()
                    ),
                }
                wait = Duration::ZERO;
            }
        }
    }

    /// Reads until `count` records arrived.
    pub fn read_count(&mut self, count: usize, timeout: Duration) -> Result<&[Record]> {
        self.read_until(&format!("{count} records"), timeout, |r| r.len() >= count)
    }
}

/// A GPS fix as JSON, about 200 bytes: truck id, sequence number, timestamp (ms), position.
pub fn gps_payload(truck: &str, seq: u64, ts_ms: i64) -> Vec<u8> {
    // Deterministic, plausible coordinates around Hamburg.
    let lat = 53.55 + (seq % 1000) as f64 * 0.0001;
    let lon = 9.99 + (seq % 777) as f64 * 0.0001;
    serde_json::json!({
        "truck": truck,
        "seq": seq,
        "ts": ts_ms,
        "lat": lat,
        "lon": lon,
        "speed_kmh": (seq % 90) as f64 + 0.5,
        "heading": seq % 360,
        "odometer_km": 120_000 + seq / 10,
        "sats": 9,
        "hdop": 0.8,
        "driver": "d-0001",
        "status": "en-route",
        "fw": "edge-gps 2.4.1",
    })
    .to_string()
    .into_bytes()
}

/// `per_truck` fixes for each of `trucks` trucks `t0`, `t1`, …, one batch per truck, on
/// `trucks/<id>/gps`, with sequence numbers from 0 and timestamps `base_ts_ms + seq`.
pub fn gps_batches(trucks: usize, per_truck: u64, base_ts_ms: i64) -> Vec<Vec<Message>> {
    (0..trucks)
        .map(|t| {
            let truck = format!("t{t}");
            (0..per_truck)
                .map(|seq| {
                    (
                        format!("trucks/{truck}/gps"),
                        gps_payload(&truck, seq, base_ts_ms + seq as i64),
                    )
                })
                .collect()
        })
        .collect()
}

/// (truck, seq, ts) of a record made from [`gps_payload`].
pub fn gps_fix(record: &Record) -> Result<(String, u64, i64)> {
    let value: serde_json::Value =
        serde_json::from_slice(record.value.as_deref().unwrap_or_default()).with_context(|| {
            format!("record {}/{} is not JSON", record.partition, record.offset)
        })?;
    let truck = value["truck"].as_str().context("no truck")?.to_owned();
    let seq = value["seq"].as_u64().context("no seq")?;
    let ts = value["ts"].as_i64().context("no ts")?;
    Ok((truck, seq, ts))
}

/// Publishes each batch from its own [`Publisher`] (client ids `<client_prefix>-<i>`)
/// concurrently at `qos`, in the background; the reports come back in batch order.
pub fn spawn_publishers(
    port: u16,
    client_prefix: &str,
    batches: Vec<Vec<Message>>,
    qos: QoS,
) -> JoinHandle<Result<Vec<PublishReport>>> {
    let tasks: Vec<_> = batches
        .into_iter()
        .enumerate()
        .map(|(i, batch)| {
            let publisher = Publisher::new(port, &format!("{client_prefix}-{i}"));
            tokio::spawn(async move { publisher.publish_all(batch, qos).await })
        })
        .collect();
    tokio::spawn(async move {
        let mut reports = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.into_iter().enumerate() {
            reports.push(
                task.await
                    .with_context(|| format!("publisher {i} panicked"))?
                    .with_context(|| format!("publisher {i}"))?,
            );
        }
        Ok(reports)
    })
}

/// GPS trucks publishing fixes at QoS 1 in the background until [`Trucks::stop`] (or until each
/// published `max_per_truck`), each through
/// its own [`Publisher`] (persistent session, client id `<client_prefix>-<i>`) on
/// `trucks/t<i>/gps`: `chunk` fixes at a time, at most one chunk per `interval` (a steady
/// stream, as trucks send, rather than one burst). A chunk is done only once Mosquitto
/// acknowledged each of its fixes, riding out Mosquitto restarts, so everything counted as
/// published was acknowledged.
#[derive(Debug)]
pub struct Trucks {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Result<u64>>>,
}

impl Trucks {
    /// Starts `trucks` publishers; fix `seq` of each has timestamp `base_ts_ms + seq`.
    pub fn start(
        port: u16,
        client_prefix: &str,
        trucks: usize,
        chunk: u64,
        interval: Duration,
        max_per_truck: u64,
        base_ts_ms: i64,
    ) -> Trucks {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..trucks)
            .map(|i| {
                let publisher = Publisher::new(port, &format!("{client_prefix}-{i}"));
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let truck = format!("t{i}");
                    let topic = format!("trucks/{truck}/gps");
                    let mut ticks = tokio::time::interval(interval);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut next = 0;
                    while !stop.load(Ordering::SeqCst) && next < max_per_truck {
                        ticks.tick().await;
                        let end = (next + chunk).min(max_per_truck);
                        let fixes = (next..end)
                            .map(|seq| {
                                let ts = base_ts_ms + seq as i64;
                                (topic.clone(), gps_payload(&truck, seq, ts))
                            })
                            .collect();
                        publisher
                            .publish_all(fixes, QoS::AtLeastOnce)
                            .await
                            .with_context(|| format!("{truck} publishing from seq {next}"))?;
                        next = end;
                    }
                    Ok(next)
                })
            })
            .collect();
        Trucks { stop, tasks }
    }

    /// Stops after the chunks in progress and returns, per truck (`t0`, `t1`, …), how many
    /// fixes it published: sequence numbers `0..n`, every one acknowledged.
    pub async fn stop(self) -> Result<Vec<(String, u64)>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut published = Vec::with_capacity(self.tasks.len());
        for (i, task) in self.tasks.into_iter().enumerate() {
            let count = task
                .await
                .with_context(|| format!("truck t{i} panicked"))??;
            published.push((format!("t{i}"), count));
        }
        Ok(published)
    }
}

/// The value of header `name` of `record`, if present.
pub fn header<'r>(record: &'r Record, name: &str) -> Option<&'r [u8]> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_fmt_line_when_parsing_should_find_the_metrics_address() {
        let line =
            "2025-01-01T00:00:00Z  INFO runnel_bridge: metrics on http://127.0.0.1:40123/metrics\n";
        let addr = parse_metrics_addr(line).and_then(Result::ok);
        assert_eq!(addr, Some(SocketAddr::from(([127, 0, 0, 1], 40123))));
        assert!(parse_metrics_addr("INFO metrics on http://127.0.0.1:401").is_none());
    }

    #[test]
    fn given_exposition_text_when_reading_a_value_should_match_name_and_labels() {
        let metrics = Metrics::new(
            "# HELP runnel_bridge_written_total records made durable\n\
             # TYPE runnel_bridge_written_total counter\n\
             runnel_bridge_written_total{bridge=\"b\",filter=\"a/+\",topic=\"t\"} 12\n\
             runnel_bridge_written_total{bridge=\"b\",filter=\"x/\\\"y\\\"\",topic=\"u\"} 3\n\
             runnel_bridge_connected{bridge=\"b\"} 1\n"
                .to_owned(),
        );
        assert_eq!(
            metrics.value("runnel_bridge_written_total", &[("topic", "t")]),
            Some(12.0)
        );
        assert_eq!(
            metrics.value("runnel_bridge_written_total", &[("filter", "x/\"y\"")]),
            Some(3.0)
        );
        assert_eq!(
            metrics.value("runnel_bridge_connected", &[("bridge", "b")]),
            Some(1.0)
        );
        assert_eq!(
            metrics.value("runnel_bridge_connected", &[("bridge", "c")]),
            None
        );
        assert_eq!(metrics.value("runnel_bridge_written", &[]), None);
    }

    #[test]
    fn given_a_fix_when_encoding_should_be_about_200_bytes_of_json_that_parses_back() {
        let payload = gps_payload("t3", 12_345, 1_600_000_012_345);
        assert!(
            (180..=230).contains(&payload.len()),
            "{} bytes",
            payload.len()
        );
        let record = Record {
            partition: 0,
            offset: 0,
            key: None,
            value: Some(payload),
            headers: Vec::new(),
            timestamp: rdkafka::Timestamp::NotAvailable,
        };
        let fix = gps_fix(&record).expect("parses");
        assert_eq!(fix, ("t3".to_owned(), 12_345, 1_600_000_012_345));
    }

    #[test]
    fn given_a_builder_when_building_should_write_the_tables() {
        let toml = BridgeToml::new("gps", 1883)
            .mqtt("protocol = \"5\"")
            .ingress("trucks/+/gps", "gps", &["key_level = 1"])
            .egress("cmd", "devices/{key}/cmd", &[])
            .build();
        assert!(toml.starts_with("[[bridge]]\nname = \"gps\"\n"), "{toml}");
        assert!(toml.contains("[bridge.mqtt]\nhost = \"127.0.0.1\"\nport = 1883\n"));
        assert!(toml.contains("protocol = \"5\"\n"));
        assert!(toml.contains(
            "[[bridge.ingress]]\nfilter = \"trucks/+/gps\"\ntopic = \"gps\"\nkey_level = 1\n"
        ));
        assert!(toml.contains("[[bridge.egress]]\ntopic = \"cmd\"\n"));
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
