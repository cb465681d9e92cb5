//! MQTT → topics: takes received messages in order, maps them ([`crate::mapping`]), writes
//! them through the [`Backend`] and acknowledges them to the MQTT broker only once the
//! backend answered that they are durable.
//!
//! Invariants:
//! - a message is acked only after every record made from it is durable (so `kill -9` of
//!   the bridge, the broker or Mosquitto loses nothing: unacked messages are redelivered);
//! - messages are acked in the order received, after the whole batch they came in;
//! - records of one key keep their order: one key → one partition, batches written in order,
//!   and the next batch starts only after the previous one is durable;
//! - a failed write that was not a rejection (backend down, disk budget full) is retried forever with
//!   backoff — nothing is acked meanwhile, so the MQTT broker stops sending once its
//!   in-flight window is full, and the channel from the MQTT driver bounds what is buffered;
//! - a record that can never be written (e.g. larger than the topic allows) goes to its
//!   rule's dead-letter topic with the reason; without one it is counted as dropped and
//!   logged at error (the only way a message is not written; startup validation requires a
//!   dead-letter topic for every rule that can reject payloads).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, TopicBatch};
use crate::config::IngressRule;
use crate::mapping::{Inbound, Record, Routed, Router, header};
use crate::mqtt::{AckToken, Backoff, Message, MqttHandle};
use crate::status::BridgeStats;

/// Most messages written in one backend call.
const MAX_BATCH_MESSAGES: usize = 5_000;
/// Most payload bytes written in one backend call.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Estimated encoded size at which a partition's records start a new record batch: half of
/// Kafka's default `message.max.bytes` (1 MiB), so a batch is never refused for its size
/// unless a single record is that large.
const MAX_RECORD_BATCH_BYTES: usize = 512 << 10;
/// Per-record overhead of the RecordBatch v2 encoding, roughly (varints, attributes).
const RECORD_OVERHEAD: usize = 24;
/// How soon acks the event loop could not take yet are offered again.
const ACK_RETRY: Duration = Duration::from_millis(2);

/// One record on its way, and where it came from.
struct Out {
    /// Position in the batch received from MQTT; retries keep this order.
    order: usize,
    rule: usize,
    dead_letter: bool,
    record: Record,
}

/// Roughly what `record` adds to an encoded record batch.
fn encoded_size(record: &Record) -> usize {
    record.value.len()
        + record.key.as_ref().map_or(0, |k| k.len())
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
        + RECORD_OVERHEAD
}

/// The ingest half of one bridge.
pub struct Ingest {
    pub router: Router,
    pub rules: Vec<IngressRule>,
    pub backend: Arc<dyn Backend>,
    pub handle: MqttHandle,
    pub stats: Arc<BridgeStats>,
    pub shutdown: CancellationToken,
    pub backoff: Backoff,
    partitions: HashMap<Arc<str>, i32>,
    round_robin: u32,
    /// Acks of durable messages, in order, that the event loop's queue could not take yet.
    unacked: std::collections::VecDeque<AckToken>,
}

impl Ingest {
    pub fn new(
        router: Router,
        rules: Vec<IngressRule>,
        backend: Arc<dyn Backend>,
        handle: MqttHandle,
        stats: Arc<BridgeStats>,
        shutdown: CancellationToken,
    ) -> Self {
        Ingest {
            router,
            rules,
            backend,
            handle,
            stats,
            shutdown,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
            partitions: HashMap::new(),
            round_robin: 0,
            unacked: std::collections::VecDeque::new(),
        }
    }

