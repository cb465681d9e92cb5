//! [`Producer`]: writes record batches to partition leaders with acks=all, idempotently by
//! default, retrying retriable errors until a delivery deadline.
//!
//! Invariants:
//! - one [`Producer::send`] runs at a time (the state lock is held across it), so batches of
//!   a partition reach the leader in sequence order and a retry re-sends the *same* bytes
//!   with the same sequence numbers — the broker deduplicates them (Kafka's idempotence);
//! - a partition's sequence advances when its batch is encoded; if the outcome of a batch
//!   stays unknown (deadline), the next batch is out of order for the broker, which answers
//!   OUT_OF_ORDER_SEQUENCE_NUMBER, and the producer takes a new producer id. Only that case
//!   can duplicate records, and only records whose send was reported as failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use tokio::sync::Mutex;

use crate::cluster::Client;
use crate::conn::Connection;
use crate::error::{ClientError, Result};
use crate::records::{BatchIdentity, OutRecord, encode_batch};

/// Produce versions whose fields we fill (topic names, not ids).
const PRODUCE_VERSIONS: (i16, i16) = (3, 11);
const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 4);

/// How a [`Producer`] writes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Deduplicate retries with a producer id and sequence numbers (forces acks=all).
    pub idempotent: bool,
    /// 1 (leader only) or -1 (all in-sync replicas).
    pub acks: i16,
    pub compression: Compression,
    /// How long one [`Producer::send`] keeps retrying.
    pub delivery_timeout: Duration,
    /// First pause between retries; doubles up to one second.
    pub retry_backoff: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            idempotent: true,
            acks: -1,
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(50),
        }
    }
}

/// Records for one partition.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<OutRecord>,
}

/// An idempotent (by default) producer; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Producer {
    client: Client,
    config: ProducerConfig,
    state: Mutex<ProducerState>,
}

#[derive(Debug)]
struct ProducerState {
    producer_id: i64,
    epoch: i16,
    sequences: HashMap<(String, i32), i32>,
}

/// One encoded RecordBatch for one partition, as [`send_encoded`] writes it.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub topic: String,
    pub partition: i32,
    /// Records in the batch (for error messages).
    pub count: i32,
    pub bytes: Bytes,
}

/// One batch on its way.
struct Slot {
    index: usize,
    batch: EncodedBatch,
}

