//! A lane forwards one local partition to its upstream partition, one batch at a time, in
//! offset order.
//!
//! Exactly-once across crashes rests on three rules:
//! - every local partition has its own idempotent producer id, so the sequence numbers of
//!   an upstream partition are only ever written by one lane (several local topics may map to
//!   one upstream topic);
//! - before a batch leaves, its bounds `[next_offset, in_flight_end)`, producer id, epoch and
//!   first sequence are durable; after a crash the lane re-sends exactly that batch, which the
//!   upstream recognises as a duplicate (DUPLICATE_SEQUENCE_NUMBER, or a plain success for
//!   brokers that answer with the original offset) instead of writing it twice;
//! - progress moves past a batch only after the upstream acknowledged it with acks=all, and
//!   the retention hold moves only after that progress is durable.
//!
//! Duplicates remain possible in one case: the upstream forgot the producer (UNKNOWN_PRODUCER_ID,
//! OUT_OF_ORDER_SEQUENCE_NUMBER, e.g. after its `producer.id.expiration.ms`) while the
//! outcome of the in-flight batch was unknown. The lane then takes a new producer id and
//! re-sends that one batch, counts its records in `possible_duplicates`, and every record
//! carries `runnel.origin.{device,topic,partition,offset}` headers, so a downstream consumer
//! can drop a duplicate by that key. The bound is one batch per such event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use runnel_bridge::mqtt::Backoff;
use runnel_client::producer::{init_producer_id, needs_new_producer_id, send_encoded};
use runnel_client::records::{BatchIdentity, InRecord, OutRecord, decode_batches, encode_batch};
use runnel_client::{ClientError, EncodedBatch, ResponseError};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::status::LaneStats;
use crate::handlers::blocking;
use crate::log::{PartitionId, ProgressEntry, StoreError, UplinkProgress, now_ms, wait};

/// Header names the uplink adds to every forwarded record.
pub const HEADER_DEVICE: &str = "runnel.origin.device";
pub const HEADER_TOPIC: &str = "runnel.origin.topic";
pub const HEADER_PARTITION: &str = "runnel.origin.partition";
pub const HEADER_OFFSET: &str = "runnel.origin.offset";

/// Bytes a forwarded record adds to a batch besides its key, value and own headers: varints
/// and deltas (about 24) and the four `runnel.origin.*` headers (about 96).
const RECORD_OVERHEAD: usize = 120;
/// How long an idle lane sleeps before looking again when no append wakes it.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// The records of the next batch.
struct Planned {
    records: Vec<OutRecord>,
    /// One past the last local offset in the batch.
    end: i64,
}

/// Why a forward attempt did not complete.
enum Stall {
    /// Try again after the backoff delay.
    Retry,
    /// Try again at once (the plan changed).
    Replan,
}

pub(super) struct Lane {
    shared: Arc<Shared>,
    id: PartitionId,
    stats: Arc<LaneStats>,
    progress: UplinkProgress,
    saved: UplinkProgress,
    max_batch_bytes: usize,
    backoff: Backoff,
    stop: CancellationToken,
    /// Partition count of the local topic (what a created upstream topic gets).
    local_partitions: i32,
    /// Values of the `runnel.origin.topic` / `.partition` headers, shared by every record.
    topic_header: Bytes,
    partition_header: Bytes,
}

impl Lane {
    pub fn new(
        shared: Arc<Shared>,
        id: PartitionId,
        stats: Arc<LaneStats>,
        progress: UplinkProgress,
        local_partitions: i32,
        stop: CancellationToken,
    ) -> Self {
        let config = &shared.config;
        let backoff = Backoff::new(
            Duration::from_millis(config.retry_backoff_min_ms),
            Duration::from_millis(config.retry_backoff_max_ms),
        );
        let max_batch_bytes = config.max_batch_bytes;
        let topic_header = Bytes::from(stats.topic.clone());
        let partition_header = Bytes::from(stats.partition.to_string());
        Lane {
            shared,
            id,
            topic_header,
            partition_header,
            stats,
            progress,
            saved: progress,
            max_batch_bytes,
            backoff,
            stop,
            local_partitions,
        }
    }

