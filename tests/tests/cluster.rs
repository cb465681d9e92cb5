//! A three-node cluster with real clients: replicated topics as Metadata and DescribeCluster
//! show them on every broker, `acks=all` produce across a kill -9 of the partition leader,
//! a consumer group across a kill -9 of its coordinator, and a rolling restart under load.
//!
//! The nodes run in their own network namespaces when the tests run as root (see
//! `runnel_tests::harness::cluster`); these tests do not need that, `cluster_faults.rs` does.
//! Every fault test counts what was acknowledged and compares it with what is stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_tests::clients;
use runnel_tests::groups;
use runnel_tests::harness::cluster::{Cluster, ProduceLoop, SETTLE, verify_acked_exactly_once};
use runnel_tests::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_three_nodes_when_creating_an_rf3_topic_should_show_three_replicas_in_sync_everywhere()
-> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let topic = "replicated";
    cluster.create_topic(topic, 3, 3)?;

    let mut leaders_by_node = BTreeMap::new();
    for id in 1..=3 {
        let view = cluster.metadata_at(id, &[topic])?;
        ensure!(
            view.brokers == vec![1, 2, 3],
            "node {id} lists brokers {:?}",
            view.brokers
        );
        ensure!(
            (1..=3).contains(&view.controller),
            "node {id} names controller {} in Metadata",
            view.controller
        );
        let mut leaders = Vec::new();
        for partition in 0..3 {
            let state = view
                .partition(topic, partition)
                .with_context(|| format!("node {id} does not describe {topic}/{partition}"))?;
            let mut replicas = state.replicas.clone();
            replicas.sort_unstable();
            let mut isr = state.isr.clone();
            isr.sort_unstable();
            ensure!(
                state.error_code == 0
                    && (1..=3).contains(&state.leader)
                    && replicas == vec![1, 2, 3]
                    && isr == vec![1, 2, 3],
                "node {id}: {topic}/{partition} is {state:?}, expected a leader, replicas and \
                 ISR [1, 2, 3]"
            );
            leaders.push(state.leader);
        }
        leaders_by_node.insert(id, leaders);
    }
    let distinct: BTreeSet<_> = leaders_by_node.values().collect();
    ensure!(
        distinct.len() == 1,
        "the nodes disagree on the leaders: {leaders_by_node:?}"
    );

    // What an ordinary client sees.
    let consumer = clients::consumer(&cluster.bootstrap(), &[])?;
    let metadata = consumer.fetch_metadata(Some(topic), clients::REQUEST_TIMEOUT)?;
    let brokers: BTreeSet<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    ensure!(
        brokers == BTreeSet::from([1, 2, 3]),
        "rdkafka sees brokers {brokers:?}"
    );

    let mut controllers = BTreeSet::new();
    for i in 0..3 {
        let addr = cluster.node(i).kafka;
        let described = runnel_tests::raw::describe_cluster(addr)?;
        let ids: BTreeSet<i32> = described.brokers.iter().map(|b| b.broker_id.0).collect();
        ensure!(
            described.error_code == 0 && ids == BTreeSet::from([1, 2, 3]),
            "DescribeCluster at node {}: error {}, brokers {ids:?}",
            i + 1,
            described.error_code
        );
        controllers.insert(described.controller_id.0);
    }
    let controller = cluster.controller_id()?;
    ensure!(
        controllers == BTreeSet::from([controller]) && (1..=3).contains(&controller),
        "DescribeCluster names controllers {controllers:?} (and {controller})"
    );
    Ok(())
}

/// The leader of the only partition is killed while an idempotent `acks=all` producer
/// sends; a new leader takes over, the killed node rejoins the ISR. Every acknowledged record
/// must be stored exactly once at its acknowledged offset, and every replica's copy must be
/// the same: read by making each node the leader in turn ([`Cluster::compare_replicas`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_acks_all_producer_when_leader_is_killed_should_keep_every_acked_record_once()
-> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let topic = "failover";
    cluster.create_topic(topic, 1, 3)?;
    let leader = cluster.wait_for_leader(topic, 0)?;

    let producer = ProduceLoop::start(&cluster.bootstrap(), topic, 1, "kill", 2000, &[])?;
    let before = producer.wait_for_acks_beyond(500, SETTLE)?;
    cluster.node_by_id(leader)?.kill9()?;
    let new_leader = cluster.wait_for_new_leader(topic, 0, leader)?;
    eprintln!("leader {leader} killed after {before} acks; new leader {new_leader}");
    let during = producer.wait_for_acks_beyond(producer.acked_count() + 500, SETTLE)?;
    cluster.node_by_id(leader)?.restart()?;
    cluster.wait_for_full_isr(topic, 0)?;
    producer.wait_for_acks_beyond(during + 200, SETTLE)?;
    let report = producer.stop()?;

    verify_acked_exactly_once(&cluster.bootstrap(), topic, "kill", &report)?;
    ensure!(
        report.failed.is_empty() && report.unresolved == 0,
        "{} records failed and {} unresolved although the cluster recovered within the \
         message timeout; first failures: {:?}",
        report.failed.len(),
        report.unresolved,
        report.failed.iter().take(5).collect::<Vec<_>>()
    );
    cluster.compare_replicas(topic, 1)
}

