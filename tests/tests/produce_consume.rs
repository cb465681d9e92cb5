//! Produce and fetch round trips through rdkafka: every compression codec, keys, null keys and
//! values, headers (duplicate keys, empty and null values, wire order), create timestamps; and
//! the broker's per-batch size limit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp};
use runnel_tests::clients::{self, Record};
use runnel_tests::{Broker, BrokerOptions};

const RECORDS: usize = 30;

/// What one test record should look like after the round trip.
struct Expected {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn now_ms() -> Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

/// A varied set: record 3 has no key, record 4 no value (a tombstone), record 7 no headers,
/// every fifth value is 20 KB of compressible text; the others carry the header `dup` twice,
/// an empty header value and a null one.
fn expected_records(base_timestamp: i64) -> Vec<Expected> {
    (0..RECORDS)
        .map(|i| {
            let key = (i != 3).then(|| format!("key-{i}").into_bytes());
            let value = match i {
                4 => None,
                i if i % 5 == 0 => Some(format!("runnel record {i} ").repeat(1200).into_bytes()),
                i => Some(format!("value-{i}").into_bytes()),
            };
            let headers = if i == 7 {
                Vec::new()
            } else {
                vec![
                    ("trace".to_owned(), Some(format!("t-{i}").into_bytes())),
                    ("dup".to_owned(), Some(b"first".to_vec())),
                    ("dup".to_owned(), Some(b"second".to_vec())),
                    ("empty".to_owned(), Some(Vec::new())),
                    ("null".to_owned(), None),
                ]
            };
            Expected {
                key,
                value,
                headers,
                timestamp: base_timestamp + i64::try_from(i).unwrap_or(0) * 10,
            }
        })
        .collect()
}

fn owned_headers(headers: &[(String, Option<Vec<u8>>)]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new(), |acc, (key, value)| {
            acc.insert(Header {
                key,
                value: value.as_ref(),
            })
        })
}

async fn round_trip_with(codec: &str) -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = format!("codec-{codec}");
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, &topic, 1, &[]).await?;

    // A long linger puts all records in one or two batches, so the codec really compresses.
    let producer = clients::producer(
        &bootstrap,
        &[("compression.type", codec), ("linger.ms", "100")],
    )?;
    let expected = expected_records(now_ms()? - 60_000);
    let outgoing = expected.iter().map(|e| {
        let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&topic).timestamp(e.timestamp);
        if let Some(key) = &e.key {
            record = record.key(key);
        }
        if let Some(value) = &e.value {
            record = record.payload(value);
        }
        if !e.headers.is_empty() {
            record = record.headers(owned_headers(&e.headers));
        }
        record
    });
    let deliveries = clients::send_all(&producer, outgoing).await?;
    let offsets: Vec<i64> = deliveries.iter().map(|d| d.offset).collect();
    let wanted: Vec<i64> = (0..i64::try_from(RECORDS)?).collect();
    ensure!(
        offsets == wanted,
        "delivery offsets {offsets:?}, expected 0..{RECORDS}"
    );

    let consumer = clients::consumer(&bootstrap, &[])?;
    clients::assign(&consumer, &topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, RECORDS, Duration::from_secs(30))?;
    for (i, (got, want)) in records.iter().zip(&expected).enumerate() {
        let want = Record {
            partition: 0,
            offset: i64::try_from(i)?,
            key: want.key.clone(),
            value: want.value.clone(),
            headers: want.headers.clone(),
            timestamp: Timestamp::CreateTime(want.timestamp),
        };
        ensure!(
            *got == want,
            "{codec}: record {i} differs\n got: {}\nwant: {}",
            abbreviate(got),
            abbreviate(&want)
        );
    }
    clients::expect_nothing(&consumer, Duration::from_millis(300))?;
    Ok(())
}

/// A `Record` for a failure message, with long values cut short.
fn abbreviate(record: &Record) -> String {
    let mut shown = record.clone();
    if let Some(value) = &mut shown.value {
        value.truncate(40);
    }
    format!("{shown:?}")
}

#[tokio::test]
async fn given_no_compression_when_round_tripping_should_keep_every_field() -> Result<()> {
    round_trip_with("none").await
}

#[tokio::test]
async fn given_gzip_when_round_tripping_should_keep_every_field() -> Result<()> {
    round_trip_with("gzip").await
}

#[tokio::test]
async fn given_snappy_when_round_tripping_should_keep_every_field() -> Result<()> {
    round_trip_with("snappy").await
}

#[tokio::test]
async fn given_lz4_when_round_tripping_should_keep_every_field() -> Result<()> {
    round_trip_with("lz4").await
}

#[tokio::test]
async fn given_zstd_when_round_tripping_should_keep_every_field() -> Result<()> {
    round_trip_with("zstd").await
}

#[tokio::test]
async fn given_max_message_bytes_when_producing_a_larger_batch_should_reject_it_and_keep_serving()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new().flag("--max-message-bytes", 10_000))?;
    let bootstrap = broker.bootstrap();
    let topic = "size-limit";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[("compression.type", "none")])?;

    let big = vec![b'x'; 20_000];
    let result = producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(&big),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Ok(delivery) => bail!("a 20 KB batch was accepted at offset {}", delivery.offset),
        Err((error, _)) => ensure!(
            error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge),
            "expected MESSAGE_TOO_LARGE, got: {error}"
        ),
    }

    let small = clients::send_one(&producer, FutureRecord::<(), _>::to(topic).payload("small"))
        .await
        .context("a small record after the rejected one")?;
    ensure!(
        small.offset == 0,
        "the rejected batch took offsets: small record at {}",
        small.offset
    );
    Ok(())
}

