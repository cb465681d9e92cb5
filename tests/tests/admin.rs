//! Admin APIs through rdkafka's AdminClient (CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, DeleteRecords) and raw IncrementalAlterConfigs (rdkafka does not wrap it),
//! plus what Metadata says about the broker itself.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::{AdminClient, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use runnel_tests::raw::{self, AlterOp};
use runnel_tests::{Broker, BrokerOptions, clients, wait_until};

type Admin = AdminClient<DefaultClientContext>;

/// Kafka's default retention, 7 days, which Runnel uses when `--retention-ms` is not given.
const SEVEN_DAYS_MS: &str = "604800000";

/// Creates one topic and returns the broker's per-topic answer (Ok or the error code).
async fn try_create(
    admin: &Admin,
    name: &str,
    partitions: i32,
) -> Result<Result<(), RDKafkaErrorCode>> {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &clients::admin_options())
        .await
        .with_context(|| format!("CreateTopics {name:?}"))?;
    match results.as_slice() {
        [Ok(_)] => Ok(Ok(())),
        [Err((_, code))] => Ok(Err(*code)),
        other => bail!("CreateTopics {name:?}: unexpected results {other:?}"),
    }
}

async fn try_delete(admin: &Admin, name: &str) -> Result<Result<(), RDKafkaErrorCode>> {
    let results = admin
        .delete_topics(&[name], &clients::admin_options())
        .await
        .with_context(|| format!("DeleteTopics {name}"))?;
    match results.as_slice() {
        [Ok(_)] => Ok(Ok(())),
        [Err((_, code))] => Ok(Err(*code)),
        other => bail!("DeleteTopics {name}: unexpected results {other:?}"),
    }
}

/// The topic's configuration value for `key`, via DescribeConfigs.
async fn describe(admin: &Admin, topic: &str, key: &str) -> Result<Option<String>> {
    let results = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &clients::admin_options(),
        )
        .await
        .with_context(|| format!("DescribeConfigs {topic}"))?;
    let [result] = results.as_slice() else {
        bail!("DescribeConfigs {topic}: {} results", results.len());
    };
    let resource = match result {
        Ok(resource) => resource,
        Err(code) => bail!("DescribeConfigs {topic}: {code:?}"),
    };
    let entry = resource.get(key).with_context(|| {
        format!(
            "DescribeConfigs {topic} has no {key} among {:?}",
            resource.entries
        )
    })?;
    Ok(entry.value.clone())
}

fn topic_names(bootstrap: &str) -> Result<Vec<String>> {
    let consumer = clients::consumer(bootstrap, &[])?;
    let metadata = consumer.fetch_metadata(None, clients::REQUEST_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect())
}

#[tokio::test]
async fn given_admin_when_creating_and_deleting_topics_should_update_metadata() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;

    ensure!(
        try_create(&admin, "orders", 2).await? == Ok(()),
        "creating orders"
    );
    let consumer = clients::consumer(&bootstrap, &[])?;
    let metadata = consumer.fetch_metadata(Some("orders"), clients::REQUEST_TIMEOUT)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == "orders")
        .context("orders is not in Metadata")?;
    ensure!(
        topic.partitions().len() == 2,
        "orders has {} partitions",
        topic.partitions().len()
    );
    for partition in topic.partitions() {
        ensure!(
            partition.leader() == 0,
            "partition {} led by {}",
            partition.id(),
            partition.leader()
        );
    }

    let again = try_create(&admin, "orders", 2).await?;
    ensure!(
        again == Err(RDKafkaErrorCode::TopicAlreadyExists),
        "creating orders twice: {again:?}"
    );

    ensure!(
        try_delete(&admin, "orders").await? == Ok(()),
        "deleting orders"
    );
    wait_until("orders to leave Metadata", Duration::from_secs(10), || {
        Ok((!topic_names(&bootstrap)?.contains(&"orders".to_owned())).then_some(()))
    })?;
    let again = try_delete(&admin, "orders").await?;
    ensure!(
        again == Err(RDKafkaErrorCode::UnknownTopicOrPartition),
        "deleting orders twice: {again:?}"
    );
    // The name is free again, and the new topic starts empty.
    ensure!(
        try_create(&admin, "orders", 1).await? == Ok(()),
        "re-creating orders"
    );
    let (low, high) = clients::watermarks(&consumer, "orders", 0)?;
    ensure!(
        (low, high) == (0, 0),
        "re-created orders has watermarks ({low}, {high})"
    );
    Ok(())
}

