//! Scenario 3: produce latency at a fixed rate — acks=all (or the spec's acks), no linger, and each record timed
//! from `send` to its delivery report.
//!
//! Sends follow a fixed schedule (record `i` is due at `start + i / rate`) rather than a sleep
//! after each record, so oversleeping never lowers the rate: a late loop catches up by sending
//! immediately. The producer never waits for acknowledgements before sending, so a slow ack does
//! not delay later sends (no coordinated omission); how late the loop ran is reported as
//! `send_lag_max`. A broker that cannot keep up shows as a long `drain`: the time from the last
//! send to the last acknowledgement.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::producer::Producer as _;

use super::client::{ClientSettings, wait_for_topic};
use super::deadline::Deadline;
use super::delivery::{self, Acks, DeliveryTracker, Producer, UNTIMED};
use super::produce::payload;
use super::report::Metric;
use super::stats::percentile;

pub struct LatencySpec<'a> {
    pub client: &'a ClientSettings,
    pub topic: &'a str,
    pub acks: Acks,
    pub rate: u64,
    pub duration: Duration,
    pub record_size: usize,
}

pub struct Latency {
    pub records: u64,
    /// Ascending send-to-ack latencies in nanoseconds.
    pub sorted_ns: Vec<u64>,
    pub achieved_rate: f64,
    pub send_lag_max: Duration,
    /// From the last send to the last acknowledgement.
    pub drain: Duration,
}

pub fn run(spec: &LatencySpec<'_>, deadline: &Deadline) -> anyhow::Result<Latency> {
    let topic = spec.topic;
    let records = (spec.rate as u128 * spec.duration.as_millis() / 1000) as u64;
    let capacity = usize::try_from(records).context("too many records for this machine")?;
    let producer: Producer = delivery::producer_config(spec.client, spec.acks, 0, deadline)
        .create_with_context(DeliveryTracker::new(Some(capacity)))
        .context("creating the producer")?;
    wait_for_topic(producer.client(), topic, deadline)?;
    let payload = payload(spec.record_size);
    let tracker = delivery::producer_context(&producer);

    // Warm up: the first record pays for the connection to the partition leader.
    delivery::send(&producer, topic, &payload, UNTIMED, deadline)?;
    delivery::await_deliveries(&producer, topic, 1, deadline)?;

    let start = Instant::now();
    let mut send_lag_max = Duration::ZERO;
    for i in 0..records {
        let due =
            start + Duration::from_nanos((i as u128 * 1_000_000_000 / spec.rate as u128) as u64);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else {
            send_lag_max = send_lag_max.max(now - due);
            deadline.check(|| format!("sending record {i} of {records} to {topic}"))?;
        }
        delivery::send(&producer, topic, &payload, tracker.stamp(), deadline)?;
    }
    let last_send = Instant::now();
    delivery::await_deliveries(&producer, topic, records + 1, deadline)?;
    let drain = tracker.last_ack().map_or(Duration::ZERO, |ack| {
        ack.saturating_duration_since(last_send)
    });

    let mut sorted_ns = tracker.take_latencies();
    sorted_ns.sort_unstable();
    Ok(Latency {
        records,
        sorted_ns,
        achieved_rate: records as f64 / last_send.duration_since(start).as_secs_f64(),
        send_lag_max,
        drain,
    })
}

impl Latency {
    pub fn metrics(&self) -> Vec<Metric> {
        let us = |q: f64| percentile(&self.sorted_ns, q).unwrap_or(0) as f64 / 1_000.0;
        vec![
            Metric::new("latency_p50_us", "µs", us(0.50)),
            Metric::new("latency_p99_us", "µs", us(0.99)),
            Metric::new("latency_p999_us", "µs", us(0.999)),
            Metric::new("latency_max_us", "µs", us(1.0)),
            Metric::new("latency_records", "records", self.records as f64),
            Metric::new("latency_rate_achieved", "msg/s", self.achieved_rate),
            Metric::new(
                "latency_send_lag_max_us",
                "µs",
                self.send_lag_max.as_secs_f64() * 1e6,
            ),
            Metric::new("latency_drain_ms", "ms", self.drain.as_secs_f64() * 1e3),
        ]
    }
}