const GROUP_RECORDS: usize = 3000;
const COMMIT_EVERY: usize = 50;

/// A subscribed member consumes and commits (every 50 records, synchronously) while the
/// group's coordinator, found with FindCoordinator, is killed with kill -9. It must go on
/// consuming through the new coordinator: no offset skipped, re-deliveries only at or above
/// the last successful commit of their partition, and the offsets committed last are what
/// OffsetFetch answers afterwards (so commits survive the coordinator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_consuming_group_when_coordinator_is_killed_should_resume_from_committed_offsets()
-> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let topic = "orders";
    let group = "billing";
    let partitions = 3;
    cluster.create_topic(topic, partitions, 3)?;
    produce_batch(&cluster.bootstrap(), topic, partitions, GROUP_RECORDS, "a").await?;

    let member = groups::subscribed(&cluster.bootstrap(), group, topic, &[])?;
    let mut ledger = GroupLedger::default();
    ledger.consume(&member, topic, "1000 records before the kill", |l| {
        l.seen.len() >= 1000
    })?;
    let coordinator = cluster.coordinator_id(group)?;
    let floor_at_kill = ledger.committed.clone();
    cluster.node_by_id(coordinator)?.kill9()?;
    eprintln!("coordinator {coordinator} killed; committed so far {floor_at_kill:?}");

    produce_batch(&cluster.bootstrap(), topic, partitions, 600, "b").await?;
    let highs = clients::high_watermarks(&cluster.bootstrap(), topic, partitions)?;
    let total: i64 = highs.values().sum();
    ensure!(
        total == i64::try_from(GROUP_RECORDS + 600)?,
        "high watermarks {highs:?} sum to {total}, expected {}",
        GROUP_RECORDS + 600
    );
    ledger.consume(&member, topic, "every record after the kill", |l| {
        l.missing(&highs).is_empty()
    })?;
    // The last commit, through the new coordinator.
    ledger.commit_pending(&member, topic, true)?;
    let new_coordinator = cluster.coordinator_id(group)?;
    ensure!(
        new_coordinator != coordinator,
        "FindCoordinator still names the killed node {coordinator}"
    );
    ensure!(
        ledger.violations.is_empty(),
        "re-deliveries below the committed offset: {:?}",
        ledger.violations.iter().take(10).collect::<Vec<_>>()
    );
    drop(member);
    let committed = groups::committed(&cluster.bootstrap(), group, topic, partitions)?;
    let expected: BTreeMap<i32, Option<i64>> = highs.iter().map(|(p, h)| (*p, Some(*h))).collect();
    ensure!(
        committed == expected,
        "OffsetFetch answers {committed:?} after the failover, expected {expected:?}"
    );
    eprintln!(
        "group: {} records, {} duplicates, {} commits ({} failed)",
        ledger.seen.len(),
        ledger.duplicates,
        ledger.commits,
        ledger.commit_failures
    );
    Ok(())
}

async fn produce_batch(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    tag: &str,
) -> Result<()> {
    let producer = clients::producer(bootstrap, &[("enable.idempotence", "true")])?;
    let values: Vec<(i32, String)> = (0..count)
        .map(|i| Ok((i32::try_from(i)? % partitions, format!("{tag}-{i}"))))
        .collect::<Result<_>>()?;
    clients::send_all(
        &producer,
        values
            .iter()
            .map(|(p, v)| FutureRecord::<(), _>::to(topic).partition(*p).payload(v)),
    )
    .await?;
    Ok(())
}

/// What one group member consumed and committed.
#[derive(Debug, Default)]
struct GroupLedger {
    seen: BTreeMap<(i32, i64), usize>,
    /// Partition → the offset of the last successful commit.
    committed: BTreeMap<i32, i64>,
    /// Partition → next offset, processed since the last commit (of this assignment).
    pending: BTreeMap<i32, i64>,
    since_commit: usize,
    rebalances: usize,
    commits: usize,
    commit_failures: usize,
    duplicates: usize,
    violations: Vec<String>,
}