#[tokio::test]
async fn given_a_topic_when_creating_partitions_should_grow_and_refuse_to_shrink() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, "grow", 1, &[]).await?;

    let results = admin
        .create_partitions([&NewPartitions::new("grow", 3)], &clients::admin_options())
        .await?;
    ensure!(
        matches!(results.as_slice(), [Ok(_)]),
        "growing to 3: {results:?}"
    );
    let consumer = clients::consumer(&bootstrap, &[])?;
    wait_until("grow to have 3 partitions", Duration::from_secs(10), || {
        Ok((clients::partition_count(&consumer, "grow")? == 3).then_some(()))
    })?;
    let producer = clients::producer(&bootstrap, &[])?;
    let delivery = clients::send_one(
        &producer,
        FutureRecord::<(), _>::to("grow")
            .partition(2)
            .payload("new"),
    )
    .await?;
    ensure!(
        (delivery.partition, delivery.offset) == (2, 0),
        "delivered at {delivery:?}"
    );

    let results = admin
        .create_partitions([&NewPartitions::new("grow", 2)], &clients::admin_options())
        .await?;
    ensure!(
        matches!(
            results.as_slice(),
            [Err((_, RDKafkaErrorCode::InvalidPartitions))]
        ),
        "shrinking to 2: {results:?}"
    );
    Ok(())
}

#[tokio::test]
async fn given_topics_when_describing_and_altering_configs_should_show_the_values() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, "plain", 1, &[]).await?;
    clients::create_topic(&admin, "custom", 1, &[("retention.ms", "1234567")]).await?;

    let value = describe(&admin, "plain", "retention.ms").await?;
    ensure!(
        value.as_deref() == Some(SEVEN_DAYS_MS),
        "plain retention.ms = {value:?}"
    );
    let value = describe(&admin, "custom", "retention.ms").await?;
    ensure!(
        value.as_deref() == Some("1234567"),
        "custom retention.ms = {value:?}"
    );

    let set = raw::incremental_alter_topic_configs(
        broker.addr(),
        "plain",
        &[("retention.ms", AlterOp::Set, Some("3600000"))],
    )?;
    ensure!(
        matches!(set.as_slice(), [r] if r.error_code == 0 && &*r.resource_name == "plain"),
        "SET: {set:?}"
    );
    let value = describe(&admin, "plain", "retention.ms").await?;
    ensure!(
        value.as_deref() == Some("3600000"),
        "after SET, retention.ms = {value:?}"
    );

    let deleted = raw::incremental_alter_topic_configs(
        broker.addr(),
        "plain",
        &[("retention.ms", AlterOp::Delete, None)],
    )?;
    ensure!(
        matches!(deleted.as_slice(), [r] if r.error_code == 0 && &*r.resource_name == "plain"),
        "DELETE: {deleted:?}"
    );
    let value = describe(&admin, "plain", "retention.ms").await?;
    ensure!(
        value.as_deref() == Some(SEVEN_DAYS_MS),
        "after DELETE, retention.ms = {value:?}"
    );

    let bad = raw::incremental_alter_topic_configs(
        broker.addr(),
        "plain",
        &[("retention.ms", AlterOp::Set, Some("soon"))],
    )?;
    ensure!(
        matches!(bad.as_slice(), [r] if r.error_code == 40),
        "SET retention.ms=soon should be INVALID_CONFIG (40): {bad:?}"
    );
    let missing = raw::incremental_alter_topic_configs(
        broker.addr(),
        "no-such-topic",
        &[("retention.ms", AlterOp::Set, Some("1000"))],
    )?;
    ensure!(
        matches!(missing.as_slice(), [r] if r.error_code == 3),
        "altering an unknown topic should be UNKNOWN_TOPIC_OR_PARTITION (3): {missing:?}"
    );
    Ok(())
}

#[tokio::test]
async fn given_a_retention_flag_when_describing_a_new_topic_should_show_it_as_the_default()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new().flag("--retention-ms", 86_400_000))?;
    let admin = clients::admin(&broker.bootstrap())?;
    clients::create_topic(&admin, "daily", 1, &[]).await?;
    let value = describe(&admin, "daily", "retention.ms").await?;
    ensure!(
        value.as_deref() == Some("86400000"),
        "retention.ms = {value:?}"
    );
    Ok(())
}

#[tokio::test]
async fn given_invalid_topic_names_when_creating_should_reject_them() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    let too_long = "a".repeat(250);
    for name in [
        "bad/name",
        too_long.as_str(),
        ".",
        "..",
        "spaces are bad",
        "ünïcode",
    ] {
        let result = try_create(&admin, name, 1).await?;
        ensure!(
            result == Err(RDKafkaErrorCode::InvalidTopic),
            "creating {name:?}: {result:?}, expected INVALID_TOPIC_EXCEPTION"
        );
    }
    // 249 characters is the longest legal name.
    let longest = "b".repeat(249);
    ensure!(
        try_create(&admin, &longest, 1).await? == Ok(()),
        "a 249-character name was refused"
    );
    let names = topic_names(&bootstrap)?;
    ensure!(names == [longest], "Metadata lists {names:?}");
    Ok(())
}

