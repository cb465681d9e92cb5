//! `runnel-bench`: produce/consume throughput, produce latency and memory of a Runnel broker,
//! measured with librdkafka, (`--scenarios bridge`) MQTT → topic throughput of the MQTT
//! bridge, and (`--scenarios uplink`) the drain rate of an edge broker's uplink backlog to a
//! central broker with the edge's RSS meanwhile, and (`--scenarios security`) produce/consume
//! throughput and handshake time over SASL_SSL (SCRAM-SHA-512) versus PLAINTEXT, and
//! (`--scenarios cluster`) single-node versus three-node replicated throughput and latency and
//! the failover time after a kill -9 of a partition leader. This file only parses flags; the
//! benchmark lives in `src/bench/`.
//!
//! ```text
//! cargo build --release -p runnel-broker
//! cargo run --release -p runnel-tests --bin runnel-bench -- --runs 3 --json bench.json
//! cargo build --release -p runnel-broker -p runnel-bridge -p runnel-tests
//! target/release/runnel-bench --scenarios bridge --runs 3
//! cargo build --release -p runnel-broker -p runnel-tests
//! target/release/runnel-bench --scenarios uplink --runs 3 --partitions 3
//! target/release/runnel-bench --scenarios security --runs 3
//! target/release/runnel-bench --scenarios cluster --runs 3
//! ```

// The bench is private to this binary: the crate's library is the integration-test harness.
#[path = "../bench/mod.rs"]
mod bench;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use bench::{BridgeMode, BridgeSpec, BrokerSpec, Config, Scenario, Target, UplinkSpec};

/// Benchmark a Runnel broker with librdkafka clients.
#[derive(Debug, Parser)]
#[command(name = "runnel-bench", version)]
struct Args {
    /// Use this already running broker instead of starting one (disables the rss and uplink
    /// scenarios and the embedded bridge cases).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// The broker binary to start [default: <workspace>/target/release/runnel].
    #[arg(long, env = "RUNNEL_BIN", value_name = "PATH")]
    broker_bin: Option<PathBuf>,
    /// `--log-level` of the started broker, echoed to stderr. It must let the broker's
    /// `listening on` line (info) through: `info` or e.g. `warn,runnel=info`.
    #[arg(long, default_value = "info")]
    broker_log_level: String,
    /// Parent directory for the started broker's temporary data dir [default: system temp].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Scenarios to run, comma-separated [default: produce,consume,latency,rss; `bridge` is
    /// opt-in: it needs Mosquitto and runnel-bridge, and starts its own brokers; `uplink` is
    /// opt-in: it starts an edge and a central broker per run, produces `--records` records of
    /// `--record-size` bytes in `--partitions` partitions to the edge while the central is
    /// down, then times the drain once the central starts; `security` is opt-in: it starts a
    /// broker with a PLAINTEXT and a SASL_SSL listener and a SCRAM user per run (needs
    /// openssl for the test PKI) and measures both; `cluster` is opt-in: per run a single
    /// broker (acks=1 throughput and latency), then three clustered brokers on 127.0.0.1
    /// (replication factor 3, min.insync.replicas 2: acks=all throughput and latency, and 3
    /// kill -9 failovers of a partition leader under an idempotent producer)].
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Records per throughput scenario.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    record_size: u32,
    /// Partitions per topic (the started broker's `--default-partitions`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    /// Records per second in the latency scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rate: u64,
    /// Seconds the latency scenario sends for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    latency_secs: u64,
    /// Repetitions; the report shows the median of each metric.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Time limit of each scenario (the latency scenario gets its duration on top).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_secs: u64,
    /// Seconds to wait for a started broker to announce its address.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    startup_timeout_secs: u64,
    /// A librdkafka setting for every client, applied after the bench's own (repeatable),
    /// e.g. `--client-config fetch.wait.max.ms=10`.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    client_config: Vec<(String, String)>,
    /// The runnel-bridge binary of the bridge scenario [default:
    /// <workspace>/target/release/runnel-bridge].
    #[arg(long, env = "RUNNEL_BRIDGE_BIN", value_name = "PATH")]
    bridge_bin: Option<PathBuf>,
    /// MQTT messages per bridge case (one receiver at one QoS), 200-byte GPS fixes as JSON.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    bridge_messages: u64,
    /// Concurrent MQTT publishers in the bridge scenario, one truck (`trucks/t<i>/gps`) each.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    bridge_publishers: u16,
    /// Receivers the bridge scenario measures, comma-separated [default: all]: `mqtt-only` (a
    /// plain MQTT subscriber, the baseline), `standalone` (runnel-bridge), `embedded`.
    #[arg(long, value_enum, value_delimiter = ',')]
    bridge_modes: Vec<BridgeMode>,
    /// MQTT QoS levels the bridge scenario measures, comma-separated [default: 0,1].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=1))]
    bridge_qos: Vec<u8>,
    /// `compression` of the edge's uplink in the uplink scenario (the broker's default).
    #[arg(long, default_value = "lz4", value_parser = clap::builder::PossibleValuesParser::new(bench::UPLINK_COMPRESSIONS))]
    uplink_compression: String,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl Args {
    fn into_config(self) -> (Config, Option<PathBuf>) {
        let startup_timeout = Duration::from_secs(self.startup_timeout_secs);
        let target = match self.bootstrap {
            Some(addr) => Target::External(addr),
            None => Target::Spawn(BrokerSpec {
                bin: self
                    .broker_bin
                    .unwrap_or_else(|| bench::default_bin("runnel")),
                log_level: self.broker_log_level,
                partitions: self.partitions,
                work_dir: self.work_dir,
                startup_timeout,
            }),
        };
        let scenarios = if self.scenarios.is_empty() {
            Scenario::DEFAULT.to_vec()
        } else {
            self.scenarios
        };
        let bridge = BridgeSpec {
            bin: self
                .bridge_bin
                .unwrap_or_else(|| bench::default_bin("runnel-bridge")),
            messages: self.bridge_messages,
            publishers: usize::from(self.bridge_publishers),
            startup_timeout,
            modes: self.bridge_modes,
            qos: self.bridge_qos,
        };
        let config = Config {
            target,
            scenarios,
            records: self.records,
            record_size: self.record_size as usize,
            partitions: self.partitions,
            rate: self.rate,
            latency_duration: Duration::from_secs(self.latency_secs),
            runs: self.runs,
            scenario_timeout: Duration::from_secs(self.timeout_secs),
            client_overrides: self.client_config,
            bridge,
            uplink: UplinkSpec {
                compression: self.uplink_compression,
            },
        };
        (config, self.json)
    }
}

fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{arg}`")),
    }
}

fn main() -> anyhow::Result<()> {
    let (config, json_path) = Args::parse().into_config();
    let report = bench::run(&config)?;
    println!("{}", report.table());
    if let Some(path) = json_path {
        let json = serde_json::to_string_pretty(&report.to_json(config.to_json()))?;
        fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}
