//! Broken frames close the connection that sent them and nothing else: a healthy rdkafka
//! producer and consumer on other connections keep working before and after, and the broker
//! process stays up.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kafka_protocol::messages::ApiKey;
use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use runnel_tests::raw::{self, RawConnection};
use runnel_tests::{Broker, BrokerOptions, clients};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A healthy client pair on its own connections, and the number of records it has round-tripped.
struct Healthy {
    producer: FutureProducer,
    consumer: BaseConsumer,
    sent: usize,
}

impl Healthy {
    async fn new(bootstrap: &str, topic: &str) -> Result<Self> {
        clients::create_topic(&clients::admin(bootstrap)?, topic, 1, &[]).await?;
        let consumer = clients::consumer(bootstrap, &[])?;
        clients::assign(&consumer, topic, &[(0, Offset::Offset(0))])?;
        let mut healthy = Healthy {
            producer: clients::producer(bootstrap, &[])?,
            consumer,
            sent: 0,
        };
        healthy.round_trip(topic).await?;
        Ok(healthy)
    }

    /// Produces one record and consumes it.
    async fn round_trip(&mut self, topic: &str) -> Result<()> {
        let value = format!("healthy-{}", self.sent);
        let delivery = clients::send_one(
            &self.producer,
            FutureRecord::<(), _>::to(topic).payload(&value),
        )
        .await
        .context("the healthy producer")?;
        ensure!(
            delivery.offset == i64::try_from(self.sent)?,
            "healthy record {} at offset {}",
            self.sent,
            delivery.offset
        );
        self.sent += 1;
        let records = clients::poll_records(&self.consumer, 1, Duration::from_secs(15))
            .context("the healthy consumer")?;
        ensure!(
            records[0].value_str() == value,
            "healthy consumer read {:?}",
            records[0]
        );
        Ok(())
    }
}

/// Sends `bytes` on a fresh connection, expects the broker to close it, and checks that the
/// healthy clients and the process are unaffected.
async fn expect_rejected(what: &str, bytes: &[u8]) -> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let topic = "bystander";
    let mut healthy = Healthy::new(&broker.bootstrap(), topic).await?;

    let mut conn = RawConnection::connect(broker.addr())?;
    conn.send(bytes)?;
    conn.expect_closed(CLOSE_TIMEOUT)
        .with_context(|| format!("{what}: the connection was not closed"))?;

    healthy
        .round_trip(topic)
        .await
        .with_context(|| format!("after {what}"))?;
    ensure!(broker.is_running()?, "the broker died after {what}");
    // A new connection still gets well-formed answers.
    ensure!(
        !raw::api_versions(broker.addr())?.is_empty(),
        "ApiVersions after {what} lists no apis"
    );
    Ok(())
}

/// Deterministic bytes that are not a Kafka request.
fn garbage(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_be_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn given_a_frame_longer_than_max_request_size_when_received_should_close_only_that_connection()
-> Result<()> {
    // Only the length is sent: the broker must not wait for (or allocate) 2 GiB.
    expect_rejected(
        "a declared length of 0x7fffffff",
        &0x7fff_ffff_u32.to_be_bytes(),
    )
    .await
}

#[tokio::test]
async fn given_a_negative_frame_length_when_received_should_close_only_that_connection()
-> Result<()> {
    expect_rejected("a declared length of -1", &(-1_i32).to_be_bytes()).await
}

#[tokio::test]
async fn given_garbage_with_a_plausible_length_when_received_should_close_only_that_connection()
-> Result<()> {
    let mut payload = garbage(64);
    // Make sure it does not start like a request the broker knows: api key 0x7f7f.
    payload[0] = 0x7f;
    payload[1] = 0x7f;
    expect_rejected("64 bytes of garbage", &raw::frame(&payload)).await
}

#[tokio::test]
async fn given_a_valid_header_with_a_garbage_body_when_received_should_close_only_that_connection()
-> Result<()> {
    // Metadata v12 (flexible): the body starts with a topics array whose varint never ends.
    let mut request = raw::request_header(ApiKey::Metadata, 12, 1)?;
    request.extend_from_slice(&[0xff; 32]);
    expect_rejected(
        "a Metadata request with an undecodable body",
        &raw::frame(&request),
    )
    .await
}

#[tokio::test]
async fn given_a_truncated_header_when_received_should_close_only_that_connection() -> Result<()> {
    // Three bytes cannot hold api_key, api_version and correlation_id.
    expect_rejected("a 3-byte request header", &raw::frame(&[0x00, 0x03, 0x00])).await
}

#[tokio::test]
async fn given_bad_connections_when_repeated_should_keep_serving_the_healthy_clients() -> Result<()>
{
    let mut broker = Broker::start(BrokerOptions::new())?;
    let topic = "bystander";
    let mut healthy = Healthy::new(&broker.bootstrap(), topic).await?;
    let oversized = 0x7fff_ffff_u32.to_be_bytes().to_vec();
    let truncated = raw::frame(&[0x00, 0x12, 0x00]);
    let mut produce_garbage = raw::request_header(ApiKey::Produce, 9, 1)?;
    produce_garbage.extend_from_slice(&garbage(200));
    let produce_garbage = raw::frame(&produce_garbage);
    for round in 0..10 {
        for bytes in [&oversized, &truncated, &produce_garbage] {
            let mut conn = RawConnection::connect(broker.addr())?;
            conn.send(bytes)?;
            conn.expect_closed(CLOSE_TIMEOUT)
                .with_context(|| format!("round {round}: a bad connection stayed open"))?;
        }
        healthy
            .round_trip(topic)
            .await
            .with_context(|| format!("round {round}"))?;
    }
    ensure!(broker.is_running()?, "the broker died");
    Ok(())
}
