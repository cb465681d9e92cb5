//! Network faults in a three-node cluster (nodes in network namespaces; these tests skip with
//! the reason when namespaces are unavailable, e.g. without root), and a randomized schedule
//! of kills, graceful restarts, cut-offs and peer isolations under `acks=all` load.
//!
//! Knobs: `RUNNEL_CLUSTER_SOAK_SECS` (default 30) and `RUNNEL_CLUSTER_SEED` (default: from
//! the clock; always printed, and named in every failure of the randomized test).

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use runnel_tests::clients;
use runnel_tests::harness::cluster::{Cluster, ProduceLoop, SETTLE, verify_acked_exactly_once};

/// The fault tests run one at a time: each runs three brokers whose failure detection works
/// in fractions of a second, and three clusters at once on a 2-core CI machine starve them
/// into fencing each other for want of CPU, not for the faults under test.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn skip(cluster: &Cluster) -> bool {
    match cluster.netns_unavailable() {
        Some(reason) => {
            eprintln!("SKIPPED: nodes cannot be cut off without network namespaces: {reason}");
            true
        }
        None => false,
    }
}

/// The partition leader loses its peers (blackhole routes) but not its clients. Written to
/// directly with `acks=all`, it must acknowledge nothing: it cannot reach the followers and
/// cannot shrink the ISR without the controller. Meanwhile the majority elects a new leader
/// and serves an idempotent producer. After healing, the old leader rejoins the ISR: every
/// acknowledged record is stored exactly once, none of the records written to the isolated
/// leader is, and every replica's copy is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_leader_isolated_from_peers_when_writing_to_it_should_ack_nothing_and_lose_nothing()
-> Result<()> {
    let _serial = one_at_a_time();
    let mut cluster = Cluster::start(3)?;
    if skip(&cluster) {
        return Ok(());
    }
    let topic = "isolated";
    cluster.create_topic(topic, 1, 3)?;
    let leader = cluster.wait_for_leader(topic, 0)?;
    let producer = ProduceLoop::start(&cluster.bootstrap(), topic, 1, "iso", 1000, &[])?;
    producer.wait_for_acks_beyond(300, SETTLE)?;

    let index = cluster.index_of(leader)?;
    cluster.isolate_from_peers(index)?;
    let mut stale = Vec::new();
    for attempt in 0..3 {
        let values: Vec<String> = (0..5).map(|i| format!("stale-{attempt}-{i}")).collect();
        let answer = cluster.produce_at(leader, topic, 0, &values, 2000);
        let shown = answer.as_ref().map_err(|e| format!("{e:#}"));
        eprintln!("acks=all produce to the isolated leader {leader}: {shown:?}");
        ensure!(
            answer.is_err(),
            "the isolated leader {leader} acknowledged {values:?} at offset {shown:?}"
        );
        stale.extend(values);
    }
    let t = Instant::now();
    let new_leader = cluster.wait_for_new_leader(topic, 0, leader)?;
    eprintln!(
        "isolated {leader}; the majority elected {new_leader} ({:?})",
        t.elapsed()
    );
    producer.wait_for_acks_beyond(producer.acked_count() + 300, SETTLE)?;
    eprintln!("acks through the new leader ({:?})", t.elapsed());

    cluster.heal(index)?;
    cluster.wait_for_full_isr(topic, 0)?;
    eprintln!("healed, full ISR ({:?})", t.elapsed());
    producer.wait_for_acks_beyond(producer.acked_count() + 100, SETTLE)?;
    let report = producer.stop()?;
    eprintln!("producer stopped ({:?})", t.elapsed());
    verify_acked_exactly_once(&cluster.bootstrap(), topic, "iso", &report)?;
    let stored = clients::consume_all(&cluster.bootstrap(), topic, SETTLE)?;
    let leaked: Vec<String> = stored
        .iter()
        .map(clients::Record::value_str)
        .filter(|v| stale.contains(v))
        .collect();
    ensure!(
        leaked.is_empty(),
        "records written only to the isolated leader survived: {leaked:?}"
    );
    cluster.compare_replicas(topic, 1)
}

