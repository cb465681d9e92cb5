//! The benchmark behind `runnel-bench`: real librdkafka clients against a real broker.
//!
//! A run is: start a fresh broker on a fresh data dir (unless `--bootstrap` points at one),
//! then produce throughput (acks=1, then acks=all), consume throughput (reading back the acks=1
//! topic), fixed-rate latency, and the broker's memory. The opt-in `bridge` scenario measures
//! the MQTT bridge instead, with its own Mosquitto, brokers and bridge per case (see
//! [`bridge`]); the opt-in `uplink` scenario starts an edge and a central broker per run and
//! measures how fast the edge drains a backlog upstream, and its memory meanwhile (see
//! [`uplink`]); the opt-in `security` scenario starts a broker with a PLAINTEXT and a
//! SASL_SSL listener per run and compares throughput and handshake time over both (see
//! [`security`]); the opt-in `cluster` scenario starts a single broker and then a three-node
//! cluster per run and compares acks=1 and acks=all throughput and latency, and times the
//! failover after a kill -9 of a partition leader (see [`cluster`]). Invariants:
//! - every scenario runs under its own [`deadline::Deadline`] and fails with a message when it
//!   is exceeded, never hangs;
//! - every scenario writes to a topic of its own, so runs against a shared broker stay
//!   independent;
//! - any failed delivery fails the bench: numbers from a broker that loses records are not
//!   numbers.

mod bridge;
mod broker;
mod client;
mod cluster;
mod consume;
mod deadline;
mod delivery;
mod latency;
mod proc_stat;
mod produce;
mod report;
mod run;
mod security;
mod stats;
mod uplink;
mod watermarks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub use bridge::{BridgeSpec, Mode as BridgeMode};
pub use broker::{BrokerSpec, default_bin};
pub use report::Report;
pub use uplink::{COMPRESSIONS as UPLINK_COMPRESSIONS, UplinkSpec};

/// A part of the benchmark that can be selected on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Produce throughput, acks=1 then acks=all.
    Produce,
    /// Consume throughput of the acks=1 topic (produced first even if `produce` is off).
    Consume,
    /// Per-record produce latency at a fixed rate.
    Latency,
    /// Broker RSS idle and at peak (only for a broker this tool started).
    Rss,
    /// MQTT → topic throughput of the bridge, standalone and embedded, QoS 0 and 1 (needs
    /// Mosquitto and `runnel-bridge`; not in the default set).
    Bridge,
    /// Drain rate of an edge's uplink backlog to a central broker, and the edge's memory
    /// meanwhile (starts its own two brokers; not in the default set).
    Uplink,
    /// Produce and consume throughput and handshake time over SASL_SSL (SCRAM-SHA-512)
    /// versus PLAINTEXT, on one broker of its own with both listeners (not in the default
    /// set).
    Security,
    /// Single-node acks=1 versus three-node acks=all throughput and latency, and the
    /// failover time after a kill -9 of a partition leader, with no acknowledged record lost
    /// (starts its own broker and three-node cluster; not in the default set).
    Cluster,
}

impl Scenario {
    /// What runs without `--scenarios`.
    pub const DEFAULT: [Scenario; 4] = [
        Scenario::Produce,
        Scenario::Consume,
        Scenario::Latency,
        Scenario::Rss,
    ];
}

/// Where the broker comes from.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start (and kill) one for every run.
    Spawn(BrokerSpec),
    /// Use an already running broker at this address.
    External(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub scenarios: Vec<Scenario>,
    pub records: u64,
    pub record_size: usize,
    pub partitions: i32,
    pub rate: u64,
    pub latency_duration: Duration,
    pub runs: u32,
    pub scenario_timeout: Duration,
    /// librdkafka settings applied to every client after the bench's own.
    pub client_overrides: Vec<(String, String)>,
    pub bridge: BridgeSpec,
    pub uplink: UplinkSpec,
}

impl Config {
    fn wants(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// Whether a scenario needs the run's own broker (bridge, uplink, security and cluster
    /// start their own).
    fn wants_broker(&self) -> bool {
        self.scenarios.iter().any(|s| {
            !matches!(
                s,
                Scenario::Bridge | Scenario::Uplink | Scenario::Security | Scenario::Cluster
            )
        })
    }

    /// The configuration as recorded in the JSON report.
    pub fn to_json(&self) -> Value {
        let (broker, bin) = match &self.target {
            Target::Spawn(spec) => ("spawned", Some(spec.bin.display().to_string())),
            Target::External(addr) => (addr.as_str(), None),
        };
        json!({
            "broker": broker,
            "broker_bin": bin,
            "scenarios": self.scenarios.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>(),
            "records": self.records,
            "record_size": self.record_size,
            "partitions": self.partitions,
            "latency_rate": self.rate,
            "latency_secs": self.latency_duration.as_secs_f64(),
            "runs": self.runs,
            "timeout_secs": self.scenario_timeout.as_secs(),
            "client_config": self.client_overrides.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "bridge_bin": self.bridge.bin.display().to_string(),
            "bridge_messages": self.bridge.messages,
            "bridge_publishers": self.bridge.publishers,
            "bridge_modes": self.bridge.modes.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>(),
            "bridge_qos": self.bridge.qos,
            "bridge_payload_bytes": bridge::PAYLOAD_BYTES,
            "uplink_compression": self.uplink.compression,
            "uplink_drain_end": "central high watermarks",
            "security_sasl_mechanism": "SCRAM-SHA-512",
            "security_handshake": "fresh client to first Metadata response, median of 20",
            "cluster_nodes": 3,
            "cluster_failover_rounds": cluster::ROUNDS,
            "cluster_failover_interval_ms": cluster::INTERVAL.as_millis() as u64,
            "cpus": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        })
    }
}

/// Runs every repetition and collects the metrics.
pub fn run(config: &Config) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for run in 1..=config.runs {
        eprintln!("== run {run}/{}", config.runs);
        report.push_run(run::Run::start(config, run)?.execute()?);
    }
    Ok(report)
}
