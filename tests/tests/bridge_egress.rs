//! Topic → MQTT egress through a real `runnel-bridge`: records produced with rdkafka reach an
//! MQTT subscriber on the topic rendered from their key, in order per key, and the bridge's
//! consumer group remembers what was delivered, so a restarted bridge delivers only what is new.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use rumqttc::QoS;
use runnel_tests::clients;
use runnel_tests::groups;
use runnel_tests::harness::bridge::{Bridge, BridgeToml};
use runnel_tests::harness::mosquitto::Mosquitto;
use runnel_tests::harness::mqtt::{Message, Subscriber};
use runnel_tests::wait_until;
use runnel_tests::{Broker, BrokerOptions};

const BRIDGE: &str = "egress";
/// The default group of the bridge's egress rules: `runnel-bridge-{name}-egress`.
const GROUP: &str = "runnel-bridge-egress-egress";
const TOPIC: &str = "commands";
const PARTITIONS: i32 = 2;
const DEVICES: [&str; 3] = ["dev1", "dev2", "dev3"];
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Produces commands `from..to` for every device, keyed by device (device `i` on partition
/// `i % PARTITIONS`, so both partitions are used), and returns them as the MQTT messages they
/// should become.
async fn produce_commands(bootstrap: &str, from: usize, to: usize) -> Result<Vec<Message>> {
    let producer = clients::producer(bootstrap, &[])?;
    let commands: Vec<(i32, &str, String)> = (from..to)
        .flat_map(|n| {
            (0..DEVICES.len()).map(move |i| {
                let device = DEVICES[i];
                (
                    i as i32 % PARTITIONS,
                    device,
                    format!("{device}: command {n}"),
                )
            })
        })
        .collect();
    clients::send_all(
        &producer,
        commands.iter().map(|(partition, device, payload)| {
            FutureRecord::to(TOPIC)
                .partition(*partition)
                .key(*device)
                .payload(payload)
        }),
    )
    .await?;
    Ok(commands
        .into_iter()
        .map(|(_, device, payload)| (format!("devices/{device}/cmd"), payload.into_bytes()))
        .collect())
}

/// Per MQTT topic, the payloads in order of arrival.
fn by_topic(messages: &[Message]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (topic, payload) in messages {
        out.entry(topic.clone()).or_default().push(payload.clone());
    }
    out
}

/// Waits until the bridge has published (and had acknowledged) `delivered` records and sees no
/// lag, and returns its delivered counter then.
fn wait_until_caught_up(bridge: &Bridge, delivered: i64) -> Result<i64> {
    let labels = [("bridge", BRIDGE), ("topic", TOPIC)];
    wait_until(
        &format!("{delivered} records delivered and no egress lag"),
        DELIVERY_TIMEOUT,
        || {
            let count = bridge.metric("runnel_bridge_egress_delivered_total", &labels)?;
            let lag = bridge.metric("runnel_bridge_egress_lag", &labels)?;
            Ok((count >= delivered && lag == 0).then_some(count))
        },
    )
    .with_context(|| format!("bridge metrics:\n{}", bridge.metrics_report()))
}

/// The group's committed offsets must be the end of every partition.
fn assert_committed_to_the_end(bootstrap: &str) -> Result<()> {
    let consumer = clients::consumer(bootstrap, &[])?;
    let committed = groups::committed(bootstrap, GROUP, TOPIC, PARTITIONS)?;
    for partition in 0..PARTITIONS {
        let (_, high) = clients::watermarks(&consumer, TOPIC, partition)?;
        ensure!(
            committed.get(&partition) == Some(&Some(high)),
            "group {GROUP} committed {committed:?}; {TOPIC}/{partition} ends at {high}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_keyed_records_when_bridged_to_mqtt_should_deliver_each_once_across_a_restart()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mosquitto = Mosquitto::start()?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, TOPIC, PARTITIONS, &[]).await?;
    let first = produce_commands(&bootstrap, 0, 10).await?;
    let subscriber = Subscriber::start(
        mosquitto.port(),
        "devices",
        "devices/+/cmd",
        QoS::AtLeastOnce,
    )
    .await?;
    let toml = BridgeToml::new(BRIDGE, mosquitto.port()).egress(
        TOPIC,
        "devices/{key}/cmd",
        &["start = \"earliest\""],
    );
    let mut bridge = Bridge::start(&toml.build(), broker.addr())?;

    // Records produced before the bridge started: `start = "earliest"` delivers them.
    let received = subscriber.wait_for(first.len(), DELIVERY_TIMEOUT).await?;
    let delivered = tokio::task::block_in_place(|| wait_until_caught_up(&bridge, 30))?;
    assert_eq!(delivered, 30, "runnel_bridge_egress_delivered_total");
    assert_eq!(
        by_topic(&received),
        by_topic(&first),
        "right topic and payload, in order per device, each once"
    );
    let status = tokio::task::block_in_place(|| bridge.terminate())?;
    assert!(
        status.success(),
        "the bridge exited with {status} on SIGTERM"
    );
    tokio::task::block_in_place(|| assert_committed_to_the_end(&bootstrap))?;

    // While it is stopped, more commands; the restarted bridge starts at the committed offsets.
    let second = produce_commands(&bootstrap, 10, 15).await?;
    tokio::task::block_in_place(|| bridge.restart())?;
    let received = subscriber
        .wait_for(first.len() + second.len(), DELIVERY_TIMEOUT)
        .await?;
    let delivered =
        tokio::task::block_in_place(|| wait_until_caught_up(&bridge, second.len() as i64))?;

    assert_eq!(
        delivered,
        second.len() as i64,
        "the restarted bridge published records it had already delivered"
    );
    let all: Vec<Message> = first.iter().chain(&second).cloned().collect();
    assert_eq!(subscriber.count(), all.len(), "{:?}", subscriber.received());
    assert_eq!(by_topic(&received), by_topic(&all));
    tokio::task::block_in_place(|| assert_committed_to_the_end(&bootstrap))?;
    Ok(())
}
