//! Consumer groups with real clients (classic protocol): members split the partitions of a
//! topic, rebalance when members join, keep their partitions across a static member's
//! restart, and rebalance incrementally with `cooperative-sticky`. Every record is consumed at
//! least once, and a record is only re-delivered after a rebalance from the last committed
//! offset of its partition on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use runnel_tests::groups::{self, GroupConsumer, RebalanceEvent};
use runnel_tests::{Broker, clients};

/// How long a group may take to settle after a member joins or leaves. Generous: the bound
/// only turns a hang into a failure; the tests wait for conditions, never for time.
const SETTLE: Duration = Duration::from_secs(30);
/// Members commit what they processed after this many records (not a divisor of the record
/// counts, so a rebalance usually finds uncommitted records to re-deliver).
const COMMIT_EVERY: usize = 7;

async fn create_topic(broker: &Broker, topic: &str, partitions: i32) -> Result<()> {
    clients::create_topic(
        &clients::admin(&broker.bootstrap())?,
        topic,
        partitions,
        &[],
    )
    .await
}

/// Produces `per_partition` records to each of `partitions` partitions.
async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
) -> Result<()> {
    let producer = clients::producer(bootstrap, &[])?;
    let values: Vec<(i32, String)> = (0..per_partition)
        .flat_map(|i| (0..partitions).map(move |p| (p, format!("{tag}-{p}-{i}"))))
        .collect();
    let records = values.iter().map(|(partition, value)| {
        FutureRecord::<(), _>::to(topic)
            .partition(*partition)
            .payload(value)
    });
    clients::send_all(&producer, records).await?;
    Ok(())
}

/// What every member of one group consumed and committed, and what broke the rules.
#[derive(Debug, Default)]
struct Ledger {
    /// (partition, offset) → deliveries.
    seen: BTreeMap<(i32, i64), usize>,
    /// partition → the highest offset committed so far (commits only move forward here).
    committed: BTreeMap<i32, i64>,
    commits: usize,
    duplicates: usize,
    commit_failures: Vec<String>,
    /// Re-deliveries below the committed offset of their partition.
    violations: Vec<String>,
}

impl Ledger {
    fn deliver(&mut self, member: &str, partition: i32, offset: i64) {
        let floor = self.committed.get(&partition).copied().unwrap_or(0);
        let count = self.seen.entry((partition, offset)).or_insert(0);
        *count += 1;
        if *count > 1 {
            self.duplicates += 1;
            if offset < floor {
                self.violations.push(format!(
                    "{member} re-read {partition}/{offset} (delivery #{count}) although \
                     offset {floor} was committed"
                ));
            }
        }
    }

    /// Partitions whose records `0..high` have not all been seen, with the first gap.
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

/// One group member: its consumer and what it processed but has not committed yet.
struct Member {
    name: String,
    consumer: GroupConsumer,
    /// partition → next offset to read, for records processed since the last commit.
    pending: BTreeMap<i32, i64>,
    processed_since_commit: usize,
    /// The rebalance count `pending` belongs to; a rebalance discards it, so a member never
    /// commits for a partition it may have lost.
    epoch: usize,
}

impl Member {
    fn join(
        bootstrap: &str,
        group: &str,
        topic: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let mut overrides = vec![("client.id", name)];
        overrides.extend_from_slice(extra);
        Ok(Member {
            name: name.to_owned(),
            consumer: groups::subscribed(bootstrap, group, topic, &overrides)?,
            pending: BTreeMap::new(),
            processed_since_commit: 0,
            epoch: 0,
        })
    }

    fn on_record(&mut self, topic: &str, ledger: &mut Ledger, partition: i32, offset: i64) {
        let epoch = self.consumer.context().count();
        if epoch != self.epoch {
            self.pending.clear();
            self.processed_since_commit = 0;
            self.epoch = epoch;
        }
        ledger.deliver(&self.name, partition, offset);
        self.pending.insert(partition, offset + 1);
        self.processed_since_commit += 1;
        if self.processed_since_commit >= COMMIT_EVERY {
            self.commit(topic, ledger);
        }
    }

