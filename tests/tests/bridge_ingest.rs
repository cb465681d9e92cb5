//! MQTT → topic ingest through a real `runnel-bridge` between a real Mosquitto and a real
//! `runnel`: GPS-like JSON fixes from several trucks publishing concurrently all arrive in the
//! topic exactly once, each truck's fixes on one partition in the order they were published,
//! with the MQTT headers and the timestamp taken from the payload. Over MQTT 3.1.1 and 5, at
//! QoS 1 and QoS 0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::Timestamp;
use rumqttc::QoS;
use runnel_tests::clients;
use runnel_tests::harness::bridge::{
    Bridge, BridgeToml, TopicReader, gps_batches, gps_fix, header, spawn_publishers,
    wait_for_subscription,
};
use runnel_tests::harness::mosquitto::Mosquitto;
use runnel_tests::{Broker, BrokerOptions};

const TOPIC: &str = "gps";
const DEAD_LETTERS: &str = "gps-dlq";
const FILTER: &str = "trucks/+/gps";
/// Timestamps of the fixes: `BASE_TS_MS + seq`, far from "now", so a record timestamped on
/// receipt instead of from the payload cannot pass.
const BASE_TS_MS: i64 = 1_600_000_000_000;
/// How long the bridge may take to write everything once it was published.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(240);

/// One ingest scenario.
struct Case {
    bridge: &'static str,
    /// `[bridge.mqtt]` lines beyond the harness defaults.
    mqtt: &'static [&'static str],
    qos: QoS,
    trucks: usize,
    per_truck: u64,
    partitions: i32,
}

