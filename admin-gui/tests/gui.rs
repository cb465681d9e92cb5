//! The real app code, driven with `egui_kittest` (widgets found by their labels, clicked like
//! a user would) against a real `runnel` process, checked with a real Kafka client (rdkafka):
//! connect, create a topic, see topic sizes (as DescribeLogDirs reports them) and retention,
//! see a group's true lag, reset its offsets, and see the cluster marked stale — with the UI
//! still drawing — when the broker stops.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::state::bytes_label;
use runnel_tests::{Broker, BrokerOptions, clients, raw};
use support::{TEST_TIMING, TEST_WINDOW, count_label, has_label};

/// How long the worker may take to show an answer.
const ANSWER: Duration = Duration::from_secs(20);

fn harness() -> Result<Harness<'static, AdminApp>> {
    Ok(support::harness(support::app(TEST_TIMING)?, TEST_WINDOW))
}

fn wait_for(
    harness: &mut Harness<'_, AdminApp>,
    what: &str,
    probe: impl FnMut(&Harness<'_, AdminApp>) -> bool,
) -> Result<()> {
    support::wait_for(harness, what, ANSWER, probe)
}

/// Connects to the cluster as `edge` and waits until it is online.
fn connect(harness: &mut Harness<'_, AdminApp>, bootstrap: &str) -> Result<()> {
    support::connect(harness, "edge", bootstrap);
    wait_for(harness, "the cluster to be online", |h| {
        has_label(h, "edge · online")
    })
}

#[test]
fn given_a_running_broker_when_creating_a_topic_in_the_ui_should_list_it_and_create_it()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mut harness = harness()?;
    connect(&mut harness, &broker.bootstrap())?;
    harness.state_mut().screen = Screen::Topics;
    harness.step();
    harness.get_by_label("Create topic").click();
    harness.step();
    {
        let form = &mut harness.state_mut().forms.new_topic;
        form.name = "made-in-ui".into();
        form.partitions = 3;
    }
    harness.step();
    harness.get_by_label("Create").click();
    wait_for(&mut harness, "the new topic in the list", |h| {
        has_label(h, "made-in-ui")
    })?;
    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    ensure!(
        clients::partition_count(&consumer, "made-in-ui")? == 3,
        "the broker does not have 3 partitions"
    );
    Ok(())
}

/// What DescribeLogDirs says `topic` holds, per partition.
fn log_dir_sizes(broker: &Broker, topic: &str) -> Result<Vec<i64>> {
    Ok(raw::partition_sizes(broker.addr())?
        .into_iter()
        .filter(|((t, _), _)| t == topic)
        .map(|(_, size)| size)
        .collect())
}

/// The size the topic list holds for `topic` (what its Size column shows).
fn shown_size(h: &Harness<'_, AdminApp>, topic: &str) -> Option<u64> {
    let model = h.state().worker.model();
    model
        .clusters
        .values()
        .flat_map(|v| &v.topics)
        .find(|t| t.name == topic)?
        .size
}

#[test]
fn given_records_when_viewing_topics_should_show_the_size_described_and_the_retention() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    tokio::runtime::Runtime::new()?.block_on(async {
        let admin = clients::admin(&bootstrap)?;
        let limits = [
            ("retention.ms", "3600000"),
            ("retention.bytes", "1073741824"),
        ];
        clients::create_topic(&admin, "sized", 2, &limits).await?;
        clients::create_topic(&admin, "kept", 1, &[]).await
    })?;
    support::produce(&bootstrap, "sized", 200, 500)?;
    let described = log_dir_sizes(&broker, "sized")?;
    ensure!(
        described.len() == 2 && described[0] >= 200 * 500 && described[1] == 0,
        "DescribeLogDirs sizes of sized: {described:?}"
    );
    let total = described.iter().sum::<i64>() as u64;

    let mut harness = harness()?;
    connect(&mut harness, &bootstrap)?;
    harness.state_mut().screen = Screen::Topics;
    let label = bytes_label(total);
    wait_for(&mut harness, "the topic's size and retention", |h| {
        shown_size(h, "sized") == Some(total)
            && count_label(h, &label) == 1
            && count_label(h, "1 h / 1 GiB") == 1
            // The broker's default: 7 days, no size limit.
            && count_label(h, "7 d") == 1
    })?;
    ensure!(total > 0, "an empty topic after 200 records");

    // The detail: each partition's own size.
    harness.get_by_label("sized").click();
    wait_for(&mut harness, "the topic's partitions", |h| {
        has_label(h, "Topic sized")
    })?;
    let detail: Vec<Option<u64>> = {
        let model = harness.state().worker.model();
        let view = model.clusters.values().next().context("the cluster")?;
        let d = view.topic_detail.as_ref().context("the detail")?;
        d.partitions.iter().map(|p| p.size).collect()
    };
    ensure!(
        detail == [Some(described[0] as u64), Some(0)],
        "detail sizes {detail:?}, DescribeLogDirs {described:?}"
    );
    // Partition 0 next to the list's total; partition 1 next to the empty topic `kept`.
    ensure!(
        count_label(&harness, &bytes_label(described[0] as u64)) == 2
            && count_label(&harness, "0 B") == 2,
        "the partitions' sizes are not shown"
    );

    // More records: the list follows on its next refresh.
    support::produce(&bootstrap, "sized", 200, 500)?;
    let grown = log_dir_sizes(&broker, "sized")?.iter().sum::<i64>() as u64;
    ensure!(
        grown > total,
        "DescribeLogDirs: {grown} after more records, {total} before"
    );
    let label = bytes_label(grown);
    wait_for(&mut harness, "the grown size", |h| {
        shown_size(h, "sized") == Some(grown) && count_label(h, &label) == 1
    })?;
    Ok(())
}

