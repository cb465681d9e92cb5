//! Tests of the MQTT harness itself: a real Mosquitto (plain and TLS) and the rumqttc test
//! clients, without Runnel. If these fail, the bridge tests built on them cannot be trusted.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use rumqttc::{AsyncClient, ConnectionError, QoS};
use runnel_tests::harness::mosquitto::{Mosquitto, MosquittoOptions};
use runnel_tests::harness::mqtt::{
    Message, Publisher, Subscriber, mqtt_options, mqtt_tls_options, publish_all,
};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// `count` messages on `topics` topics under `prefix`, payloads `prefix-<i>`, all distinct.
fn numbered(prefix: &str, topics: usize, count: usize) -> Vec<Message> {
    (0..count)
        .map(|i| {
            (
                format!("{prefix}/{}", i % topics),
                format!("{prefix}-{i}").into_bytes(),
            )
        })
        .collect()
}

fn distinct(messages: &[Message]) -> BTreeSet<Message> {
    messages.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_plain_listener_when_publishing_qos1_should_deliver_every_message() -> Result<()> {
    let mosquitto = Mosquitto::start()?;
    let subscriber =
        Subscriber::start(mosquitto.port(), "plain-sub", "plain/#", QoS::AtLeastOnce).await?;
    let messages = numbered("plain", 4, 2_000);

    let report = publish_all(
        mosquitto.port(),
        "plain-pub",
        messages.clone(),
        QoS::AtLeastOnce,
    )
    .await?;
    let received = subscriber
        .wait_for(messages.len(), DELIVERY_TIMEOUT)
        .await?;

    assert_eq!(report.total, 2_000);
    assert_eq!(report.acked, 2_000);
    assert_eq!(report.sent, 2_000, "no reconnect, so no message sent twice");
    assert_eq!(report.connection_errors, 0);
    assert_eq!(
        received.len(),
        messages.len(),
        "no duplicates without reconnects"
    );
    assert_eq!(distinct(&received), distinct(&messages));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_qos0_when_publishing_should_count_written_messages_as_acked() -> Result<()> {
    let mosquitto = Mosquitto::start()?;
    let subscriber =
        Subscriber::start(mosquitto.port(), "qos0-sub", "qos0/#", QoS::AtMostOnce).await?;
    let messages = numbered("qos0", 1, 100);

    let report = publish_all(
        mosquitto.port(),
        "qos0-pub",
        messages.clone(),
        QoS::AtMostOnce,
    )
    .await?;
    // Loopback, one broker, no restart: QoS 0 arrives too, in practice.
    let received = subscriber
        .wait_for(messages.len(), DELIVERY_TIMEOUT)
        .await?;

    assert_eq!((report.acked, report.sent), (100, 100));
    assert_eq!(received, messages, "one topic, one publisher: in order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_tls_listener_when_trusting_the_test_ca_should_deliver_every_message() -> Result<()>
{
    let mosquitto = Mosquitto::start_with(MosquittoOptions {
        tls: true,
        ..MosquittoOptions::default()
    })?;
    let tls_port = mosquitto.tls_port().expect("a TLS port");
    let ca_file = mosquitto.ca_file().expect("a CA file");
    assert_ne!(tls_port, mosquitto.port());
    let subscriber = Subscriber::connect(
        mqtt_tls_options(tls_port, "tls-sub", ca_file)?,
        "tls/#",
        QoS::AtLeastOnce,
    )
    .await?;
    let messages = numbered("tls", 2, 500);

    let report = Publisher::with_options(mqtt_tls_options(tls_port, "tls-pub", ca_file)?)
        .publish_all(messages.clone(), QoS::AtLeastOnce)
        .await?;
    let received = subscriber
        .wait_for(messages.len(), DELIVERY_TIMEOUT)
        .await?;

    assert_eq!(report.acked, 500);
    assert_eq!(received.len(), 500);
    assert_eq!(distinct(&received), distinct(&messages));
    let log = mosquitto.log();
    assert!(
        log.contains(&format!("on port {tls_port}")),
        "the clients used the TLS listener:\n{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_foreign_ca_when_connecting_over_tls_should_fail_the_handshake() -> Result<()> {
    let mosquitto = Mosquitto::start_with(MosquittoOptions {
        tls: true,
        ..MosquittoOptions::default()
    })?;
    let other = Mosquitto::start_with(MosquittoOptions {
        tls: true,
        ..MosquittoOptions::default()
    })?;
    let tls_port = mosquitto.tls_port().expect("a TLS port");
    let foreign_ca = other.ca_file().expect("a CA file");

    let (_client, mut eventloop) = AsyncClient::new(
        mqtt_tls_options(tls_port, "foreign-client", foreign_ca)?,
        10,
    );
    let result = tokio::time::timeout(DELIVERY_TIMEOUT, eventloop.poll()).await?;

    match result {
        Err(ConnectionError::Tls(error)) => {
            let error = error.to_string();
            assert!(
                error.contains("certificate"),
                "unexpected TLS error: {error}"
            );
        }
        other => panic!("expected a TLS certificate error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_offline_persistent_subscriber_when_mosquitto_restarts_should_deliver_the_queue()
-> Result<()> {
    let mut mosquitto = Mosquitto::start()?;
    let mut options = mqtt_options(mosquitto.port(), "persistent-sub");
    options.set_clean_session(false);
    let subscriber = Subscriber::connect(options.clone(), "queued/#", QoS::AtLeastOnce).await?;
    assert!(subscriber.stop().await?.is_empty());
    let messages = numbered("queued", 3, 1_000);

    let report = publish_all(
        mosquitto.port(),
        "persistent-pub",
        messages.clone(),
        QoS::AtLeastOnce,
    )
    .await?;
    assert_eq!(report.acked, 1_000);
    let port = mosquitto.port();
    mosquitto.restart()?;
    assert_eq!(mosquitto.port(), port, "same port after a restart");
    let subscriber = Subscriber::connect(options, "queued/#", QoS::AtLeastOnce).await?;
    let received = subscriber
        .wait_for(messages.len(), DELIVERY_TIMEOUT)
        .await?;

    assert_eq!(distinct(&received), distinct(&messages));
    assert_eq!(
        received.len(),
        1_000,
        "nothing was in flight, so nothing twice"
    );
    assert!(mosquitto.log().contains("=== harness: start #2"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_restart_mid_batch_when_publishing_should_ack_and_deliver_every_message()
-> Result<()> {
    let mut mosquitto = Mosquitto::start()?;
    let mut options = mqtt_options(mosquitto.port(), "midbatch-sub");
    options.set_clean_session(false);
    let subscriber = Subscriber::connect(options, "midbatch/#", QoS::AtLeastOnce).await?;
    let messages = numbered("midbatch", 4, 30_000);
    let publisher = Publisher::new(mosquitto.port(), "midbatch-pub");
    let batch = messages.clone();
    let publishing =
        tokio::spawn(async move { publisher.publish_all(batch, QoS::AtLeastOnce).await });

    // Early in the batch, so that the publisher is cut off mid-way.
    subscriber.wait_for(200, DELIVERY_TIMEOUT).await?;
    tokio::task::block_in_place(|| mosquitto.restart())?;
    let report = publishing.await??;
    eprintln!("publisher: {report:?}");
    let received = subscriber
        .wait_for(messages.len(), DELIVERY_TIMEOUT)
        .await?;

    assert_eq!(report.acked, 30_000);
    assert!(
        report.connection_errors >= 1,
        "the restart should have cut the publisher off: {report:?}"
    );
    assert_eq!(
        distinct(&received),
        distinct(&messages),
        "at least once: no loss"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_kill9_mid_batch_when_the_session_is_lost_should_resend_and_ack_every_message()
-> Result<()> {
    let mut mosquitto = Mosquitto::start()?;
    let subscriber =
        Subscriber::start(mosquitto.port(), "lost-sub", "lost/#", QoS::AtLeastOnce).await?;
    let messages = numbered("lost", 2, 30_000);
    let publisher = Publisher::new(mosquitto.port(), "lost-pub");
    let publishing =
        tokio::spawn(async move { publisher.publish_all(messages, QoS::AtLeastOnce).await });

    subscriber.wait_for(200, DELIVERY_TIMEOUT).await?;
    // Killed before it ever saved its database: the restarted broker knows no session.
    mosquitto.kill9()?;
    tokio::task::block_in_place(|| mosquitto.restart())?;
    let report = publishing.await??;
    eprintln!("publisher: {report:?}");

    assert_eq!(report.acked, 30_000);
    assert!(report.connection_errors >= 1, "{report:?}");
    assert!(
        report.resent >= 1,
        "the lost session's in-flight messages should have been sent again: {report:?}"
    );
    // The request rumqttc had not written yet when the connection broke is resent, not sent twice.
    assert!(
        report.sent >= 30_000 && report.sent <= 30_000 + report.resent,
        "{report:?}"
    );
    Ok(())
}

#[test]
fn given_a_killed_mosquitto_when_restarting_should_accept_connections_on_the_same_port()
-> Result<()> {
    let mut mosquitto = Mosquitto::start()?;
    let port = mosquitto.port();

    let status = mosquitto.kill9()?;
    assert!(!status.success());
    assert!(!mosquitto.is_running()?);
    mosquitto.restart()?;

    assert!(mosquitto.is_running()?);
    assert_eq!(mosquitto.port(), port);
    std::net::TcpStream::connect(("127.0.0.1", port))?;
    mosquitto.stop()?;
    assert!(!mosquitto.is_running()?);
    Ok(())
}
