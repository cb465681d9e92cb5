//! Fetch long polling: a fetch waiting on an empty partition is answered as soon as a record
//! arrives, not when its `max_wait_ms` runs out.
//!
//! This is a behavioural check, not a performance one: the fetch may wait 10 s, the record is
//! produced about 1.5 s after the fetch went out, and the test only asks that the record arrives
//! within 5 s of being produced, well before the broker would have to answer anyway.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions};

const FETCH_WAIT_MAX: Duration = Duration::from_secs(10);
const DELIVERY_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_waiting_fetch_when_a_record_arrives_should_answer_before_max_wait() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "long-poll";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;

    let wait_ms = FETCH_WAIT_MAX.as_millis().to_string();
    let consumer = clients::consumer(&bootstrap, &[("fetch.wait.max.ms", &wait_ms)])?;
    // Metadata first: once the fetch waits on the broker, a request on the same connection
    // queues behind it (Kafka answers a connection's requests in order).
    consumer.fetch_metadata(Some(topic), clients::REQUEST_TIMEOUT)?;
    // An explicit offset: no ListOffsets round trip, the consumer goes straight to Fetch.
    clients::assign(&consumer, topic, &[(0, Offset::Offset(0))])?;
    // Warm up the producer too, then let the consumer's first fetch reach the broker and wait.
    let producer = clients::producer(&bootstrap, &[("linger.ms", "0")])?;
    clients::send_one(
        &producer,
        FutureRecord::<(), _>::to("long-poll-warm-up").payload("x"),
    )
    .await?;
    clients::expect_nothing(&consumer, Duration::from_millis(1500))?;

    let producing = tokio::spawn(async move {
        let sent_at = Instant::now();
        let delivery = clients::send_one(
            &producer,
            FutureRecord::<(), _>::to(topic).payload("wake up"),
        )
        .await;
        (sent_at, delivery)
    });
    let records = tokio::task::block_in_place(|| {
        clients::poll_records(&consumer, 1, FETCH_WAIT_MAX + Duration::from_secs(10))
    })?;
    let received_at = Instant::now();
    let (sent_at, delivery) = producing.await?;
    delivery?;

    let Some(record) = records.first() else {
        bail!("no record received");
    };
    ensure!(record.value_str() == "wake up", "received {record:?}");
    let waited = received_at.duration_since(sent_at);
    eprintln!("the record reached the waiting consumer {waited:?} after it was produced");
    ensure!(
        waited < DELIVERY_BOUND,
        "the record reached the consumer {waited:?} after it was produced: the waiting fetch was \
         not woken up (fetch.wait.max.ms = {FETCH_WAIT_MAX:?})"
    );
    Ok(())
}
