//! The MQTT bridge embedded in `runnel` (`[[bridge]]` tables in the broker's config), against a
//! real Mosquitto: messages published while the broker is killed with `kill -9` and restarted
//! all end up in the topic (the bridge acks MQTT only after the log made them durable, and the
//! persistent session keeps the rest queued in Mosquitto); egress delivers records to MQTT;
//! a bridge topic that cannot exist stops the broker at start with a message naming it.
//!
//! Rounds of kill -9: `RUNNEL_FAULT_ITERATIONS` (default 2).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use rumqttc::QoS;
use runnel_tests::harness::mosquitto::Mosquitto;
use runnel_tests::harness::mqtt::{Publisher, Subscriber};
use runnel_tests::{Broker, BrokerOptions, clients, run_to_exit, wait_until};

/// Messages per round of the kill test.
const MESSAGES_PER_ROUND: usize = 6_000;
const TRUCKS: usize = 4;

fn iterations() -> Result<usize> {
    runnel_tests::harness::wait::fault_iterations(2)
}

fn write_config(dir: &Path, body: &str) -> Result<String> {
    let path = dir.join("runnel.toml");
    std::fs::write(&path, body)?;
    Ok(path.to_string_lossy().into_owned())
}

fn ingest_config(mqtt_port: u16) -> String {
    format!(
        r#"
[topics]
default_partitions = 3

[[bridge]]
name = "trucks"
[bridge.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "embedded-trucks"

[[bridge.ingress]]
filter = "trucks/+/gps"
topic = "gps"
key_level = 1
"#
    )
}

/// `(truck, seq)` of every record of `gps`, and how many times each was seen.
fn ids_in_topic(bootstrap: &str) -> Result<HashMap<(String, u64), usize>> {
    let mut seen = HashMap::new();
    for r in clients::consume_all(bootstrap, "gps", Duration::from_secs(60))? {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
        let truck = v["truck"].as_str().unwrap_or_default().to_string();
        ensure!(
            r.key_str() == truck,
            "record key {:?} is not its truck {truck:?}",
            r.key_str()
        );
        let seq = v["seq"].as_u64().context("seq")?;
        *seen.entry((truck, seq)).or_insert(0) += 1;
    }
    Ok(seen)
}

fn messages(round: usize) -> Vec<(String, Vec<u8>)> {
    (0..MESSAGES_PER_ROUND)
        .map(|i| {
            let truck = format!("t{}", i % TRUCKS);
            let seq = (round * MESSAGES_PER_ROUND + i) as u64;
            let payload = serde_json::json!({"truck": truck, "seq": seq, "lat": 48.1, "lon": 11.5});
            (
                format!("trucks/{truck}/gps"),
                payload.to_string().into_bytes(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_embedded_bridge_when_the_broker_is_killed_mid_stream_should_keep_every_acked_message()
-> Result<()> {
    let mosquitto = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &ingest_config(mosquitto.port()))?;
    let mut broker = Broker::start(BrokerOptions::new().arg("--config").arg(&config))?;
    let rounds = iterations()?;
    let mut acked = 0;
    for round in 0..rounds {
        let publisher = Publisher::new(mosquitto.port(), &format!("pub-{round}"));
        let batch = messages(round);
        let publishing =
            tokio::spawn(async move { publisher.publish_all(batch, QoS::AtLeastOnce).await });
        // Kill once part of this round is in the log, so the kill lands mid-stream.
        let bootstrap = broker.bootstrap();
        let before = (round * MESSAGES_PER_ROUND) as i64;
        tokio::task::block_in_place(|| {
            wait_until(
                "records of this round in gps",
                Duration::from_secs(60),
                || {
                    let consumer = clients::consumer(&bootstrap, &[])?;
                    let mut total = 0;
                    for p in 0..3 {
                        total += clients::watermarks(&consumer, "gps", p)?.1;
                    }
                    Ok((total > before + 500).then_some(()))
                },
            )
        })?;
        tokio::task::block_in_place(|| -> Result<()> {
            broker.kill9()?;
            broker.restart()
        })?;
        let report = publishing.await??;
        ensure!(
            report.acked == MESSAGES_PER_ROUND,
            "publisher report {report:?}"
        );
        acked += report.acked;
    }
    // Every message Mosquitto acknowledged must reach the topic once the bridge catches up.
    let bootstrap = broker.bootstrap();
    let seen = tokio::task::block_in_place(|| {
        wait_until(
            "every acknowledged message in gps",
            Duration::from_secs(120),
            || {
                let seen = ids_in_topic(&bootstrap)?;
                Ok((seen.len() == acked).then_some(seen))
            },
        )
    })?;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "{acked} messages acknowledged over {rounds} kills: all in the topic, {duplicates} duplicates"
    );
    // A kill can only duplicate what was durable but not yet acked to Mosquitto: at most one
    // bridge batch (5,000 messages) or Mosquitto's in-flight window, per kill.
    ensure!(
        duplicates <= 5_000 * rounds,
        "{duplicates} duplicates after {rounds} kills"
    );
    for round in 0..rounds {
        for i in 0..MESSAGES_PER_ROUND {
            let truck = format!("t{}", i % TRUCKS);
            let seq = (round * MESSAGES_PER_ROUND + i) as u64;
            ensure!(
                seen.contains_key(&(truck.clone(), seq)),
                "({truck}, {seq}) was lost"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_embedded_egress_rule_when_records_are_produced_should_publish_them_once()
-> Result<()> {
    let mosquitto = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[[bridge]]
name = "commands"
[bridge.mqtt]
host = "127.0.0.1"
port = {}
[[bridge.egress]]
topic = "commands"
mqtt_topic = "devices/{{key}}/cmd"
start = "earliest"
"#,
            mosquitto.port()
        ),
    )?;
    let mut broker = Broker::start(BrokerOptions::new().arg("--config").arg(&config))?;
    let subscriber = Subscriber::start(
        mosquitto.port(),
        "devices",
        "devices/+/cmd",
        QoS::AtLeastOnce,
    )
    .await?;
    let producer = clients::producer(&broker.bootstrap(), &[])?;
    for i in 0..30 {
        let key = format!("dev{}", i % 3);
        let value = format!("cmd-{i}");
        clients::send_one(
            &producer,
            FutureRecord::to("commands").key(&key).payload(&value),
        )
        .await?;
    }
    let got = subscriber.wait_for(30, Duration::from_secs(30)).await?;
    for (topic, payload) in &got {
        let text = String::from_utf8_lossy(payload);
        let i: usize = text.trim_start_matches("cmd-").parse()?;
        ensure!(
            topic == &format!("devices/dev{}/cmd", i % 3),
            "{text} went to {topic}"
        );
    }
    // A restart must not deliver again what was acknowledged and committed.
    tokio::task::block_in_place(|| -> Result<()> {
        broker.terminate()?;
        broker.restart()
    })?;
    let producer = clients::producer(&broker.bootstrap(), &[])?;
    clients::send_one(
        &producer,
        FutureRecord::to("commands")
            .key("dev9")
            .payload("cmd-after-restart"),
    )
    .await?;
    let got = subscriber.wait_for(31, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = subscriber.received();
    ensure!(
        all.len() == 31,
        "expected the 30 records once and the new one, got {} messages (last {:?})",
        all.len(),
        got.last()
    );
    ensure!(
        all.iter()
            .any(|(t, p)| t == "devices/dev9/cmd" && p == b"cmd-after-restart")
    );
    Ok(())
}

#[test]
fn given_a_bridge_topic_and_auto_create_off_when_starting_should_exit_naming_the_topic()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        r#"
[topics]
auto_create = false

[[bridge]]
name = "trucks"
[bridge.mqtt]
host = "127.0.0.1"
port = 1
[[bridge.ingress]]
filter = "trucks/+/gps"
topic = "no-such-topic"
"#,
    )?;
    let data = dir.path().join("data");
    let (status, output) = run_to_exit(
        &[
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data.to_string_lossy(),
        ],
        &[],
        Duration::from_secs(20),
    )?;
    ensure!(!status.success(), "the broker started: {output}");
    ensure!(
        output.contains("no-such-topic") && output.contains("trucks"),
        "the error does not name the bridge and topic: {output}"
    );
    Ok(())
}

#[test]
fn given_overlapping_bridge_filters_when_starting_should_exit_with_code_2_naming_both() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        r#"
[[bridge]]
name = "trucks"
[bridge.mqtt]
host = "127.0.0.1"
[[bridge.ingress]]
filter = "trucks/#"
topic = "all"
[[bridge.ingress]]
filter = "trucks/+/gps"
topic = "gps"
"#,
    )?;
    let (status, output) = run_to_exit(&["--config", &config], &[], Duration::from_secs(20))?;
    ensure!(status.code() == Some(2), "exit {status:?}: {output}");
    ensure!(
        output.contains("trucks/#") && output.contains("trucks/+/gps"),
        "the error does not name both filters: {output}"
    );
    Ok(())
}

/// Payload size of the disk-budget test: incompressible, so the budget fills at a known pace.
const FILL_BYTES: usize = 4_000;
const FILL_MESSAGES: usize = 3_000;
const FILL_BUDGET: u64 = 8 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_full_disk_budget_when_messages_keep_coming_should_hold_them_until_space_is_freed()
-> Result<()> {
    let mosquitto = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[topics]
default_partitions = 1

[[bridge]]
name = "filler"
[bridge.mqtt]
host = "127.0.0.1"
port = {}
[[bridge.ingress]]
filter = "fill/+"
topic = "filling"
"#,
            mosquitto.port()
        ),
    )?;
    let broker = Broker::start(
        BrokerOptions::new()
            .arg("--config")
            .arg(&config)
            .flag("--max-disk-bytes", FILL_BUDGET),
    )?;
    let bootstrap = broker.bootstrap();
    let batch: Vec<(String, Vec<u8>)> = (0..FILL_MESSAGES)
        .map(|i| {
            let mut payload = format!("{i:08}").into_bytes();
            payload.extend(
                (0..FILL_BYTES).map(|j| ((i * 7919 + j).wrapping_mul(2_654_435_761) >> 13) as u8),
            );
            (format!("fill/{}", i % 4), payload)
        })
        .collect();
    // Mosquitto acknowledges the publisher at once; the bridge's session queues the rest.
    Publisher::new(mosquitto.port(), "filler-pub")
        .publish_all(batch, QoS::AtLeastOnce)
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut refusals_seen = 0;
    let mut rounds_stuck = 0;
    loop {
        // Read what is there, then delete exactly that: the bridge resumes by itself once
        // the budget has room again.
        let (records, next) = tokio::task::block_in_place(|| collect_seqs(&bootstrap))?;
        seen.extend(records);
        if seen.len() == FILL_MESSAGES {
            break;
        }
        let mut upto = rdkafka::TopicPartitionList::new();
        upto.add_partition_offset("filling", 0, rdkafka::Offset::Offset(next))?;
        clients::admin(&bootstrap)?
            .delete_records(&upto, &clients::admin_options())
            .await?;
        // Wait for more records, or for the bridge to report the full budget again.
        let refusals = tokio::task::block_in_place(|| {
            wait_until(
                "new records or a new refusal",
                Duration::from_secs(60),
                || {
                    let refusals = broker.log().matches("disk budget exhausted").count();
                    let consumer = clients::consumer(&bootstrap, &[])?;
                    let (_, high) = clients::watermarks(&consumer, "filling", 0)?;
                    Ok((refusals > refusals_seen || high > next).then_some(refusals))
                },
            )
        })?;
        if refusals > refusals_seen {
            rounds_stuck += 1;
        }
        refusals_seen = refusals;
    }
    println!("all {FILL_MESSAGES} messages arrived; the budget was full {rounds_stuck} times");
    ensure!(
        rounds_stuck > 0,
        "the budget never filled: the test proves nothing"
    );
    for i in 0..FILL_MESSAGES {
        ensure!(
            seen.contains(&i),
            "message {i} was lost while the disk was full"
        );
    }
    Ok(())
}

/// The sequence numbers (payload prefix) of every record in `filling`, and the offset after
/// the last one read.
fn collect_seqs(bootstrap: &str) -> Result<(Vec<usize>, i64)> {
    let records = clients::consume_all(bootstrap, "filling", Duration::from_secs(60))?;
    let next = match records.last() {
        Some(r) => r.offset + 1,
        None => clients::watermarks(&clients::consumer(bootstrap, &[])?, "filling", 0)?.0,
    };
    let seqs = records
        .iter()
        .map(|r| {
            let v = r.value.as_deref().unwrap_or_default();
            let prefix = std::str::from_utf8(&v[..8.min(v.len())])?;
            Ok(prefix.parse()?)
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((seqs, next))
}
