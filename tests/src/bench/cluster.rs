//! Scenario `cluster` (opt-in): what replication costs, and how fast a three-node cluster
//! recovers from the death of a partition leader.
//!
//! A run is, in order, with the produce and latency scenarios' code and settings:
//! 1. a fresh single `runnel` (no `[cluster]`): acks=1 produce throughput, then acks=1
//!    latency at `--rate` for `--latency-secs`; the broker is stopped before step 2;
//! 2. three fresh `runnel` processes on 127.0.0.1 with a `[cluster]` table ([`nodes`]);
//!    topics created with replication factor 3 and `min.insync.replicas=2`, and a full ISR
//!    awaited before use: acks=all produce throughput (and its ratio to step 1's acks=1, the
//!    issue's target being ≥ [`GOAL_RATIO`]), then acks=all latency at the same rate;
//! 3. [`ROUNDS`] failovers on the same cluster ([`failover`]): an idempotent acks=all
//!    producer sends a record every [`INTERVAL`] to a fresh one-partition topic, the leader
//!    gets SIGKILL, and the time from the kill to the first acknowledgement of a record sent
//!    after it is measured; the killed node is restarted and the full ISR awaited before the
//!    next round. Their median and maximum are the run's values.
//!
//! Invariants:
//! - single node and cluster never run at the same time (2-core machines);
//! - every acknowledged record of a failover round must be read back, or the scenario fails;
//! - every process is killed when the scenario ends, also on error (`Drop`).

mod failover;
mod nodes;

use std::time::Duration;

use anyhow::Context;

use super::broker::{Broker, BrokerSpec};
use super::client::ClientSettings;
use super::deadline::Deadline;
use super::delivery::Acks;
use super::latency::{self, Latency, LatencySpec};
use super::produce::{self, ProduceSpec};
use super::report::{Goal, Metric, Throughput};
use super::stats::{median, percentile};
pub use failover::INTERVAL;
use nodes::Nodes;

/// Failovers per run.
pub const ROUNDS: usize = 3;
/// The targets: acks=all on three nodes at least half the single node's acks=1
/// throughput, and a failover within 5 s.
const GOAL_RATIO: f64 = 0.5;
const GOAL_FAILOVER_MS: f64 = 5000.0;

/// One run of the scenario (records, sizes, partitions and latency rate are the bench's own).
pub struct Case<'a> {
    pub broker: &'a BrokerSpec,
    pub client_overrides: &'a [(String, String)],
    pub topic_prefix: &'a str,
    pub records: u64,
    pub record_size: usize,
    /// Of the throughput and latency topics (failover topics have one).
    pub partitions: i32,
    pub rate: u64,
    pub latency_duration: Duration,
    /// Budget of each phase.
    pub timeout: Duration,
}

pub fn run(case: &Case<'_>) -> anyhow::Result<Vec<Metric>> {
    let mut metrics = Vec::new();
    let single = single_node(case, &mut metrics).context("single node")?;
    let cluster = three_nodes(case, &mut metrics).context("three-node cluster")?;
    let rate = |t: &Throughput| t.records as f64 / t.elapsed.as_secs_f64().max(1e-9);
    let ratio = rate(&cluster) / rate(&single).max(1e-9);
    eprintln!("cluster: three-node acks=all / single-node acks=1 throughput = {ratio:.3}");
    metrics.push(
        Metric::new("cluster_produce_ratio", "x", ratio).with_goal(Goal::AtLeast(GOAL_RATIO)),
    );
    Ok(metrics)
}

/// Step 1; returns the acks=1 throughput.
fn single_node(case: &Case<'_>, metrics: &mut Vec<Metric>) -> anyhow::Result<Throughput> {
    let mut broker = Broker::start(case.broker)?;
    let client = ClientSettings {
        bootstrap: broker.addr().to_owned(),
        overrides: case.client_overrides.to_vec(),
    };
    let topic = format!("{}-cluster-single-acks1", case.topic_prefix);
    let produced = throughput(case, &client, &topic, Acks::Leader);
    broker.ensure_running("the cluster scenario's single-node produce")?;
    let produced = produced?;
    eprintln!("cluster single node produce acks=1: {}", produced.summary());
    metrics.extend(produced.metrics("cluster_single_produce_acks1"));
    let topic = format!("{}-cluster-single-latency", case.topic_prefix);
    let measured = measure_latency(case, &client, &topic, Acks::Leader);
    broker.ensure_running("the cluster scenario's single-node latency")?;
    metrics.extend(latency_metrics("cluster_single_latency_acks1", &measured?));
    Ok(produced)
}

