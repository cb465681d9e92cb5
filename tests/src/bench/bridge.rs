//! Scenario `bridge` (opt-in): MQTT → topic throughput of the MQTT bridge, standalone
//! (`runnel-bridge --bootstrap`, a separate process speaking Kafka) and embedded (a `[[bridge]]`
//! table in the broker's `--config`), at QoS 0 and QoS 1, beside an MQTT-only baseline.
//!
//! One case is: a fresh Mosquitto (`max_inflight_messages 1000`, unlimited queues), a fresh
//! broker, and the bridge with one rule `trucks/+/gps` → a 3-partition topic, `key_level = 1`
//! ([`setup`]); then `publishers` rumqttc publishers (one truck each, `trucks/t<i>/gps`) send
//! 200-byte GPS-like JSON fixes ([`gps`]) as fast as Mosquitto takes them. The clock runs from
//! the first publish until the topic's high watermarks (summed over partitions) reach the
//! message count. The MQTT-only baseline replaces bridge and broker with one rumqttc
//! subscriber, to show what publishers and Mosquitto alone carry on the same cores.
//!
//! Invariants:
//! - QoS 1: every message must arrive, or the case fails (after the deadline, or as soon as
//!   nothing arrived for [`QOS1_STALL`]); QoS 0 may drop under overload, so the delivered share
//!   is reported, never hidden (the case ends once the publishers are done and nothing arrived
//!   for [`QOS0_QUIET`]);
//! - every process of a case is new, so each peak RSS (`VmHWM`) belongs to that case alone;
//! - the CPU time of each party (publisher threads, Mosquitto, bridge, broker) over the
//!   measured interval is reported per arrived message, which shows where the time goes even
//!   on a busy machine; what everything else used meanwhile (`cpu_other_pct`: other
//!   processes, this tool's polling) says how busy it was.

mod gps;
mod setup;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttc::QoS;
use runnel_tests::harness::mqtt::{Message, PublishReport, Publisher};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::broker::BrokerSpec;
use super::deadline::Deadline;
use super::report::{Goal, Metric, Throughput};
use setup::Setup;

pub use gps::PAYLOAD_BYTES;

/// QoS 1 messages each publisher keeps in flight.
const PUBLISH_WINDOW: u16 = 1000;
/// How often arrivals are counted.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// QoS 0: nothing new for this long after the publishers finished ends the case.
const QOS0_QUIET: Duration = Duration::from_secs(3);
/// QoS 1: nothing new for this long fails the case (the bridge retries a failed write after
/// at most 5 s, so a longer silence is a stall, not a retry).
const QOS1_STALL: Duration = Duration::from_secs(15);
/// Targets from the bridge issue (on 2 cores): msg/s at QoS 0 and 1, peak RSS of the bridge.
const GOAL_QOS0_MSGS: f64 = 50_000.0;
const GOAL_QOS1_MSGS: f64 = 20_000.0;
const GOAL_BRIDGE_RSS_KB: f64 = 20.0 * 1024.0;

/// How to run the bridge scenario.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    /// The `runnel-bridge` binary.
    pub bin: PathBuf,
    /// Messages per case, split over the publishers.
    pub messages: u64,
    pub publishers: usize,
    pub startup_timeout: Duration,
    /// Which receivers to measure, in this order (empty: all).
    pub modes: Vec<Mode>,
    /// Which QoS levels (0 or 1) to measure, in this order (empty: both).
    pub qos: Vec<u8>,
}

/// Where the Kafka side of a case comes from.
pub enum Kafka<'a> {
    /// A fresh broker per case, started like the bench's own.
    Spawn(&'a BrokerSpec),
    /// An already running broker: only the standalone bridge can use it.
    External(&'a str),
}

/// What receives the MQTT messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A rumqttc subscriber in this process: the MQTT side's ceiling.
    MqttOnly,
    /// `runnel-bridge` producing to the broker over Kafka.
    Standalone,
    /// A `[[bridge]]` table in the broker's config.
    Embedded,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::MqttOnly, Mode::Standalone, Mode::Embedded];

    fn label(self) -> &'static str {
        match self {
            Mode::MqttOnly => "mqtt_only",
            Mode::Standalone => "bridge_standalone",
            Mode::Embedded => "bridge_embedded",
        }
    }
}

