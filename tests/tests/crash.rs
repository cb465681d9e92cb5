//! Crash safety: kill -9 the broker while a producer sends continuously with `acks=all`;
//! after a restart every acknowledged record must be there, at its acknowledged offset, with
//! its payload. Records that were never acknowledged may or may not be there.
//!
//! Rounds: `RUNNEL_FAULT_ITERATIONS` (default 3), all on the same data directory, so later
//! rounds also check that recovery leaves a log that survives the next crash.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions};

const PARTITIONS: i32 = 2;
/// Records sent but not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 2000;
/// Records per second at most, so each round adds a bounded amount to read back.
const MAX_RATE: f64 = 40_000.0;
/// How long the producer runs before the kill, once it has its first acknowledgement.
const PRODUCE_BEFORE_KILL: Duration = Duration::from_secs(2);
/// After the kill, how long librdkafka gets to hand over acknowledgements the broker sent before
/// it died; then everything still pending is purged (it can never be acknowledged).
const ACK_GRACE: Duration = Duration::from_millis(500);

/// A record the broker acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    partition: i32,
    offset: i64,
    payload: String,
}

fn iterations() -> Result<usize> {
    runnel_tests::harness::wait::fault_iterations(3)
}

fn purge_everything(producer: &FutureProducer) {
    producer.purge(PurgeConfig::default().queue().inflight());
}

/// Produces records until `stop` is set, keeping up to `MAX_IN_FLIGHT` unacknowledged so the
/// broker is always busy writing, and returns the acknowledged ones.
async fn produce_until_stopped(
    producer: Arc<FutureProducer>,
    topic: String,
    round: usize,
    stop: Arc<AtomicBool>,
    acked_count: Arc<AtomicUsize>,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut in_flight: VecDeque<(String, DeliveryFuture)> = VecDeque::new();
    let mut record = |payload: String, result: Option<OwnedDeliveryResult>| {
        if let Some(Ok(delivery)) = result {
            acked.push(Acked {
                partition: delivery.partition,
                offset: delivery.offset,
                payload,
            });
            acked_count.fetch_add(1, Ordering::SeqCst);
        }
    };
    let mut seq = 0_u64;
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if seq as f64 > started.elapsed().as_secs_f64() * MAX_RATE {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        if in_flight.len() >= MAX_IN_FLIGHT
            && let Some((payload, delivery)) = in_flight.pop_front()
        {
            record(payload, delivery.await.ok());
            continue;
        }
        let payload = format!("round-{round}-seq-{seq:09}-{}", "p".repeat(64));
        let partition = i32::try_from(seq % u64::from(PARTITIONS.unsigned_abs())).unwrap_or(0);
        let sent = producer
            .send_result(
                FutureRecord::<(), _>::to(&topic)
                    .partition(partition)
                    .payload(&payload),
            )
            .map_err(|(error, _)| error);
        match sent {
            Ok(delivery) => {
                in_flight.push_back((payload, delivery));
                seq += 1;
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The producer is unusable; what was acked so far still counts.
            Err(_) => break,
        }
    }
    // Records enqueued after the test's purge would otherwise wait for message.timeout.ms.
    purge_everything(&producer);
    for (payload, delivery) in in_flight {
        record(payload, delivery.await.ok());
    }
    acked
}

/// Reads the whole topic and checks every acknowledged record against it.
fn verify(bootstrap: &str, topic: &str, acked: &[Acked], round: usize) -> Result<()> {
    let records = clients::consume_all(bootstrap, topic, Duration::from_secs(120))?;
    let stored: HashMap<(i32, i64), String> = records
        .into_iter()
        .map(|r| ((r.partition, r.offset), r.value_str()))
        .collect();
    let mut problems = Vec::new();
    for record in acked {
        match stored.get(&(record.partition, record.offset)) {
            Some(payload) if *payload == record.payload => {}
            Some(payload) => problems.push(format!(
                "{}/{}: acked {:?}, found {payload:?}",
                record.partition, record.offset, record.payload
            )),
            None => problems.push(format!(
                "{}/{}: acked {:?}, missing",
                record.partition, record.offset, record.payload
            )),
        }
    }
    eprintln!(
        "crash round {round}: {} records acknowledged so far, {} stored after the restart",
        acked.len(),
        stored.len()
    );
    ensure!(
        problems.is_empty(),
        "after crash round {round}: {} of {} acknowledged records lost or changed ({} stored); \
         first ones:\n{}",
        problems.len(),
        acked.len(),
        stored.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_acks_all_producer_when_broker_is_killed_should_keep_every_acked_record() -> Result<()>
{
    let mut broker = Broker::start(BrokerOptions::new())?;
    let topic = "crash";
    clients::create_topic(
        &clients::admin(&broker.bootstrap())?,
        topic,
        PARTITIONS,
        &[],
    )
    .await?;
    let mut acked: Vec<Acked> = Vec::new();

    for round in 0..iterations()? {
        // The timeout is long on purpose: pending records are purged after the kill, and a
        // record must never time out while the broker is alive.
        let producer = Arc::new(clients::producer(
            &broker.bootstrap(),
            &[
                ("acks", "all"),
                ("linger.ms", "2"),
                ("message.timeout.ms", "30000"),
            ],
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(produce_until_stopped(
            Arc::clone(&producer),
            topic.to_owned(),
            round,
            Arc::clone(&stop),
            Arc::clone(&acked_count),
        ));

        let started = Instant::now();
        while acked_count.load(Ordering::SeqCst) == 0 {
            if started.elapsed() > Duration::from_secs(30) || task.is_finished() {
                stop.store(true, Ordering::SeqCst);
                bail!("round {round}: no record was acknowledged within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(PRODUCE_BEFORE_KILL).await;

        broker.kill9()?;
        tokio::time::sleep(ACK_GRACE).await;
        stop.store(true, Ordering::SeqCst);
        purge_everything(&producer);
        let acked_this_round = task.await.context("producer task")?;
        ensure!(
            !acked_this_round.is_empty(),
            "round {round}: nothing acknowledged"
        );
        acked.extend(acked_this_round);

        broker.restart()?;
        verify(&broker.bootstrap(), topic, &acked, round)?;
    }
    Ok(())
}

#[tokio::test]
async fn given_acknowledged_admin_changes_when_broker_is_killed_should_keep_them() -> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, "created", 3, &[("retention.ms", "-1")]).await?;
    clients::create_topic(&admin, "trimmed", 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    let values: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    clients::send_all(
        &producer,
        values
            .iter()
            .map(|v| FutureRecord::<(), _>::to("trimmed").payload(v)),
    )
    .await?;
    let mut before = rdkafka::TopicPartitionList::new();
    before.add_partition_offset("trimmed", 0, rdkafka::Offset::Offset(7))?;
    let trimmed = admin
        .delete_records(&before, &clients::admin_options())
        .await?;
    trimmed
        .find_partition("trimmed", 0)
        .context("DeleteRecords result")?
        .error()?;
    drop((admin, producer));

    broker.kill9()?;
    broker.restart()?;
    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    let partitions = clients::partition_count(&consumer, "created")?;
    ensure!(
        partitions == 3,
        "created has {partitions} partitions after kill -9"
    );
    let marks = clients::watermarks(&consumer, "trimmed", 0)?;
    ensure!(
        marks == (7, 10),
        "trimmed has watermarks {marks:?} after kill -9, expected (7, 10)"
    );
    Ok(())
}
