//! Power loss, approximated by `kill -9`, many times over. One idempotent `acks=all` producer
//! runs for the whole test; each iteration a consumer-group member consumes and commits
//! synchronously while the broker is killed with SIGKILL at a random moment, then restarted on
//! the same data directory and port. The producer reconnects and librdkafka re-sends what was
//! unacknowledged at the kill, with the same producer id and sequence numbers; the broker
//! keeps idempotence state in the same transaction as the data, so a re-sent batch it had
//! already stored must be answered with its original offset, not stored again.
//!
//! The producer numbers each partition's records `0, 1, 2, …` and never gives one up, so once
//! it has every answer after a restart, the only correct log is record `n` at offset `n`.
//! After every restart the test checks:
//! - the broker starts and still has the topic with its partitions;
//! - every record ever sent is acknowledged, and each partition holds exactly them: the high
//!   watermark is the number sent, and record `n` sits at offset `n` (in order, no gaps, no
//!   duplicates), also where the acknowledgement said so. Records acknowledged before a kill
//!   are never re-sent, so a lost one shows up as a gap;
//! - the new tail is read in full, a random window of the older part each time, the whole
//!   topic every 50 iterations and at the end;
//! - the group's committed offsets are at least the last commit the broker acknowledged, at
//!   most the largest one attempted, and not past the high watermark; the next member resumes
//!   exactly there and reads without gaps.
//!
//! `kill -9` loses the process's memory but not the kernel's page cache, so this checks that
//! acknowledgements follow the commit and that recovery is consistent; that the commit reached
//! the disk is LMDB's fsync (see the README, "Durability and power loss").
//!
//! Why the same port: librdkafka keeps re-sending an OffsetCommit that was in flight when the
//! coordinator died until that address answers again, so `commit(Sync)` would never return if
//! the broker came back elsewhere; re-sending produce requests needs the same address too.
//!
//! Iterations: `RUNNEL_POWER_LOSS_ITERATIONS` (default 200). The kill moments come from a
//! seeded generator; the seed is printed first and `RUNNEL_POWER_LOSS_SEED` repeats it (the
//! same moments; what the broker had done by then still varies with scheduling).

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use rdkafka::Offset;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use runnel_tests::clients::{self, Record};
use runnel_tests::{Broker, BrokerOptions, groups};

const TOPIC: &str = "power-loss";
const GROUP: &str = "power-loss-group";
const PARTITIONS: usize = 2;
const DEFAULT_ITERATIONS: u32 = 200;
/// How long the clients run before the kill, counted from the start of the iteration's group
/// member: uniformly random in this range (ms). The member needs a few hundred ms to join, so
/// some kills land while it joins and most while it consumes and commits.
const RUN_MS: (u64, u64) = (100, 900);
/// Records per second at most, so each iteration adds a bounded amount to read back.
const MAX_RATE: f64 = 4_000.0;
/// Records sent but not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 1_000;
/// The group member commits after this many records, or sooner when nothing more arrives.
const COMMIT_EVERY: usize = 100;
/// Records per random window re-read from the part verified earlier.
const SPOT_WINDOW: i64 = 64;
/// Every this many iterations, and after the last, the whole topic is read back.
const FULL_CHECK_EVERY: u32 = 50;
/// Bounds every wait (read-back, producer answers); only turns a hang into a failure.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnect quickly after a restart (librdkafka backs off up to 10 s by default).
const RECONNECT: [(&str, &str); 2] = [
    ("reconnect.backoff.ms", "10"),
    ("reconnect.backoff.max.ms", "100"),
];

