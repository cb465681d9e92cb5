//! ListOffsets by timestamp (`offsets_for_times`): the first offset whose timestamp is at or
//! after the asked one, both across batches and inside one batch; `End` past the last record.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions};

#[tokio::test]
async fn given_records_with_timestamps_when_listing_offsets_by_time_should_find_the_first_at_or_after()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "timestamps";
    // Timestamps in 1970 would be past any time-based retention: turn it off.
    clients::create_topic(
        &clients::admin(&bootstrap)?,
        topic,
        1,
        &[("retention.ms", "-1")],
    )
    .await?;

    // Offsets 0..5 one batch each (every send waits for its report); 5..10 in one batch.
    let producer = clients::producer(&bootstrap, &[("linger.ms", "200")])?;
    let values: Vec<String> = (0..10).map(|i| format!("at {}", (i + 1) * 1000)).collect();
    for (i, value) in values.iter().enumerate().take(5) {
        let timestamp = (i64::try_from(i)? + 1) * 1000;
        clients::send_one(
            &producer,
            FutureRecord::<(), _>::to(topic)
                .payload(value)
                .timestamp(timestamp),
        )
        .await?;
    }
    let batch = values.iter().enumerate().skip(5).map(|(i, value)| {
        let timestamp = (i64::try_from(i).unwrap_or(0) + 1) * 1000;
        FutureRecord::<(), _>::to(topic)
            .payload(value)
            .timestamp(timestamp)
    });
    let deliveries = clients::send_all(&producer, batch).await?;
    let offsets: Vec<i64> = deliveries.iter().map(|d| d.offset).collect();
    ensure!(offsets == [5, 6, 7, 8, 9], "batch delivered at {offsets:?}");

    let consumer = clients::consumer(&bootstrap, &[])?;
    // (asked timestamp, expected offset)
    let cases = [
        (0, Offset::Offset(0)),
        (1000, Offset::Offset(0)),
        (1001, Offset::Offset(1)),
        (2000, Offset::Offset(1)),
        (4500, Offset::Offset(4)),
        (5000, Offset::Offset(4)),
        (5001, Offset::Offset(5)),
        (6000, Offset::Offset(5)),
        (7500, Offset::Offset(7)),
        (9000, Offset::Offset(8)),
        (10_000, Offset::Offset(9)),
        (10_001, Offset::End),
    ];
    for (timestamp, expected) in cases {
        let mut asked = TopicPartitionList::new();
        asked.add_partition_offset(topic, 0, Offset::Offset(timestamp))?;
        let answer = consumer
            .offsets_for_times(asked, Duration::from_secs(10))
            .with_context(|| format!("ListOffsets for timestamp {timestamp}"))?;
        let element = answer
            .find_partition(topic, 0)
            .context("no partition 0 in the answer")?;
        element
            .error()
            .with_context(|| format!("timestamp {timestamp}"))?;
        ensure!(
            element.offset() == expected,
            "timestamp {timestamp}: offset {:?}, expected {expected:?}",
            element.offset()
        );
    }

    // And the two special timestamps, earliest (-2) and latest (-1), via the watermarks.
    ensure!(
        clients::watermarks(&consumer, topic, 0)? == (0, 10),
        "watermarks"
    );
    Ok(())
}