#[test]
fn given_a_group_with_lag_when_viewing_groups_should_show_the_true_lag_and_reset_it() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let admin = clients::admin(&bootstrap)?;
        clients::create_topic(&admin, "orders", 2, &[]).await?;
        let producer = clients::producer(&bootstrap, &[])?;
        for i in 0..40 {
            clients::send_one(
                &producer,
                FutureRecord::to("orders")
                    .key("k")
                    .payload("v")
                    .partition(i % 2),
            )
            .await?;
        }
        anyhow::Ok(())
    })?;
    // The group consumed part of the topic: committed 5 of 20 on partition 0, 12 of 20 on 1.
    let consumer = clients::consumer(
        &bootstrap,
        &[("group.id", "billing"), ("enable.auto.commit", "false")],
    )?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Offset(5))?;
    tpl.add_partition_offset("orders", 1, Offset::Offset(12))?;
    consumer.commit(&tpl, CommitMode::Sync)?;
    let true_lag = (20 - 5) + (20 - 12);

    let mut harness = harness()?;
    connect(&mut harness, &bootstrap)?;
    harness.state_mut().screen = Screen::Groups;
    wait_for(&mut harness, "the group's lag", |h| {
        has_label(h, "billing") && has_label(h, &format!("lag {true_lag}"))
    })?;

    harness.get_by_label("billing").click();
    wait_for(&mut harness, "the group's detail", |h| {
        has_label(h, "Group billing")
    })?;
    harness.state_mut().forms.reset.target = 0; // earliest
    harness.step();
    harness.get_by_label("Preview reset").click();
    wait_for(&mut harness, "the reset preview", |h| {
        has_label(h, "Apply reset")
    })?;
    harness.get_by_label("Apply reset").click();
    wait_for(&mut harness, "the reset to finish", |h| {
        has_label(h, "offsets of 2 partition(s) of billing reset")
    })?;

    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    for p in 0..2 {
        let offset = committed
            .find_partition("orders", p)
            .context("partition")?
            .offset();
        ensure!(
            offset == Offset::Offset(0),
            "partition {p} committed {offset:?} after a reset to earliest"
        );
    }
    wait_for(&mut harness, "the new lag", |h| has_label(h, "lag 40"))?;
    Ok(())
}

#[test]
fn given_a_stopped_broker_when_refreshing_should_mark_the_cluster_stale_and_keep_drawing()
-> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let mut harness = harness()?;
    connect(&mut harness, &broker.bootstrap())?;
    // Runnel's own state (version, uptime, disk, RSS) comes over the Kafka protocol too.
    harness.state_mut().screen = Screen::Brokers;
    wait_for(&mut harness, "the broker's version", |h| {
        h.query_by_label(env!("CARGO_PKG_VERSION")).is_some() && has_label(h, "MiB")
    })?;
    broker.kill9()?;
    // The UI keeps stepping (the worker waits on the network, not the UI) until it says stale.
    wait_for(&mut harness, "the stale mark", |h| {
        has_label(h, "edge · stale (last seen")
    })?;
    harness.state_mut().screen = Screen::Connections;
    harness.step();
    ensure!(
        has_label(&harness, "Refresh failed"),
        "the refresh error is not shown"
    );
    Ok(())
}
