//! Scenario 1: produce throughput — N records of S bytes as fast as librdkafka will batch
//! them, timed from the first send to the last delivery report.

use std::time::Instant;

use anyhow::Context;
use rdkafka::producer::Producer as _;

use super::client::{ClientSettings, wait_for_topic};
use super::deadline::Deadline;
use super::delivery::{self, Acks, DeliveryTracker, Producer};
use super::report::Throughput;

/// Linger long enough to fill batches, short enough not to dominate a small run.
const LINGER_MS: u32 = 5;
/// How often (in records) the send loop looks at the clock.
const CHECK_EVERY: u64 = 4096;

pub struct ProduceSpec<'a> {
    pub client: &'a ClientSettings,
    pub topic: &'a str,
    pub acks: Acks,
    pub records: u64,
    pub record_size: usize,
}

pub fn throughput(spec: &ProduceSpec<'_>, deadline: &Deadline) -> anyhow::Result<Throughput> {
    let topic = spec.topic;
    let producer: Producer = delivery::producer_config(spec.client, spec.acks, LINGER_MS, deadline)
        .create_with_context(DeliveryTracker::new(None))
        .context("creating the producer")?;
    let partitions = wait_for_topic(producer.client(), topic, deadline)?;
    let payload = payload(spec.record_size);

    let start = Instant::now();
    for i in 0..spec.records {
        if i % CHECK_EVERY == 0 {
            deadline.check(|| format!("sending record {i} of {} to {topic}", spec.records))?;
        }
        delivery::send(&producer, topic, &payload, 0, deadline)?;
    }
    delivery::await_deliveries(&producer, topic, spec.records, deadline)?;
    let end = delivery::producer_context(&producer)
        .last_ack()
        .unwrap_or_else(Instant::now);

    Ok(Throughput {
        records: spec.records,
        bytes: spec.records * spec.record_size as u64,
        elapsed: end.duration_since(start),
        partitions,
    })
}

/// A payload with a recognisable, non-constant pattern.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}
