//! Session expiry: a group member killed hard (`kcat -G`, then SIGKILL: no LeaveGroup) is
//! removed once its session timeout passes, and its partitions move to the members that are
//! still alive — whether the group was stable when it died or a rebalance started before its
//! session ran out (Kafka keeps checking the sessions of members that have not rejoined yet).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use runnel_tests::groups::{self, GroupConsumer};
use runnel_tests::kcat::{self, KcatProcess};
use runnel_tests::{Broker, clients, wait_until};

const PARTITIONS: i32 = 4;
/// The victim's session timeout; the rdkafka members keep the harness default.
const VICTIM_SESSION_MS: u64 = 2_000;
/// Added to the victim's session timeout: the broker's sweep, a heartbeat interval and a
/// rebalance, with plenty to spare on a loaded machine. Far below the rebalance timeout
/// (`max.poll.interval.ms`, 300 s), so only session expiry can meet it.
const MARGIN: Duration = Duration::from_secs(15);
/// Bounds the waits for a group to settle; only turns a hang into a failure.
const SETTLE: Duration = Duration::from_secs(30);

/// A group of two: a `kcat -G` victim and an rdkafka survivor, two partitions each.
struct Pair {
    broker: Broker,
    topic: &'static str,
    group: &'static str,
    victim: KcatProcess,
    survivor: GroupConsumer,
    /// The survivor's member id, as DescribeGroups shows it.
    survivor_member: String,
}

async fn victim_and_survivor(topic: &'static str, group: &'static str) -> Result<Pair> {
    let broker = Broker::start(groups::broker_options())?;
    let bootstrap = broker.bootstrap();
    clients::create_topic(&clients::admin(&bootstrap)?, topic, PARTITIONS, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    let records =
        (0..PARTITIONS).map(|p| FutureRecord::<(), _>::to(topic).partition(p).payload("r"));
    clients::send_all(&producer, records).await?;

    let session = format!("session.timeout.ms={VICTIM_SESSION_MS}");
    let heartbeat = format!("heartbeat.interval.ms={}", groups::HEARTBEAT_INTERVAL_MS);
    let mut victim = kcat::spawn(&[
        "-b",
        &bootstrap,
        "-X",
        "broker.address.family=v4",
        "-X",
        &session,
        "-X",
        &heartbeat,
        "-X",
        "client.id=victim",
        "-G",
        group,
        topic,
    ])?;
    wait_until("kcat to own every partition", SETTLE, || {
        ensure!(victim.is_running()?, "kcat exited:\n{}", victim.stderr());
        let Some(g) = groups::describe(&bootstrap, group)? else {
            return Ok(None);
        };
        let owned: Vec<_> = g.partitions_of(topic).into_values().collect();
        Ok((g.state == "Stable" && owned == [(0..PARTITIONS).collect()]).then_some(()))
    })
    .with_context(|| format!("kcat stderr:\n{}", victim.stderr()))?;

    let survivor = groups::subscribed(&bootstrap, group, topic, &[("client.id", "survivor")])?;
    let mut survivor_member = String::new();
    groups::poll_until(
        &[&survivor],
        "kcat and the survivor to share the partitions",
        SETTLE,
        |_, _| Ok(()),
        || {
            let mine = groups::assigned(&survivor, topic)?;
            if mine.len() != 2 {
                return Ok(false);
            }
            let Some(g) = groups::describe(&bootstrap, group)? else {
                return Ok(false);
            };
            let by_member = g.partitions_of(topic);
            let Some((id, _)) = by_member.iter().find(|(_, p)| **p == mine) else {
                return Ok(false);
            };
            survivor_member.clone_from(id);
            let others: BTreeSet<i32> = by_member
                .iter()
                .filter(|(m, _)| **m != survivor_member)
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            Ok(g.state == "Stable"
                && g.members.len() == 2
                && others == (0..PARTITIONS).filter(|p| !mine.contains(p)).collect())
        },
    )
    .with_context(|| format!("kcat stderr:\n{}", victim.stderr()))?;
    Ok(Pair {
        broker,
        topic,
        group,
        victim,
        survivor,
        survivor_member,
    })
}

impl Pair {
    /// SIGKILLs the victim; returns when it happened.
    fn kill_victim(&mut self) -> Result<Instant> {
        let pid = self.victim.pid();
        self.victim
            .kill9()
            .with_context(|| format!("kill -9 {pid}"))?;
        Ok(Instant::now())
    }

    /// The member ids DescribeGroups shows, once the group is Stable.
    fn stable_members(&self) -> Result<BTreeSet<String>> {
        let g = groups::describe(&self.broker.bootstrap(), self.group)?
            .context("group not described")?;
        ensure!(g.state == "Stable", "DescribeGroups: {g:?}");
        Ok(g.members.into_iter().map(|m| m.member_id).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_member_killed_hard_when_its_session_expires_should_move_its_partitions_to_the_survivor()
-> Result<()> {
    let mut pair = victim_and_survivor("expiry", "expiry-group").await?;
    let killed_at = pair.kill_victim()?;
    let (survivor, topic) = (&pair.survivor, pair.topic);
    groups::poll_until(
        &[survivor],
        "the survivor to own every partition after the victim's session expired",
        Duration::from_millis(VICTIM_SESSION_MS) + MARGIN,
        |_, _| Ok(()),
        || Ok(groups::assigned(survivor, topic)?.len() == usize::try_from(PARTITIONS)?),
    )?;
    eprintln!(
        "the survivor owned every partition {:?} after the kill",
        killed_at.elapsed()
    );
    let members = pair.stable_members()?;
    ensure!(
        members == BTreeSet::from([pair.survivor_member.clone()]),
        "after the expiry the members are {members:?}; the survivor is {}",
        pair.survivor_member
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_member_killed_hard_when_a_rebalance_starts_before_its_session_expires_should_expire_it_and_complete()
-> Result<()> {
    let mut pair = victim_and_survivor("expiry-mid", "expiry-mid-group").await?;
    let killed_at = pair.kill_victim()?;
    // A newcomer starts a rebalance while the victim's session is still alive; the victim
    // never rejoins, so only its session expiry can complete the join phase in time.
    let newcomer = groups::subscribed(
        &pair.broker.bootstrap(),
        pair.group,
        pair.topic,
        &[("client.id", "newcomer")],
    )?;
    let (survivor, topic) = (&pair.survivor, pair.topic);
    groups::poll_until(
        &[survivor, &newcomer],
        "the survivor and the newcomer to share every partition after the victim expired",
        Duration::from_millis(VICTIM_SESSION_MS) + MARGIN,
        |_, _| Ok(()),
        || {
            let (a, b) = (
                groups::assigned(survivor, topic)?,
                groups::assigned(&newcomer, topic)?,
            );
            Ok(a.len() == 2 && b.len() == 2 && a.is_disjoint(&b))
        },
    )?;
    eprintln!(
        "the survivor and the newcomer shared every partition {:?} after the kill",
        killed_at.elapsed()
    );
    let members = pair.stable_members()?;
    ensure!(
        members.len() == 2 && members.contains(&pair.survivor_member),
        "after the expiry the members are {members:?}; the survivor is {}",
        pair.survivor_member
    );
    Ok(())
}
