//! A continuous `acks=all` producer that records what was acknowledged ([`ProduceLoop`],
//! [`RecordingContext`], [`ProduceReport`]), and [`verify_acked_exactly_once`] to check it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rdkafka::ClientContext;
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::harness::clients;
use crate::harness::wait::wait_until;

/// A record the cluster acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub key: String,
    pub value: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Default)]
struct DeliveryLog {
    acked: Mutex<Vec<Acked>>,
    /// (value, error) of records that were not delivered.
    failed: Mutex<Vec<(String, String)>>,
    acked_count: AtomicU64,
}

/// Records every delivery report.
#[derive(Debug, Default, Clone)]
pub struct RecordingContext {
    log: Arc<DeliveryLog>,
}

impl ClientContext for RecordingContext {}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        match result {
            Ok(message) => {
                self.log
                    .acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Acked {
                        key: text(message.key()),
                        value: text(message.payload()),
                        partition: message.partition(),
                        offset: message.offset(),
                    });
                self.log.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            Err((error, message)) => self
                .log
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((text(message.payload()), error.to_string())),
        }
    }
}

/// What a [`ProduceLoop`] did.
#[derive(Debug, Default)]
pub struct ProduceReport {
    pub sent: u64,
    pub acked: Vec<Acked>,
    pub failed: Vec<(String, String)>,
    /// Records still neither acknowledged nor failed when the loop gave up flushing.
    pub unresolved: usize,
    /// librdkafka's fatal error (idempotence broken), if any.
    pub fatal: Option<String>,
}

/// An idempotent `acks=all` producer sending `key=k-TAG-SEQ`, `value=v-TAG-SEQ` round robin
/// over partitions `0..partitions`, at most `rate` records per second, on its own thread,
/// until [`ProduceLoop::stop`].
#[derive(Debug)]
pub struct ProduceLoop {
    stop: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<DeliveryLog>,
    thread: Option<JoinHandle<ProduceReport>>,
}

impl ProduceLoop {
    /// `overrides` win over the defaults (`acks=all`, `enable.idempotence=true`,
    /// `message.timeout.ms=30000`, `request.timeout.ms=5000`, `socket.timeout.ms=5000`,
    /// `linger.ms=5`).
    pub fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        tag: &str,
        rate: u32,
        overrides: &[(&str, &str)],
    ) -> Result<ProduceLoop> {
        let mut config = clients::base_config(bootstrap);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .set("request.timeout.ms", "5000")
            // The client-side deadline of a request (else min(60 s, message timeout)): a
            // request in flight to a node that was cut off must fail over within seconds.
            .set("socket.timeout.ms", "5000")
            .set("retry.backoff.ms", "50")
            .set("linger.ms", "5");
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        let context = RecordingContext::default();
        let log = Arc::clone(&context.log);
        let producer: ThreadedProducer<RecordingContext> = config
            .create_with_context(context)
            .context("creating the produce loop's producer")?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let topic = topic.to_owned();
            let tag = tag.to_owned();
            let log = Arc::clone(&log);
            thread::spawn(move || run_loop(&producer, &topic, partitions, &tag, rate, &stop, &log))
        };
        Ok(ProduceLoop {
            stop,
            log,
            thread: Some(thread),
        })
    }

    pub fn acked_count(&self) -> u64 {
        self.log.acked_count.load(Ordering::SeqCst)
    }

    /// Waits until more than `count` records are acknowledged in total.
    pub fn wait_for_acks_beyond(&self, count: u64, timeout: Duration) -> Result<u64> {
        wait_until(
            &format!("more than {count} acknowledged records"),
            timeout,
            || {
                let now = self.acked_count();
                if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                    bail!("the produce loop ended after {now} acknowledgements");
                }
                Ok((now > count).then_some(now))
            },
        )
    }

    /// Stops sending, waits (up to 45 s, longer than `message.timeout.ms`) for every
    /// outstanding delivery report and returns the report.
    pub fn stop(mut self) -> Result<ProduceReport> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().context("stopped twice")?;
        let mut report = thread
            .join()
            .map_err(|_| anyhow!("the produce loop panicked"))?;
        report.acked =
            std::mem::take(&mut *self.log.acked.lock().unwrap_or_else(|p| p.into_inner()));
        report.failed =
            std::mem::take(&mut *self.log.failed.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(report)
    }
}