/// The partition leader is cut off entirely (its veth down): the majority elects a new leader
/// and goes on acknowledging; after reconnecting, the old leader rejoins the ISR and nothing
/// acknowledged is lost or duplicated, and no record fails (the producer's requests in flight
/// to the cut-off node time out after `socket.timeout.ms` and go to the new leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_leader_cut_off_when_producing_should_fail_over_and_rejoin_without_loss() -> Result<()>
{
    let _serial = one_at_a_time();
    let mut cluster = Cluster::start(3)?;
    if skip(&cluster) {
        return Ok(());
    }
    let topic = "cutoff";
    cluster.create_topic(topic, 1, 3)?;
    let leader = cluster.wait_for_leader(topic, 0)?;
    let producer = ProduceLoop::start(&cluster.bootstrap(), topic, 1, "cut", 1000, &[])?;
    producer.wait_for_acks_beyond(300, SETTLE)?;
    let index = cluster.index_of(leader)?;
    cluster.cut_off(index)?;
    let new_leader = cluster.wait_for_new_leader(topic, 0, leader)?;
    eprintln!("cut off {leader}; the majority elected {new_leader}");
    producer.wait_for_acks_beyond(producer.acked_count() + 300, SETTLE)?;
    cluster.reconnect(index)?;
    cluster.wait_for_full_isr(topic, 0)?;
    let report = producer.stop()?;
    verify_acked_exactly_once(&cluster.bootstrap(), topic, "cut", &report)?;
    ensure!(
        report.failed.is_empty() && report.unresolved == 0,
        "{} records failed and {} unresolved although a new leader served writes within the \
         message timeout; first failures: {:?}",
        report.failed.len(),
        report.unresolved,
        report.failed.iter().take(5).collect::<Vec<_>>()
    );
    Ok(())
}

/// splitmix64: enough randomness for a fault schedule, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill9,
    Stop,
    CutOff,
    Isolate,
}

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v.parse().with_context(|| format!("{name}={v:?}"))?)),
        Err(_) => Ok(None),
    }
}

/// Faults one node at a time (kill -9, graceful stop, cut-off, isolation from peers; the
/// last two only with namespaces), each held 0.5–3 s, then undone; after half of them the
/// schedule waits for a full ISR, after the others only for leaders, so faults also hit nodes
/// that are still catching up. Meanwhile an idempotent `acks=all` producer sends to two
/// partitions. At the end, with every node back: every acknowledged record stored exactly
/// once, and every replica's copy identical ([`Cluster::compare_replicas`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_random_faults_when_producing_acks_all_should_lose_nothing_and_converge() -> Result<()>
{
    let seed = match env_u64("RUNNEL_CLUSTER_SEED")? {
        Some(seed) => seed,
        None => u64::try_from(
            SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() % u128::from(u64::MAX),
        )?,
    };
    let secs = env_u64("RUNNEL_CLUSTER_SOAK_SECS")?.unwrap_or(30);
    eprintln!("randomized faults: RUNNEL_CLUSTER_SEED={seed} RUNNEL_CLUSTER_SOAK_SECS={secs}");
    let mut schedule = String::new();
    let result = soak(seed, Duration::from_secs(secs), &mut schedule).await;
    eprintln!("schedule:\n{schedule}");
    result.with_context(|| {
        format!("RUNNEL_CLUSTER_SEED={seed} RUNNEL_CLUSTER_SOAK_SECS={secs}; schedule:\n{schedule}")
    })
}