impl GroupLedger {
    fn consume(
        &mut self,
        member: &groups::GroupConsumer,
        topic: &str,
        what: &str,
        mut done: impl FnMut(&GroupLedger) -> bool,
    ) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !done(self) {
            ensure!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {} records seen, committed {:?}, rebalances {:?}",
                self.seen.len(),
                self.committed,
                member.context().events()
            );
            // Errors while the coordinator or a leader moves are expected; keep polling.
            let record = match groups::poll_record(member, Duration::from_millis(100)) {
                Ok(record) => record,
                Err(error) => {
                    eprintln!("consumer: {error:#}");
                    None
                }
            };
            if member.context().count() != self.rebalances {
                self.rebalances = member.context().count();
                self.pending.clear();
                self.since_commit = 0;
            }
            let Some(record) = record else { continue };
            let floor = self.committed.get(&record.partition).copied().unwrap_or(0);
            let count = self
                .seen
                .entry((record.partition, record.offset))
                .or_insert(0);
            *count += 1;
            if *count > 1 {
                self.duplicates += 1;
                if record.offset < floor {
                    self.violations.push(format!(
                        "{}/{} delivered again (#{count}) although {floor} was committed",
                        record.partition, record.offset
                    ));
                }
            }
            self.pending.insert(record.partition, record.offset + 1);
            self.since_commit += 1;
            if self.since_commit >= COMMIT_EVERY {
                self.commit_pending(member, topic, false)?;
            }
        }
        Ok(())
    }

    /// Commits what is pending; a failure is counted (and retried with the next commit)
    /// unless `must` is set.
    fn commit_pending(
        &mut self,
        member: &groups::GroupConsumer,
        topic: &str,
        must: bool,
    ) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if must {
            let pending = self.pending.clone();
            wait_until("a successful final commit", SETTLE, || {
                // Keep the member's session alive while retrying.
                let _ = groups::poll_record(member, Duration::from_millis(50));
                Ok(groups::commit(member, topic, &pending).ok())
            })?;
        } else if let Err(error) = groups::commit(member, topic, &self.pending) {
            self.commit_failures += 1;
            eprintln!("commit failed: {error:#}");
            return Ok(());
        }
        self.commits += 1;
        for (p, o) in std::mem::take(&mut self.pending) {
            self.committed.insert(p, o);
        }
        self.since_commit = 0;
        Ok(())
    }

    /// Partition → first offset below its high watermark not seen yet.
    fn missing(&self, highs: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
        highs
            .iter()
            .filter_map(|(p, high)| {
                (0..*high)
                    .find(|o| !self.seen.contains_key(&(*p, *o)))
                    .map(|o| (*p, o))
            })
            .collect()
    }
}

/// Each node in turn is stopped gracefully and started again (waiting for a full ISR before
/// the next one) while an idempotent `acks=all` producer and an assigned consumer run.
/// Every acknowledged record must be stored exactly once and reach the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_load_when_every_node_restarts_in_turn_should_lose_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3)?;
    let topic = "rolling";
    let partitions = 2;
    cluster.create_topic(topic, partitions, 3)?;

    let producer = ProduceLoop::start(&cluster.bootstrap(), topic, partitions, "roll", 1000, &[])?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let reader = {
        let bootstrap = cluster.bootstrap();
        let stop = Arc::clone(&stop);
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || -> Result<()> {
            let consumer = clients::consumer(&bootstrap, &[])?;
            let mut list = TopicPartitionList::new();
            for p in 0..partitions {
                list.add_partition_offset(topic, p, Offset::Beginning)?;
            }
            consumer.assign(&list)?;
            while !stop.load(Ordering::SeqCst) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => {
                        let record = clients::Record::from(&message);
                        seen.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(record.value_str());
                    }
                    // Leader moves surface as transient errors; the consumer recovers.
                    Some(Err(error)) => eprintln!("reader: {error}"),
                    None => {}
                }
            }
            Ok(())
        })
    };

    producer.wait_for_acks_beyond(300, SETTLE)?;
    for i in 0..3 {
        cluster.node(i).stop()?;
        for p in 0..partitions {
            cluster.wait_for_leader(topic, p)?;
        }
        producer.wait_for_acks_beyond(producer.acked_count() + 200, SETTLE)?;
        cluster.node(i).restart()?;
        cluster.wait_for_full_isr_all(topic, partitions)?;
        producer.wait_for_acks_beyond(producer.acked_count() + 200, SETTLE)?;
    }
    let report = producer.stop()?;
    verify_acked_exactly_once(&cluster.bootstrap(), topic, "roll", &report)?;

    let wanted: BTreeSet<String> = report.acked.iter().map(|a| a.value.clone()).collect();
    let waited = wait_until(
        "the consumer to see every acknowledged record",
        SETTLE,
        || {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            Ok(wanted.is_subset(&seen).then_some(()))
        },
    );
    stop.store(true, Ordering::SeqCst);
    let read = reader.join();
    if let Err(error) = waited {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let missing: Vec<&String> = wanted.difference(&seen).take(10).collect();
        bail!(
            "{error:#}: {} of {} acknowledged records never reached the consumer, e.g. {missing:?}",
            wanted.difference(&seen).count(),
            wanted.len()
        );
    }
    match read {
        Ok(result) => result?,
        Err(_) => bail!("the reader thread panicked"),
    }
    ensure!(
        report.failed.is_empty(),
        "{} records failed during a rolling restart: {:?}",
        report.failed.len(),
        report.failed.iter().take(5).collect::<Vec<_>>()
    );
    Ok(())
}
