//! The Brokers screen against a real three-node `runnel` cluster (Raft metadata quorum,
//! replication factor 3), read through the real UI: three brokers online, one controller,
//! nothing under-replicated; after `kill -9` of a broker that is not the controller, that
//! broker fenced (DescribeCluster v2 lists it so) and every partition under-replicated but
//! still led; after its restart, the broker online again and nothing under-replicated once it
//! has caught up and rejoined every ISR.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use egui_kittest::Harness;
use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::replication::{BrokerState, BrokersView};
use runnel_client::{Client, ClientConfig, NewTopic};
use support::cluster::Cluster;
use support::{TEST_TIMING, TEST_WINDOW, count_label, has_label};

const TOPIC: &str = "gps";
const PARTITIONS: i32 = 3;
/// How long a state the cluster reaches on its own may take to show on the screen: the
/// session timeout (2 s) or a catch-up, a Raft commit, and a refresh or two.
const SHOWN: Duration = Duration::from_secs(25);

/// The Brokers screen's model, as last computed by the worker.
fn view(h: &Harness<'_, AdminApp>) -> Option<BrokersView> {
    let app = h.state();
    let id = app.current()?;
    let model = app.worker.model();
    model.clusters.get(&id)?.brokers_view.clone()
}

/// Creates `gps` with 3 partitions, each on all three brokers.
fn create_topic(cluster: &Cluster) -> Result<()> {
    let client = Client::new(ClientConfig::new(
        cluster.bootstrap(),
        "brokers-cluster-test",
    ));
    let created = tokio::runtime::Runtime::new()?.block_on(client.create_topic(&NewTopic {
        name: TOPIC.into(),
        partitions: PARTITIONS,
        replication_factor: 3,
        configs: Vec::new(),
    }))?;
    ensure!(created, "{TOPIC} existed already");
    Ok(())
}

/// Whether the screen shows all three brokers online, one of them as the controller, and no
/// partition that needs attention, in its labels and in its model (every ISR full).
fn healthy(h: &Harness<'_, AdminApp>) -> bool {
    let Some(v) = view(h) else {
        return false;
    };
    let Some(controller) = v.brokers.iter().find(|b| b.id == v.controller) else {
        return false;
    };
    let controller = format!("controller {} ({})", controller.id, controller.address);
    v.brokers.len() == 3
        && v.brokers
            .iter()
            .all(|b| b.state == BrokerState::Online && b.replicates == 3)
        && v.brokers.iter().map(|b| b.leads).sum::<usize>() == 3
        && v.under_replicated.is_empty()
        && v.offline.is_empty()
        && count_label(h, "online") == 3
        && count_label(h, "fenced") == 0
        && count_label(h, "controller") == 1
        && has_label(h, &controller)
        && count_label(h, "0 under-replicated") == 1
        && count_label(h, "0 offline") == 1
}

#[test]
fn given_three_brokers_when_one_is_killed_and_restarted_should_show_it_fenced_then_caught_up()
-> Result<()> {
    let mut cluster = Cluster::start(3)?;
    create_topic(&cluster)?;
    let described = cluster.describe()?;
    let controller = described.controller_id;
    let victim = (1..=3)
        .rev()
        .find(|id| *id != controller)
        .context("a broker that is not the controller")?;
    let victim_addr = cluster.node(victim)?.kafka.to_string();
    let controller_text = format!(
        "controller {controller} ({})",
        cluster.node(controller)?.kafka
    );

    let mut harness = support::harness(support::app(TEST_TIMING)?, TEST_WINDOW);
    support::connect(&mut harness, "edge", &cluster.bootstrap());
    harness.state_mut().screen = Screen::Brokers;
    support::wait_for(
        &mut harness,
        "3 brokers online, the controller, 0 under-replicated",
        SHOWN,
        |h| healthy(h) && has_label(h, &controller_text),
    )
    .with_context(|| format!("shown: {:?}\n{}", view(&harness), cluster.log_paths()))?;

    cluster.kill9(victim)?;
    support::wait_for(
        &mut harness,
        &format!("broker {victim} fenced and {PARTITIONS} under-replicated"),
        SHOWN,
        |h| {
            let model_ok = view(h).is_some_and(|v| {
                v.controller == controller
                    && v.brokers.iter().any(|b| {
                        b.id == victim
                            && b.state == BrokerState::Fenced
                            && b.address == victim_addr
                            && b.leads == 0
                            && b.replicates == 3
                    })
                    && v.under_replicated.len() == 3
                    && v.under_replicated
                        .iter()
                        .all(|p| p.leader != victim && !p.isr.contains(&victim))
                    && v.offline.is_empty()
            });
            model_ok
                && count_label(h, "fenced") == 1
                && count_label(h, "online") == 2
                && has_label(h, &controller_text)
                && count_label(h, &format!("{PARTITIONS} under-replicated")) == 1
                && count_label(h, "0 offline") == 1
        },
    )
    .with_context(|| format!("shown: {:?}\n{}", view(&harness), cluster.log_paths()))?;
    // What the screen read: DescribeCluster v2 with the fenced brokers.
    let fenced = cluster.describe()?;
    ensure!(
        fenced.brokers.iter().any(|b| b.id == victim && b.fenced),
        "DescribeCluster: {fenced:?}"
    );

    cluster.restart(victim)?;
    support::wait_for(
        &mut harness,
        &format!("broker {victim} back online and 0 under-replicated"),
        SHOWN,
        healthy,
    )
    .with_context(|| format!("shown: {:?}\n{}", view(&harness), cluster.log_paths()))?;
    Ok(())
}