    pub async fn run(mut self) {
        let mut changes = self.shared.ctx.changes.clone();
        loop {
            if self.stop.is_cancelled() {
                let _ = self.save().await;
                return;
            }
            if !self.in_window().await {
                continue;
            }
            if let Err(e) = self.account_for_dropped().await {
                self.stall_on_store(e).await;
                continue;
            }
            let planned = match self.plan().await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    if let Err(e) = self.save().await {
                        self.stall_on_store(e).await;
                        continue;
                    }
                    changes.borrow_and_update();
                    if self.stats.log.next_offset() > self.progress.next_offset {
                        continue;
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => {}
                        _ = changes.changed() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                    continue;
                }
                Err(e) => {
                    self.stall_on_store(e).await;
                    continue;
                }
            };
            match self.forward(planned).await {
                Ok(()) => self.backoff.reset(),
                Err(Stall::Replan) => {}
                Err(Stall::Retry) => {
                    let delay = self.backoff.next_delay();
                    tokio::select! {
                        _ = self.stop.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Whether the time window is open; if not, waits (at most a minute) and says no.
    async fn in_window(&mut self) -> bool {
        let Some(window) = self.shared.window else {
            return true;
        };
        let wait_for = window.wait_from(now_ms());
        if wait_for.is_zero() {
            self.shared.stats.window_open.store(true, Ordering::Relaxed);
            return true;
        }
        self.shared
            .stats
            .window_open
            .store(false, Ordering::Relaxed);
        let _ = self.save().await;
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(wait_for.min(Duration::from_secs(60))) => {}
        }
        false
    }

    async fn stall_on_store(&mut self, e: StoreError) {
        tracing::warn!(uplink = %self.shared.name, topic = %self.stats.topic, partition = self.stats.partition, error = %e, "uplink cannot use the local store");
        let delay = self.backoff.next_delay();
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }

    /// Skips records the disk budget deleted before they were forwarded, counting them.
    async fn account_for_dropped(&mut self) -> Result<(), StoreError> {
        let start = self.stats.log.log_start();
        let p = &mut self.progress;
        if p.next_offset >= start {
            return Ok(());
        }
        let lost = start - p.next_offset;
        tracing::warn!(
            uplink = %self.shared.name,
            topic = %self.stats.topic,
            partition = self.stats.partition,
            records = lost,
            from_offset = p.next_offset,
            to_offset = start,
            "records were deleted for the disk budget before they were forwarded"
        );
        if p.in_flight_end > p.next_offset {
            // The batch that may be upstream is gone here: never let a different batch reuse
            // its sequence numbers, or the upstream could take it for that one.
            p.producer_id = -1;
            p.in_flight_end = -1;
        }
        p.dropped += u64::try_from(lost).unwrap_or(0);
        p.next_offset = start;
        self.stats.next_offset.store(start, Ordering::Relaxed);
        self.shared
            .stats
            .dropped_records
            .fetch_add(u64::try_from(lost).unwrap_or(0), Ordering::Relaxed);
        self.save().await
    }

    /// Reads the next batch: the in-flight one again if there is one, else new records up to
    /// the batch size. `None` when there is nothing to forward.
    async fn plan(&mut self) -> Result<Option<Planned>, StoreError> {
        let p = self.progress;
        let end_offset = self.stats.log.next_offset();
        if p.next_offset >= end_offset {
            self.stats.oldest_unforwarded_ms.store(0, Ordering::Relaxed);
            return Ok(None);
        }
        let replay_to = (p.in_flight_end > p.next_offset).then_some(p.in_flight_end);
        let mut records = Vec::new();
        let mut size = 0usize;
        let mut at = p.next_offset;
        let mut end = at;
        'reading: while at < end_offset {
            let log = self.shared.ctx.log.clone();
            let id = self.id;
            let read_bytes = self.max_batch_bytes;
            let chunk = blocking(move || log.read_once(id, at, read_bytes)).await?;
            if chunk.records.is_empty() {
                break;
            }
            let decoded = decode_batches(chunk.records, at).map_err(|e| {
                StoreError::Io(format!(
                    "stored batch of {id} at offset {at} does not decode: {e}"
                ))
            })?;
            if decoded.is_empty() {
                break;
            }
            for record in decoded {
                if replay_to.is_some_and(|to| record.offset >= to) {
                    break 'reading;
                }
                let bytes = record_size(&record);
                if replay_to.is_none() && !records.is_empty() && size + bytes > self.max_batch_bytes
                {
                    break 'reading;
                }
                size += bytes;
                end = record.offset + 1;
                at = end;
                records.push(self.out_record(record));
            }
            if replay_to.is_none() && size >= self.max_batch_bytes {
                break;
            }
            if replay_to.is_some_and(|to| at >= to) {
                break;
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        if let Some(first) = records.first() {
            self.stats
                .oldest_unforwarded_ms
                .store(first.timestamp_ms.max(1), Ordering::Relaxed);
        }
        Ok(Some(Planned { records, end }))
    }

    fn out_record(&self, r: InRecord) -> OutRecord {
        let mut headers = r.headers;
        headers.reserve(4);
        headers.push((
            HEADER_DEVICE.into(),
            Some(self.shared.device_header.clone()),
        ));
        headers.push((HEADER_TOPIC.into(), Some(self.topic_header.clone())));
        headers.push((HEADER_PARTITION.into(), Some(self.partition_header.clone())));
        headers.push((
            HEADER_OFFSET.into(),
            Some(Bytes::from(r.offset.to_string())),
        ));
        OutRecord {
            key: r.key,
            value: r.value,
            headers,
            timestamp_ms: r.timestamp_ms,
        }
    }

    /// Sends one batch and settles its outcome.
    async fn forward(&mut self, planned: Planned) -> Result<(), Stall> {
        let shared = self.shared.clone();
        let remote = self.stats.remote_topic.clone();
        if self.progress.producer_id < 0 {
            match init_producer_id(&shared.client).await {
                Ok((id, epoch)) => {
                    self.progress.producer_id = id;
                    self.progress.producer_epoch = epoch;
                    self.progress.next_sequence = 0;
                }
                Err(e) => return Err(self.upstream_failed("InitProducerId", e)),
            }
        }
        if self.progress.remote_partition < 0 {
            let local = self.stats.partition;
            match shared
                .remote_partitions(&remote, self.local_partitions)
                .await
            {
                Ok(n) => {
                    self.progress.remote_partition = local % n.max(1);
                    self.stats
                        .remote_partition
                        .store(self.progress.remote_partition, Ordering::Relaxed);
                }
                Err(e) => return Err(self.upstream_failed("upstream topic lookup", e)),
            }
        }
        let partition = self.progress.remote_partition;
        // Only a batch that can leave now is recorded as in flight.
        if let Err(e) = shared.client.leader_connection(&remote, partition).await {
            if e.needs_metadata() {
                shared.client.forget_topic(&remote);
            }
            return Err(self.upstream_failed("connecting to the partition leader", e));
        }
        self.progress.in_flight_end = planned.end;
        if let Err(e) = self.save().await {
            tracing::warn!(uplink = %shared.name, error = %e, "cannot record the batch in flight");
            return Err(Stall::Retry);
        }
        let count = i32::try_from(planned.records.len()).unwrap_or(i32::MAX);
        let identity = BatchIdentity {
            producer_id: self.progress.producer_id,
            producer_epoch: self.progress.producer_epoch,
            base_sequence: self.progress.next_sequence,
        };
        let bytes = match encode_batch(&planned.records, identity, shared.compression) {
            Ok(b) => b,
            Err(e) => {
                shared
                    .stats
                    .set_error(format!("cannot encode a batch: {e}"));
                return Err(Stall::Retry);
            }
        };
        let sent_bytes = bytes.len();
        shared.throttle.take(sent_bytes).await;
        let batch = EncodedBatch {
            topic: remote.clone(),
            partition,
            count,
            bytes,
        };
        let result = send_encoded(&shared.client, -1, std::slice::from_ref(&batch))
            .await
            .pop()
            .unwrap_or_else(|| Err(ClientError::NoBroker("no answer".into())));
        match result {
            Ok(_) => {
                let p = &mut self.progress;
                p.next_offset = planned.end;
                p.next_sequence = p.next_sequence.wrapping_add(count) & i32::MAX;
                p.in_flight_end = -1;
                self.stats.next_offset.store(planned.end, Ordering::Relaxed);
                let stats = &shared.stats;
                stats.connected.store(true, Ordering::Relaxed);
                stats
                    .forwarded_records
                    .fetch_add(u64::try_from(count).unwrap_or(0), Ordering::Relaxed);
                stats
                    .forwarded_bytes
                    .fetch_add(sent_bytes as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if needs_new_producer_id(&e) => {
                tracing::warn!(
                    uplink = %shared.name,
                    topic = %self.stats.topic,
                    partition = self.stats.partition,
                    records = count,
                    error = %e,
                    "the upstream lost this producer's state; re-sending the batch under a new producer id (its records may arrive twice, marked by their runnel.origin.* headers)"
                );
                shared
                    .stats
                    .possible_duplicates
                    .fetch_add(u64::try_from(count).unwrap_or(0), Ordering::Relaxed);
                self.progress.producer_id = -1;
                Err(self.upstream_failed("producing", e))
            }
            Err(e) if is_record_rejection(&e) => {
                self.upstream_answered();
                self.rejected(planned, count, e).await
            }
            Err(e) => {
                if e.needs_metadata() {
                    shared.client.forget_topic(&remote);
                }
                Err(self.upstream_failed("producing", e))
            }
        }
    }

    /// The upstream refused the batch for its content: halve the batch until a single record
    /// is refused, then skip that record (counted, logged) so one bad record cannot block the
    /// partition forever.
    async fn rejected(
        &mut self,
        planned: Planned,
        count: i32,
        e: ClientError,
    ) -> Result<(), Stall> {
        let shared = self.shared.clone();
        // A refused batch was not written: its sequence numbers are free again.
        self.progress.in_flight_end = -1;
        if count > 1 {
            self.max_batch_bytes = (self.max_batch_bytes / 2).max(1);
            tracing::info!(uplink = %shared.name, topic = %self.stats.topic, partition = self.stats.partition, max_batch_bytes = self.max_batch_bytes, error = %e, "upstream refused a batch; splitting it");
        } else {
            tracing::error!(
                uplink = %shared.name,
                topic = %self.stats.topic,
                partition = self.stats.partition,
                offset = self.progress.next_offset,
                error = %e,
                "upstream refused a single record for good; skipping it"
            );
            self.progress.next_offset = planned.end;
            self.progress.rejected += 1;
            self.stats.next_offset.store(planned.end, Ordering::Relaxed);
            shared
                .stats
                .rejected_records
                .fetch_add(1, Ordering::Relaxed);
            shared.stats.set_error(format!(
                "record {} of {}/{} refused: {e}",
                planned.end - 1,
                self.stats.topic,
                self.stats.partition
            ));
            self.max_batch_bytes = shared.config.max_batch_bytes;
        }
        match self.save().await {
            Ok(()) => Err(Stall::Replan),
            Err(_) => Err(Stall::Retry),
        }
    }

    fn upstream_answered(&self) {
        self.shared.stats.connected.store(true, Ordering::Relaxed);
    }

    fn upstream_failed(&self, doing: &str, e: ClientError) -> Stall {
        // A Kafka error code means the upstream answered: the link is up.
        self.shared
            .stats
            .connected
            .store(e.code().is_some(), Ordering::Relaxed);
        tracing::debug!(uplink = %self.shared.name, topic = %self.stats.topic, partition = self.stats.partition, error = %e, "{doing} failed");
        self.shared.stats.set_error(format!("{doing}: {e}"));
        Stall::Retry
    }

    /// Makes the progress durable (when it changed) and moves the retention hold to it.
    async fn save(&mut self) -> Result<(), StoreError> {
        if self.progress == self.saved {
            return Ok(());
        }
        if self.shared.ctx.log.partition(self.id).is_none() {
            // The topic was deleted (its progress with it): nothing left to record.
            return Ok(());
        }
        let entry = ProgressEntry {
            uplink: self.shared.name.to_string(),
            partition: self.id,
            progress: self.progress,
        };
        wait(self.shared.store.save_uplink_progress(vec![entry])).await??;
        self.saved = self.progress;
        self.shared
            .ctx
            .holds
            .set(&self.shared.name, self.id, self.progress.next_offset);
        Ok(())
    }
}

/// Errors that refuse a batch for what it holds (size, timestamps), not for the link.
fn is_record_rejection(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ResponseError::MessageTooLarge
                | ResponseError::RecordListTooLarge
                | ResponseError::InvalidTimestamp
                | ResponseError::InvalidRecord
        )
    )
}

fn record_size(r: &InRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 2)
        .sum();
    r.key.as_ref().map_or(0, Bytes::len)
        + r.value.as_ref().map_or(0, Bytes::len)
        + headers
        + RECORD_OVERHEAD
}
