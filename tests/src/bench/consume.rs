//! Scenario 2: consume throughput — read back every record of a topic from offset 0 with a
//! `BaseConsumer` on an explicit assignment (the broker has no consumer groups yet), timed
//! from `assign` to the last record.
//!
//! It also checks what it reads: every payload must have the produced size, and offsets must
//! follow each other within a partition (a gap or repeat is reported as a likely broker bug).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{ClientSettings, ConsumerContextImpl};
use super::deadline::Deadline;
use super::report::Throughput;

/// Consumer errors printed before the rest are only counted.
const MAX_PRINTED_ERRORS: u64 = 5;

pub struct ConsumeSpec<'a> {
    pub client: &'a ClientSettings,
    pub topic: &'a str,
    pub partitions: i32,
    pub records: u64,
    pub record_size: usize,
}

pub fn throughput(spec: &ConsumeSpec<'_>, deadline: &Deadline) -> anyhow::Result<Throughput> {
    let topic = spec.topic;
    let mut config = spec.client.base();
    config
        // librdkafka only allows assign() with a group.id; nothing is committed to it.
        .set("group.id", "runnel-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        // Large fetches, but each below `queued.min.messages`: a fetch that overfills the local
        // queue makes librdkafka back off for `fetch.queue.backoff.ms` (1 s), which measured
        // as 400k msg/s instead of 1.5M+ against the same broker.
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "262144");
    let consumer: BaseConsumer<ConsumerContextImpl> = spec
        .client
        .finish(&mut config)
        .create_with_context(ConsumerContextImpl::default())
        .context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..spec.partitions {
        assignment.add_partition_offset(topic, partition, Offset::Offset(0))?;
    }
    let partitions = usize::try_from(spec.partitions).context("negative partition count")?;
    let mut next_offset = vec![0_i64; partitions];
    let mut anomalies = 0_u64;
    let mut errors = 0_u64;
    let mut received = 0_u64;
    let mut bytes = 0_u64;

    let start = Instant::now();
    let mut last = start;
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    while received < spec.records {
        deadline.check(|| {
            format!(
                "reading {topic}: {received} of {} records received, {errors} errors",
                spec.records
            )
        })?;
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(message)) => message,
            Some(Err(e)) if is_fatal(&e) => bail!(
                "reading {topic} from offset 0 failed after {received} records: {e} (the broker \
                 no longer has, or never had, the records that were acknowledged)"
            ),
            Some(Err(e)) => {
                errors += 1;
                if errors <= MAX_PRINTED_ERRORS {
                    eprintln!("consume error on {topic}: {e}");
                }
                continue;
            }
        };
        last = Instant::now();
        received += 1;
        let (partition, offset) = (message.partition(), message.offset());
        let len = message.payload_len();
        if len != spec.record_size {
            bail!(
                "record {topic}/{partition}@{offset} has {len} payload bytes, expected {}",
                spec.record_size
            );
        }
        bytes += len as u64;
        let expected = usize::try_from(partition)
            .ok()
            .and_then(|p| next_offset.get_mut(p))
            .with_context(|| format!("record from unassigned partition {topic}/{partition}"))?;
        if offset != *expected {
            anomalies += 1;
            if anomalies <= MAX_PRINTED_ERRORS {
                eprintln!(
                    "offset anomaly on {topic}/{partition}: expected {expected} next, got {offset}",
                    expected = *expected
                );
            }
        }
        *expected = offset + 1;
    }
    if anomalies > 0 {
        eprintln!("warning: {anomalies} offset gaps or repeats while reading {topic}");
    }
    // Best effort: stop fetching before the consumer is dropped.
    let _ = consumer.unassign();

    Ok(Throughput {
        records: received,
        bytes,
        elapsed: last.duration_since(start),
        partitions: spec.partitions,
    })
}

/// Errors after which librdkafka stops fetching the partition (`auto.offset.reset=error`), so
/// waiting for more records would only run into the deadline.
fn is_fatal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
}