/// Runs every selected case, QoS 0 first, and returns their metrics.
pub fn run(
    spec: &BridgeSpec,
    kafka: &Kafka<'_>,
    topic_prefix: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Metric>> {
    if !spec.bin.is_file() {
        bail!(
            "runnel-bridge binary {} not found: build it with `cargo build --release -p \
             runnel-bridge`, or pass --bridge-bin / RUNNEL_BRIDGE_BIN",
            spec.bin.display()
        );
    }
    let publishers = runtime("mqtt-pub", 2)?;
    let subscriber = runtime("mqtt-sub", 1)?;
    let levels = if spec.qos.is_empty() {
        vec![0, 1]
    } else {
        spec.qos.clone()
    };
    let modes = if spec.modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        spec.modes.clone()
    };
    let mut metrics = Vec::new();
    for level in levels {
        let qos = if level == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        for &mode in &modes {
            if mode == Mode::Embedded && matches!(kafka, Kafka::External(_)) {
                eprintln!("bridge: embedded case skipped (the broker was not started here)");
                continue;
            }
            let case = Case {
                spec,
                mode,
                qos,
                prefix: format!("{}_qos{level}", mode.label()),
                topic: format!("{topic_prefix}-gps-{}-qos{level}", mode.label()),
                publishers: &publishers,
                subscriber: &subscriber,
            };
            let deadline = Deadline::after("bridge", timeout);
            let result = case
                .run(kafka, &deadline)
                .with_context(|| format!("bridge case {}", case.prefix))?;
            metrics.extend(result);
        }
    }
    Ok(metrics)
}

/// A runtime whose worker threads carry `name`, so their CPU time can be told apart.
fn runtime(name: &str, threads: usize) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))
}

/// One receiver at one QoS.
struct Case<'a> {
    spec: &'a BridgeSpec,
    mode: Mode,
    qos: QoS,
    /// Of the metric names, e.g. `bridge_embedded_qos1`.
    prefix: String,
    topic: String,
    publishers: &'a Runtime,
    subscriber: &'a Runtime,
}

/// What arrived and when.
struct Arrival {
    /// Distinct messages, at most the number published.
    arrived: u64,
    /// Records beyond the number published (at-least-once redeliveries).
    duplicates: u64,
    /// From the first publish to the last arrival seen.
    elapsed: Duration,
    /// From the first publish until every publisher was done.
    publish_elapsed: Duration,
    /// Records per partition at the end (empty for the MQTT-only baseline).
    per_partition: Vec<i64>,
}

