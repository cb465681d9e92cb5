//! 100,000 keyed records into 3 partitions with `acks=all`: nothing lost, nothing duplicated,
//! every key in one partition, and each key's records in the order they were produced.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions};

const RECORDS: usize = 100_000;
const KEYS: usize = 997;
const PARTITIONS: i32 = 3;

/// `key-K#S`: key K's S-th record. Keys are visited in a scrambled but fixed order.
fn records() -> Vec<(String, String)> {
    let mut next_seq = vec![0_u32; KEYS];
    (0..RECORDS)
        .map(|i| {
            let k = (i * 7919 + i / KEYS) % KEYS;
            let seq = next_seq[k];
            next_seq[k] += 1;
            let key = format!("key-{k}");
            let value = format!("{key}#{seq}");
            (key, value)
        })
        .collect()
}

fn parse_value(value: &str) -> Result<(&str, u32)> {
    let (key, seq) = value
        .split_once('#')
        .with_context(|| format!("malformed value {value:?}"))?;
    Ok((key, seq.parse()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_three_partitions_when_producing_100k_keyed_records_should_lose_nothing_and_keep_key_order()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "keyed-volume";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, PARTITIONS, &[]).await?;

    let producer = clients::producer(&bootstrap, &[("acks", "all"), ("linger.ms", "20")])?;
    let records = records();
    let outgoing = records
        .iter()
        .map(|(key, value)| FutureRecord::to(topic).key(key).payload(value));
    let deliveries = clients::send_all(&producer, outgoing).await?;
    ensure!(
        deliveries.len() == RECORDS,
        "{} deliveries",
        deliveries.len()
    );

    // What the producer was told: value → (partition, offset); each key in one partition.
    let mut acked = HashMap::with_capacity(RECORDS);
    let mut key_partition: HashMap<&str, i32> = HashMap::new();
    for ((key, value), delivery) in records.iter().zip(&deliveries) {
        let place = (delivery.partition, delivery.offset);
        ensure!(
            acked.insert(value.as_str(), place).is_none(),
            "{value} acked twice"
        );
        let first = *key_partition.entry(key).or_insert(delivery.partition);
        ensure!(
            first == delivery.partition,
            "{key} acked in partitions {first} and {}",
            delivery.partition
        );
    }
    let places: HashSet<_> = acked.values().collect();
    ensure!(
        places.len() == RECORDS,
        "two records acked at the same (partition, offset)"
    );

    let consumed = clients::consume_all(&bootstrap, topic, Duration::from_secs(180))?;
    ensure!(
        consumed.len() == RECORDS,
        "consumed {} records, produced {RECORDS}",
        consumed.len()
    );
    let mut seen = HashSet::with_capacity(RECORDS);
    // Key → (partition, last sequence number seen), in consumed (partition, offset) order.
    let mut last: HashMap<String, (i32, u32)> = HashMap::new();
    for record in &consumed {
        let value = record.value_str();
        ensure!(seen.insert(value.clone()), "{value} consumed twice");
        let (key, seq) = parse_value(&value)?;
        ensure!(
            record.key_str() == key,
            "record {value} has key {:?}",
            record.key_str()
        );
        let place = acked
            .get(value.as_str())
            .with_context(|| format!("{value} was consumed but never produced"))?;
        ensure!(
            *place == (record.partition, record.offset),
            "{value} acked at {place:?}, found at ({}, {})",
            record.partition,
            record.offset
        );
        match last.get(key) {
            Some((partition, _)) if *partition != record.partition => {
                anyhow::bail!(
                    "{key} found in partitions {partition} and {}",
                    record.partition
                )
            }
            Some((_, prev)) => ensure!(seq == prev + 1, "{key}: #{seq} follows #{prev}"),
            None => ensure!(seq == 0, "{key}: first record is #{seq}"),
        }
        last.insert(key.to_owned(), (record.partition, seq));
    }
    let per_partition: HashSet<i32> = consumed.iter().map(|r| r.partition).collect();
    ensure!(
        per_partition.len() == usize::try_from(PARTITIONS)?,
        "records landed in partitions {per_partition:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_four_producers_on_one_partition_when_producing_concurrently_should_get_unique_contiguous_offsets()
-> Result<()> {
    const PRODUCERS: usize = 4;
    const EACH: usize = 5_000;
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "contended";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;

    let mut tasks = Vec::new();
    for producer_id in 0..PRODUCERS {
        let producer = clients::producer(&bootstrap, &[("linger.ms", "1")])?;
        tasks.push(tokio::spawn(async move {
            let values: Vec<String> = (0..EACH).map(|i| format!("p{producer_id}-{i}")).collect();
            // Collected first: a lazy iterator held across the await trips a rustc
            // higher-ranked lifetime limitation inside tokio::spawn.
            let outgoing: Vec<_> = values
                .iter()
                .map(|v| FutureRecord::<(), _>::to(topic).partition(0).payload(v))
                .collect();
            let deliveries = clients::send_all(&producer, outgoing).await?;
            anyhow::Ok(
                values
                    .into_iter()
                    .zip(deliveries.into_iter().map(|d| d.offset))
                    .collect::<Vec<_>>(),
            )
        }));
    }
    let mut acked: HashMap<i64, String> = HashMap::new();
    for task in tasks {
        for (value, offset) in task.await?? {
            if let Some(other) = acked.insert(offset, value.clone()) {
                anyhow::bail!("offset {offset} acked for both {other} and {value}");
            }
        }
    }
    let total = i64::try_from(PRODUCERS * EACH)?;
    let mut offsets: Vec<i64> = acked.keys().copied().collect();
    offsets.sort_unstable();
    ensure!(
        offsets == (0..total).collect::<Vec<_>>(),
        "acked offsets are not 0..{total}"
    );

    let consumed = clients::consume_all(&bootstrap, topic, Duration::from_secs(60))?;
    ensure!(
        consumed.len() == PRODUCERS * EACH,
        "consumed {}",
        consumed.len()
    );
    for record in &consumed {
        let want = acked.get(&record.offset).map(String::as_str);
        ensure!(
            want == Some(record.value_str().as_str()),
            "offset {}: acked {want:?}, stored {:?}",
            record.offset,
            record.value_str()
        );
    }
    Ok(())
}
