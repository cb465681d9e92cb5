//! Graceful shutdown and restart on the same data directory: records, offsets and watermarks
//! survive, and new records continue from the old high watermark.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::ResourceSpecifier;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_tests::clients::{self, Record};
use runnel_tests::raw::{self, AlterOp};
use runnel_tests::{Broker, BrokerOptions};

const PARTITIONS: i32 = 2;

async fn produce(bootstrap: &str, topic: &str, prefix: &str, count: usize) -> Result<()> {
    let producer = clients::producer(bootstrap, &[])?;
    let values: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let outgoing = values.iter().enumerate().map(|(i, value)| {
        let partition = i32::try_from(i).unwrap_or(0) % PARTITIONS;
        FutureRecord::<(), _>::to(topic)
            .partition(partition)
            .payload(value)
    });
    clients::send_all(&producer, outgoing).await?;
    Ok(())
}

fn all_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<(i64, i64)>> {
    let consumer = clients::consumer(bootstrap, &[])?;
    (0..PARTITIONS)
        .map(|partition| clients::watermarks(&consumer, topic, partition))
        .collect()
}

fn summary(records: &[Record]) -> Vec<(i32, i64, String)> {
    records
        .iter()
        .map(|r| (r.partition, r.offset, r.value_str()))
        .collect()
}

async fn restart_keeps_everything(
    stop: fn(&mut Broker) -> Result<std::process::ExitStatus>,
) -> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let topic = "durable";
    clients::create_topic(
        &clients::admin(&broker.bootstrap())?,
        topic,
        PARTITIONS,
        &[],
    )
    .await?;
    produce(&broker.bootstrap(), topic, "before", 1000).await?;
    let marks_before = all_watermarks(&broker.bootstrap(), topic)?;
    ensure!(
        marks_before == [(0, 500), (0, 500)],
        "watermarks before: {marks_before:?}"
    );
    let records_before = clients::consume_all(&broker.bootstrap(), topic, Duration::from_secs(60))?;

    let status = stop(&mut broker)?;
    ensure!(
        status.code() == Some(0),
        "graceful shutdown exited with {status}"
    );
    broker.restart()?;

    let marks_after = all_watermarks(&broker.bootstrap(), topic)?;
    ensure!(
        marks_after == marks_before,
        "watermarks {marks_before:?} became {marks_after:?}"
    );
    let records_after = clients::consume_all(&broker.bootstrap(), topic, Duration::from_secs(60))?;
    ensure!(
        records_after == records_before,
        "records differ after restart: {} before, {} after; first difference: {:?}",
        records_before.len(),
        records_after.len(),
        summary(&records_before)
            .into_iter()
            .zip(summary(&records_after))
            .find(|(a, b)| a != b)
    );

    produce(&broker.bootstrap(), topic, "after", 10).await?;
    let marks_more = all_watermarks(&broker.bootstrap(), topic)?;
    ensure!(
        marks_more == [(0, 505), (0, 505)],
        "watermarks after more records: {marks_more:?}"
    );
    let all = clients::consume_all(&broker.bootstrap(), topic, Duration::from_secs(60))?;
    let tail: Vec<_> = summary(&all)
        .into_iter()
        .filter(|(_, offset, _)| *offset >= 500)
        .collect();
    let mut expected: Vec<_> = (0..10)
        .map(|i| {
            (
                i % PARTITIONS,
                500 + i64::from(i / PARTITIONS),
                format!("after-{i}"),
            )
        })
        .collect();
    expected.sort();
    ensure!(tail == expected, "records after the restart: {tail:?}");
    Ok(())
}

#[tokio::test]
async fn given_records_when_sigterm_and_restart_should_keep_data_and_offsets() -> Result<()> {
    restart_keeps_everything(Broker::terminate).await
}

#[tokio::test]
async fn given_records_when_sigint_and_restart_should_keep_data_and_offsets() -> Result<()> {
    restart_keeps_everything(Broker::interrupt).await
}

