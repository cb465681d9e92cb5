//! Idempotent producers: InitProducerId hands out producer ids, and a batch retried after its
//! response was lost is acknowledged with its original offset and stored once — also when
//! the broker was killed in between. Sequence gaps and stale epochs are refused.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, MetadataRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::Offset;
use rdkafka::producer::FutureRecord;
use runnel_tests::raw::RawConnection;
use runnel_tests::{Broker, BrokerOptions, clients};

const TOPIC: &str = "idempotent";

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// One batch of `count` records from `producer_id`/`epoch` starting at sequence `first_seq`.
fn batch(producer_id: i64, epoch: i16, first_seq: i32, count: i32) -> Result<Bytes> {
    // Current timestamps: old ones would be deleted by retention when the broker restarts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: first_seq + i,
            timestamp: now + i64::from(i),
            key: None,
            value: Some(Bytes::from(format!("seq-{}", first_seq + i))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).context("encoding a batch")?;
    Ok(buf.freeze())
}

/// Produces one batch with acks=all; returns (error code, base offset).
fn produce(conn: &mut RawConnection, records: Bytes, correlation_id: i32) -> Result<(i16, i64)> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let response = conn.call(&request, 9, correlation_id)?;
    let partition = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .context("empty produce response")?;
    Ok((partition.error_code, partition.base_offset))
}

fn create_topic(conn: &mut RawConnection) -> Result<()> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name())),
        ]))
        .with_allow_auto_topic_creation(true);
    let response = conn.call(&request, 12, 1)?;
    ensure!(
        response.topics.first().map(|t| t.error_code) == Some(0),
        "auto-create failed: {response:?}"
    );
    Ok(())
}

fn init_producer_id(conn: &mut RawConnection) -> Result<(i64, i16)> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = conn.call(&request, 4, 2)?;
    ensure!(response.error_code == 0, "InitProducerId: {response:?}");
    Ok((*response.producer_id, response.producer_epoch))
}

#[test]
fn given_a_retried_batch_when_the_broker_was_killed_in_between_should_ack_the_original_offset_once()
-> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let mut conn = RawConnection::connect(broker.addr())?;
    create_topic(&mut conn)?;
    let (pid, epoch) = init_producer_id(&mut conn)?;
    let (other_pid, _) = init_producer_id(&mut conn)?;
    ensure!(pid != other_pid, "producer ids must be unique: {pid} twice");

    let first = batch(pid, epoch, 0, 5)?;
    ensure!(
        produce(&mut conn, first.clone(), 10)? == (0, 0),
        "first append"
    );
    // The client never saw the answer and retries: same offset, nothing appended.
    ensure!(
        produce(&mut conn, first.clone(), 11)? == (0, 0),
        "retry on the same broker"
    );

    broker.kill9()?;
    broker.restart()?;
    let mut conn = RawConnection::connect(broker.addr())?;
    ensure!(
        produce(&mut conn, first, 12)? == (0, 0),
        "retry after kill -9"
    );
    ensure!(
        produce(&mut conn, batch(pid, epoch, 5, 5)?, 13)? == (0, 5),
        "the next batch follows the first five records: duplicates were not stored"
    );

    let (code, _) = produce(&mut conn, batch(pid, epoch, 20, 1)?, 14)?;
    ensure!(
        code == ResponseError::OutOfOrderSequenceNumber.code(),
        "a sequence gap must be refused, got error {code}"
    );
    ensure!(
        produce(&mut conn, batch(pid, epoch + 1, 0, 1)?, 15)? == (0, 10),
        "new epoch"
    );
    let (code, _) = produce(&mut conn, batch(pid, epoch, 10, 1)?, 16)?;
    ensure!(
        code == ResponseError::InvalidProducerEpoch.code(),
        "the old epoch is fenced, got error {code}"
    );

    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    let (low, high) = clients::watermarks(&consumer, TOPIC, 0)?;
    ensure!(
        (low, high) == (0, 11),
        "watermarks {low}..{high}, expected 0..11"
    );
    Ok(())
}

#[tokio::test]
async fn given_librdkafka_with_idempotence_when_producing_should_store_each_record_once_in_order()
-> Result<()> {
    const RECORDS: usize = 5_000;
    let broker = Broker::start(BrokerOptions::new().flag("--default-partitions", 2))?;
    let producer = clients::producer(
        &broker.bootstrap(),
        &[("enable.idempotence", "true"), ("linger.ms", "2")],
    )?;
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("k{}", i % 7);
        let value = format!("{i}");
        let record = FutureRecord::to("idem-librdkafka")
            .key(&key)
            .payload(&value);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| anyhow::anyhow!("enqueue failed: {e}"))?,
        );
    }
    for d in deliveries {
        d.await
            .context("delivery future dropped")?
            .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
    }
    let consumer = clients::consumer(&broker.bootstrap(), &[])?;
    clients::assign(
        &consumer,
        "idem-librdkafka",
        &[(0, Offset::Beginning), (1, Offset::Beginning)],
    )?;
    let records = clients::poll_records(&consumer, RECORDS, Duration::from_secs(30))?;
    let mut seen = std::collections::BTreeSet::new();
    let mut last_per_key = std::collections::HashMap::new();
    for r in &records {
        let n: usize = r.value_str().parse().context("value")?;
        ensure!(seen.insert(n), "record {n} stored twice");
        if let Some(prev) = last_per_key.insert(r.key_str(), n) {
            ensure!(
                prev < n,
                "key {} out of order: {prev} before {n}",
                r.key_str()
            );
        }
    }
    ensure!(
        seen.len() == RECORDS,
        "{} distinct records of {RECORDS}",
        seen.len()
    );
    clients::expect_nothing(&consumer, Duration::from_millis(500))?;
    Ok(())
}