/// xorshift64*: enough randomness for kill moments, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// A free loopback port below the ephemeral range, so that no client connection takes it
/// while the broker is down between a kill and the restart.
fn free_port(rng: &mut Rng) -> Result<u16> {
    for _ in 0..100 {
        let port = rng.between(20_000, 32_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in 20000..=32000 after 100 tries")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn payload(partition: usize, n: u64, iteration: u32) -> String {
    format!("p{partition}-n{n:09}-i{iteration:05}")
}

/// The record's number `n`, after checking that it was sent to this partition.
fn number(record: &Record) -> Result<i64> {
    let value = record.value_str();
    let mut parts = value.split('-');
    let partition = parts.next().and_then(|p| p.strip_prefix('p'));
    let n = parts.next().and_then(|n| n.strip_prefix('n'));
    match (partition.map(str::parse::<i32>), n.map(str::parse::<i64>)) {
        (Some(Ok(partition)), Some(Ok(n))) if partition == record.partition => Ok(n),
        _ => bail!(
            "{}/{}: unexpected payload {value:?}",
            record.partition,
            record.offset
        ),
    }
}

/// What the producer task and the test share.
#[derive(Default)]
struct FeedState {
    /// Send new records while set.
    sending: bool,
    /// Stop once nothing is in flight.
    finish: bool,
    /// The iteration named in new payloads (for the reader of a failure message).
    iteration: u32,
    /// Records handed to librdkafka and not answered yet, including one about to be sent.
    in_flight: usize,
    /// Per partition: records sent, i.e. the next `n`.
    sent: [u64; PARTITIONS],
    /// `(partition, offset, n)` acknowledged since the test last took them.
    acked: Vec<(usize, i64, u64)>,
    /// Records librdkafka gave up on, with the reason.
    failed: Vec<String>,
}

/// Produces numbered records round-robin while `sending`, and collects every answer.
async fn feed(producer: FutureProducer, state: Arc<Mutex<FeedState>>) {
    let mut in_flight: VecDeque<(usize, u64, DeliveryFuture)> = VecDeque::new();
    let mut window: Option<(Instant, u64)> = None;
    loop {
        // Decide under the lock, so that once the test has seen `!sending` and nothing in flight,
        // nothing more is sent.
        let next = {
            let mut state = lock(&state);
            state.in_flight = in_flight.len();
            if state.finish && in_flight.is_empty() {
                return;
            }
            if !state.sending {
                window = None;
            }
            let (since, sent) = *window.get_or_insert((Instant::now(), 0));
            let allowed = sent as f64 <= since.elapsed().as_secs_f64() * MAX_RATE;
            if state.sending && allowed && in_flight.len() < MAX_IN_FLIGHT {
                state.in_flight += 1;
                let partition = (state.sent.iter().sum::<u64>() % PARTITIONS as u64) as usize;
                Some((partition, state.sent[partition], state.iteration))
            } else {
                None
            }
        };
        if let Some((partition, n, iteration)) = next {
            let value = payload(partition, n, iteration);
            let record = FutureRecord::<(), _>::to(TOPIC)
                .partition(partition as i32)
                .payload(&value);
            match producer.send_result(record).map_err(|(error, _)| error) {
                Ok(delivery) => {
                    in_flight.push_back((partition, n, delivery));
                    lock(&state).sent[partition] += 1;
                    if let Some((_, sent)) = window.as_mut() {
                        *sent += 1;
                    }
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(error) => lock(&state)
                    .failed
                    .push(format!("enqueueing {value}: {error}")),
            }
            continue;
        }
        let Some((partition, n, delivery)) = in_flight.front_mut() else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let Ok(result) = tokio::time::timeout(Duration::from_millis(5), delivery).await else {
            continue;
        };
        let mut state = lock(&state);
        match result {
            Ok(Ok(delivery)) => state.acked.push((*partition, delivery.offset, *n)),
            Ok(Err((error, _))) => state.failed.push(format!("{partition}/n{n}: {error}")),
            Err(_) => state
                .failed
                .push(format!("{partition}/n{n}: the producer went away")),
        }
        in_flight.pop_front();
    }
}

/// Stops sending and waits until every record sent has its answer.
async fn drain(state: &Mutex<FeedState>) -> Result<()> {
    lock(state).sending = false;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let in_flight = lock(state).in_flight;
        if in_flight == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{in_flight} records still unanswered {TIMEOUT:?} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the group member of one iteration committed.
#[derive(Debug, Default)]
struct Commits {
    /// Partition → the last offset the broker acknowledged committing.
    acked: BTreeMap<i32, i64>,
    /// Partition → the largest offset sent in a commit, acknowledged or not.
    attempted: BTreeMap<i32, i64>,
    acked_count: u64,
    failed_count: u64,
    /// Records that were not where the member expected them (the group's resume point, then
    /// one after another).
    problems: Vec<String>,
}

/// One group member: consumes, checks that each partition continues exactly at `start` (the
/// group's committed offsets as read after the restart) without gaps, and commits
/// synchronously after every `COMMIT_EVERY` records or when nothing more arrives. Runs until
/// `stop`; stops committing at the first failed commit or consumer error (the broker is gone).
/// A commit in flight at the kill returns only once the broker is back (refused: the group has
/// a new life); one sent after it waits for the coordinator up to the session timeout.
fn consume_and_commit(
    bootstrap: &str,
    start: &BTreeMap<i32, Option<i64>>,
    stop: &AtomicBool,
) -> Commits {
    let mut commits = Commits::default();
    let session = groups::MIN_SESSION_TIMEOUT_MS.to_string();
    let overrides = [
        RECONNECT[0],
        RECONNECT[1],
        ("session.timeout.ms", session.as_str()),
    ];
    let consumer = match groups::subscribed(bootstrap, GROUP, TOPIC, &overrides) {
        Ok(consumer) => consumer,
        Err(error) => {
            commits
                .problems
                .push(format!("cannot create the group member: {error:#}"));
            return commits;
        }
    };
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut uncommitted = 0_usize;
    let mut committing = true;
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(10)) {
            Some(Ok(message)) => {
                let partition = message.partition();
                let resume = start.get(&partition).copied().flatten().unwrap_or(0);
                let expected = next.get(&partition).copied().unwrap_or(resume);
                if message.offset() != expected && commits.problems.len() < 10 {
                    commits.problems.push(format!(
                        "the group member read {partition}/{} where {expected} was next \
                         (committed offsets after the restart: {start:?})",
                        message.offset()
                    ));
                }
                next.insert(partition, message.offset() + 1);
                uncommitted += 1;
                if uncommitted < COMMIT_EVERY {
                    continue;
                }
            }
            // The broker is gone: a commit now would wait for it (up to the session timeout).
            Some(Err(_)) => committing = false,
            None => {}
        }
        if committing && uncommitted > 0 {
            for (partition, offset) in &next {
                let attempted = commits.attempted.entry(*partition).or_insert(*offset);
                *attempted = (*attempted).max(*offset);
            }
            if groups::commit(&consumer, TOPIC, &next).is_ok() {
                commits.acked.extend(&next);
                commits.acked_count += 1;
                uncommitted = 0;
            } else {
                commits.failed_count += 1;
                committing = false;
            }
        }
    }
    commits
}

/// A consumer for reading ranges back with [`read_ranges`]; it never joins a group.
fn reader(bootstrap: &str) -> Result<BaseConsumer> {
    clients::consumer(bootstrap, &[("fetch.wait.max.ms", "10")])
}

/// Reads `(partition, from, to)` ranges with `consumer` (replacing its assignment) and returns
/// the records sorted by partition and offset. Fails on a gap in the offsets.
fn read_ranges(consumer: &BaseConsumer, ranges: &[(i32, i64, i64)]) -> Result<Vec<Record>> {
    let wanted: Vec<(i32, i64, i64)> = ranges
        .iter()
        .copied()
        .filter(|(_, from, to)| to > from)
        .collect();
    let mut records = Vec::new();
    if wanted.is_empty() {
        return Ok(records);
    }
    let starts: Vec<(i32, Offset)> = wanted
        .iter()
        .map(|(p, from, _)| (*p, Offset::Offset(*from)))
        .collect();
    clients::assign(consumer, TOPIC, &starts)?;
    // Partition → (next offset to read, end).
    let mut left: BTreeMap<i32, (i64, i64)> = wanted
        .iter()
        .map(|(p, from, to)| (*p, (*from, *to)))
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    while !left.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "read {} records of {wanted:?} within {TIMEOUT:?}; left (next, end): {left:?}",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let record = Record::from(&message);
                let Some((next, end)) = left.get_mut(&record.partition) else {
                    continue;
                };
                // Earlier offsets: fetched for a previous assignment.
                if record.offset < *next {
                    continue;
                }
                ensure!(
                    record.offset == *next,
                    "{TOPIC}/{}: offset {} follows {}",
                    record.partition,
                    record.offset,
                    *next - 1
                );
                *next += 1;
                if *next == *end {
                    left.remove(&record.partition);
                }
                records.push(record);
            }
            Some(Err(error)) => bail!("reading {wanted:?}: {error}"),
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Reads the ranges and checks that each is complete and holds record `n` at offset `n`.
fn check_ranges(consumer: &BaseConsumer, ranges: &[(i32, i64, i64)]) -> Result<()> {
    let records = read_ranges(consumer, ranges)?;
    let expected: i64 = ranges.iter().map(|(_, from, to)| (to - from).max(0)).sum();
    ensure!(
        records.len() as i64 == expected,
        "read {} records of {ranges:?}, expected {expected}",
        records.len()
    );
    for record in &records {
        let n = number(record)?;
        ensure!(
            n == record.offset,
            "{TOPIC}/{} holds record n{n} at offset {}: every record must sit at its number \
             (a smaller number means a lost or skipped record, a larger one a duplicate)",
            record.partition,
            record.offset
        );
    }
    Ok(())
}

/// What the restarts so far have verified, and the totals to report.
#[derive(Default)]
struct Ledger {
    /// Per partition: offsets below this hold record `n` at offset `n`, checked.
    verified: [i64; PARTITIONS],
    /// Partition → the group's committed offset must be at least this …
    committed_floor: BTreeMap<i32, i64>,
    /// … and at most this (the largest offset ever sent in a commit).
    committed_ceiling: BTreeMap<i32, i64>,
    records_acked: u64,
    unanswered_at_kills: u64,
    commits_acked: u64,
    commits_failed: u64,
}

impl Ledger {
    /// Checks the log of the restarted broker once the producer has an answer for each of the
    /// `sent` records (`acked` since the last check, `failed` ever). Returns the high watermarks.
    fn verify_log(
        &mut self,
        bootstrap: &str,
        sent: &[u64; PARTITIONS],
        acked: &[(usize, i64, u64)],
        failed: &[String],
        rng: &mut Rng,
    ) -> Result<BTreeMap<i32, i64>> {
        ensure!(
            failed.is_empty(),
            "the producer gave up on {} records: {:?}",
            failed.len(),
            &failed[..failed.len().min(10)]
        );
        let consumer = reader(bootstrap)?;
        let partitions = clients::partition_count(&consumer, TOPIC)?;
        ensure!(
            partitions == PARTITIONS as i32,
            "{TOPIC} has {partitions} partitions"
        );
        let mut highs = BTreeMap::new();
        for (partition, sent) in sent.iter().enumerate() {
            let marks = clients::watermarks(&consumer, TOPIC, partition as i32)?;
            ensure!(
                marks == (0, *sent as i64),
                "{TOPIC}/{partition} has watermarks {marks:?}; the producer sent {sent} records \
                 and has an answer for each, so (0, {sent}) was expected"
            );
            highs.insert(partition as i32, marks.1);
        }
        let mut spots = Vec::new();
        for (partition, verified) in self.verified.iter().enumerate() {
            if *verified > 0 {
                let from = rng.between(0, *verified as u64 - 1) as i64;
                spots.push((partition as i32, from, (from + SPOT_WINDOW).min(*verified)));
            }
        }
        check_ranges(&consumer, &spots).context("re-reading a random window")?;
        let tails: Vec<(i32, i64, i64)> = highs
            .iter()
            .map(|(p, high)| (*p, self.verified[*p as usize], *high))
            .collect();
        check_ranges(&consumer, &tails).context("reading the new records")?;
        for (partition, high) in &highs {
            self.verified[*partition as usize] = *high;
        }
        let wrong: Vec<String> = acked
            .iter()
            .filter(|(_, offset, n)| *offset != *n as i64)
            .map(|(p, offset, n)| format!("{p}/n{n} acknowledged at offset {offset}"))
            .take(10)
            .collect();
        ensure!(
            wrong.is_empty(),
            "acknowledged at the wrong offsets: {wrong:?}"
        );
        self.records_acked += acked.len() as u64;
        Ok(highs)
    }

    /// The committed offsets are within `[last acknowledged, largest attempted]` and not past
    /// the high watermark; what is read now becomes the new floor.
    fn check_commits(
        &mut self,
        bootstrap: &str,
        commits: &Commits,
        highs: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, Option<i64>>> {
        ensure!(
            commits.problems.is_empty(),
            "{}",
            commits.problems.join("\n")
        );
        for (partition, offset) in &commits.acked {
            let floor = self.committed_floor.entry(*partition).or_insert(*offset);
            *floor = (*floor).max(*offset);
        }
        for (partition, offset) in &commits.attempted {
            let ceiling = self.committed_ceiling.entry(*partition).or_insert(*offset);
            *ceiling = (*ceiling).max(*offset);
        }
        self.commits_acked += commits.acked_count;
        self.commits_failed += commits.failed_count;
        let committed = groups::committed(bootstrap, GROUP, TOPIC, PARTITIONS as i32)?;
        for (partition, high) in highs {
            let found = committed.get(partition).copied().flatten();
            let floor = self.committed_floor.get(partition).copied();
            let ceiling = self.committed_ceiling.get(partition).copied();
            let fine = match (found, floor, ceiling) {
                (None, None, _) => true,
                (Some(found), floor, Some(ceiling)) => {
                    floor.is_none_or(|floor| found >= floor) && found <= ceiling && found <= *high
                }
                _ => false,
            };
            ensure!(
                fine,
                "group {GROUP} has {found:?} committed for {TOPIC}/{partition}; the last \
                 acknowledged commit was {floor:?}, the largest attempted {ceiling:?}, the high \
                 watermark is {high}"
            );
            if let Some(found) = found {
                self.committed_floor.insert(*partition, found);
            }
        }
        Ok(committed)
    }

    fn full_check(&self, bootstrap: &str) -> Result<()> {
        let ranges: Vec<(i32, i64, i64)> = (0..PARTITIONS)
            .map(|p| (p as i32, 0, self.verified[p]))
            .collect();
        check_ranges(&reader(bootstrap)?, &ranges).context("reading the whole topic")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_idempotent_producer_and_committing_group_when_broker_is_killed_at_random_moments_should_keep_every_acked_record_once_and_the_offsets()
-> Result<()> {
    let iterations: u32 = env_or("RUNNEL_POWER_LOSS_ITERATIONS", DEFAULT_ITERATIONS)?;
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let seed: u64 = env_or("RUNNEL_POWER_LOSS_SEED", clock)?;
    eprintln!(
        "power loss: seed {seed} (RUNNEL_POWER_LOSS_SEED={seed} repeats it), {iterations} iterations"
    );
    let mut rng = Rng::new(seed);
    let options = BrokerOptions::new()
        .listen(format!("127.0.0.1:{}", free_port(&mut Rng::new(clock))?))
        .flag("--group-initial-rebalance-delay-ms", 0)
        .flag(
            "--group-min-session-timeout-ms",
            groups::MIN_SESSION_TIMEOUT_MS,
        );
    let mut broker = Broker::start(options)?;
    let bootstrap = broker.bootstrap();
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, TOPIC, PARTITIONS as i32, &[("retention.ms", "-1")]).await?;
    // Never give a record up: after a kill, librdkafka must re-send it once the broker is back.
    let producer = clients::producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "0"),
            ("retry.backoff.ms", "10"),
            ("retry.backoff.max.ms", "100"),
            RECONNECT[0],
            RECONNECT[1],
        ],
    )?;
    let state = Arc::new(Mutex::new(FeedState::default()));
    let feeding = tokio::spawn(feed(producer, Arc::clone(&state)));
    let mut ledger = Ledger::default();
    let mut committed: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    let started = Instant::now();

    for iteration in 0..iterations {
        let run_for = Duration::from_millis(rng.between(RUN_MS.0, RUN_MS.1));
        let context = || format!("iteration {iteration} (seed {seed}, killed after {run_for:?})");
        {
            let mut state = lock(&state);
            state.sending = true;
            state.iteration = iteration;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let member = {
            let (bootstrap, start, stop) =
                (bootstrap.clone(), committed.clone(), Arc::clone(&stop));
            std::thread::spawn(move || consume_and_commit(&bootstrap, &start, &stop))
        };
        tokio::time::sleep(run_for).await;
        ledger.unanswered_at_kills += lock(&state).in_flight as u64;
        broker.kill9().with_context(context)?;
        stop.store(true, Ordering::SeqCst);
        lock(&state).sending = false;

        broker
            .restart()
            .with_context(|| format!("restarting after {}", context()))?;
        ensure!(
            broker.bootstrap() == bootstrap,
            "the broker came back on {}",
            broker.bootstrap()
        );
        drain(&state).await.with_context(context)?;
        let (sent, acked, failed) = {
            let mut state = lock(&state);
            let acked = std::mem::take(&mut state.acked);
            (state.sent, acked, state.failed.clone())
        };
        let after = || format!("after the restart that followed {}", context());
        // Meanwhile the member finishes: a commit cut off by the kill returns once the broker
        // is back, then it leaves.
        let highs = ledger
            .verify_log(&bootstrap, &sent, &acked, &failed, &mut rng)
            .with_context(after)?;
        let commits = member
            .join()
            .map_err(|_| anyhow!("the group member panicked"))?;
        committed = ledger
            .check_commits(&bootstrap, &commits, &highs)
            .with_context(after)?;
        if (iteration + 1).is_multiple_of(FULL_CHECK_EVERY) {
            ledger.full_check(&bootstrap).with_context(context)?;
        }
        if (iteration + 1).is_multiple_of(25) {
            eprintln!(
                "power loss: {} iterations, {} records and {} commits acknowledged, {:.0?}",
                iteration + 1,
                ledger.records_acked,
                ledger.commits_acked,
                started.elapsed()
            );
        }
    }
    lock(&state).finish = true;
    feeding.await.context("the producer task")?;
    ledger.full_check(&bootstrap).context("final check")?;
    eprintln!(
        "power loss: {iterations} iterations run (kill -9 at a random moment, restart, verify) in \
         {:.0?}; {} records acknowledged, each stored exactly once in order ({} of them still \
         awaited their answer when the broker was killed); {} offset commits acknowledged ({} \
         attempts failed around a kill); seed {seed}",
        started.elapsed(),
        ledger.records_acked,
        ledger.unanswered_at_kills,
        ledger.commits_acked,
        ledger.commits_failed,
    );
    Ok(())
}