#[test]
fn given_auto_create_when_asking_metadata_for_bad_or_colliding_names_should_create_nothing()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let consumer = clients::consumer(&bootstrap, &[("allow.auto.create.topics", "true")])?;
    // Auto-create one legal topic first, for the collision check.
    wait_until("x_y to be auto-created", Duration::from_secs(10), || {
        let metadata = consumer.fetch_metadata(Some("x_y"), clients::REQUEST_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == "x_y" && t.error().is_none())
            .then_some(()))
    })?;
    for name in ["bad/name", "..", "x.y"] {
        let metadata = consumer.fetch_metadata(Some(name), clients::REQUEST_TIMEOUT)?;
        let topic = metadata.topics().iter().find(|t| t.name() == name);
        let error = topic.and_then(|t| t.error()).map(RDKafkaErrorCode::from);
        ensure!(
            topic.is_none() || error.is_some(),
            "Metadata auto-created {name:?} ({} partitions)",
            topic.map_or(0, |t| t.partitions().len())
        );
    }
    let names = topic_names(&bootstrap)?;
    ensure!(
        names == ["x_y"],
        "topics after the bad Metadata requests: {names:?}"
    );
    Ok(())
}

#[tokio::test]
async fn given_a_b_underscore_when_creating_a_dot_b_should_reject_the_collision() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let admin = clients::admin(&broker.bootstrap())?;
    ensure!(
        try_create(&admin, "a_b", 1).await? == Ok(()),
        "creating a_b"
    );
    let result = try_create(&admin, "a.b", 1).await?;
    ensure!(
        result == Err(RDKafkaErrorCode::InvalidTopic),
        "creating a.b next to a_b: {result:?}, expected INVALID_TOPIC_EXCEPTION"
    );
    // And the other way round.
    ensure!(
        try_create(&admin, "c.d", 1).await? == Ok(()),
        "creating c.d"
    );
    let result = try_create(&admin, "c_d", 1).await?;
    ensure!(
        result == Err(RDKafkaErrorCode::InvalidTopic),
        "creating c_d next to c.d: {result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn given_records_when_deleting_records_should_move_the_low_watermark() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    let topic = "trimmed";
    clients::create_topic(&admin, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    let values: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    clients::send_all(
        &producer,
        values
            .iter()
            .map(|v| FutureRecord::<(), _>::to(topic).payload(v)),
    )
    .await?;

    let mut before = TopicPartitionList::new();
    before.add_partition_offset(topic, 0, Offset::Offset(4))?;
    let result = admin
        .delete_records(&before, &clients::admin_options())
        .await?;
    let element = result
        .find_partition(topic, 0)
        .context("DeleteRecords result lacks the partition")?;
    element.error().context("DeleteRecords partition error")?;
    ensure!(
        element.offset() == Offset::Offset(4),
        "new low watermark {:?}",
        element.offset()
    );

    let consumer = clients::consumer(&bootstrap, &[])?;
    let marks = clients::watermarks(&consumer, topic, 0)?;
    ensure!(
        marks == (4, 10),
        "watermarks after DeleteRecords: {marks:?}"
    );
    clients::assign(&consumer, topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, 6, Duration::from_secs(15))?;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    ensure!(offsets == [4, 5, 6, 7, 8, 9], "read offsets {offsets:?}");

    let mut all = TopicPartitionList::new();
    all.add_partition_offset(topic, 0, Offset::End)?;
    let result = admin
        .delete_records(&all, &clients::admin_options())
        .await?;
    let element = result.find_partition(topic, 0).context("partition")?;
    element.error().context("DeleteRecords to the end")?;
    let marks = clients::watermarks(&consumer, topic, 0)?;
    ensure!(
        marks == (10, 10),
        "watermarks after deleting everything: {marks:?}"
    );
    Ok(())
}

#[tokio::test]
async fn given_a_broker_when_asking_metadata_should_advertise_node_0_at_the_bound_address()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    let metadata = consumer.fetch_metadata(None, clients::REQUEST_TIMEOUT)?;
    let brokers: Vec<(i32, String, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_owned(), b.port()))
        .collect();
    let expected = vec![(
        0,
        broker.addr().ip().to_string(),
        i32::from(broker.addr().port()),
    )];
    ensure!(
        brokers == expected,
        "Metadata brokers {brokers:?}, expected {expected:?}"
    );
    Ok(())
}
