//! Failover time: an idempotent `acks=all` producer sends one record every [`INTERVAL`] to a
//! one-partition topic (replication factor 3), the partition leader gets SIGKILL, and the
//! clock runs from the kill to the first acknowledgement of a record *sent after* the kill
//! (records already in flight to the dead leader do not count). How long the nodes took to
//! agree on a new leader is reported beside it, to tell the broker's part from the client's.
//!
//! Invariants:
//! - the producer never waits for acknowledgements before sending, on a fixed schedule, so
//!   the first post-kill record is sent at most one interval after the kill;
//! - every acknowledged record must be in the topic afterwards (read back from offset 0 once
//!   the killed node is back and the ISR is full again), or the round fails: a broker that
//!   loses acknowledged records has no failover time;
//! - the producer's thread is stopped when a [`Round`] ends, also on error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use runnel_tests::clients;

use super::super::client::{ClientSettings, Diagnostics};
use super::nodes::Nodes;

/// Time between two sends.
pub const INTERVAL: Duration = Duration::from_millis(5);
/// Acknowledgements before the kill, so the producer is connected and steady.
const WARM_UP_ACKS: u64 = 200;
/// How long the producer keeps sending after the first post-kill acknowledgement.
const AFTER: Duration = Duration::from_millis(500);
/// How long a failover may take before the round fails.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// How often the nodes are asked for the partition's leader while waiting (each poll is a
/// Metadata request to every running node).
const ELECTION_POLL: Duration = Duration::from_millis(10);
/// librdkafka's record timeout; the flush at the end waits a little longer.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What one round measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Kill to the first acknowledgement of a record sent after it.
    pub failover: Duration,
    /// Kill to every running node naming the same new leader, when seen before the first
    /// post-kill acknowledgement (the nodes are polled meanwhile).
    pub election: Option<Duration>,
    pub old_leader: i32,
    pub new_leader: i32,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// Records stored more than once (idempotence should prevent it).
    pub duplicates: u64,
}

#[derive(Debug, Default)]
struct Log {
    /// (sequence number, when acknowledged), in arrival order.
    acks: Mutex<Vec<(u64, Instant)>>,
    /// (sequence number, error).
    failed: Mutex<Vec<(u64, String)>>,
    acked: AtomicU64,
    /// Records handed to librdkafka; record `i` has sequence number `i`.
    sent: AtomicU64,
}

struct Tracker {
    log: Arc<Log>,
    diagnostics: Diagnostics,
}

impl ClientContext for Tracker {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.diagnostics.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.diagnostics.error(error, reason);
    }
}

impl ProducerContext for Tracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let seq = seq as u64;
        match result {
            Ok(_) => {
                lock(&self.log.acks).push((seq, Instant::now()));
                self.log.acked.fetch_add(1, Ordering::Release);
            }
            Err((error, _)) => lock(&self.log.failed).push((seq, error.to_string())),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the sending thread ended.
struct Ended {
    fatal: Option<String>,
    /// Records neither acknowledged nor failed when the flush gave up.
    unresolved: i32,
}

/// The producer of one round, on its own thread.
struct Loop {
    stop: Arc<AtomicBool>,
    log: Arc<Log>,
    thread: Option<JoinHandle<Ended>>,
}

impl Loop {
    fn start(client: &ClientSettings, topic: &str) -> anyhow::Result<Loop> {
        let mut config = client.base();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        client.finish(&mut config);
        let log = Arc::new(Log::default());
        let producer: ThreadedProducer<Tracker> = config
            .create_with_context(Tracker {
                log: Arc::clone(&log),
                diagnostics: Diagnostics::default(),
            })
            .context("creating the failover producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, log, topic) = (Arc::clone(&stop), Arc::clone(&log), topic.to_owned());
            thread::spawn(move || send_loop(&producer, &topic, &stop, &log))
        };
        Ok(Loop {
            stop,
            log,
            thread: Some(thread),
        })
    }

    fn acked(&self) -> u64 {
        self.log.acked.load(Ordering::Acquire)
    }

    fn sent(&self) -> u64 {
        self.log.sent.load(Ordering::Acquire)
    }

    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// When the first acknowledgement of a record numbered `from` or later arrived.
    fn first_ack_from(&self, from: u64) -> Option<Instant> {
        lock(&self.log.acks)
            .iter()
            .find(|(seq, _)| *seq >= from)
            .map(|(_, at)| *at)
    }

    /// Stops sending and waits for every outstanding delivery report.
    fn stop(&mut self) -> anyhow::Result<Ended> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().context("stopped twice")?;
        thread
            .join()
            .map_err(|_| anyhow!("the failover producer panicked"))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sends record `i` (payload: `i` in ten digits) at `start + i × INTERVAL` until stopped, then
/// flushes.
fn send_loop(
    producer: &ThreadedProducer<Tracker>,
    topic: &str,
    stop: &AtomicBool,
    log: &Log,
) -> Ended {
    let start = Instant::now();
    let mut fatal = None;
    let mut seq: u32 = 0;
    while !stop.load(Ordering::SeqCst) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            fatal = Some(format!("{code:?}: {reason}"));
            break;
        }
        let due = start + INTERVAL * seq;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let payload = format!("{seq:010}");
        let mut record = BaseRecord::<(), str, usize>::with_opaque_to(topic, seq as usize)
            .payload(payload.as_str())
            .partition(0);
        let enqueued = loop {
            match producer.send(record) {
                Ok(()) => break Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => break Err(error),
            }
        };
        if let Err(error) = enqueued {
            fatal = Some(format!("enqueueing record {seq}: {error}"));
            break;
        }
        seq += 1;
        log.sent.store(u64::from(seq), Ordering::Release);
    }
    let _ = producer.flush(MESSAGE_TIMEOUT + Duration::from_secs(5));
    if fatal.is_none()
        && let Some((code, reason)) = producer.client().fatal_error()
    {
        fatal = Some(format!("{code:?}: {reason}"));
    }
    Ended {
        fatal,
        unresolved: producer.in_flight_count(),
    }
}