    /// Commits what was processed since the last commit (unless a rebalance came between).
    fn commit(&mut self, topic: &str, ledger: &mut Ledger) {
        if self.consumer.context().count() != self.epoch {
            self.pending.clear();
        }
        if self.pending.is_empty() {
            return;
        }
        match groups::commit(&self.consumer, topic, &self.pending) {
            Ok(()) => {
                ledger.commits += 1;
                for (p, o) in &self.pending {
                    let committed = ledger.committed.entry(*p).or_insert(*o);
                    *committed = (*committed).max(*o);
                }
            }
            // A commit racing a rebalance may be refused; the ledger then keeps the older
            // offset, which only widens the window the checks allow.
            Err(error) => ledger
                .commit_failures
                .push(format!("{}: {error:#}", self.name)),
        }
        self.pending.clear();
        self.processed_since_commit = 0;
    }

    fn assigned(&self, topic: &str) -> Result<BTreeSet<i32>> {
        groups::assigned(&self.consumer, topic)
    }
}

/// Polls all members, feeding the ledger, until `done(members)` holds.
fn pump(
    members: &mut [Member],
    ledger: &mut Ledger,
    topic: &str,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Member], &Ledger) -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for member in members.iter_mut() {
            if let Some(record) =
                groups::poll_record(&member.consumer, Duration::from_millis(20))
                    .with_context(|| format!("{} while waiting for {what}", member.name))?
            {
                member.on_record(topic, ledger, record.partition, record.offset);
            }
        }
        if done(members, ledger)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let states: Vec<String> = members
                .iter()
                .map(|m| {
                    format!(
                        "{}: assigned {:?}, rebalances {:?}",
                        m.name,
                        m.assigned(topic),
                        m.consumer.context().events()
                    )
                })
                .collect();
            bail!(
                "timed out after {timeout:?} waiting for {what}\n{}\ncommit failures: {:?}",
                states.join("\n"),
                ledger.commit_failures
            );
        }
    }
}

/// Whether the members' assignments are disjoint, cover `0..partitions` and are as even as
/// the range assignor makes them (`partitions / members` each, here always exact).
fn evenly_split(members: &[Member], topic: &str, partitions: i32) -> Result<bool> {
    let share = usize::try_from(partitions)? / members.len();
    let mut union = BTreeSet::new();
    for member in members {
        let assigned = member.assigned(topic)?;
        if assigned.len() != share {
            return Ok(false);
        }
        union.extend(assigned);
    }
    Ok(union == (0..partitions).collect())
}

fn check_ledger(ledger: &Ledger, highs: &BTreeMap<i32, i64>) -> Result<()> {
    let missing = ledger.missing(highs);
    ensure!(
        missing.is_empty(),
        "records never consumed (partition → first missing offset): {missing:?}"
    );
    ensure!(
        ledger.violations.is_empty(),
        "{} re-deliveries below the committed offset; first ones:\n{}",
        ledger.violations.len(),
        ledger.violations[..ledger.violations.len().min(10)].join("\n")
    );
    ensure!(
        ledger.commits > 0,
        "no commit succeeded; failures: {:?}",
        ledger.commit_failures
    );
    eprintln!(
        "{} records, {} re-deliveries, {} commits, {} refused commits: {:?}",
        ledger.seen.len(),
        ledger.duplicates,
        ledger.commits,
        ledger.commit_failures.len(),
        ledger.commit_failures
    );
    Ok(())
}

