//! The producer side shared by the throughput and latency scenarios: a producer context that
//! counts delivery reports (and optionally times them), and a `send` that waits out a full
//! local queue.
//!
//! Each record's delivery opaque is the nanoseconds between the tracker's creation and the
//! send, so the latency of a record is measured without any per-record allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

use super::client::{ClientSettings, Diagnostics};
use super::deadline::Deadline;

/// Delivery opaque of records whose latency must not be recorded (warm-up).
pub const UNTIMED: usize = usize::MAX;

/// Producer acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    Leader,
    All,
}

impl Acks {
    fn config_value(self) -> &'static str {
        match self {
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }

    /// Used in metric and topic names.
    pub fn label(self) -> &'static str {
        match self {
            Acks::Leader => "acks1",
            Acks::All => "acksall",
        }
    }
}

/// Producer settings for a scenario. Idempotence stays off (the broker has no producer ids yet).
pub fn producer_config(
    client: &ClientSettings,
    acks: Acks,
    linger_ms: u32,
    deadline: &Deadline,
) -> ClientConfig {
    let mut config = client.base();
    config
        .set("acks", acks.config_value())
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097152")
        // Let librdkafka give up on a record no later than the scenario does.
        .set(
            "message.timeout.ms",
            deadline.remaining().as_millis().max(1).to_string(),
        );
    client.finish(&mut config);
    config
}

/// Counts (and optionally times) delivery reports; the producer's polling thread calls it.
#[derive(Debug)]
pub struct DeliveryTracker {
    epoch: Instant,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Nanoseconds from `epoch` to the latest successful delivery report (0: none yet).
    last_ack_ns: AtomicU64,
    /// Send-to-ack latencies in nanoseconds, when timing is on.
    latencies_ns: Option<Mutex<Vec<u64>>>,
    diagnostics: Diagnostics,
}

impl DeliveryTracker {
    /// `timed_capacity`: `Some(n)` records latencies (expecting about `n` of them).
    pub fn new(timed_capacity: Option<usize>) -> Self {
        Self {
            epoch: Instant::now(),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            last_ack_ns: AtomicU64::new(0),
            latencies_ns: timed_capacity.map(|n| Mutex::new(Vec::with_capacity(n))),
            diagnostics: Diagnostics::default(),
        }
    }

    /// The delivery opaque for a record sent now.
    pub fn stamp(&self) -> usize {
        usize::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(UNTIMED - 1)
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }

    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// When the most recent successful delivery report arrived.
    pub fn last_ack(&self) -> Option<Instant> {
        match self.last_ack_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }

    /// Takes the recorded latencies (nanoseconds, unsorted).
    pub fn take_latencies(&self) -> Vec<u64> {
        self.latencies_ns
            .as_ref()
            .map(|l| std::mem::take(&mut *lock(l)))
            .unwrap_or_default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for DeliveryTracker {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.diagnostics.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.diagnostics.error(error, reason);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_ns: usize) {
        match result {
            Ok(_) => {
                let acked_at_ns = (self.epoch.elapsed().as_nanos() as u64).max(1);
                if let Some(latencies) = &self.latencies_ns
                    && sent_at_ns != UNTIMED
                {
                    lock(latencies).push(acked_at_ns.saturating_sub(sent_at_ns as u64));
                }
                self.last_ack_ns.fetch_max(acked_at_ns, Ordering::AcqRel);
                self.acked.fetch_add(1, Ordering::Release);
            }
            Err((error, _)) => {
                lock(&self.first_error).get_or_insert_with(|| error.to_string());
                self.failed.fetch_add(1, Ordering::Release);
            }
        }
    }
}

pub type Producer = ThreadedProducer<DeliveryTracker>;

/// Enqueues one record, waiting while librdkafka's local queue is full.
pub fn send(
    producer: &Producer,
    topic: &str,
    payload: &[u8],
    opaque: usize,
    deadline: &Deadline,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, opaque).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                deadline.check(|| format!("waiting for room in the producer queue for {topic}"))?;
                thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => bail!("enqueueing a record for {topic} failed: {e}"),
        }
    }
}

/// Waits until `expected` delivery reports (successes and failures) have arrived, then fails
/// loudly if any delivery failed.
pub fn await_deliveries(
    producer: &Producer,
    topic: &str,
    expected: u64,
    deadline: &Deadline,
) -> anyhow::Result<()> {
    let tracker = producer_context(producer);
    while tracker.acked() + tracker.failed() < expected {
        deadline.check(|| {
            format!(
                "waiting for delivery reports from {topic}: {} acked, {} failed of {expected}",
                tracker.acked(),
                tracker.failed()
            )
        })?;
        thread::sleep(Duration::from_millis(1));
    }
    let failed = tracker.failed();
    if failed > 0 {
        bail!(
            "{failed} of {expected} records to {topic} were not delivered; first error: {}",
            tracker.first_error().unwrap_or_default()
        );
    }
    Ok(())
}

pub fn producer_context(producer: &Producer) -> &DeliveryTracker {
    use rdkafka::producer::Producer as _;
    producer.context()
}
