//! One repetition: start the broker (if we own it), run the selected scenarios in order, and
//! collect their metrics. After each scenario a dead broker is reported before the scenario's
//! own error, because it is the more precise cause.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::bridge::{self, Kafka};
use super::broker::{Broker, Memory};
use super::client::ClientSettings;
use super::cluster;
use super::consume::{self, ConsumeSpec};
use super::deadline::Deadline;
use super::delivery::Acks;
use super::latency::{self, LatencySpec};
use super::produce::{self, ProduceSpec};
use super::report::Metric;
use super::security;
use super::stats::percentile;
use super::uplink;
use super::{Config, Scenario, Target};

pub struct Run<'a> {
    config: &'a Config,
    broker: Option<Broker>,
    client: ClientSettings,
    idle: Option<Memory>,
    topic_prefix: String,
    metrics: Vec<Metric>,
}

impl<'a> Run<'a> {
    pub fn start(config: &'a Config, run: u32) -> anyhow::Result<Self> {
        let (broker, bootstrap) = match &config.target {
            Target::Spawn(_) if !config.wants_broker() => (None, String::new()),
            Target::Spawn(spec) => {
                let broker = Broker::start(spec)?;
                let addr = broker.addr().to_owned();
                (Some(broker), addr)
            }
            Target::External(addr) => (None, addr.clone()),
        };
        // Before any client has connected.
        let idle = broker.as_ref().map(Broker::memory).transpose()?;
        Ok(Self {
            config,
            broker,
            client: ClientSettings {
                bootstrap,
                overrides: config.client_overrides.clone(),
            },
            idle,
            topic_prefix: topic_prefix(run),
            metrics: Vec::new(),
        })
    }

    pub fn execute(mut self) -> anyhow::Result<Vec<Metric>> {
        let config = self.config;
        let (produce, consume) = (
            config.wants(Scenario::Produce),
            config.wants(Scenario::Consume),
        );
        let (latency, rss) = (config.wants(Scenario::Latency), config.wants(Scenario::Rss));
        if produce || consume {
            let (topic, partitions) = self.produce(Acks::Leader, produce)?;
            if produce {
                self.produce(Acks::All, true)?;
            }
            if consume {
                self.consume(&topic, partitions)?;
            }
        }
        if latency {
            self.latency()?;
        }
        if rss {
            self.rss()?;
        }
        if config.wants(Scenario::Bridge) {
            self.bridge()?;
        }
        if config.wants(Scenario::Uplink) {
            self.uplink()?;
        }
        if config.wants(Scenario::Security) {
            self.security()?;
        }
        if config.wants(Scenario::Cluster) {
            self.cluster()?;
        }
        Ok(self.metrics)
    }

    /// Starts its own edge and central brokers; the run's broker is not involved.
    fn uplink(&mut self) -> anyhow::Result<()> {
        let Target::Spawn(broker) = &self.config.target else {
            eprintln!("uplink: skipped (with --bootstrap there is no broker binary to start)");
            return Ok(());
        };
        let topic = format!("{}-uplink", self.topic_prefix);
        let case = uplink::Case {
            spec: &self.config.uplink,
            broker,
            client_overrides: &self.config.client_overrides,
            topic: &topic,
            records: self.config.records,
            record_size: self.config.record_size,
            timeout: self.config.scenario_timeout,
        };
        let metrics = uplink::run(&case).context("uplink scenario")?;
        self.metrics.extend(metrics);
        Ok(())
    }

    /// Starts its own broker with a PLAINTEXT and a SASL_SSL listener.
    fn security(&mut self) -> anyhow::Result<()> {
        let Target::Spawn(broker) = &self.config.target else {
            eprintln!("security: skipped (with --bootstrap there is no broker binary to start)");
            return Ok(());
        };
        let case = security::Case {
            broker,
            client_overrides: &self.config.client_overrides,
            topic_prefix: &self.topic_prefix,
            records: self.config.records,
            record_size: self.config.record_size,
            timeout: self.config.scenario_timeout,
        };
        let metrics = security::run(&case).context("security scenario")?;
        self.metrics.extend(metrics);
        Ok(())
    }

    /// Starts its own single broker, then its own three-node cluster.
    fn cluster(&mut self) -> anyhow::Result<()> {
        let Target::Spawn(broker) = &self.config.target else {
            eprintln!("cluster: skipped (with --bootstrap there is no broker binary to start)");
            return Ok(());
        };
        let case = cluster::Case {
            broker,
            client_overrides: &self.config.client_overrides,
            topic_prefix: &self.topic_prefix,
            records: self.config.records,
            record_size: self.config.record_size,
            partitions: self.config.partitions,
            rate: self.config.rate,
            latency_duration: self.config.latency_duration,
            timeout: self.config.scenario_timeout,
        };
        let metrics = cluster::run(&case).context("cluster scenario")?;
        self.metrics.extend(metrics);
        Ok(())
    }

