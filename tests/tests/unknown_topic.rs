//! With `--auto-create-topics false`, unknown topics stay unknown: producing fails with
//! UNKNOWN_TOPIC_OR_PARTITION and Metadata lists nothing.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions};

#[tokio::test]
async fn given_auto_create_off_when_producing_to_an_unknown_topic_should_fail_and_create_nothing()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new().flag("--auto-create-topics", "false"))?;
    let bootstrap = broker.bootstrap();
    // Without this librdkafka waits 30 s for the topic to "propagate" before giving up.
    let producer = clients::producer(
        &bootstrap,
        &[
            ("topic.metadata.propagation.max.ms", "500"),
            ("message.timeout.ms", "15000"),
        ],
    )?;
    let result = producer
        .send(
            FutureRecord::<(), _>::to("no-such-topic").payload("lost"),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Ok(delivery) => bail!(
            "the record was accepted at {}/{}",
            delivery.partition,
            delivery.offset
        ),
        Err((error, _)) => {
            let code = error.rdkafka_error_code();
            ensure!(
                matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
                    )
                ),
                "expected an unknown-topic error, got {error} ({code:?})"
            );
        }
    }

    let consumer = clients::consumer(&bootstrap, &[])?;
    let metadata = consumer.fetch_metadata(None, clients::REQUEST_TIMEOUT)?;
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    ensure!(names.is_empty(), "Metadata lists topics {names:?}");

    let metadata = consumer.fetch_metadata(Some("no-such-topic"), clients::REQUEST_TIMEOUT)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == "no-such-topic");
    match topic {
        None => {}
        Some(topic) => {
            let error = topic.error().map(RDKafkaErrorCode::from);
            ensure!(
                error == Some(RDKafkaErrorCode::UnknownTopicOrPartition),
                "Metadata for the unknown topic: error {error:?}, {} partitions",
                topic.partitions().len()
            );
        }
    }
    let metadata = consumer.fetch_metadata(None, clients::REQUEST_TIMEOUT)?;
    ensure!(
        metadata.topics().is_empty(),
        "a Metadata request created a topic"
    );
    Ok(())
}
