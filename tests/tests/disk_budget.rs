//! `--max-disk-bytes`: once the budget is used up, produce is refused (the broker stays up and
//! keeps serving what it has); deleting records frees room and produce works again.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_tests::{Broker, BrokerOptions, clients};

const BUDGET: u64 = 8 * 1024 * 1024;
const RECORD_BYTES: usize = 10_000;
const CHUNK: usize = 100;
/// Three times the budget: the broker must refuse well before this.
const MAX_CHUNKS: usize = 3 * (BUDGET as usize) / (RECORD_BYTES * CHUNK);

#[tokio::test]
async fn given_a_full_disk_budget_when_producing_should_refuse_until_records_are_deleted()
-> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new().flag("--max-disk-bytes", BUDGET))?;
    let bootstrap = broker.bootstrap();
    let topic = "filling";
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, topic, 1, &[("retention.ms", "-1")]).await?;
    // Incompressible values, sent uncompressed, so the budget fills at a known pace.
    let value: Vec<u8> = (0..RECORD_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let producer = clients::producer(
        &bootstrap,
        &[("compression.type", "none"), ("message.timeout.ms", "3000")],
    )?;

    let mut refusal = None;
    for chunk in 0..MAX_CHUNKS {
        let outgoing = (0..CHUNK).map(|_| FutureRecord::<(), _>::to(topic).payload(&value));
        if let Err(error) = clients::send_all(&producer, outgoing).await {
            refusal = Some((chunk, error));
            break;
        }
    }
    let Some((chunk, error)) = refusal else {
        bail!(
            "{} MB were accepted with a budget of {} MB",
            MAX_CHUNKS * CHUNK * RECORD_BYTES / 1_000_000,
            BUDGET / 1_000_000
        );
    };
    eprintln!("refused after {chunk} chunks of {CHUNK} x {RECORD_BYTES} bytes: {error:#}");
    let text = format!("{error:#}");
    ensure!(
        text.contains("KafkaStorageError")
            || text.contains("storage")
            || text.contains("timed out"),
        "expected KAFKA_STORAGE_ERROR (or a timeout from retrying it), got: {text}"
    );
    ensure!(
        broker.is_running()?,
        "the broker died when its disk budget ran out"
    );

    // What was stored is still readable.
    let consumer = clients::consumer(&bootstrap, &[])?;
    let (low, high) = clients::watermarks(&consumer, topic, 0)?;
    ensure!(
        low == 0 && high > 0,
        "watermarks ({low}, {high}) after the refusal"
    );
    clients::assign(&consumer, topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, 5, Duration::from_secs(20))?;
    ensure!(
        records
            .iter()
            .all(|r| r.value.as_deref() == Some(value.as_slice())),
        "stored records changed"
    );

    // Deleting everything makes room again.
    let mut all = TopicPartitionList::new();
    all.add_partition_offset(topic, 0, Offset::End)?;
    let result = admin
        .delete_records(&all, &clients::admin_options())
        .await?;
    result
        .find_partition(topic, 0)
        .context("DeleteRecords result")?
        .error()
        .context("DeleteRecords on a full disk")?;
    let fresh = clients::producer(
        &bootstrap,
        &[("compression.type", "none"), ("message.timeout.ms", "3000")],
    )?;
    let mut last_error = None;
    let mut delivery = None;
    for _ in 0..5 {
        match clients::send_one(&fresh, FutureRecord::<(), _>::to(topic).payload(&value)).await {
            Ok(d) => {
                delivery = Some(d);
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let Some(delivery) = delivery else {
        bail!("produce still refused after DeleteRecords freed the partition: {last_error:?}");
    };
    ensure!(
        delivery.offset == high,
        "new record at {}, expected {high}",
        delivery.offset
    );
    Ok(())
}
