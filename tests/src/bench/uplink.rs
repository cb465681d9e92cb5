//! Scenario `uplink` (opt-in): how fast an edge broker drains a store-and-forward backlog to
//! a central broker on loopback, and what the edge costs meanwhile.
//!
//! A run is: a fresh edge `runnel` whose `[[uplink]]` points at a free port where nothing
//! listens yet ([`edge`]); `--records` records of `--record-size` bytes produced to it with
//! librdkafka (acks=1, the produce scenario's code) into a topic of `--partitions` partitions;
//! a wait until the edge's `/metrics` counts the whole backlog (every lane started, nothing
//! forwarded); then a fresh central `runnel` started on that port. The clock runs from
//! spawning the central process until the central topic's watermarks (ListOffsets, summed
//! over partitions, polled every [`POLL_INTERVAL`]) show every record, so the drain time
//! includes the central's start-up, the edge's reconnect (retried every ≤ 100 ms) and the
//! creation of the upstream topic; when the central listened and when its first record
//! arrived are also reported. MB/s count payload bytes; the payload is the produce scenario's
//! repeating `a…z` pattern, which compresses far better than real data, so the bytes the edge
//! sent (`uplink_sent_mb_per_sec`, after the uplink's compression) are a small share of them.
//!
//! Invariants:
//! - the count is exact: the central topic must hold exactly `--records` records, and the
//!   edge's metrics must show all of them forwarded, none dropped, rejected or possibly
//!   duplicated, or the run fails;
//! - the edge's memory is sampled on a thread of its own during the drain (VmRSS, RssAnon,
//!   RssFile); VmHWM covers the edge's whole life, the produce phase included, so both are
//!   reported;
//! - the CPU time of edge and central over the drain is reported per record and in % of one
//!   core, beside what everything else used (this tool's polling, other processes).

mod edge;

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use runnel_tests::harness::mosquitto::free_port;

use super::broker::{Broker, BrokerSpec, Memory};
use super::client::ClientSettings;
use super::deadline::Deadline;
use super::delivery::Acks;
use super::proc_stat::{self, MemoryPeak, MemorySampler};
use super::produce::{self, ProduceSpec};
use super::report::{Goal, Metric, Throughput};
use super::watermarks::Watermarks;
use edge::{Edge, EdgeSettings, UplinkStatus};

/// How often the central topic's watermarks are read.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often the edge's memory is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// How often the edge's metrics are scraped while waiting for a state.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);
/// Targets from the uplink issue: drain rate, and the edge's RSS while draining.
const GOAL_RECORDS_PER_SEC: f64 = 200_000.0;
const GOAL_EDGE_RSS_KB: f64 = 32.0 * 1024.0;
/// What the rest of the machine may use during the drain (this tool's polling takes a few
/// %) before the run is flagged as disturbed, in % of one core.
const BUSY_OTHER_PCT: f64 = 25.0;
/// The values `[[uplink]] compression` accepts.
pub const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// How to run the uplink scenario (records, sizes and partitions are the bench's own).
#[derive(Debug, Clone)]
pub struct UplinkSpec {
    /// `compression` of the edge's uplink (the broker's default is `lz4`).
    pub compression: String,
}

/// One run of the scenario.
pub struct Case<'a> {
    pub spec: &'a UplinkSpec,
    /// How edge and central are started (the edge's topic gets its `partitions`).
    pub broker: &'a BrokerSpec,
    pub client_overrides: &'a [(String, String)],
    /// The edge's local topic.
    pub topic: &'a str,
    pub records: u64,
    pub record_size: usize,
    /// Budget of the produce phase, and separately of the drain.
    pub timeout: Duration,
}

/// What the drain measured.
struct Drain {
    /// From spawning the central until it held every record.
    elapsed: Duration,
    /// From spawning the central until it announced its address.
    listening: Duration,
    /// From spawning the central until its topic first held records.
    first_record: Duration,
    /// Of the central topic.
    partitions: i32,
    peak: MemoryPeak,
    /// The edge's VmHWM after the drain (its whole life).
    hwm_kb: u64,
    edge_cpu: Duration,
    central_cpu: Duration,
    machine_cpu: Duration,
    /// The edge's counters once the central held everything.
    status: UplinkStatus,
}

pub fn run(case: &Case<'_>) -> anyhow::Result<Vec<Metric>> {
    let central_port = free_port()?;
    let settings = EdgeSettings {
        topic: case.topic,
        central_port,
        compression: &case.spec.compression,
    };
    let mut edge = Edge::start(case.broker, &settings)?;
    let produced = fill_backlog(case, &mut edge)?;
    let before = edge.broker.memory()?;
    let drain = drain(case, &mut edge, central_port)?;
    if drain.partitions != produced.partitions {
        eprintln!(
            "warning: the central topic has {} partitions, the edge's {}",
            drain.partitions, produced.partitions
        );
    }
    let mut metrics = throughput_metrics(case, &drain);
    metrics.extend(memory_metrics(&drain, &before));
    metrics.extend(cpu_metrics(case, &drain));
    Ok(metrics)
}