/// The broker keeps what was committed last: the ledger's highest offset per partition.
fn check_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    ledger: &Ledger,
) -> Result<()> {
    let stored = groups::committed(bootstrap, group, topic, partitions)?;
    let expected: BTreeMap<i32, Option<i64>> = (0..partitions)
        .map(|p| (p, ledger.committed.get(&p).copied()))
        .collect();
    ensure!(
        stored == expected,
        "OffsetFetch answered {stored:?}, the members committed {expected:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_two_members_when_a_third_joins_should_respread_and_consume_everything_at_least_once()
-> Result<()> {
    const PARTITIONS: i32 = 6;
    let broker = Broker::start(groups::broker_options())?;
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("split", "split-group");
    create_topic(&broker, topic, PARTITIONS).await?;
    produce(&bootstrap, topic, PARTITIONS, 50, "first").await?;

    let mut ledger = Ledger::default();
    let mut members = vec![
        Member::join(&bootstrap, group, topic, "member-a", &[])?,
        Member::join(&bootstrap, group, topic, "member-b", &[])?,
    ];
    pump(
        &mut members,
        &mut ledger,
        topic,
        "two members with 3 partitions each",
        SETTLE,
        |m, _| evenly_split(m, topic, PARTITIONS),
    )?;
    let described = groups::describe(&bootstrap, group)?.context("group not described")?;
    ensure!(
        described.members.len() == 2,
        "DescribeGroups after the first rebalance: {described:?}"
    );

    produce(&bootstrap, topic, PARTITIONS, 50, "second").await?;
    members.push(Member::join(&bootstrap, group, topic, "member-c", &[])?);
    pump(
        &mut members,
        &mut ledger,
        topic,
        "three members with 2 partitions each",
        SETTLE,
        |m, _| evenly_split(m, topic, PARTITIONS),
    )?;

    produce(&bootstrap, topic, PARTITIONS, 50, "third").await?;
    let highs = clients::high_watermarks(&bootstrap, topic, PARTITIONS)?;
    ensure!(
        highs.values().all(|h| *h == 150),
        "high watermarks {highs:?}"
    );
    pump(
        &mut members,
        &mut ledger,
        topic,
        "every record to be consumed",
        Duration::from_secs(60),
        |_, l| Ok(l.missing(&highs).is_empty()),
    )?;
    for member in &mut members {
        member.commit(topic, &mut ledger);
    }
    ensure!(
        evenly_split(&members, topic, PARTITIONS)?,
        "the assignment changed after settling: {:?}",
        members
            .iter()
            .map(|m| m.assigned(topic))
            .collect::<Vec<_>>()
    );
    check_ledger(&ledger, &highs)?;
    check_committed(&bootstrap, group, topic, PARTITIONS, &ledger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_static_members_when_one_restarts_within_its_session_should_not_rebalance_the_other()
-> Result<()> {
    const PARTITIONS: i32 = 4;
    /// Long enough for several heartbeats of the member that stayed: a rebalance would reach it.
    const QUIET: Duration = Duration::from_secs(2);
    let broker = Broker::start(groups::broker_options())?;
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("static", "static-group");
    create_topic(&broker, topic, PARTITIONS).await?;
    let member = |instance: &str| {
        groups::subscribed(
            &bootstrap,
            group,
            topic,
            &[("group.instance.id", instance), ("client.id", instance)],
        )
    };
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();

    // `a` joins first and stays the leader, so the restarted member is a follower.
    let a = member("static-a")?;
    groups::poll_until(
        &[&a],
        "static-a to own everything",
        SETTLE,
        |_, _| Ok(()),
        || Ok(groups::assigned(&a, topic)? == all),
    )?;
    let b = member("static-b")?;
    groups::poll_until(
        &[&a, &b],
        "a 2+2 split",
        SETTLE,
        |_, _| Ok(()),
        || {
            let (pa, pb) = (groups::assigned(&a, topic)?, groups::assigned(&b, topic)?);
            Ok(pa.len() == 2 && pb.len() == 2 && pa.union(&pb).count() == all.len())
        },
    )?;
    let a_partitions = groups::assigned(&a, topic)?;
    let b_partitions = groups::assigned(&b, topic)?;
    let a_rebalances = a.context().count();

    // A static member closes without LeaveGroup; it comes back before its session ends.
    drop(b);
    let b = member("static-b")?;
    groups::poll_until(
        &[&a, &b],
        "the restarted static-b to get its partitions back",
        SETTLE,
        |_, _| Ok(()),
        || Ok(groups::assigned(&b, topic)? == b_partitions),
    )?;
    let quiet_until = Instant::now() + QUIET;
    groups::poll_until(
        &[&a, &b],
        "a quiet period",
        QUIET * 2,
        |_, _| Ok(()),
        || Ok(Instant::now() >= quiet_until),
    )?;

    let a_events = a.context().events();
    ensure!(
        a_events.len() == a_rebalances,
        "static-a saw rebalances after static-b restarted: {:?}",
        &a_events[a_rebalances..]
    );
    ensure!(
        groups::assigned(&a, topic)? == a_partitions,
        "static-a's partitions changed"
    );
    let expected_b = BTreeSet::from_iter(b_partitions.iter().map(|p| (topic.to_owned(), *p)));
    ensure!(
        b.context().events() == [RebalanceEvent::Assign(expected_b)],
        "the restarted static-b saw {:?}, expected one assignment of {b_partitions:?}",
        b.context().events()
    );
    let g = groups::describe(&bootstrap, group)?.context("group not described")?;
    ensure!(
        g.state == "Stable" && g.members.len() == 2,
        "DescribeGroups after the restart: {g:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_cooperative_sticky_members_when_one_joins_should_rebalance_incrementally()
-> Result<()> {
    const PARTITIONS: i32 = 4;
    let broker = Broker::start(groups::broker_options())?;
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("sticky", "sticky-group");
    create_topic(&broker, topic, PARTITIONS).await?;
    produce(&bootstrap, topic, PARTITIONS, 50, "first").await?;
    let strategy = [("partition.assignment.strategy", "cooperative-sticky")];

    let mut ledger = Ledger::default();
    let mut members = vec![Member::join(&bootstrap, group, topic, "coop-a", &strategy)?];
    pump(
        &mut members,
        &mut ledger,
        topic,
        "coop-a to own everything",
        SETTLE,
        |m, _| evenly_split(m, topic, PARTITIONS),
    )?;
    produce(&bootstrap, topic, PARTITIONS, 50, "second").await?;
    members.push(Member::join(&bootstrap, group, topic, "coop-b", &strategy)?);
    pump(
        &mut members,
        &mut ledger,
        topic,
        "a 2+2 split",
        SETTLE,
        |m, _| evenly_split(m, topic, PARTITIONS),
    )?;
    produce(&bootstrap, topic, PARTITIONS, 50, "third").await?;
    let highs = clients::high_watermarks(&bootstrap, topic, PARTITIONS)?;
    pump(
        &mut members,
        &mut ledger,
        topic,
        "every record to be consumed",
        Duration::from_secs(60),
        |_, l| Ok(l.missing(&highs).is_empty()),
    )?;
    for member in &mut members {
        member.commit(topic, &mut ledger);
    }

    let described = groups::describe(&bootstrap, group)?.context("group not described")?;
    ensure!(
        described.protocol == "cooperative-sticky",
        "the group chose {:?}",
        described.protocol
    );
    // Incremental: coop-a gave up exactly the two partitions coop-b took and kept the rest
    // throughout; coop-b never lost anything.
    let a_events = members[0].consumer.context().events();
    let b_events = members[1].consumer.context().events();
    let b_partitions = members[1].assigned(topic)?;
    let given_up: Vec<BTreeSet<i32>> = a_events
        .iter()
        .filter_map(|e| match e {
            RebalanceEvent::Revoke(list) => Some(list.iter().map(|(_, p)| *p).collect()),
            _ => None,
        })
        .collect();
    ensure!(
        given_up == [b_partitions.clone()],
        "coop-a revoked {given_up:?}, coop-b owns {b_partitions:?}; coop-a's callbacks: {a_events:?}"
    );
    ensure!(
        !b_events
            .iter()
            .any(|e| !matches!(e, RebalanceEvent::Assign(_))),
        "coop-b's callbacks: {b_events:?}"
    );
    check_ledger(&ledger, &highs)?;
    check_committed(&bootstrap, group, topic, PARTITIONS, &ledger)
}
