//! The bridge's MQTT link over TLS: with the CA that signed Mosquitto's certificate it
//! connects to the TLS listener and bridges messages; with a foreign CA it never connects and
//! says why.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rumqttc::QoS;
use runnel_tests::clients;
use runnel_tests::harness::bridge::{
    Bridge, BridgeToml, TopicReader, latest_status, wait_for_subscription,
};
use runnel_tests::harness::mosquitto::{Mosquitto, MosquittoOptions};
use runnel_tests::harness::mqtt::{Message, publish_all};
use runnel_tests::wait_until;
use runnel_tests::{Broker, BrokerOptions};

const FILTER: &str = "secure/+/data";
const TOPIC: &str = "secure";
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a bridge with the wrong CA gets to report its failed handshakes.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

fn tls_mosquitto() -> Result<Mosquitto> {
    Mosquitto::start_with(MosquittoOptions {
        tls: true,
        ..MosquittoOptions::default()
    })
}

/// The local port of the connection Mosquitto accepted from `client_id`, if it connected.
fn client_port(mosquitto: &Mosquitto, client_id: &str) -> Option<String> {
    let log = mosquitto.log();
    let line = log.lines().find(|line| {
        line.contains("New client connected from ") && line.contains(&format!(" as {client_id} ("))
    })?;
    let from = line.split("New client connected from ").nth(1)?;
    Some(from.split(' ').next()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_test_ca_when_bridging_over_tls_should_deliver_every_message() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mosquitto = tls_mosquitto()?;
    let tls_port = mosquitto.tls_port().context("a TLS port")?;
    let ca_file = mosquitto.ca_file().context("a CA file")?;
    clients::create_topic(&clients::admin(&broker.bootstrap())?, TOPIC, 2, &[]).await?;
    let toml = BridgeToml::new("tls", tls_port)
        .host("localhost")
        .tls(ca_file)
        .ingress(FILTER, TOPIC, &["key_level = 1"]);
    let bridge = Bridge::start(&toml.build(), broker.addr())?;
    wait_for_subscription(&mosquitto, &toml.client_id(), FILTER)?;
    let messages: Vec<Message> = (0..500)
        .map(|i| {
            (
                format!("secure/s{}/data", i % 4),
                format!("reading {i}").into_bytes(),
            )
        })
        .collect();

    let report = publish_all(
        mosquitto.port(),
        "tls-sensors",
        messages.clone(),
        QoS::AtLeastOnce,
    )
    .await?;
    ensure!(report.acked == messages.len(), "{report:?}");
    let bootstrap = broker.bootstrap();
    let records = tokio::task::block_in_place(|| {
        TopicReader::new(&bootstrap, TOPIC)?
            .read_count(messages.len(), ARRIVAL_TIMEOUT)
            .map(<[_]>::to_vec)
    })
    .with_context(|| format!("bridge metrics:\n{}", bridge.metrics_report()))?;

    let mut got: Vec<Vec<u8>> = records.iter().filter_map(|r| r.value.clone()).collect();
    let mut sent: Vec<Vec<u8>> = messages.into_iter().map(|(_, p)| p).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "every message once");
    // The bridge really used the TLS listener.
    let from = client_port(&mosquitto, &toml.client_id())
        .context("Mosquitto logged no connection of the bridge")?;
    let accepted = format!("New connection from {from} on port {tls_port}.");
    assert!(
        mosquitto.log().contains(&accepted),
        "expected {accepted:?} in the Mosquitto log:\n{}",
        mosquitto.log()
    );
    assert_eq!(
        bridge.metric("runnel_bridge_connected", &[("bridge", "tls")])?,
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_foreign_ca_when_connecting_over_tls_should_never_connect_and_report_why()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mosquitto = tls_mosquitto()?;
    // Another broker's test CA, which did not sign this broker's certificate.
    let other = tls_mosquitto()?;
    let tls_port = mosquitto.tls_port().context("a TLS port")?;
    let foreign_ca = other.ca_file().context("a CA file")?;
    clients::create_topic(&clients::admin(&broker.bootstrap())?, TOPIC, 1, &[]).await?;
    let toml = BridgeToml::new("badca", tls_port)
        .host("localhost")
        .tls(foreign_ca)
        .ingress(FILTER, TOPIC, &[]);
    let bridge = Bridge::start(&toml.build(), broker.addr())?;
    let bootstrap = broker.bootstrap();

    // The bridge keeps retrying; its status names the certificate problem.
    let status = tokio::task::block_in_place(|| {
        wait_until(
            "a status record with a certificate error",
            REPORT_TIMEOUT,
            || {
                let status = latest_status(&bootstrap, "badca")?;
                Ok(status.filter(|s| {
                    s["last_error"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase().contains("certificate"))
                }))
            },
        )
    })
    .with_context(|| format!("bridge log:\n{}", bridge.log()))?;

    eprintln!("status of the bridge with the foreign CA: {status}");
    assert_eq!(status["connected"], false, "{status}");
    assert_eq!(
        bridge.metric("runnel_bridge_connected", &[("bridge", "badca")])?,
        0
    );
    assert_eq!(
        bridge.metric("runnel_bridge_reconnects_total", &[("bridge", "badca")])?,
        0,
        "it never was connected, so it never lost a connection"
    );
    assert!(
        client_port(&mosquitto, &toml.client_id()).is_none(),
        "Mosquitto accepted the bridge:\n{}",
        mosquitto.log()
    );
    Ok(())
}