async fn soak(seed: u64, duration: Duration, schedule: &mut String) -> Result<()> {
    let mut rng = Rng(seed);
    let _serial = one_at_a_time();
    let mut cluster = Cluster::start(3)?;
    let namespaced = cluster.netns_unavailable().is_none();
    if !namespaced {
        eprintln!("no network namespaces, so only kills and restarts");
    }
    let topic = "soak";
    let partitions = 2;
    cluster.create_topic(topic, partitions, 3)?;
    let producer = ProduceLoop::start(&cluster.bootstrap(), topic, partitions, "soak", 800, &[])?;
    producer.wait_for_acks_beyond(200, SETTLE)?;

    let started = Instant::now();
    while started.elapsed() < duration {
        let index = usize::try_from(rng.below(3))?;
        let id = cluster.node(index).id;
        let fault = match rng.below(if namespaced { 4 } else { 2 }) {
            0 => Fault::Kill9,
            1 => Fault::Stop,
            2 => Fault::CutOff,
            _ => Fault::Isolate,
        };
        let hold = Duration::from_millis(500 + rng.below(2500));
        let full_isr = rng.below(2) == 0;
        let _ = writeln!(
            schedule,
            "{:>6.1}s node {id}: {fault:?} for {hold:?}, then wait for {} (acks {})",
            started.elapsed().as_secs_f64(),
            if full_isr { "a full ISR" } else { "leaders" },
            producer.acked_count()
        );
        match fault {
            Fault::Kill9 => {
                cluster.node(index).kill9()?;
            }
            Fault::Stop => cluster.node(index).stop()?,
            Fault::CutOff => cluster.cut_off(index)?,
            Fault::Isolate => cluster.isolate_from_peers(index)?,
        }
        // Holding a fault for a while is the point of the schedule, not a wait for a result.
        std::thread::sleep(hold);
        match fault {
            Fault::Kill9 | Fault::Stop => cluster.node(index).restart()?,
            Fault::CutOff => cluster.reconnect(index)?,
            Fault::Isolate => cluster.heal(index)?,
        }
        for p in 0..partitions {
            if full_isr {
                cluster.wait_for_full_isr(topic, p)?;
            } else {
                cluster.wait_for_leader(topic, p)?;
            }
        }
    }
    let _ = writeln!(schedule, "end: waiting for a full ISR and more acks");
    cluster.wait_for_full_isr_all(topic, partitions)?;
    // The cluster must acknowledge again. When the schedule's producer does not (librdkafka's
    // idempotent producer can be left waiting on its own state after a dense fault schedule,
    // with every broker serving and idle), a fresh producer decides: it must get its records
    // acknowledged, or the cluster itself stopped; the stalled producer's report is printed.
    let stalled = producer
        .wait_for_acks_beyond(producer.acked_count() + 200, SETTLE)
        .err();
    if let Some(stall) = &stalled {
        let _ = writeln!(
            schedule,
            "the schedule's producer stalled ({stall:#}); trying a fresh one"
        );
        let fresh =
            ProduceLoop::start(&cluster.bootstrap(), topic, partitions, "fresh", 1000, &[])?;
        fresh.wait_for_acks_beyond(200, SETTLE).with_context(|| {
            format!("a fresh producer got no acknowledgements either:\n{schedule}")
        })?;
        let fresh_report = fresh.stop()?;
        verify_acked_exactly_once(&cluster.bootstrap(), topic, "fresh", &fresh_report)?;
    }
    let report = producer.stop()?;
    let stored = verify_acked_exactly_once(&cluster.bootstrap(), topic, "soak", &report)?;
    let _ = writeln!(
        schedule,
        "sent {}, acknowledged {}, failed {}, unresolved {}, fatal {:?}, stored {stored}",
        report.sent,
        report.acked.len(),
        report.failed.len(),
        report.unresolved,
        report.fatal
    );
    if stalled.is_some() {
        eprintln!(
            "WARNING: the schedule's producer stalled; last failures {:?}\n{schedule}",
            report.failed.iter().rev().take(5).collect::<Vec<_>>()
        );
    } else {
        ensure!(
            report.unresolved == 0,
            "{} records unresolved",
            report.unresolved
        );
    }
    cluster.compare_replicas(topic, partitions)
}