/// Produces the backlog to the edge and waits until its uplink counts all of it.
fn fill_backlog(case: &Case<'_>, edge: &mut Edge) -> anyhow::Result<Throughput> {
    let deadline = Deadline::after("uplink", case.timeout);
    let client = ClientSettings {
        bootstrap: edge.broker.addr().to_owned(),
        overrides: case.client_overrides.to_vec(),
    };
    let spec = ProduceSpec {
        client: &client,
        topic: case.topic,
        acks: Acks::Leader,
        records: case.records,
        record_size: case.record_size,
    };
    let produced = produce::throughput(&spec, &deadline);
    edge.broker.ensure_running("the uplink backlog's produce")?;
    let produced = produced.context("producing the backlog to the edge")?;
    eprintln!(
        "uplink: backlog produced to the edge: {}",
        produced.summary()
    );
    // Lanes start on the uplink's next topic rescan (at most a second).
    wait_for_status(
        edge,
        &deadline,
        "the whole backlog, nothing forwarded",
        |s| s.backlog_records == case.records && s.forwarded_records == 0,
    )?;
    Ok(produced)
}

/// Starts the central broker and waits until its topic holds every record.
fn drain(case: &Case<'_>, edge: &mut Edge, central_port: u16) -> anyhow::Result<Drain> {
    let deadline = Deadline::after("uplink", case.timeout);
    let edge_pid = edge.broker.pid();
    let sampler = MemorySampler::start(edge_pid, SAMPLE_INTERVAL);
    let (edge_cpu, machine_cpu) = (
        proc_stat::process_cpu(edge_pid)?,
        proc_stat::machine_busy()?,
    );
    let start = Instant::now();
    let listen = format!("127.0.0.1:{central_port}");
    let mut central = Broker::start_on(case.broker, None, &listen)?;
    let listening = start.elapsed();
    let remote = edge::remote_topic(case.topic);
    // The edge creates the topic; this waits for it.
    let sink = Watermarks::new(central.addr(), &remote, &deadline)?;
    let mut first_record = None;
    let elapsed = loop {
        let held = sink.records()?;
        let now = start.elapsed();
        if held > 0 {
            first_record.get_or_insert(now);
        }
        if held > case.records {
            bail!(
                "the central topic {remote} holds {held} records, more than the {} produced",
                case.records
            );
        }
        if held == case.records {
            break now;
        }
        edge.broker.ensure_running("the uplink drain")?;
        central.ensure_running("the uplink drain")?;
        deadline.check(|| {
            format!(
                "draining to the central broker: {held} of {} records arrived",
                case.records
            )
        })?;
        thread::sleep(POLL_INTERVAL);
    };
    let (edge_end, machine_end) = (
        proc_stat::process_cpu(edge_pid)?,
        proc_stat::machine_busy()?,
    );
    let central_cpu = proc_stat::process_cpu(central.pid())?;
    let peak = sampler.finish()?;
    let hwm_kb = edge.broker.memory()?.hwm_kb;
    // The central answered before the edge counted the last batch: give it a moment.
    let status = wait_for_status(edge, &deadline, "every record forwarded", |s| {
        s.forwarded_records >= case.records
    })?;
    check_exact(case, &sink, &status)?;
    central.ensure_running("the uplink drain")?;
    Ok(Drain {
        elapsed,
        listening,
        first_record: first_record.unwrap_or(elapsed),
        partitions: sink.partitions(),
        peak,
        hwm_kb,
        edge_cpu: edge_end.saturating_sub(edge_cpu),
        central_cpu,
        machine_cpu: machine_end.saturating_sub(machine_cpu),
        status,
    })
}

/// The central holds exactly the produced records, and the edge forwarded each once.
fn check_exact(case: &Case<'_>, sink: &Watermarks, status: &UplinkStatus) -> anyhow::Result<()> {
    let held = sink.records()?;
    let exact = held == case.records
        && status.forwarded_records == case.records
        && status.backlog_records == 0
        && status.dropped_records == 0
        && status.rejected_records == 0
        && status.possible_duplicates == 0;
    if !exact {
        bail!(
            "count mismatch after the drain: the central topic holds {held} records of {} \
             produced; the edge's uplink reports {status:?}",
            case.records
        );
    }
    Ok(())
}

/// Scrapes the edge's metrics until `ok` holds.
fn wait_for_status(
    edge: &mut Edge,
    deadline: &Deadline,
    what: &str,
    ok: impl Fn(&UplinkStatus) -> bool,
) -> anyhow::Result<UplinkStatus> {
    loop {
        edge.broker.ensure_running("the uplink scenario")?;
        let status = edge.status()?;
        if ok(&status) {
            return Ok(status);
        }
        deadline.check(|| format!("waiting for an uplink status with {what}; last: {status:?}"))?;
        thread::sleep(STATUS_INTERVAL);
    }
}