impl Producer {
    pub fn new(client: Client, mut config: ProducerConfig) -> Self {
        if config.idempotent {
            config.acks = -1;
        }
        Producer {
            client,
            config,
            state: Mutex::new(ProducerState {
                producer_id: -1,
                epoch: -1,
                sequences: HashMap::new(),
            }),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes every batch and returns, per batch in order, its base offset or why it
    /// failed. A batch reported as written is durable by the `acks` setting.
    pub async fn send(&self, batches: Vec<PartitionBatch>) -> Vec<Result<i64>> {
        let mut state = self.state.lock().await;
        let mut results: Vec<Option<Result<i64>>> = (0..batches.len()).map(|_| None).collect();
        if self.config.idempotent
            && state.producer_id < 0
            && let Err(e) = self.init_producer_id(&mut state).await
        {
            return fail_all(results, e);
        }
        let mut slots = Vec::with_capacity(batches.len());
        for (index, b) in batches.iter().enumerate() {
            match self.encode(&mut state, b) {
                Ok((count, bytes)) => slots.push(Slot {
                    index,
                    batch: EncodedBatch {
                        topic: b.topic.clone(),
                        partition: b.partition,
                        count,
                        bytes,
                    },
                }),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut backoff = self.config.retry_backoff;
        let mut last_error = None;
        while !slots.is_empty() {
            attempts += 1;
            // Kafka takes one batch per partition per request: send the first pending batch
            // of each partition now, the rest in later rounds, so a partition's batches are
            // written in order.
            let (now, later) = first_per_partition(slots);
            let encoded: Vec<EncodedBatch> = now.iter().map(|s| s.batch.clone()).collect();
            let outcome = send_encoded(&self.client, self.config.acks, &encoded).await;
            let mut retry = later;
            let mut reset = false;
            let mut failed = false;
            for (slot, result) in now.into_iter().zip(outcome) {
                match result {
                    Ok(offset) => results[slot.index] = Some(Ok(offset)),
                    Err(e) if needs_new_producer_id(&e) && self.config.idempotent => {
                        reset = true;
                        failed = true;
                        last_error = Some(e);
                        retry.push(slot);
                    }
                    Err(e) if e.is_retriable() => {
                        if e.needs_metadata() {
                            self.client.forget_topic(&slot.batch.topic);
                        }
                        failed = true;
                        last_error = Some(e);
                        retry.push(slot);
                    }
                    Err(e) => results[slot.index] = Some(Err(e)),
                }
            }
            retry.sort_by_key(|s| s.index);
            slots = retry;
            if slots.is_empty() {
                break;
            }
            if !failed {
                continue;
            }
            if started.elapsed() >= self.config.delivery_timeout {
                let last = last_error
                    .take()
                    .unwrap_or(ClientError::NoBroker(String::new()));
                for s in slots.drain(..) {
                    results[s.index] = Some(Err(ClientError::Exhausted {
                        attempts,
                        elapsed_ms: started.elapsed().as_millis(),
                        last: Box::new(last.clone()),
                    }));
                }
                break;
            }
            if let Some(e) = &last_error {
                tracing::debug!(error = %e, attempts, "retrying produce");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            if reset {
                if let Err(e) = self.init_producer_id(&mut state).await {
                    last_error = Some(e);
                    continue;
                }
                for slot in &mut slots {
                    let batch = &batches[slot.index];
                    match self.encode(&mut state, batch) {
                        Ok((_, bytes)) => slot.batch.bytes = bytes,
                        Err(e) => last_error = Some(e),
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ClientError::NoBroker("not sent".into()))))
            .collect()
    }

    fn encode(&self, state: &mut ProducerState, batch: &PartitionBatch) -> Result<(i32, Bytes)> {
        let count = i32::try_from(batch.records.len()).unwrap_or(i32::MAX);
        let identity = if self.config.idempotent {
            let seq = state
                .sequences
                .entry((batch.topic.clone(), batch.partition))
                .or_insert(0);
            let base = *seq;
            *seq = seq.wrapping_add(count) & i32::MAX;
            BatchIdentity {
                producer_id: state.producer_id,
                producer_epoch: state.epoch,
                base_sequence: base,
            }
        } else {
            BatchIdentity::NONE
        };
        let bytes =
            encode_batch(&batch.records, identity, self.config.compression).map_err(|message| {
                ClientError::Protocol {
                    addr: String::new(),
                    api: "Produce",
                    message: format!(
                        "encoding a batch for {}/{}: {message}",
                        batch.topic, batch.partition
                    ),
                }
            })?;
        Ok((count, bytes))
    }

    async fn init_producer_id(&self, state: &mut ProducerState) -> Result<()> {
        let (producer_id, epoch) = init_producer_id(&self.client).await?;
        state.producer_id = producer_id;
        state.epoch = epoch;
        state.sequences.clear();
        tracing::debug!(producer_id, "producer id assigned");
        Ok(())
    }
}

/// Asks the cluster for a fresh idempotent producer id and epoch (no transactional id).
pub async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
    let conn = client.any_connection().await?;
    let response = conn
        .call(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            INIT_PRODUCER_ID_VERSIONS,
        )
        .await?;
    if let Some(e) = ClientError::kafka("InitProducerId", response.error_code) {
        return Err(e);
    }
    Ok((response.producer_id.0, response.producer_epoch))
}

/// One attempt: every batch sent once to its partition's leader (one request per leader,
/// concurrently); a result per batch, in order. At most one batch per partition: Kafka takes
/// one batch per partition per request. No retries — callers decide (the [`Producer`], or a
/// caller that keeps its own sequence numbers, like the uplink).
pub async fn send_encoded(
    client: &Client,
    acks: i16,
    batches: &[EncodedBatch],
) -> Vec<Result<i64>> {
    let mut results: Vec<Option<Result<i64>>> = (0..batches.len()).map(|_| None).collect();
    let mut by_leader: HashMap<String, (Arc<Connection>, Vec<usize>)> = HashMap::new();
    for (i, batch) in batches.iter().enumerate() {
        match client
            .leader_connection(&batch.topic, batch.partition)
            .await
        {
            Ok(conn) => by_leader
                .entry(conn.addr().to_string())
                .or_insert_with(|| (conn.clone(), Vec::new()))
                .1
                .push(i),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let mut calls = tokio::task::JoinSet::new();
    for (_, (conn, members)) in by_leader {
        let request = produce_request(client, acks, batches, &members);
        calls.spawn(async move {
            let response = conn.call(&request, PRODUCE_VERSIONS).await;
            (members, response)
        });
    }
    while let Some(joined) = calls.join_next().await {
        let Ok((members, response)) = joined else {
            continue;
        };
        match response {
            Ok(response) => {
                for i in members {
                    results[i] = Some(partition_result(&response, &batches[i]));
                }
            }
            Err(e) => {
                for i in members {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(ClientError::NoBroker("no answer".into()))))
        .collect()
}

fn produce_request(
    client: &Client,
    acks: i16,
    batches: &[EncodedBatch],
    members: &[usize],
) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for &i in members {
        let batch = &batches[i];
        let data = PartitionProduceData::default()
            .with_index(batch.partition)
            .with_records(Some(batch.bytes.clone()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == batch.topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(batch.topic.clone())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let timeout_ms = i32::try_from(client.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics)
}

/// Splits `slots` (in order) into the first of each partition and the rest.
fn first_per_partition(slots: Vec<Slot>) -> (Vec<Slot>, Vec<Slot>) {
    let mut seen = std::collections::HashSet::new();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for slot in slots {
        if seen.insert((slot.batch.topic.clone(), slot.batch.partition)) {
            now.push(slot);
        } else {
            later.push(slot);
        }
    }
    (now, later)
}

fn partition_result(response: &ProduceResponse, slot: &EncodedBatch) -> Result<i64> {
    let found = response
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == slot.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == slot.partition);
    let Some(p) = found else {
        return Err(ClientError::Protocol {
            addr: String::new(),
            api: "Produce",
            message: format!("no answer for {}/{}", slot.topic, slot.partition),
        });
    };
    match ResponseError::try_from_code(p.error_code) {
        None => Ok(p.base_offset),
        // An older batch the broker already has: it was written, by an earlier attempt.
        Some(ResponseError::DuplicateSequenceNumber) => Ok(p.base_offset),
        Some(error) => Err(ClientError::Kafka {
            context: format!(
                "producing {} records to {}/{}{}",
                slot.count,
                slot.topic,
                slot.partition,
                p.error_message
                    .as_ref()
                    .map(|m| format!(" ({})", m.as_str()))
                    .unwrap_or_default()
            ),
            error,
        }),
    }
}

/// Whether the broker lost (or never had) this producer's sequence state: only a new producer id
/// (or a fresh epoch) lets it write again.
pub fn needs_new_producer_id(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ResponseError::OutOfOrderSequenceNumber
                | ResponseError::UnknownProducerId
                | ResponseError::InvalidProducerEpoch
        )
    )
}

fn fail_all(results: Vec<Option<Result<i64>>>, e: ClientError) -> Vec<Result<i64>> {
    results.into_iter().map(|_| Err(e.clone())).collect()
}
