//! The Brokers screen against a real single-node `runnel` (node id 7): the broker's id and
//! address, that it is the controller, its partitions, and "0 under-replicated" — read through
//! the real UI; and `runnel-client`'s DescribeCluster against the same broker.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::replication::BrokerState;
use runnel_client::{Client, ClientConfig};
use runnel_tests::{Broker, BrokerOptions, clients};
use support::{TEST_TIMING, TEST_WINDOW, has_label};

const NODE_ID: i32 = 7;
/// How long the worker may take to show an answer.
const ANSWER: Duration = Duration::from_secs(20);

fn wait_for(
    harness: &mut Harness<'_, AdminApp>,
    what: &str,
    probe: impl FnMut(&Harness<'_, AdminApp>) -> bool,
) -> Result<()> {
    support::wait_for(harness, what, ANSWER, probe)
}

/// A broker with node id 7 and a topic `gps` with 2 partitions.
fn broker_with_topic() -> Result<Broker> {
    let broker = Broker::start(BrokerOptions::new().flag("--node-id", NODE_ID))?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let admin = clients::admin(&broker.bootstrap())?;
        clients::create_topic(&admin, "gps", 2, &[]).await
    })?;
    Ok(broker)
}

#[test]
fn given_a_single_broker_when_viewing_brokers_should_show_it_as_controller_with_nothing_under_replicated()
-> Result<()> {
    let broker = broker_with_topic()?;
    let bootstrap = broker.bootstrap();
    let mut harness = support::harness(support::app(TEST_TIMING)?, TEST_WINDOW);
    support::connect(&mut harness, "edge", &bootstrap);
    harness.state_mut().screen = Screen::Brokers;
    let controller = format!("controller {NODE_ID} ({bootstrap})");
    wait_for(
        &mut harness,
        "the broker, the controller and the counts",
        |h| {
            has_label(h, &controller)
                && h.query_by_label("0 under-replicated").is_some()
                && h.query_by_label("0 offline").is_some()
                && h.query_by_label(&bootstrap).is_some()
                && h.query_by_label(&NODE_ID.to_string()).is_some()
                && h.query_by_label("online").is_some()
        },
    )?;
    // Also the first refresh's partitions: 2 led and 2 replicated by the one broker.
    wait_for(&mut harness, "the partitions it leads", |h| {
        h.query_all_by_label("2").count() >= 2
    })?;
    let app = harness.state();
    let model = app.worker.model();
    let view = model
        .clusters
        .get(&app.current().context("a shown cluster")?)
        .and_then(|v| v.brokers_view.as_ref())
        .context("the brokers view")?;
    ensure!(view.controller == NODE_ID, "controller {}", view.controller);
    ensure!(view.brokers.len() == 1, "brokers: {:?}", view.brokers);
    let row = &view.brokers[0];
    ensure!(
        row.id == NODE_ID
            && row.address == bootstrap
            && row.state == BrokerState::Online
            && row.leads == 2
            && row.replicates == 2,
        "the broker's row: {row:?}"
    );
    ensure!(view.under_replicated.is_empty() && view.offline.is_empty());
    Ok(())
}

#[test]
fn given_a_single_broker_when_describing_the_cluster_should_name_it_as_the_only_broker_and_controller()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new().flag("--node-id", NODE_ID))?;
    let client = Client::new(ClientConfig::new(broker.bootstrap(), "brokers-test"));
    let (described, meta) = tokio::runtime::Runtime::new()?.block_on(async {
        anyhow::Ok((
            client.describe_cluster(true).await?,
            client.metadata(&[], false).await?,
        ))
    })?;
    ensure!(described.controller_id == NODE_ID, "{described:?}");
    ensure!(described.brokers.len() == 1, "{described:?}");
    let b = &described.brokers[0];
    ensure!(
        b.id == NODE_ID && format!("{}:{}", b.host, b.port) == broker.bootstrap() && !b.fenced,
        "{b:?}"
    );
    ensure!(
        meta.cluster_id.as_deref() == Some(described.cluster_id.as_str()),
        "Metadata says cluster {:?}, DescribeCluster {}",
        meta.cluster_id,
        described.cluster_id
    );
    Ok(())
}