    /// Runs until shutdown or until the MQTT driver goes away.
    ///
    /// Acks never wait: the MQTT driver (the only task polling the event loop, which drains
    /// the ack queue) may itself be waiting for room in `rx`. Acks the queue cannot take yet
    /// stay in `unacked`, in order, and are offered again every [`ACK_RETRY`] while this
    /// loop keeps draining `rx`.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        loop {
            self.flush_acks();
            let retry = !self.unacked.is_empty();
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(ACK_RETRY), if retry => continue,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            let mut bytes = first.payload.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(m) => {
                        bytes += m.payload.len();
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            if !self.process(&batch).await {
                break;
            }
        }
    }

    /// Writes the batch until durable, then acks it; false when shutdown interrupted it
    /// (then nothing of the batch is acked, and MQTT redelivers it).
    async fn process(&mut self, batch: &[Message]) -> bool {
        self.stats
            .oldest_pending_ms
            .store(batch[0].received_ms, Ordering::Relaxed);
        let mut outs = Vec::with_capacity(batch.len());
        for m in batch {
            let inbound = Inbound {
                topic: &m.topic,
                payload: &m.payload,
                qos: m.qos,
                retain: m.retain,
                dup: m.dup,
                received_ms: m.received_ms,
            };
            match self.router.route(&inbound) {
                Routed::Record { rule, record } => {
                    self.count(rule, |c| &c.received);
                    outs.push(Out {
                        order: outs.len(),
                        rule,
                        dead_letter: false,
                        record,
                    });
                }
                Routed::DeadLetter {
                    rule,
                    record,
                    reason,
                } => {
                    self.count(rule, |c| &c.received);
                    tracing::debug!(mqtt_topic = %m.topic, %reason, "payload rejected, dead-lettering");
                    outs.push(Out {
                        order: outs.len(),
                        rule,
                        dead_letter: true,
                        record,
                    });
                }
                Routed::Unmatched => {
                    tracing::warn!(mqtt_topic = %m.topic, "message matches no rule; acknowledged without writing");
                }
            }
        }
        if !self.write_durably(outs).await {
            return false;
        }
        self.unacked.extend(batch.iter().map(Message::ack_token));
        self.flush_acks();
        self.stats
            .pending
            .fetch_sub(batch.len() as i64, Ordering::Relaxed);
        self.stats.oldest_pending_ms.store(0, Ordering::Relaxed);
        true
    }

    /// Offers queued acks to the event loop, oldest first, until it takes no more.
    fn flush_acks(&mut self) {
        while let Some(token) = self.unacked.front() {
            if !self.handle.try_ack(token) {
                break;
            }
            self.unacked.pop_front();
        }
    }

    /// Writes `outs` until every record is durable, dead-lettered or (without a
    /// dead-letter topic) dropped. False on shutdown.
    async fn write_durably(&mut self, mut outs: Vec<Out>) -> bool {
        self.backoff.reset();
        while !outs.is_empty() {
            let (batches, members, unresolved) = self.group(&mut outs).await;
            let results = if batches.is_empty() {
                Vec::new()
            } else {
                self.backend.write(batches).await
            };
            let mut retry = Vec::new();
            let mut slots: Vec<Option<Out>> = outs.into_iter().map(Some).collect();
            let mut last_error = None;
            for (result, indices) in results.into_iter().zip(members) {
                for i in indices {
                    let Some(out) = slots[i].take() else { continue };
                    match &result {
                        Ok(()) => self.count(out.rule, |c| {
                            if out.dead_letter {
                                &c.dead_lettered
                            } else {
                                &c.written
                            }
                        }),
                        Err(e) if !e.rejected => {
                            last_error = Some(e.message.clone());
                            retry.push(out);
                        }
                        Err(e) => {
                            if let Some(dlq) = self.dead_letter(&out, &e.message) {
                                retry.push(dlq);
                            } else {
                                self.drop_record(&out, &e.message);
                            }
                        }
                    }
                }
            }
            // Records the grouping left out are in `slots` still: those whose topic is not
            // available right now (retried after the backoff, like a failed write), and those
            // behind a full batch of their partition (written in the next round).
            if let (Some(topic), None) = (&unresolved, &last_error) {
                last_error = Some(format!("topic {topic} is not available"));
            }
            retry.extend(slots.into_iter().flatten());
            retry.sort_by_key(|o| o.order);
            outs = retry;
            if let Some(e) = last_error {
                self.stats.set_error(format!("writing records: {e}"));
                tracing::warn!(error = %e, records = outs.len(), "write failed; retrying");
                let delay = self.backoff.next_delay();
                tokio::select! {
                    _ = self.shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        true
    }

    /// Groups records by (topic, partition), keeping their order, into one batch per
    /// partition of at most [`MAX_RECORD_BATCH_BYTES`] (a single larger record goes alone);
    /// also says which `outs` indices went into each batch. One batch per partition per
    /// write keeps a partition's records in order even if one batch fails and another does
    /// not. Left out: records behind a full batch (next round), and records whose topic is
    /// not available now (the topic is returned, to be reported and retried).
    async fn group(
        &mut self,
        outs: &mut [Out],
    ) -> (Vec<TopicBatch>, Vec<Vec<usize>>, Option<Arc<str>>) {
        self.round_robin = self.round_robin.wrapping_add(1);
        let mut batches: Vec<TopicBatch> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut open: HashMap<(Arc<str>, i32), usize> = HashMap::new();
        let mut full: std::collections::HashSet<(Arc<str>, i32)> = Default::default();
        let mut unresolved = None;
        for (i, out) in outs.iter_mut().enumerate() {
            let Some(count) = self.partition_count(&out.record.topic).await else {
                unresolved = Some(out.record.topic.clone());
                continue;
            };
            let partition = match &out.record.key {
                Some(key) => runnel_client::partitioner::partition_for_key(key, count),
                None => (self.round_robin % count.max(1) as u32) as i32,
            };
            let size = encoded_size(&out.record);
            let key = (out.record.topic.clone(), partition);
            if full.contains(&key) {
                continue;
            }
            let slot = match open.get(&key) {
                Some(&slot) if sizes[slot] + size > MAX_RECORD_BATCH_BYTES => {
                    full.insert(key);
                    continue;
                }
                Some(&slot) => slot,
                None => {
                    batches.push(TopicBatch {
                        topic: out.record.topic.clone(),
                        partition,
                        records: Vec::new(),
                    });
                    sizes.push(0);
                    members.push(Vec::new());
                    open.insert(key, batches.len() - 1);
                    batches.len() - 1
                }
            };
            sizes[slot] += size;
            batches[slot].records.push(out.record.clone());
            members[slot].push(i);
        }
        (batches, members, unresolved)
    }

    async fn partition_count(&mut self, topic: &Arc<str>) -> Option<i32> {
        if let Some(n) = self.partitions.get(topic) {
            return Some(*n);
        }
        match self.backend.partitions(topic).await {
            Ok(n) if n > 0 => {
                self.partitions.insert(topic.clone(), n);
                Some(n)
            }
            Ok(_) => None,
            Err(e) => {
                self.stats.set_error(format!("topic {topic}: {e}"));
                tracing::warn!(%topic, error = %e, "cannot resolve the topic's partitions");
                None
            }
        }
    }

    /// The dead-letter record for `out`, when its rule has a dead-letter topic and `out` is
    /// not already one.
    fn dead_letter(&self, out: &Out, reason: &str) -> Option<Out> {
        if out.dead_letter {
            return None;
        }
        let rule = self.rules.get(out.rule)?;
        let topic = rule.dead_letter_topic.as_ref()?;
        let mut record = out.record.clone();
        record.topic = Arc::from(topic.as_str());
        record
            .headers
            .push((header::DLQ_REASON.into(), Bytes::from(reason.to_string())));
        record
            .headers
            .push((header::DLQ_RULE.into(), Bytes::from(rule.filter.clone())));
        tracing::warn!(%topic, %reason, "record rejected by the backend; dead-lettering");
        Some(Out {
            order: out.order,
            rule: out.rule,
            dead_letter: true,
            record,
        })
    }

    fn drop_record(&self, out: &Out, reason: &str) {
        self.count(out.rule, |c| &c.dropped);
        self.stats
            .set_error(format!("record for {} dropped: {reason}", out.record.topic));
        tracing::error!(
            topic = %out.record.topic,
            dead_letter = out.dead_letter,
            %reason,
            "the backend rejected the record and there is no (other) dead-letter topic: dropped"
        );
    }

    fn count(
        &self,
        rule: usize,
        which: impl Fn(&crate::status::RuleCounters) -> &std::sync::atomic::AtomicU64,
    ) {
        if let Some((_, _, c)) = self.stats.rules.get(rule) {
            which(c).fetch_add(1, Ordering::Relaxed);
        }
    }
}