/// Steps 2 and 3; returns the acks=all throughput.
fn three_nodes(case: &Case<'_>, metrics: &mut Vec<Metric>) -> anyhow::Result<Throughput> {
    let mut nodes = Nodes::start(case.broker, case.timeout)?;
    let client = ClientSettings {
        bootstrap: nodes.bootstrap(),
        overrides: case.client_overrides.to_vec(),
    };
    let topic = format!("{}-cluster-acksall", case.topic_prefix);
    nodes.create_topic(&topic, case.partitions)?;
    let produced = throughput(case, &client, &topic, Acks::All);
    nodes.ensure_running("the cluster's acks=all produce")?;
    let produced = produced?;
    eprintln!(
        "cluster three nodes produce acks=all: {}",
        produced.summary()
    );
    metrics.extend(produced.metrics("cluster_produce_acksall"));

    let topic = format!("{}-cluster-latency", case.topic_prefix);
    nodes.create_topic(&topic, case.partitions)?;
    let measured = measure_latency(case, &client, &topic, Acks::All);
    nodes.ensure_running("the cluster's acks=all latency")?;
    metrics.extend(latency_metrics("cluster_latency_acksall", &measured?));

    let mut outcomes = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let topic = format!("{}-cluster-failover-{round}", case.topic_prefix);
        let outcome = failover::round(&mut nodes, &client, &topic, case.timeout)
            .with_context(|| format!("failover round {round} of {ROUNDS}"))?;
        outcomes.push(outcome);
    }
    metrics.extend(failover_metrics(&outcomes));
    Ok(produced)
}

fn throughput(
    case: &Case<'_>,
    client: &ClientSettings,
    topic: &str,
    acks: Acks,
) -> anyhow::Result<Throughput> {
    let spec = ProduceSpec {
        client,
        topic,
        acks,
        records: case.records,
        record_size: case.record_size,
    };
    produce::throughput(&spec, &Deadline::after("cluster", case.timeout))
}

fn measure_latency(
    case: &Case<'_>,
    client: &ClientSettings,
    topic: &str,
    acks: Acks,
) -> anyhow::Result<Latency> {
    let spec = LatencySpec {
        client,
        topic,
        acks,
        rate: case.rate,
        duration: case.latency_duration,
        record_size: case.record_size,
    };
    let budget = case.timeout + case.latency_duration;
    latency::run(&spec, &Deadline::after("cluster", budget))
}

/// p50, p99, p99.9 and max, and the rate really sent; printed too.
fn latency_metrics(prefix: &str, result: &Latency) -> Vec<Metric> {
    let us = |q: f64| percentile(&result.sorted_ns, q).unwrap_or(0) as f64 / 1e3;
    let metrics = vec![
        Metric::new(format!("{prefix}_p50_us"), "µs", us(0.5)),
        Metric::new(format!("{prefix}_p99_us"), "µs", us(0.99)),
        Metric::new(format!("{prefix}_p999_us"), "µs", us(0.999)),
        Metric::new(format!("{prefix}_max_us"), "µs", us(1.0)),
        Metric::new(
            format!("{prefix}_rate_achieved"),
            "msg/s",
            result.achieved_rate,
        ),
    ];
    eprintln!(
        "{prefix}: {} records at {:.0}/s, p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} \
         µs, drain {:.1} ms",
        result.records,
        result.achieved_rate,
        us(0.5),
        us(0.99),
        us(0.999),
        us(1.0),
        result.drain.as_secs_f64() * 1e3
    );
    metrics
}

fn failover_metrics(outcomes: &[failover::Outcome]) -> Vec<Metric> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let times: Vec<f64> = outcomes.iter().map(|o| ms(o.failover)).collect();
    let elections: Vec<f64> = outcomes.iter().filter_map(|o| o.election.map(ms)).collect();
    let max = times.iter().copied().fold(0.0, f64::max);
    let sum = |f: fn(&failover::Outcome) -> u64| outcomes.iter().map(f).sum::<u64>() as f64;
    eprintln!(
        "cluster failover: {} (leaders {}), median {:.0} ms, max {max:.0} ms",
        times
            .iter()
            .map(|t| format!("{t:.0} ms"))
            .collect::<Vec<_>>()
            .join(", "),
        outcomes
            .iter()
            .map(|o| format!("{}→{}", o.old_leader, o.new_leader))
            .collect::<Vec<_>>()
            .join(", "),
        median(&times).unwrap_or(f64::NAN)
    );
    let mut metrics = vec![
        Metric::new(
            "cluster_failover_median_ms",
            "ms",
            median(&times).unwrap_or(f64::NAN),
        )
        .with_goal(Goal::AtMost(GOAL_FAILOVER_MS)),
        Metric::new("cluster_failover_max_ms", "ms", max).with_goal(Goal::AtMost(GOAL_FAILOVER_MS)),
    ];
    if let Some(election) = median(&elections) {
        metrics.push(Metric::new(
            "cluster_failover_election_median_ms",
            "ms",
            election,
        ));
    }
    metrics.extend([
        Metric::new("cluster_failover_sent", "records", sum(|o| o.sent)),
        Metric::new("cluster_failover_acked", "records", sum(|o| o.acked)),
        Metric::new("cluster_failover_failed", "records", sum(|o| o.failed)),
        Metric::new(
            "cluster_failover_duplicates",
            "records",
            sum(|o| o.duplicates),
        ),
        Metric::new("cluster_failover_lost", "records", 0.0).with_goal(Goal::AtMost(0.0)),
    ]);
    metrics
}