impl Case<'_> {
    fn run(&self, kafka: &Kafka<'_>, deadline: &Deadline) -> anyhow::Result<Vec<Metric>> {
        let mut setup = Setup::start(self, kafka, deadline)?;
        let idle = setup.receiver_memory()?.map(|(_, memory)| memory.rss_kb);
        let batches = gps::batches(self.spec.publishers, self.spec.messages, gps::unix_ms());
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        // Counted before the first publish: arrivals start within microseconds of it.
        let base = setup.sink.count()?;
        let before = setup.cpu()?;
        let start = Instant::now();
        let publishing = self.spawn_publishers(&setup, batches, deadline);
        let arrival =
            self.wait_for_arrival(&mut setup, publishing, (base, total), start, deadline)?;
        let after = setup.cpu()?;
        setup.ensure_running()?;
        let mut metrics = self.throughput_metrics(&arrival, total);
        metrics.extend(self.memory_metrics(&setup, idle)?);
        metrics.extend(self.cpu_metrics(&before, &after, &arrival));
        Ok(metrics)
    }

    fn spawn_publishers(
        &self,
        setup: &Setup,
        batches: Vec<Vec<Message>>,
        deadline: &Deadline,
    ) -> JoinHandle<anyhow::Result<Vec<PublishReport>>> {
        let port = setup.mosquitto.port();
        let (qos, timeout) = (self.qos, deadline.remaining());
        let tasks: Vec<_> = batches
            .into_iter()
            .enumerate()
            .map(|(i, batch)| {
                let publisher = Publisher::new(port, &format!("bench-pub-{i}"))
                    .window(PUBLISH_WINDOW)
                    .timeout(timeout);
                self.publishers
                    .spawn(async move { publisher.publish_all(batch, qos).await })
            })
            .collect();
        self.publishers.spawn(async move {
            let mut reports = Vec::with_capacity(tasks.len());
            for (i, task) in tasks.into_iter().enumerate() {
                let report = task
                    .await
                    .with_context(|| format!("publisher {i} panicked"))?;
                reports.push(report.with_context(|| format!("publisher {i}"))?);
            }
            Ok(reports)
        })
    }

    /// Counts arrivals beyond `base` until all `total` are there (or, at QoS 0, until they
    /// stop coming).
    fn wait_for_arrival(
        &self,
        setup: &mut Setup,
        mut publishing: JoinHandle<anyhow::Result<Vec<PublishReport>>>,
        (base, total): (u64, u64),
        start: Instant,
        deadline: &Deadline,
    ) -> anyhow::Result<Arrival> {
        let (mut arrived, mut last_change) = (0, start);
        let mut published: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let count = setup.sink.count()?.saturating_sub(base);
            if count > arrived {
                (arrived, last_change) = (count, now);
            }
            if published.is_none() && publishing.is_finished() {
                let reports = self.publishers.block_on(&mut publishing)??;
                check_published(&reports, total)?;
                published = Some(now);
            }
            if arrived >= total {
                break;
            }
            let silent = now.duration_since(last_change);
            if let Some(done) = published
                && self.qos == QoS::AtMostOnce
                && now.duration_since(last_change.max(done)) >= QOS0_QUIET
            {
                break;
            }
            if self.qos == QoS::AtLeastOnce && silent >= QOS1_STALL {
                let until = last_change.duration_since(start).as_secs_f64();
                bail!(
                    "stalled at QoS 1: {arrived} of {total} messages arrived, none for {}s \
                     (publishers {}; {:.0} msg/s until the stall {until:.1}s after the first \
                     publish)",
                    QOS1_STALL.as_secs(),
                    if published.is_some() {
                        "done"
                    } else {
                        "still sending"
                    },
                    arrived as f64 / until.max(1e-9)
                );
            }
            setup.ensure_running()?;
            deadline.check(|| {
                format!(
                    "waiting for {total} messages at QoS {}: {arrived} arrived",
                    self.qos as u8
                )
            })?;
            thread::sleep(POLL_INTERVAL);
        }
        // At QoS 1 the publishers may still wait for their last PUBACKs.
        let published = match published {
            Some(at) => at,
            None => {
                let reports = self.publishers.block_on(publishing)??;
                check_published(&reports, total)?;
                Instant::now()
            }
        };
        Ok(Arrival {
            arrived: arrived.min(total),
            duplicates: arrived.saturating_sub(total),
            elapsed: last_change.duration_since(start),
            publish_elapsed: published.duration_since(start),
            per_partition: setup.sink.per_partition()?,
        })
    }

    /// Rates (with the targets for the bridge), the delivered share at QoS 0, and how
    /// fast the publishers got rid of their messages.
    fn throughput_metrics(&self, arrival: &Arrival, total: u64) -> Vec<Metric> {
        let prefix = &self.prefix;
        let throughput = Throughput {
            records: arrival.arrived,
            bytes: arrival.arrived * PAYLOAD_BYTES as u64,
            elapsed: arrival.elapsed,
            partitions: arrival.per_partition.len() as i32,
        };
        let delivered = arrival.arrived as f64 / total.max(1) as f64 * 100.0;
        let publish_rate = total as f64 / arrival.publish_elapsed.as_secs_f64().max(1e-9);
        let mut metrics = throughput.metrics(prefix);
        if self.mode != Mode::MqttOnly
            && let Some(rate) = metrics.first_mut()
        {
            let goal = match self.qos {
                QoS::AtMostOnce => GOAL_QOS0_MSGS,
                _ => GOAL_QOS1_MSGS,
            };
            rate.goal = Some(Goal::AtLeast(goal));
        }
        if self.qos == QoS::AtMostOnce {
            metrics.push(Metric::new(
                format!("{prefix}_delivered_pct"),
                "%",
                delivered,
            ));
        }
        metrics.push(Metric::new(
            format!("{prefix}_publish_msgs_per_sec"),
            "msg/s",
            publish_rate,
        ));
        let secs = arrival.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "{prefix}: {} of {total} messages ({delivered:.1}%{}) in {secs:.3}s = {:.0} msg/s, \
             {:.2} MB/s; per partition {:?}; published in {:.3}s ({publish_rate:.0} msg/s)",
            arrival.arrived,
            match arrival.duplicates {
                0 => String::new(),
                n => format!(", +{n} duplicates"),
            },
            arrival.arrived as f64 / secs,
            throughput.bytes as f64 / 1e6 / secs,
            arrival.per_partition,
            arrival.publish_elapsed.as_secs_f64(),
        );
        metrics
    }

    /// Peak and idle RSS of the bridge (standalone) or the broker (embedded), and Mosquitto's
    /// peak, which grows with what it had to queue.
    fn memory_metrics(&self, setup: &Setup, idle_kb: Option<u64>) -> anyhow::Result<Vec<Metric>> {
        let prefix = &self.prefix;
        let mut metrics = Vec::new();
        let mut text = Vec::new();
        if let (Some(idle_kb), Some((who, now))) = (idle_kb, setup.receiver_memory()?) {
            let peak = Metric::new(
                format!("{prefix}_{who}_rss_peak_kb"),
                "KiB",
                now.hwm_kb as f64,
            );
            metrics.push(match who {
                "bridge" => peak.with_goal(Goal::AtMost(GOAL_BRIDGE_RSS_KB)),
                _ => peak,
            });
            metrics.push(Metric::new(
                format!("{prefix}_{who}_rss_idle_kb"),
                "KiB",
                idle_kb as f64,
            ));
            text.push(format!(
                "{who} RSS idle {idle_kb} KiB, peak {} KiB ({} KiB anonymous now)",
                now.hwm_kb, now.anon_kb
            ));
        }
        if let Some(memory) = setup.mosquitto_memory() {
            metrics.push(Metric::new(
                format!("{prefix}_mosquitto_rss_peak_kb"),
                "KiB",
                memory.hwm_kb as f64,
            ));
            text.push(format!("mosquitto RSS peak {} KiB", memory.hwm_kb));
        }
        if !text.is_empty() {
            eprintln!("{prefix}: {}", text.join(", "));
        }
        Ok(metrics)
    }

    /// Each party's CPU time per arrived message (what the pipeline would cost on quiet,
    /// dedicated cores), and what the rest of the machine used meanwhile, in % of one core
    /// (the noise: other processes, this tool's polling).
    fn cpu_metrics(
        &self,
        before: &setup::CpuTimes,
        after: &setup::CpuTimes,
        arrival: &Arrival,
    ) -> Vec<Metric> {
        let secs = arrival.elapsed.as_secs_f64().max(1e-9);
        let messages = arrival.arrived.max(1) as f64;
        let prefix = &self.prefix;
        let (mut metrics, mut text) = (Vec::new(), Vec::new());
        let mut ours = Duration::ZERO;
        for ((party, end), (_, begin)) in after.parties.iter().zip(&before.parties) {
            let used = end.saturating_sub(*begin);
            ours += used;
            let per_message = used.as_secs_f64() * 1e6 / messages;
            metrics.push(Metric::new(
                format!("{prefix}_cpu_{party}_us_per_msg"),
                "us/msg",
                per_message,
            ));
            text.push(format!(
                "{party} {per_message:.1} us/msg ({:.0}%)",
                used.as_secs_f64() / secs * 100.0
            ));
        }
        let machine = after.machine.saturating_sub(before.machine);
        let other = machine.saturating_sub(ours).as_secs_f64() / secs * 100.0;
        metrics.push(Metric::new(format!("{prefix}_cpu_other_pct"), "%", other));
        eprintln!(
            "{prefix}: CPU (% of one core): {}; everything else {other:.0}%",
            text.join(", ")
        );
        metrics
    }
}

fn check_published(reports: &[PublishReport], total: u64) -> anyhow::Result<()> {
    let acked: usize = reports.iter().map(|r| r.acked).sum();
    let errors: usize = reports.iter().map(|r| r.connection_errors).sum();
    if acked as u64 != total || errors > 0 {
        bail!(
            "publishers acknowledged {acked} of {total} messages with {errors} connection errors"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_published_reports_when_one_is_short_should_fail() {
        let report = |acked| PublishReport {
            total: 5,
            acked,
            sent: acked,
            retransmitted: 0,
            resent: 0,
            connection_errors: 0,
        };
        assert!(check_published(&[report(5), report(5)], 10).is_ok());
        assert!(check_published(&[report(5), report(4)], 10).is_err());
    }
}