impl Drop for ProduceLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How long [`ProduceLoop`] waits for outstanding deliveries once stopped: longer than
/// `message.timeout.ms`, so every record ends acknowledged or failed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(45);

fn run_loop(
    producer: &ThreadedProducer<RecordingContext>,
    topic: &str,
    partitions: i32,
    tag: &str,
    rate: u32,
    stop: &std::sync::atomic::AtomicBool,
    log: &DeliveryLog,
) -> ProduceReport {
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut fatal = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            fatal = Some(format!("{code:?}: {reason}"));
            break;
        }
        if seq as f64 >= started.elapsed().as_secs_f64() * f64::from(rate) {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let key = format!("k-{tag}-{seq:08}");
        let value = format!("v-{tag}-{seq:08}");
        let partition =
            i32::try_from(seq % u64::from(partitions.unsigned_abs().max(1))).unwrap_or(0);
        let record = BaseRecord::to(topic)
            .key(key.to_bytes())
            .payload(value.to_bytes())
            .partition(partition);
        match producer.send(record) {
            Ok(()) => seq += 1,
            Err((
                rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                _,
            )) => {
                thread::sleep(Duration::from_millis(5));
            }
            Err((error, _)) => {
                log.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((value, format!("enqueue: {error}")));
                seq += 1;
            }
        }
    }
    let _ = producer.flush(FLUSH_TIMEOUT);
    if fatal.is_none()
        && let Some((code, reason)) = producer.client().fatal_error()
    {
        fatal = Some(format!("{code:?}: {reason}"));
    }
    ProduceReport {
        sent: seq,
        acked: Vec::new(),
        failed: Vec::new(),
        unresolved: usize::try_from(producer.in_flight_count()).unwrap_or(0),
        fatal,
    }
}

/// Reads the whole topic and checks the report against it: every acknowledged record is
/// stored exactly once, at its acknowledged partition and offset, and no record of `tag` is
/// stored twice. Returns how many records of `tag` are stored.
pub fn verify_acked_exactly_once(
    bootstrap: &str,
    topic: &str,
    tag: &str,
    report: &ProduceReport,
) -> Result<usize> {
    ensure!(
        report.fatal.is_none(),
        "the idempotent producer hit a fatal error: {:?}",
        report.fatal
    );
    let records = clients::consume_all(bootstrap, topic, Duration::from_secs(120))?;
    let prefix = format!("v-{tag}-");
    let mut stored: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for r in &records {
        let value = r.value_str();
        if value.starts_with(&prefix) {
            stored
                .entry(value)
                .or_default()
                .push((r.partition, r.offset));
        }
    }
    let mut problems = Vec::new();
    for (value, places) in &stored {
        if places.len() > 1 {
            problems.push(format!(
                "{value} stored {} times at {places:?}",
                places.len()
            ));
        }
    }
    for acked in &report.acked {
        match stored.get(&acked.value).map(Vec::as_slice) {
            None => problems.push(format!(
                "{} acknowledged at {}/{} is missing",
                acked.value, acked.partition, acked.offset
            )),
            Some([(p, o)]) if (*p, *o) != (acked.partition, acked.offset) => {
                problems.push(format!(
                    "{} acknowledged at {}/{} is stored at {p}/{o}",
                    acked.value, acked.partition, acked.offset
                ));
            }
            Some(_) => {}
        }
    }
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, reason) in &report.failed {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    let failed_stored = report
        .failed
        .iter()
        .filter(|(value, _)| stored.contains_key(value))
        .count();
    eprintln!(
        "verify({topic}, {tag}): sent {}, acknowledged {}, failed {} ({failed_stored} of them \
         stored anyway; from {:?} to {:?}; reasons {reasons:?}), unresolved {}, stored {}",
        report.sent,
        report.acked.len(),
        report.failed.len(),
        report.failed.iter().map(|f| &f.0).min(),
        report.failed.iter().map(|f| &f.0).max(),
        report.unresolved,
        stored.len()
    );
    ensure!(
        problems.is_empty(),
        "{} problems among {} acknowledged records ({} stored); first ones:\n{}",
        problems.len(),
        report.acked.len(),
        stored.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(stored.len())
}