#[tokio::test]
async fn given_a_record_when_producing_with_acks_zero_and_one_should_store_it() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "acks";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    for (acks, value) in [("1", "acks-one"), ("0", "acks-zero")] {
        let producer = clients::producer(&bootstrap, &[("acks", acks)])?;
        clients::send_one(&producer, FutureRecord::<(), _>::to(topic).payload(value)).await?;
    }
    let consumer = clients::consumer(&bootstrap, &[])?;
    clients::assign(&consumer, topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, 2, Duration::from_secs(20))?;
    let values: Vec<String> = records.iter().map(Record::value_str).collect();
    ensure!(values == ["acks-one", "acks-zero"], "values {values:?}");
    Ok(())
}

#[tokio::test]
async fn given_one_batch_when_fetching_from_its_middle_should_start_at_that_offset() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "mid-batch";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[("linger.ms", "200")])?;
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let outgoing = values
        .iter()
        .map(|v| FutureRecord::<(), _>::to(topic).payload(v));
    clients::send_all(&producer, outgoing).await?;

    // The broker returns the whole batch; the client must see offsets 6.. only.
    let consumer = clients::consumer(&bootstrap, &[])?;
    clients::assign(&consumer, topic, &[(0, Offset::Offset(6))])?;
    let records = clients::poll_records(&consumer, 4, Duration::from_secs(15))?;
    let got: Vec<(i64, String)> = records.iter().map(|r| (r.offset, r.value_str())).collect();
    let want: Vec<(i64, String)> = (6..10).map(|i| (i, format!("v{i}"))).collect();
    ensure!(got == want, "from offset 6 read {got:?}");
    clients::expect_nothing(&consumer, Duration::from_millis(300))?;
    Ok(())
}

#[tokio::test]
async fn given_an_offset_past_the_end_when_fetching_should_report_out_of_range() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "past-the-end";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    clients::send_one(&producer, FutureRecord::<(), _>::to(topic).payload("only")).await?;

    let consumer = clients::consumer(&bootstrap, &[("auto.offset.reset", "error")])?;
    clients::assign(&consumer, topic, &[(0, Offset::Offset(100))])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        ensure!(
            std::time::Instant::now() < deadline,
            "no out-of-range error fetching offset 100 of 1"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(message)) => bail!("read {:?} at offset 100", Record::from(&message)),
            Some(Err(error)) => {
                let code = error.rdkafka_error_code();
                ensure!(
                    matches!(
                        code,
                        Some(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                        )
                    ),
                    "fetching offset 100 of 1 gave {error}"
                );
                return Ok(());
            }
        }
    }
}

#[tokio::test]
async fn given_a_900_kb_record_when_round_tripping_should_keep_it_whole() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "big-record";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[("compression.type", "none")])?;
    // Not compressible, so the batch really is this big on the wire.
    let value: Vec<u8> = (0..900_000_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    clients::send_one(&producer, FutureRecord::<(), _>::to(topic).payload(&value)).await?;
    let consumer = clients::consumer(&bootstrap, &[])?;
    clients::assign(&consumer, topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, 1, Duration::from_secs(20))?;
    ensure!(
        records[0].value.as_deref() == Some(value.as_slice()),
        "the 900 KB value came back as {} bytes",
        records[0].value.as_ref().map_or(0, Vec::len)
    );
    Ok(())
}

#[tokio::test]
async fn given_empty_partitions_when_fetching_all_should_still_deliver_the_full_one() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "mostly-empty";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 4, &[]).await?;
    // Partitions 0, 1 and 3 stay empty, so every Fetch response carries empty partitions.
    let consumer = clients::consumer(&bootstrap, &[])?;
    let all: Vec<(i32, Offset)> = (0..4).map(|p| (p, Offset::Beginning)).collect();
    clients::assign(&consumer, topic, &all)?;
    clients::expect_nothing(&consumer, Duration::from_millis(1000))?;
    let producer = clients::producer(&bootstrap, &[])?;
    for i in 0..3 {
        let value = format!("in partition 2, #{i}");
        clients::send_one(
            &producer,
            FutureRecord::<(), _>::to(topic)
                .partition(2)
                .payload(&value),
        )
        .await?;
    }
    let records = clients::poll_records(&consumer, 3, Duration::from_secs(15))?;
    let got: Vec<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    ensure!(got == [(2, 0), (2, 1), (2, 2)], "read {got:?}");
    Ok(())
}

#[tokio::test]
async fn given_a_batch_larger_than_the_partition_fetch_limit_when_fetching_should_still_return_it()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "over-the-limit";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[("compression.type", "none")])?;
    let values: Vec<String> = (0..3).map(|i| format!("{i}").repeat(50_000)).collect();
    for value in &values {
        clients::send_one(&producer, FutureRecord::<(), _>::to(topic).payload(value)).await?;
    }
    // KIP-74: the first batch is returned even when it exceeds the limits, or the consumer
    // could never make progress.
    let consumer = clients::consumer(
        &bootstrap,
        &[
            ("max.partition.fetch.bytes", "1024"),
            ("fetch.max.bytes", "1024"),
            // librdkafka insists on fetch.max.bytes >= message.max.bytes.
            ("message.max.bytes", "1000"),
        ],
    )?;
    clients::assign(&consumer, topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, 3, Duration::from_secs(20))?;
    let got: Vec<String> = records.iter().map(Record::value_str).collect();
    ensure!(
        got == values,
        "read back {} records of the wrong size or order",
        got.len()
    );
    Ok(())
}