    /// Starts its own Mosquitto, brokers and bridges; the run's broker is not involved.
    fn bridge(&mut self) -> anyhow::Result<()> {
        let kafka = match &self.config.target {
            Target::Spawn(spec) => Kafka::Spawn(spec),
            Target::External(addr) => Kafka::External(addr),
        };
        let timeout = self.config.scenario_timeout;
        let metrics = bridge::run(&self.config.bridge, &kafka, &self.topic_prefix, timeout)?;
        self.metrics.extend(metrics);
        Ok(())
    }

    /// Produces to a fresh topic; returns it with its partition count.
    fn produce(&mut self, acks: Acks, record: bool) -> anyhow::Result<(String, i32)> {
        let name = match acks {
            Acks::Leader => "produce acks=1",
            Acks::All => "produce acks=all",
        };
        let topic = format!("{}-{}", self.topic_prefix, acks.label());
        let spec = ProduceSpec {
            client: &self.client,
            topic: &topic,
            acks,
            records: self.config.records,
            record_size: self.config.record_size,
        };
        let result = produce::throughput(&spec, &self.deadline("produce"));
        let result = self.finish(name, result)?;
        eprintln!("{name}: {}", result.summary());
        if result.partitions != self.config.partitions {
            eprintln!(
                "warning: {topic} has {} partitions, not the {} asked for",
                result.partitions, self.config.partitions
            );
        }
        if record {
            let prefix = format!("produce_{}", acks.label());
            self.metrics.extend(result.metrics(&prefix));
        }
        Ok((topic, result.partitions))
    }

    fn consume(&mut self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let spec = ConsumeSpec {
            client: &self.client,
            topic,
            partitions,
            records: self.config.records,
            record_size: self.config.record_size,
        };
        let result = consume::throughput(&spec, &self.deadline("consume"));
        let result = self.finish("consume", result)?;
        eprintln!("consume: {}", result.summary());
        self.metrics.extend(result.metrics("consume"));
        Ok(())
    }

    fn latency(&mut self) -> anyhow::Result<()> {
        let topic = format!("{}-latency", self.topic_prefix);
        let spec = LatencySpec {
            client: &self.client,
            topic: &topic,
            acks: Acks::All,
            rate: self.config.rate,
            duration: self.config.latency_duration,
            record_size: self.config.record_size,
        };
        let budget = self.config.scenario_timeout + self.config.latency_duration;
        let result = latency::run(&spec, &Deadline::after("latency", budget));
        let result = self.finish("latency", result)?;
        let metrics = result.metrics();
        let percentiles: Vec<String> = metrics
            .iter()
            .take(4)
            .map(|m| {
                format!(
                    "{}={:.0}{}",
                    m.name.trim_start_matches("latency_"),
                    m.value,
                    m.unit
                )
            })
            .collect();
        eprintln!(
            "latency: {} records at {:.0}/s, {}",
            result.records,
            result.achieved_rate,
            percentiles.join(" ")
        );
        let p50 = Duration::from_nanos(percentile(&result.sorted_ns, 0.5).unwrap_or(0));
        if result.drain.max(p50) > Duration::from_secs(1) {
            eprintln!(
                "warning: p50 {:.1}s, last ack {:.1}s after the last send: the broker did not \
                 keep up with {} msg/s, so these latencies are mostly queueing",
                p50.as_secs_f64(),
                result.drain.as_secs_f64(),
                self.config.rate
            );
        }
        self.metrics.extend(metrics);
        Ok(())
    }

    fn rss(&mut self) -> anyhow::Result<()> {
        let (Some(broker), Some(idle)) = (&self.broker, self.idle) else {
            eprintln!("rss: skipped (the broker was not started by runnel-bench)");
            return Ok(());
        };
        let now = broker.memory()?;
        eprintln!(
            "broker memory: idle RSS {} KiB, peak {} KiB, now {} KiB ({} KiB anonymous, {} KiB \
             file-backed)",
            idle.rss_kb, now.hwm_kb, now.rss_kb, now.anon_kb, now.file_kb
        );
        self.metrics.extend([
            Metric::new("rss_idle_kb", "KiB", idle.rss_kb as f64),
            Metric::new("rss_peak_kb", "KiB", now.hwm_kb as f64),
            Metric::new("rss_final_kb", "KiB", now.rss_kb as f64),
            Metric::new("rss_final_anon_kb", "KiB", now.anon_kb as f64),
            Metric::new("rss_final_file_kb", "KiB", now.file_kb as f64),
        ]);
        Ok(())
    }

    fn deadline(&self, scenario: &'static str) -> Deadline {
        Deadline::after(scenario, self.config.scenario_timeout)
    }

    /// A scenario's result, unless the broker died meanwhile (reported with its last output).
    fn finish<T>(&mut self, scenario: &str, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Some(broker) = self.broker.as_mut() {
            broker.ensure_running(scenario)?;
        }
        result.with_context(|| format!("{scenario} against {}", self.client.bootstrap))
    }
}

/// Unique per process and run, so repeated benches against one broker never share a topic.
fn topic_prefix(run: u32) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("bench-{}-{secs}-r{run}", std::process::id())
}
