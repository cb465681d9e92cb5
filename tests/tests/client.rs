//! `runnel-client`, the workspace's own Kafka client, against the real broker: what it writes,
//! real clients (rdkafka) read, and what rdkafka does, it sees. The bridge, the admin GUI and
//! the uplink all stand on these calls.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_client::{
    Client, ClientConfig, ConfigChange, FetchOptions, NewTopic, OffsetSpec, OutRecord,
    PartitionBatch, Producer, ProducerConfig, ResponseError,
};
use runnel_tests::{Broker, BrokerOptions, clients};

fn client(broker: &Broker) -> Client {
    Client::new(ClientConfig::new(broker.bootstrap(), "client-test"))
}

fn record(i: usize) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(format!("k{}", i % 3))),
        value: Some(Bytes::from(format!("value-{i}"))),
        headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
        timestamp_ms: 1_700_000_000_000 + i as i64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_topic_when_producing_idempotently_should_be_read_back_by_rdkafka_and_by_fetch()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let client = client(&broker);
    let created = client
        .create_topic(&NewTopic {
            name: "orders".into(),
            partitions: 2,
            replication_factor: -1,
            configs: vec![("retention.ms".into(), "3600000".into())],
        })
        .await?;
    ensure!(created, "the topic was not created");
    ensure!(
        !client
            .create_topic(&NewTopic {
                name: "orders".into(),
                partitions: 2,
                replication_factor: -1,
                configs: vec![]
            })
            .await?,
        "created twice"
    );
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    // Several batches per partition in one call: sent in order, one per partition per request.
    let batches = (0..4)
        .map(|b| PartitionBatch {
            topic: "orders".into(),
            partition: b % 2,
            records: (b as usize * 10..b as usize * 10 + 10)
                .map(record)
                .collect(),
        })
        .collect();
    let offsets = producer.send(batches).await;
    let offsets: Vec<i64> = offsets.into_iter().collect::<Result<_, _>>()?;
    ensure!(offsets == vec![0, 0, 10, 10], "base offsets {offsets:?}");

    let seen = tokio::task::block_in_place(|| {
        clients::consume_all(&broker.bootstrap(), "orders", Duration::from_secs(30))
    })?;
    ensure!(seen.len() == 40, "{} records", seen.len());
    let first = seen
        .iter()
        .find(|r| r.partition == 1 && r.offset == 0)
        .context("1/0")?;
    ensure!(first.value_str() == "value-10" && first.key_str() == "k1");
    ensure!(first.headers == vec![("h".to_string(), Some(b"1".to_vec()))]);

    let fetched = client
        .fetch("orders", 0, 5, FetchOptions::default())
        .await?;
    ensure!(
        fetched.records.first().map(|r| r.offset) == Some(5),
        "fetch starts at the asked offset"
    );
    ensure!(fetched.records.len() == 15 && fetched.high_watermark == 20);
    ensure!(client.list_offset("orders", 1, OffsetSpec::Latest).await? == 20);
    ensure!(
        client
            .list_offset("orders", 1, OffsetSpec::Earliest)
            .await?
            == 0
    );
    ensure!(
        client
            .list_offset("orders", 0, OffsetSpec::Timestamp(1_700_000_000_025))
            .await?
            == 15
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_topic_configs_when_altered_should_describe_the_override_and_delete_the_topic()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let client = client(&broker);
    client
        .create_topic(&NewTopic {
            name: "cfg".into(),
            partitions: 1,
            replication_factor: -1,
            configs: vec![],
        })
        .await?;
    client
        .alter_topic_configs(
            "cfg",
            &[ConfigChange::Set("retention.ms".into(), "60000".into())],
        )
        .await?;
    let configs = client.describe_topic_configs("cfg").await?;
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .context("retention.ms")?;
    ensure!(
        retention.value.as_deref() == Some("60000") && retention.is_override(),
        "{retention:?}"
    );
    let err = client
        .alter_topic_configs(
            "cfg",
            &[ConfigChange::Set("retention.ms".into(), "soon".into())],
        )
        .await
        .err()
        .context("a bad value was accepted")?;
    ensure!(err.code() == Some(ResponseError::InvalidConfig), "{err}");
    client.delete_topic("cfg").await?;
    let meta = client.metadata(&[], false).await?;
    ensure!(
        !meta.topics.iter().any(|t| t.name == "cfg"),
        "still listed after delete"
    );
    ensure!(meta.brokers.len() == 1 && meta.controller == meta.brokers[0].node_id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_rdkafka_group_when_described_should_show_members_offsets_and_lag() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, "lagging", 2, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    for i in 0..30 {
        let key = format!("k{i}");
        clients::send_one(
            &producer,
            FutureRecord::to("lagging")
                .key(&key)
                .payload("x")
                .partition(i % 2),
        )
        .await?;
    }
    let consumer = clients::consumer(
        &bootstrap,
        &[("group.id", "watchers"), ("enable.auto.commit", "false")],
    )?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("lagging", 0, Offset::Offset(10))?;
    tpl.add_partition_offset("lagging", 1, Offset::Offset(4))?;
    tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync))?;

    let client = client(&broker);
    let groups = client.list_groups().await?;
    ensure!(
        groups.iter().any(|g| g.group_id == "watchers"),
        "{groups:?}"
    );
    let committed = client.group_offsets("watchers").await?;
    ensure!(committed.get(&("lagging".to_string(), 0)) == Some(&10));
    ensure!(committed.get(&("lagging".to_string(), 1)) == Some(&4));
    let ends = client
        .end_offsets(&[("lagging".into(), 0), ("lagging".into(), 1)])
        .await?;
    let lag: i64 = committed.iter().map(|(k, c)| ends[k] - c).sum();
    ensure!(lag == 30 - 14, "lag {lag}");
    // A simple-consumer commit (what an offset reset does) is visible to rdkafka.
    client
        .commit_offsets("watchers", &[("lagging".into(), 0, 15)])
        .await?;
    let seen = tokio::task::block_in_place(|| {
        consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))
    })?;
    let p0 = seen.find_partition("lagging", 0).context("p0")?;
    ensure!(
        p0.offset() == Offset::Offset(15),
        "rdkafka sees {:?}",
        p0.offset()
    );
    let described = client.describe_group("watchers").await?;
    ensure!(described.members.is_empty(), "{described:?}");
    Ok(())
}