/// One kill of the leader of `topic`/0 (a fresh topic, full ISR), with the restart of the
/// killed node and the check that nothing acknowledged was lost.
pub fn round(
    nodes: &mut Nodes,
    client: &ClientSettings,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    nodes.create_topic(topic, 1)?;
    let before = nodes.wait_for(topic, 0, "a full ISR", timeout, |v| v.full_isr())?;
    let old_leader = before.leader;
    let mut producer = Loop::start(client, topic)?;
    let warm = Instant::now();
    while producer.acked() < WARM_UP_ACKS {
        if producer.finished() || warm.elapsed() > timeout {
            bail!(
                "the failover producer got {} of {WARM_UP_ACKS} acknowledgements before the \
                 kill within {timeout:?}",
                producer.acked()
            );
        }
        thread::sleep(Duration::from_millis(5));
    }

    let kill = Instant::now();
    nodes.kill9(old_leader)?;
    // Every record from here on was sent after the kill (a few sent between the kill and
    // this read are left out, which can only lengthen the measured failover).
    let first_after = producer.sent();
    let (mut election, mut new_leader) = (None, -1);
    let mut next_poll = Duration::ZERO;
    let first_ack = loop {
        if let Some(at) = producer.first_ack_from(first_after) {
            break at;
        }
        if election.is_none()
            && kill.elapsed() >= next_poll
            && let Ok(Some(view)) = nodes.agreed(topic, 0)
            && view.leader >= 0
            && view.leader != old_leader
        {
            election = Some(kill.elapsed());
            new_leader = view.leader;
        }
        if producer.finished() || kill.elapsed() > FAILOVER_LIMIT {
            bail!(
                "no record sent after killing leader {old_leader} of {topic}/0 was acknowledged \
                 within {:?} ({} acknowledged in all; new leader {new_leader})\n{}",
                kill.elapsed(),
                producer.acked(),
                nodes.log_tails()
            );
        }
        if kill.elapsed() >= next_poll {
            next_poll = kill.elapsed() + ELECTION_POLL;
        }
        thread::sleep(Duration::from_millis(1));
    };
    let failover = first_ack.duration_since(kill);
    thread::sleep(AFTER);
    let ended = producer.stop()?;
    if let Some(fatal) = &ended.fatal {
        bail!("the idempotent producer of {topic} failed fatally: {fatal}");
    }
    nodes.ensure_running("the failover round")?;
    let after = nodes.wait_for(topic, 0, "a new leader", timeout, |v| {
        v.leader >= 0 && v.leader != old_leader
    })?;
    nodes.restart(old_leader)?;
    nodes.wait_for(topic, 0, "a full ISR after the restart", timeout, |v| {
        v.full_isr()
    })?;

    let acked: Vec<u64> = lock(&producer.log.acks).iter().map(|(s, _)| *s).collect();
    let failed = lock(&producer.log.failed).clone();
    let (stored, duplicates) = stored(&nodes.bootstrap(), topic, timeout)?;
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|s| !stored.contains(s))
        .collect();
    let sent = producer.sent();
    eprintln!(
        "failover {topic}: killed leader {old_leader}, new leader {} (epoch {}), failover \
         {:.0} ms, election {}; sent {sent}, acknowledged {}, failed {} (first: {:?}), \
         unresolved {}, stored {}, duplicates {duplicates}, lost {}",
        after.leader,
        after.leader_epoch,
        failover.as_secs_f64() * 1e3,
        election.map_or("not seen first".to_owned(), |e| format!(
            "{:.0} ms",
            e.as_secs_f64() * 1e3
        )),
        acked.len(),
        failed.len(),
        failed.first(),
        ended.unresolved,
        stored.len(),
        lost.len()
    );
    if !lost.is_empty() {
        bail!(
            "{} of {} acknowledged records of {topic} are missing after killing leader \
             {old_leader} (new leader {}); first ones: {:?}\n{}",
            lost.len(),
            acked.len(),
            after.leader,
            &lost[..lost.len().min(20)],
            nodes.log_tails()
        );
    }
    Ok(Outcome {
        failover,
        election,
        old_leader,
        new_leader: after.leader,
        sent,
        acked: acked.len() as u64,
        failed: failed.len() as u64,
        duplicates,
    })
}

/// The sequence numbers stored in `topic`, and how many records repeat one.
fn stored(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<(BTreeSet<u64>, u64)> {
    let records = clients::consume_all(bootstrap, topic, timeout)
        .with_context(|| format!("reading back {topic}"))?;
    let mut seqs = BTreeSet::new();
    let mut duplicates = 0;
    for record in &records {
        let value = record.value_str();
        let seq: u64 = value.parse().with_context(|| {
            format!(
                "record {topic}/{}@{} holds `{value}`",
                record.partition, record.offset
            )
        })?;
        if !seqs.insert(seq) {
            duplicates += 1;
        }
    }
    Ok((seqs, duplicates))
}