/// Drain rate (payload bytes, and as sent after compression with headers), and where the
/// drain time went before the first record arrived.
fn throughput_metrics(case: &Case<'_>, drain: &Drain) -> Vec<Metric> {
    let throughput = Throughput {
        records: case.records,
        bytes: case.records * case.record_size as u64,
        elapsed: drain.elapsed,
        partitions: drain.partitions,
    };
    let secs = drain.elapsed.as_secs_f64().max(1e-9);
    let sent_mb_per_sec = drain.status.forwarded_bytes as f64 / 1e6 / secs;
    eprintln!(
        "uplink drain ({} compression; end: central high watermarks): {}; sent {:.2} MB/s \
         upstream (batches as sent, headers included); central listening after {:.3}s, first \
         record after {:.3}s",
        case.spec.compression,
        throughput.summary(),
        sent_mb_per_sec,
        drain.listening.as_secs_f64(),
        drain.first_record.as_secs_f64()
    );
    let mut metrics = throughput.metrics("uplink_drain");
    if let Some(rate) = metrics.first_mut() {
        rate.goal = Some(Goal::AtLeast(GOAL_RECORDS_PER_SEC));
    }
    metrics.extend([
        Metric::new("uplink_sent_mb_per_sec", "MB/s", sent_mb_per_sec),
        Metric::new(
            "uplink_central_listening_secs",
            "s",
            drain.listening.as_secs_f64(),
        ),
        Metric::new(
            "uplink_first_record_secs",
            "s",
            drain.first_record.as_secs_f64(),
        ),
        Metric::new("uplink_partitions", "count", f64::from(drain.partitions)),
    ]);
    metrics
}

/// The edge's memory: peaks sampled during the drain (RSS with the target, and its
/// anonymous and file-backed parts), before the drain, and VmHWM over its whole life.
fn memory_metrics(drain: &Drain, before: &Memory) -> Vec<Metric> {
    let peak = &drain.peak;
    eprintln!(
        "uplink edge memory: before the drain RSS {} KiB ({} KiB anonymous); during the drain \
         ({} samples) peak RSS {} KiB, peak anonymous {} KiB, peak file-backed {} KiB; VmHWM \
         (whole life, produce included) {} KiB",
        before.rss_kb,
        before.anon_kb,
        peak.samples,
        peak.rss_kb,
        peak.anon_kb,
        peak.file_kb,
        drain.hwm_kb
    );
    let kb = |name: &str, value: u64| Metric::new(name, "KiB", value as f64);
    vec![
        kb("uplink_edge_rss_drain_peak_kb", peak.rss_kb).with_goal(Goal::AtMost(GOAL_EDGE_RSS_KB)),
        kb("uplink_edge_anon_drain_peak_kb", peak.anon_kb),
        kb("uplink_edge_file_drain_peak_kb", peak.file_kb),
        kb("uplink_edge_rss_before_drain_kb", before.rss_kb),
        kb("uplink_edge_hwm_kb", drain.hwm_kb),
    ]
}

/// CPU time of edge and central over the drain, per record and in % of one core, and what
/// the rest of the machine used meanwhile.
fn cpu_metrics(case: &Case<'_>, drain: &Drain) -> Vec<Metric> {
    let secs = drain.elapsed.as_secs_f64().max(1e-9);
    let records = case.records.max(1) as f64;
    let mut metrics = Vec::new();
    let mut text = Vec::new();
    for (party, used) in [("edge", drain.edge_cpu), ("central", drain.central_cpu)] {
        let (pct, us) = (
            used.as_secs_f64() / secs * 100.0,
            used.as_secs_f64() * 1e6 / records,
        );
        metrics.push(Metric::new(format!("uplink_cpu_{party}_pct"), "%", pct));
        metrics.push(Metric::new(
            format!("uplink_cpu_{party}_us_per_record"),
            "us/rec",
            us,
        ));
        text.push(format!("{party} {pct:.0}% ({us:.2} us/record)"));
    }
    let ours = drain.edge_cpu + drain.central_cpu;
    let other = drain.machine_cpu.saturating_sub(ours).as_secs_f64() / secs * 100.0;
    metrics.push(Metric::new("uplink_cpu_other_pct", "%", other));
    eprintln!(
        "uplink drain CPU (% of one core): {}; everything else {other:.0}%",
        text.join(", ")
    );
    if other > BUSY_OTHER_PCT {
        eprintln!(
            "warning: other processes used {other:.0}% of a core during the drain; this run's \
             rate and CPU shares are not those of a quiet machine"
        );
    }
    metrics
}
