//! rdkafka clients configured for Runnel, and the few helpers every test needs on top of them.
//!
//! The plain helpers here keep groups and idempotence out of tests that are about something
//! else (group tests use `harness::groups`, idempotence tests set it explicitly):
//! - consumers read with `assign()` at explicit offsets and never commit. They set a
//!   `group.id` only because librdkafka's `assign()` refuses to work without one
//!   (`ERR__UNKNOWN_GROUP`); an assigned consumer with auto-commit off never joins it;
//! - producers set `enable.idempotence=false` (librdkafka's default, made explicit).
//!
//! The rdkafka calls used here block; tests call them from `#[tokio::test]` bodies, which is fine
//! as long as nothing else on that runtime needs the thread at the same time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message, ToBytes};
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp, TopicPartitionList};

/// Timeout for one metadata, watermark or admin round trip.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings every client shares.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("client.id", "runnel-tests");
    config
}

fn apply(config: &mut ClientConfig, overrides: &[(&str, &str)]) {
    for (key, value) in overrides {
        config.set(*key, *value);
    }
}

/// A producer with `acks=all`, `enable.idempotence=false`, a short linger; `overrides` win.
pub fn producer(bootstrap: &str, overrides: &[(&str, &str)]) -> Result<FutureProducer> {
    let mut config = base_config(bootstrap);
    config
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    apply(&mut config, overrides);
    config.create().context("creating an rdkafka producer")
}

/// A consumer for [`assign`] (no subscription, no commits). Defaults:
/// `auto.offset.reset=earliest`, no partition-EOF events; `overrides` win.
pub fn consumer(bootstrap: &str, overrides: &[(&str, &str)]) -> Result<BaseConsumer> {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", "runnel-tests")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    apply(&mut config, overrides);
    config.create().context("creating an rdkafka consumer")
}

/// An admin client.
pub fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    base_config(bootstrap)
        .create()
        .context("creating an rdkafka admin client")
}

/// Admin options with bounded timeouts, so a broker that never answers fails the test.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates a topic (replication factor 1) and fails unless the broker reports success.
pub async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin
        .create_topics([&topic], &admin_options())
        .await
        .with_context(|| format!("CreateTopics {name}"))?;
    match results.as_slice() {
        [Ok(_)] => Ok(()),
        [Err((topic, code))] => bail!("CreateTopics {topic} failed: {code:?}"),
        other => bail!("CreateTopics {name}: unexpected results {other:?}"),
    }
}

/// Assigns `(partition, start offset)` pairs of `topic` to `consumer`.
pub fn assign(consumer: &BaseConsumer, topic: &str, partitions: &[(i32, Offset)]) -> Result<()> {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in partitions {
        list.add_partition_offset(topic, *partition, *offset)
            .with_context(|| format!("adding {topic}/{partition} at {offset:?}"))?;
    }
    consumer
        .assign(&list)
        .with_context(|| format!("assigning {topic} {partitions:?}"))
}

/// The number of partitions of `topic` as the broker's Metadata reports it.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("Metadata for {topic}"))?;
    let entry = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("Metadata does not list {topic}"))?;
    if let Some(error) = entry.error() {
        bail!(
            "Metadata for {topic}: error {:?}",
            RDKafkaErrorCode::from(error)
        );
    }
    i32::try_from(entry.partitions().len()).context("partition count overflows i32")
}

/// `(low, high)` watermarks of one partition, via ListOffsets.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
    consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .with_context(|| format!("watermarks of {topic}/{partition}"))
}

/// The high watermark of partitions `0..partitions` of `topic`, through a fresh consumer.
pub fn high_watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let consumer = consumer(bootstrap, &[])?;
    (0..partitions)
        .map(|p| Ok((p, watermarks(&consumer, topic, p)?.1)))
        .collect()
}

/// One consumed record, owned, with everything a test may want to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In wire order, duplicates kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Timestamp,
}

impl Record {
    /// The value as UTF-8 text (lossy), for readable assertions.
    pub fn value_str(&self) -> String {
        self.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// The key as UTF-8 text (lossy).
    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }
}

impl From<&BorrowedMessage<'_>> for Record {
    fn from(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp(),
        }
    }
}