#[tokio::test]
async fn given_a_data_dir_when_a_second_broker_starts_on_it_after_the_first_should_see_the_topics()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let topic = "handed-over";
    {
        let mut first = Broker::start(BrokerOptions::new().data_dir(dir.path()))?;
        clients::create_topic(&clients::admin(&first.bootstrap())?, topic, 3, &[]).await?;
        produce(&first.bootstrap(), topic, "first", 4).await?;
        ensure!(
            first.terminate()?.success(),
            "first broker did not exit cleanly"
        );
    }
    let second = Broker::start(BrokerOptions::new().data_dir(dir.path()))?;
    let consumer = clients::consumer(&second.bootstrap(), &[])?;
    ensure!(
        clients::partition_count(&consumer, topic)? == 3,
        "partition count changed"
    );
    let records = clients::consume_all(&second.bootstrap(), topic, Duration::from_secs(30))?;
    ensure!(records.len() == 4, "{} records", records.len());
    Ok(())
}

async fn retention_ms(bootstrap: &str, topic: &str) -> Result<Option<String>> {
    let admin = clients::admin(bootstrap)?;
    let results = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &clients::admin_options(),
        )
        .await?;
    match results.as_slice() {
        [Ok(resource)] => Ok(resource.get("retention.ms").and_then(|e| e.value.clone())),
        other => bail!("DescribeConfigs {topic}: {other:?}"),
    }
}

fn topic_names(bootstrap: &str) -> Result<Vec<String>> {
    let consumer = clients::consumer(bootstrap, &[])?;
    let metadata = consumer.fetch_metadata(None, clients::REQUEST_TIMEOUT)?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn given_admin_changes_when_restarting_should_keep_them() -> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    for topic in ["kept", "configured", "doomed"] {
        clients::create_topic(&admin, topic, PARTITIONS, &[]).await?;
    }
    produce(&bootstrap, "kept", "k", 10).await?;
    produce(&bootstrap, "doomed", "d", 10).await?;

    let mut before = TopicPartitionList::new();
    before.add_partition_offset("kept", 0, Offset::Offset(4))?;
    admin
        .delete_records(&before, &clients::admin_options())
        .await?;
    let altered = raw::incremental_alter_topic_configs(
        broker.addr(),
        "configured",
        &[("retention.ms", AlterOp::Set, Some("3600000"))],
    )?;
    ensure!(
        matches!(altered.as_slice(), [r] if r.error_code == 0),
        "altering: {altered:?}"
    );
    let deleted = admin
        .delete_topics(&["doomed"], &clients::admin_options())
        .await?;
    ensure!(
        matches!(deleted.as_slice(), [Ok(_)]),
        "deleting: {deleted:?}"
    );
    let cluster_id = clients::consumer(&bootstrap, &[])?
        .client()
        .fetch_cluster_id(clients::REQUEST_TIMEOUT)
        .context("no cluster id before the restart")?;
    drop(admin);

    let status = broker.terminate()?;
    ensure!(status.success(), "SIGTERM: {status}");
    broker.restart()?;
    let bootstrap = broker.bootstrap();

    let consumer = clients::consumer(&bootstrap, &[])?;
    let marks = clients::watermarks(&consumer, "kept", 0)?;
    // `produce` spreads the 10 records over both partitions: 5 in partition 0.
    ensure!(
        marks == (4, 5),
        "kept: watermarks {marks:?} after the restart, expected (4, 5)"
    );
    let value = retention_ms(&bootstrap, "configured").await?;
    ensure!(
        value.as_deref() == Some("3600000"),
        "configured: retention.ms = {value:?}"
    );
    let names = topic_names(&bootstrap)?;
    ensure!(
        names == ["configured", "kept"],
        "topics after the restart: {names:?}"
    );
    let after = consumer.client().fetch_cluster_id(clients::REQUEST_TIMEOUT);
    ensure!(
        after.as_deref() == Some(cluster_id.as_str()),
        "cluster id {cluster_id:?} became {after:?}"
    );
    Ok(())
}