fn qos_number(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// Publishes the case's fixes through the bridge and checks every record that arrives.
async fn ingest_every_fix(case: Case) -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mosquitto = Mosquitto::start()?;
    let admin = clients::admin(&broker.bootstrap())?;
    clients::create_topic(&admin, TOPIC, case.partitions, &[]).await?;
    clients::create_topic(&admin, DEAD_LETTERS, 1, &[]).await?;
    let qos = qos_number(case.qos);
    let qos_line = format!("qos = {qos}");
    let mut toml = BridgeToml::new(case.bridge, mosquitto.port());
    for line in case.mqtt {
        toml = toml.mqtt(line);
    }
    let toml = toml.ingress(
        FILTER,
        TOPIC,
        &[
            "key_level = 1",
            "timestamp_json = \"ts\"",
            "dead_letter_topic = \"gps-dlq\"",
            &qos_line,
        ],
    );
    let bridge = Bridge::start(&toml.build(), broker.addr())?;
    wait_for_subscription(&mosquitto, &toml.client_id(), FILTER)?;
    let total = case.trucks * case.per_truck as usize;

    let reports = spawn_publishers(
        mosquitto.port(),
        &format!("{}-truck", case.bridge),
        gps_batches(case.trucks, case.per_truck, BASE_TS_MS),
        case.qos,
    )
    .await??;
    let acked: usize = reports.iter().map(|r| r.acked).sum();
    ensure!(acked == total, "publishers acked {acked} of {total}");
    let mut reader = TopicReader::new(&broker.bootstrap(), TOPIC)?;
    let records = tokio::task::block_in_place(|| reader.read_count(total, ARRIVAL_TIMEOUT))
        .map(<[_]>::to_vec)
        .with_context(|| format!("bridge metrics:\n{}", bridge.metrics_report()))?;

    // Every fix exactly once (no faults, so no redelivery).
    let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for record in &records {
        let (truck, seq, _) = gps_fix(record)?;
        *seen.entry((truck, seq)).or_default() += 1;
    }
    assert_eq!(records.len(), total, "records in {TOPIC}");
    assert_eq!(seen.len(), total, "distinct (truck, seq) in {TOPIC}");
    assert!(seen.values().all(|&n| n == 1), "a fix was written twice");

    // Per truck: key, one partition, publication order, headers, payload timestamp.
    let mut by_truck: BTreeMap<String, Vec<&clients::Record>> = BTreeMap::new();
    for record in &records {
        by_truck.entry(gps_fix(record)?.0).or_default().push(record);
    }
    assert_eq!(by_truck.len(), case.trucks);
    let mut partitions_used = BTreeSet::new();
    for (truck, mut fixes) in by_truck {
        let partitions: BTreeSet<i32> = fixes.iter().map(|r| r.partition).collect();
        assert_eq!(partitions.len(), 1, "{truck} spread over {partitions:?}");
        partitions_used.extend(partitions);
        fixes.sort_by_key(|r| r.offset);
        let seqs: Vec<u64> = fixes
            .iter()
            .map(|r| gps_fix(r).map(|(_, seq, _)| seq))
            .collect::<Result<_>>()?;
        let expected: Vec<u64> = (0..case.per_truck).collect();
        assert_eq!(seqs, expected, "{truck}: fixes out of publication order");
        let mqtt_topic = format!("trucks/{truck}/gps");
        for record in fixes {
            let (_, seq, ts) = gps_fix(record)?;
            assert_eq!(record.key_str(), truck, "key of {truck}/{seq}");
            assert_eq!(header(record, "mqtt.topic"), Some(mqtt_topic.as_bytes()));
            assert_eq!(header(record, "mqtt.qos"), Some(qos.to_string().as_bytes()));
            assert_eq!(header(record, "mqtt.retain"), Some(&b"false"[..]));
            assert_eq!(record.timestamp, Timestamp::CreateTime(ts), "{truck}/{seq}");
        }
    }
    // The keys are fixed, so this is deterministic: keying really spreads the trucks.
    assert!(
        partitions_used.len() > 1,
        "all trucks on partitions {partitions_used:?}"
    );

    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    let (_, dead) = clients::watermarks(&consumer, DEAD_LETTERS, 0)?;
    assert_eq!(dead, 0, "valid fixes were dead-lettered");
    let written = bridge.metric(
        "runnel_bridge_written_total",
        &[("bridge", case.bridge), ("topic", TOPIC)],
    )?;
    assert_eq!(written, total as i64, "runnel_bridge_written_total");
    eprintln!("{}: {total} fixes; publishers: {reports:?}", case.bridge);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_8_trucks_publishing_100k_qos1_fixes_when_bridged_should_write_each_once_in_order()
-> Result<()> {
    ingest_every_fix(Case {
        bridge: "gps311",
        mqtt: &[],
        qos: QoS::AtLeastOnce,
        trucks: 8,
        per_truck: 12_500,
        partitions: 4,
    })
    .await
    .context("MQTT 3.1.1, QoS 1, 100k fixes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_mqtt5_when_bridging_qos1_fixes_should_write_each_once_in_order() -> Result<()> {
    ingest_every_fix(Case {
        bridge: "gps5",
        mqtt: &["protocol = \"5\""],
        qos: QoS::AtLeastOnce,
        trucks: 4,
        per_truck: 2_500,
        partitions: 3,
    })
    .await
    .context("MQTT 5, QoS 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_qos0_when_bridging_fixes_should_write_each_with_qos0_headers() -> Result<()> {
    // QoS 0 may lose messages by definition; on loopback, with nothing failing, it does not.
    ingest_every_fix(Case {
        bridge: "gps0",
        mqtt: &[],
        qos: QoS::AtMostOnce,
        trucks: 4,
        per_truck: 1_000,
        partitions: 3,
    })
    .await
    .context("MQTT 3.1.1, QoS 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_backlog_queued_while_the_bridge_was_stopped_when_it_restarts_should_write_all_of_it()
-> Result<()> {
    const TRUCKS: usize = 8;
    const PER_TRUCK: u64 = 5_000;
    let broker = Broker::start(BrokerOptions::new())?;
    let mosquitto = Mosquitto::start()?;
    clients::create_topic(&clients::admin(&broker.bootstrap())?, TOPIC, 4, &[]).await?;
    let toml =
        BridgeToml::new("backlog", mosquitto.port()).ingress(FILTER, TOPIC, &["key_level = 1"]);
    let mut bridge = Bridge::start(&toml.build(), broker.addr())?;
    wait_for_subscription(&mosquitto, &toml.client_id(), FILTER)?;
    // Offline, as after a power cut: its persistent session collects what the trucks send.
    let status = tokio::task::block_in_place(|| bridge.terminate())?;
    assert!(
        status.success(),
        "the bridge exited with {status} on SIGTERM"
    );
    let total = TRUCKS * PER_TRUCK as usize;
    let reports = spawn_publishers(
        mosquitto.port(),
        "backlog-truck",
        gps_batches(TRUCKS, PER_TRUCK, BASE_TS_MS),
        QoS::AtLeastOnce,
    )
    .await??;
    let acked: usize = reports.iter().map(|r| r.acked).sum();
    ensure!(acked == total, "publishers acked {acked} of {total}");

    tokio::task::block_in_place(|| bridge.restart())?;
    let mut reader = TopicReader::new(&broker.bootstrap(), TOPIC)?;
    let records = tokio::task::block_in_place(|| reader.read_count(total, ARRIVAL_TIMEOUT))
        .map(<[_]>::to_vec)
        .with_context(|| format!("bridge metrics:\n{}", bridge.metrics_report()))?;

    let mut by_truck: BTreeMap<String, Vec<(i32, i64, u64)>> = BTreeMap::new();
    for record in &records {
        let (truck, seq, _) = gps_fix(record)?;
        by_truck
            .entry(truck)
            .or_default()
            .push((record.partition, record.offset, seq));
    }
    assert_eq!(by_truck.len(), TRUCKS);
    for (truck, mut fixes) in by_truck {
        fixes.sort_unstable();
        let seqs: Vec<u64> = fixes.iter().map(|(_, _, seq)| *seq).collect();
        let expected: Vec<u64> = (0..PER_TRUCK).collect();
        assert_eq!(seqs, expected, "{truck}: every fix once, in order");
    }
    Ok(())
}