/// Polls until `count` records have arrived; fails on a consumer error or at the deadline.
pub fn poll_records(
    consumer: &BaseConsumer,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let deadline = Instant::now() + timeout;
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "received {} of {count} records within {timeout:?}",
                records.len()
            );
        }
        match consumer.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Ok(message)) => records.push(Record::from(&message)),
            Some(Err(error)) => {
                bail!(
                    "consumer error after {} of {count} records: {error}",
                    records.len()
                )
            }
        }
    }
    Ok(records)
}

/// Polls for `quiet` and fails if anything (record or error) arrives.
pub fn expect_nothing(consumer: &BaseConsumer, quiet: Duration) -> Result<()> {
    let deadline = Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match consumer.poll(left) {
            None => {}
            Some(Ok(message)) => bail!("unexpected record {:?}", Record::from(&message)),
            Some(Err(error)) => bail!("unexpected consumer error: {error}"),
        }
    }
}

/// Reads every partition of `topic` from its low to its high watermark (as they are when this
/// starts) and returns the records sorted by `(partition, offset)`.
pub fn consume_all(bootstrap: &str, topic: &str, timeout: Duration) -> Result<Vec<Record>> {
    consume_all_with(bootstrap, &[], topic, timeout)
}

/// [`consume_all`] with consumer config overrides (e.g. `security.protocol`).
pub fn consume_all_with(
    bootstrap: &str,
    overrides: &[(&str, &str)],
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let consumer = consumer(bootstrap, overrides)?;
    let partitions = partition_count(&consumer, topic)?;
    // Partition → the offset after the last record to read.
    let mut ends = BTreeMap::new();
    let mut start = Vec::new();
    let mut expected = 0_i64;
    for partition in 0..partitions {
        let (low, high) = watermarks(&consumer, topic, partition)?;
        if high > low {
            ends.insert(partition, high);
            start.push((partition, Offset::Offset(low)));
            expected += high - low;
        }
    }
    let mut records = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    if ends.is_empty() {
        return Ok(records);
    }
    assign(&consumer, topic, &start)?;
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "consume_all({topic}): {} records read within {timeout:?}; partitions not \
                 finished (partition → end offset): {ends:?}",
                records.len()
            );
        }
        match consumer.poll(left.min(Duration::from_millis(500))) {
            None => {}
            Some(Ok(message)) => {
                let record = Record::from(&message);
                // Records past a partition's snapshot high watermark are not ours to read.
                let Some(end) = ends.get(&record.partition).copied() else {
                    continue;
                };
                if record.offset >= end {
                    ends.remove(&record.partition);
                    continue;
                }
                if record.offset + 1 == end {
                    ends.remove(&record.partition);
                }
                records.push(record);
            }
            Some(Err(error)) => bail!(
                "consume_all({topic}): consumer error after {} records: {error}",
                records.len()
            ),
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Enqueues every record (waiting while librdkafka's queue is full), then waits for every
/// delivery report. Fails on the first record that was not delivered, naming its index.
pub async fn send_all<'a, K, P>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, K, P>>,
) -> Result<Vec<Delivery>>
where
    K: ToBytes + ?Sized + 'a,
    P: ToBytes + ?Sized + 'a,
{
    let mut pending = Vec::new();
    for mut record in records {
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    bail!("enqueueing record #{}: {error}", pending.len())
                }
            }
        }
    }
    let mut deliveries = Vec::with_capacity(pending.len());
    for (index, delivery) in pending.into_iter().enumerate() {
        match delivery.await {
            Ok(Ok(delivery)) => deliveries.push(delivery),
            Ok(Err((error, _))) => bail!("record #{index} was not delivered: {error}"),
            Err(_) => return Err(anyhow!("record #{index}: the producer went away")),
        }
    }
    Ok(deliveries)
}

/// Sends one record and waits for its delivery report.
pub async fn send_one<K, P>(
    producer: &FutureProducer,
    record: FutureRecord<'_, K, P>,
) -> Result<Delivery>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let mut deliveries = send_all(producer, [record]).await?;
    ensure!(
        deliveries.len() == 1,
        "one record sent, {} delivered",
        deliveries.len()
    );
    deliveries.pop().context("no delivery report")
}
