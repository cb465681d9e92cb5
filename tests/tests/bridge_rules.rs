//! The bridge's rules and what it reports about them: payloads that fail a rule's JSON checks
//! go to its dead-letter topic unchanged and with the reason, valid ones to the main topic,
//! and the counters in the status topic and the metrics endpoint match what was sent; a config
//! the bridge cannot run stops it at startup with exit code 2 and a message naming the problem.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rumqttc::QoS;
use runnel_tests::clients::{self, Record};
use runnel_tests::harness::bridge::{
    self, Bridge, BridgeToml, TopicReader, header, latest_status, wait_for_subscription,
};
use runnel_tests::harness::mosquitto::Mosquitto;
use runnel_tests::harness::mqtt::{Message, publish_all};
use runnel_tests::wait_until;
use runnel_tests::{Broker, BrokerOptions};

const BRIDGE: &str = "rules";
const FILTER: &str = "sensors/+/reading";
const TOPIC: &str = "readings";
const DEAD_LETTERS: &str = "readings-dlq";
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(120);
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// What a payload should become, and (for dead letters) what the reason must mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Valid,
    Dead(&'static str),
}

/// `count` readings from 5 devices, cycling through valid payloads and every kind of bad one.
/// Every payload is distinct (it carries its index), so records can be matched to messages.
fn readings(count: usize) -> Vec<(Message, Expect)> {
    (0..count)
        .map(|i| {
            let device = format!("dev{}", i % 5);
            let (payload, expect): (Vec<u8>, Expect) = match i % 8 {
                // A null value counts as present.
                0 => (
                    format!(r#"{{"i":{i},"value":null}}"#).into_bytes(),
                    Expect::Valid,
                ),
                1 => (
                    format!(r#"{{"i":{i},"value"#).into_bytes(),
                    Expect::Dead("not valid JSON"),
                ),
                2 => (
                    format!("not json at all #{i}").into_bytes(),
                    Expect::Dead("not valid JSON"),
                ),
                3 => {
                    let mut bytes = vec![0xff, 0xfe, 0x00, 0x80];
                    bytes.extend_from_slice(&(i as u64).to_be_bytes());
                    (bytes, Expect::Dead("not valid JSON"))
                }
                4 => (
                    format!(r#"{{"i":{i},"unit":"C"}}"#).into_bytes(),
                    Expect::Dead("required field `value` is missing"),
                ),
                _ => (
                    format!(r#"{{"i":{i},"value":{}.5,"unit":"C"}}"#, i % 40).into_bytes(),
                    Expect::Valid,
                ),
            };
            ((format!("sensors/{device}/reading"), payload), expect)
        })
        .collect()
}

fn status_counters(status: &serde_json::Value) -> Option<(u64, u64, u64, u64)> {
    let rule = status["ingress"].get(0)?;
    Some((
        rule["received"].as_u64()?,
        rule["written"].as_u64()?,
        rule["dead_lettered"].as_u64()?,
        rule["dropped"].as_u64()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_invalid_and_incomplete_payloads_when_bridged_should_dead_letter_them_unchanged()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mosquitto = Mosquitto::start()?;
    let admin = clients::admin(&broker.bootstrap())?;
    clients::create_topic(&admin, TOPIC, 2, &[]).await?;
    clients::create_topic(&admin, DEAD_LETTERS, 1, &[]).await?;
    let toml = BridgeToml::new(BRIDGE, mosquitto.port()).ingress(
        FILTER,
        TOPIC,
        &[
            "key_level = 1",
            "validate = \"json\"",
            "require = [\"value\"]",
            "dead_letter_topic = \"readings-dlq\"",
        ],
    );
    let bridge = Bridge::start(&toml.build(), broker.addr())?;
    wait_for_subscription(&mosquitto, &toml.client_id(), FILTER)?;
    let cases = readings(2_000);
    let expected: BTreeMap<Vec<u8>, (String, Expect)> = cases
        .iter()
        .map(|((topic, payload), expect)| (payload.clone(), (topic.clone(), *expect)))
        .collect();
    let valid = cases.iter().filter(|(_, e)| *e == Expect::Valid).count();
    let dead = cases.len() - valid;

    let messages: Vec<Message> = cases.iter().map(|(m, _)| m.clone()).collect();
    let report = publish_all(mosquitto.port(), "sensors", messages, QoS::AtLeastOnce).await?;
    ensure!(report.acked == cases.len(), "{report:?}");
    let bootstrap = broker.bootstrap();
    let (main, dead_letters) = tokio::task::block_in_place(|| -> Result<_> {
        let main = TopicReader::new(&bootstrap, TOPIC)?
            .read_count(valid, ARRIVAL_TIMEOUT)?
            .to_vec();
        let dead_letters = TopicReader::new(&bootstrap, DEAD_LETTERS)?
            .read_count(dead, ARRIVAL_TIMEOUT)?
            .to_vec();
        Ok((main, dead_letters))
    })
    .with_context(|| format!("bridge metrics:\n{}", bridge.metrics_report()))?;

    // Nothing lost, nothing twice, each payload where its rule sends it.
    assert_eq!(main.len() + dead_letters.len(), cases.len());
    let mut seen = BTreeMap::new();
    for (topic, records) in [(TOPIC, &main), (DEAD_LETTERS, &dead_letters)] {
        for record in records.iter() {
            let value = record.value.clone().unwrap_or_default();
            let (mqtt_topic, expect) = expected
                .get(&value)
                .with_context(|| format!("{topic} holds a payload nobody sent: {record:?}"))?;
            ensure!(
                seen.insert(value.clone(), topic).is_none(),
                "payload {:?} written twice",
                String::from_utf8_lossy(&value)
            );
            check_record(record, topic, mqtt_topic, *expect)?;
        }
    }
    assert_eq!(seen.len(), cases.len(), "every payload exactly once");

    let written = bridge.metric("runnel_bridge_written_total", &[("topic", TOPIC)])?;
    let dead_lettered = bridge.metric("runnel_bridge_dead_lettered_total", &[("topic", TOPIC)])?;
    let received = bridge.metric("runnel_bridge_received_total", &[("topic", TOPIC)])?;
    let dropped = bridge.metric("runnel_bridge_dropped_total", &[("topic", TOPIC)])?;
    assert_eq!(
        (received, written, dead_lettered, dropped),
        (cases.len() as i64, valid as i64, dead as i64, 0),
        "metrics (received, written, dead_lettered, dropped)"
    );

    // The status record catches up within a few status intervals; then it must match exactly.
    let status = tokio::task::block_in_place(|| {
        wait_until(
            "a status record counting every message",
            STATUS_TIMEOUT,
            || {
                let status = latest_status(&bootstrap, BRIDGE)?;
                Ok(status.filter(|s| {
                    status_counters(s).is_some_and(|(_, w, d, _)| w + d >= cases.len() as u64)
                }))
            },
        )
    })?;
    assert_eq!(status["bridge"], BRIDGE);
    assert_eq!(status["connected"], true);
    assert_eq!(status["ingress"][0]["filter"], FILTER);
    assert_eq!(status["ingress"][0]["topic"], TOPIC);
    assert_eq!(
        status_counters(&status),
        Some((cases.len() as u64, valid as u64, dead as u64, 0)),
        "status (received, written, dead_lettered, dropped): {status}"
    );
    Ok(())
}

/// Key, MQTT headers, and for dead letters the reason and the rule.
fn check_record(record: &Record, topic: &str, mqtt_topic: &str, expect: Expect) -> Result<()> {
    let device = mqtt_topic.split('/').nth(1).context("device level")?;
    ensure!(record.key_str() == device, "key of {record:?}");
    ensure!(
        header(record, "mqtt.topic") == Some(mqtt_topic.as_bytes()),
        "mqtt.topic of {record:?}"
    );
    match expect {
        Expect::Valid => {
            ensure!(
                topic == TOPIC,
                "a valid payload went to {topic}: {record:?}"
            );
            ensure!(
                header(record, "runnel.dlq.reason").is_none(),
                "a valid record has a dead-letter reason: {record:?}"
            );
        }
        Expect::Dead(reason) => {
            ensure!(
                topic == DEAD_LETTERS,
                "an invalid payload went to {topic}: {record:?}"
            );
            let got =
                String::from_utf8_lossy(header(record, "runnel.dlq.reason").unwrap_or_default())
                    .into_owned();
            ensure!(
                got.contains(reason),
                "reason {got:?} should mention {reason:?}: {record:?}"
            );
            ensure!(
                header(record, "runnel.dlq.rule") == Some(FILTER.as_bytes()),
                "runnel.dlq.rule of {record:?}"
            );
        }
    }
    Ok(())
}

/// Runs the bridge on `toml` against `broker` and returns its output once it exited with 2.
fn startup_error(toml: &str, broker: &Broker) -> Result<String> {
    let (status, output) = bridge::run_to_exit(toml, &broker.bootstrap())?;
    ensure!(
        status.code() == Some(2),
        "expected exit code 2, got {status}; output:\n{output}"
    );
    Ok(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rule_topic_that_does_not_exist_when_starting_should_exit_2_naming_it() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let admin = clients::admin(&broker.bootstrap())?;
    clients::create_topic(&admin, "present", 1, &[]).await?;
    clients::create_topic(&admin, "present-dlq", 1, &[]).await?;
    let port = 1; // Never contacted: the topics are checked first.
    let cases = [
        (
            BridgeToml::new("t1", port).ingress("a/+", "absent-topic", &[]),
            "absent-topic",
        ),
        (
            BridgeToml::new("t2", port).ingress(
                "a/+",
                "present",
                &["validate = \"json\"", "dead_letter_topic = \"absent-dlq\""],
            ),
            "absent-dlq",
        ),
        (
            BridgeToml::new("t3", port).egress("absent-commands", "d/{key}", &[]),
            "absent-commands",
        ),
    ];
    for (toml, topic) in cases {
        let output = tokio::task::block_in_place(|| startup_error(&toml.build(), &broker))?;
        assert!(
            output.contains(&format!("\"{topic}\"")) && output.contains("does not exist"),
            "the message should name {topic:?} and say it does not exist:\n{output}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_overlapping_filters_when_starting_should_exit_2_naming_both() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let toml = BridgeToml::new("overlap", 1)
        .ingress("plant/+/temp", "temps", &[])
        .ingress("plant/line1/#", "line1", &[]);

    let output = tokio::task::block_in_place(|| startup_error(&toml.build(), &broker))?;

    assert!(
        output.contains("\"plant/+/temp\"")
            && output.contains("\"plant/line1/#\"")
            && output.contains("overlap"),
        "the message should name both filters:\n{output}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_json_rule_without_dead_letter_topic_when_starting_should_exit_2_naming_the_key()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let toml =
        BridgeToml::new("nodlq", 1).ingress("plant/+/temp", "temps", &["require = [\"celsius\"]"]);

    let output = tokio::task::block_in_place(|| startup_error(&toml.build(), &broker))?;

    assert!(
        output.contains("`dead_letter_topic`") && output.contains("plant/+/temp"),
        "the message should name the rule and `dead_letter_topic`:\n{output}"
    );
    Ok(())
}
