//! Retention by time (`retention.ms`) and by size (`retention.bytes`), set per topic through
//! CreateTopics configs, enforced by the broker's periodic check: the low watermark moves up,
//! a fetch below it is OFFSET_OUT_OF_RANGE, and what is left is still readable.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions, wait_until};

/// How often the broker looks for expired records in these tests.
const CHECK_INTERVAL_MS: u32 = 200;
/// Generous: the broker needs about retention.ms plus one check interval.
const RETENTION_DEADLINE: Duration = Duration::from_secs(20);

fn broker() -> Result<Broker> {
    Broker::start(BrokerOptions::new().flag("--retention-check-interval-ms", CHECK_INTERVAL_MS))
}

/// Polls until the consumer reports an error and returns its code.
fn next_error(consumer: &BaseConsumer, timeout: Duration) -> Result<RDKafkaErrorCode> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(message)) => bail!(
                "expected an out-of-range error, got the record at offset {}",
                rdkafka::message::Message::offset(&message)
            ),
            Some(Err(error)) => {
                return error
                    .rdkafka_error_code()
                    .ok_or_else(|| anyhow::anyhow!("consumer error without a code: {error}"));
            }
        }
    }
    bail!("no consumer error within {timeout:?}")
}

#[tokio::test]
async fn given_retention_ms_when_records_expire_should_move_the_low_watermark_to_the_high()
-> Result<()> {
    let broker = broker()?;
    let bootstrap = broker.bootstrap();
    let topic = "retention-ms";
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, topic, 1, &[("retention.ms", "1000")]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    let values: Vec<String> = (0..10).map(|i| format!("short-lived {i}")).collect();
    clients::send_all(
        &producer,
        values
            .iter()
            .map(|v| FutureRecord::<(), _>::to(topic).payload(v)),
    )
    .await?;

    let consumer = clients::consumer(&bootstrap, &[])?;
    let (low, high) = clients::watermarks(&consumer, topic, 0)?;
    ensure!(
        high == 10,
        "high watermark {high} after 10 records (low {low})"
    );
    wait_until(
        "the low watermark to reach the high watermark",
        RETENTION_DEADLINE,
        || {
            let (low, high) = clients::watermarks(&consumer, topic, 0)?;
            ensure!(high == 10, "the high watermark moved to {high}");
            Ok((low == high).then_some(()))
        },
    )?;

    // Fetching the deleted offset 0 is out of range; with auto.offset.reset=error librdkafka
    // surfaces that as an error instead of silently resetting.
    let strict = clients::consumer(&bootstrap, &[("auto.offset.reset", "error")])?;
    clients::assign(&strict, topic, &[(0, Offset::Offset(0))])?;
    let code = next_error(&strict, Duration::from_secs(15))?;
    ensure!(
        matches!(
            code,
            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
        ),
        "fetching deleted offset 0 gave {code:?}, expected an offset-out-of-range reset"
    );
    Ok(())
}

#[tokio::test]
async fn given_retention_bytes_when_the_partition_grows_should_drop_the_oldest_records()
-> Result<()> {
    const RECORD_BYTES: usize = 1000;
    const RETENTION_BYTES: usize = 10_000;
    const RECORDS: i64 = 50;
    let broker = broker()?;
    let bootstrap = broker.bootstrap();
    let topic = "retention-bytes";
    let admin = clients::admin(&bootstrap)?;
    let retention_bytes = RETENTION_BYTES.to_string();
    clients::create_topic(
        &admin,
        topic,
        1,
        &[
            ("retention.bytes", &retention_bytes),
            ("retention.ms", "-1"),
        ],
    )
    .await?;
    // One record per batch (each send waits for its report), so the broker can drop any prefix.
    let producer = clients::producer(&bootstrap, &[("linger.ms", "0")])?;
    for i in 0..RECORDS {
        let value = format!("{i:04}").repeat(RECORD_BYTES / 4);
        clients::send_one(&producer, FutureRecord::<(), _>::to(topic).payload(&value)).await?;
    }

    let consumer = clients::consumer(&bootstrap, &[])?;
    // Each stored record is a little over RECORD_BYTES, so at most this many fit.
    let max_kept = i64::try_from(RETENTION_BYTES / RECORD_BYTES)?;
    let (low, high) = wait_until(
        "retention.bytes to drop old records",
        RETENTION_DEADLINE,
        || {
            let (low, high) = clients::watermarks(&consumer, topic, 0)?;
            ensure!(high == RECORDS, "the high watermark is {high}");
            Ok((low > 0 && high - low <= max_kept).then_some((low, high)))
        },
    )?;
    ensure!(
        high > low,
        "retention.bytes removed every record (low = high = {high})"
    );

    // A consumer starting at 0 is reset to the low watermark and reads the newest records.
    clients::assign(&consumer, topic, &[(0, Offset::Offset(0))])?;
    let expected = usize::try_from(high - low)?;
    let records = clients::poll_records(&consumer, expected, Duration::from_secs(20))?;
    let first = records.first().map(|r| r.offset);
    ensure!(
        first == Some(low),
        "first record after the reset is at {first:?}, low watermark {low}"
    );
    for record in &records {
        let want = format!("{:04}", record.offset).repeat(RECORD_BYTES / 4);
        ensure!(
            record.value_str() == want,
            "record {} has the wrong value",
            record.offset
        );
    }
    Ok(())
}
