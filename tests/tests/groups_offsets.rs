//! Committed offsets with real clients: a group resumes exactly after what it committed —
//! with a new consumer and across a broker restart — and the lag an admin computes from the
//! log end offsets and the committed offsets is what was produced but not consumed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use rdkafka::producer::FutureRecord;
use runnel_tests::groups::{self, GroupConsumer};
use runnel_tests::{Broker, clients};

/// Bounds each wait for records; only turns a hang into a failure.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

/// Produces `counts[p]` records to partition `p`.
async fn produce(bootstrap: &str, topic: &str, counts: &[usize], tag: &str) -> Result<()> {
    let producer = clients::producer(bootstrap, &[])?;
    let values: Vec<(i32, String)> = counts
        .iter()
        .enumerate()
        .flat_map(|(p, n)| (0..*n).map(move |i| (p, format!("{tag}-{p}-{i}"))))
        .map(|(p, v)| Ok((i32::try_from(p)?, v)))
        .collect::<Result<_>>()?;
    let records = values.iter().map(|(partition, value)| {
        FutureRecord::<(), _>::to(topic)
            .partition(*partition)
            .payload(value)
    });
    clients::send_all(&producer, records).await?;
    Ok(())
}

/// A single group member that processes exactly `count` records, committing (synchronously)
/// after every `commit_every` of them and after the last. Checks that each partition's
/// records arrive in order without gaps, starting at `start[p]` (the group's committed
/// offset, or 0 without one). Returns partition → next offset, i.e. what it committed.
fn consume_and_commit(
    consumer: &GroupConsumer,
    topic: &str,
    start: &BTreeMap<i32, Option<i64>>,
    count: usize,
    commit_every: usize,
) -> Result<BTreeMap<i32, i64>> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut pending = BTreeMap::new();
    // Shared by the two closures below.
    let processed = std::cell::Cell::new(0_usize);
    let mut problem = None;
    groups::poll_until(
        &[consumer],
        &format!("{count} records"),
        CONSUME_TIMEOUT,
        |_, record| {
            if processed.get() == count {
                // Fetched ahead but never processed (or committed): the next consumer must
                // read it again.
                return Ok(());
            }
            let expected = next
                .get(&record.partition)
                .copied()
                .unwrap_or_else(|| start.get(&record.partition).copied().flatten().unwrap_or(0));
            if record.offset != expected && problem.is_none() {
                problem = Some(format!(
                    "partition {}: read offset {} where {expected} was next (committed: \
                     {start:?})",
                    record.partition, record.offset
                ));
            }
            next.insert(record.partition, record.offset + 1);
            pending.insert(record.partition, record.offset + 1);
            processed.set(processed.get() + 1);
            if processed.get().is_multiple_of(commit_every) || processed.get() == count {
                groups::commit(consumer, topic, &pending)?;
                pending.clear();
            }
            Ok(())
        },
        || Ok(processed.get() == count),
    )?;
    if let Some(problem) = problem {
        anyhow::bail!(problem);
    }
    Ok(next)
}

/// `before` with `after` applied on top, as `committed` reports it for `partitions`.
fn merged(
    before: &BTreeMap<i32, Option<i64>>,
    after: &BTreeMap<i32, i64>,
) -> BTreeMap<i32, Option<i64>> {
    let mut out = before.clone();
    for (p, o) in after {
        out.insert(*p, Some(*o));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_committed_offsets_when_a_new_consumer_joins_should_resume_exactly_after_them_also_across_a_restart()
-> Result<()> {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 60;
    let mut broker = Broker::start(groups::broker_options())?;
    let (topic, group) = ("resume", "resume-group");
    clients::create_topic(
        &clients::admin(&broker.bootstrap())?,
        topic,
        PARTITIONS,
        &[],
    )
    .await?;
    produce(&broker.bootstrap(), topic, &[PER_PARTITION; 3], "r").await?;
    let none: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, None)).collect();
    let stored = groups::committed(&broker.bootstrap(), group, topic, PARTITIONS)?;
    ensure!(
        stored == none,
        "a new group has committed offsets: {stored:?}"
    );

    // First consumer: 50 records, then it goes away (closing, which leaves the group).
    let first = groups::subscribed(&broker.bootstrap(), group, topic, &[])?;
    let done = consume_and_commit(&first, topic, &none, 50, 10)?;
    drop(first);
    let after_first = merged(&none, &done);
    let stored = groups::committed(&broker.bootstrap(), group, topic, PARTITIONS)?;
    ensure!(
        stored == after_first,
        "after the first consumer OffsetFetch answered {stored:?}, it committed {after_first:?}"
    );

    // Second consumer: starts exactly at the committed offsets, reads 70 more.
    let second = groups::subscribed(&broker.bootstrap(), group, topic, &[])?;
    let done = consume_and_commit(&second, topic, &after_first, 70, 7)?;
    drop(second);
    let after_second = merged(&after_first, &done);
    let stored = groups::committed(&broker.bootstrap(), group, topic, PARTITIONS)?;
    ensure!(
        stored == after_second,
        "after the second consumer OffsetFetch answered {stored:?}, it committed {after_second:?}"
    );

    let status = broker.terminate()?;
    ensure!(status.success(), "SIGTERM: the broker exited with {status}");
    broker.restart()?;
    let stored = groups::committed(&broker.bootstrap(), group, topic, PARTITIONS)?;
    ensure!(
        stored == after_second,
        "after the restart OffsetFetch answered {stored:?}, before it {after_second:?}"
    );

    // Third consumer, after the restart: exactly the rest.
    let rest = PARTITIONS as usize * PER_PARTITION - 120;
    let third = groups::subscribed(&broker.bootstrap(), group, topic, &[])?;
    let done = consume_and_commit(&third, topic, &after_second, rest, 9)?;
    let after_third = merged(&after_second, &done);
    let end: BTreeMap<i32, Option<i64>> = (0..PARTITIONS)
        .map(|p| (p, Some(PER_PARTITION as i64)))
        .collect();
    ensure!(
        after_third == end,
        "the third consumer ended at {after_third:?}"
    );
    let stored = groups::committed(&broker.bootstrap(), group, topic, PARTITIONS)?;
    ensure!(stored == end, "at the end OffsetFetch answered {stored:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_produced_and_committed_records_when_computing_lag_should_equal_the_difference()
-> Result<()> {
    let produced = [30_usize, 20, 10];
    let partitions = produced.len() as i32;
    let broker = Broker::start(groups::broker_options())?;
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("lag", "lag-group");
    clients::create_topic(&clients::admin(&bootstrap)?, topic, partitions, &[]).await?;
    produce(&bootstrap, topic, &produced, "l").await?;

    // Admin side: log end offsets via ListOffsets, committed offsets via OffsetFetch.
    let lag = || -> Result<BTreeMap<i32, i64>> {
        let admin = clients::consumer(&bootstrap, &[])?;
        let committed = groups::committed(&bootstrap, group, topic, partitions)?;
        (0..partitions)
            .map(|p| {
                let (low, high) = clients::watermarks(&admin, topic, p)?;
                Ok((p, high - committed[&p].unwrap_or(low)))
            })
            .collect()
    };
    let expect = |consumed: &BTreeMap<i32, i64>, extra: &[i64]| -> BTreeMap<i32, i64> {
        (0..partitions)
            .map(|p| {
                let i = p as usize;
                let total = produced[i] as i64 + extra.get(i).copied().unwrap_or(0);
                (p, total - consumed.get(&p).copied().unwrap_or(0))
            })
            .collect()
    };
    let none: BTreeMap<i32, Option<i64>> = (0..partitions).map(|p| (p, None)).collect();
    let lags = lag()?;
    ensure!(
        lags == expect(&BTreeMap::new(), &[]),
        "lag before anything was consumed: {lags:?}"
    );

    let consumer = groups::subscribed(&bootstrap, group, topic, &[])?;
    let consumed = consume_and_commit(&consumer, topic, &none, 25, 4)?;
    let lags = lag()?;
    ensure!(
        lags == expect(&consumed, &[]),
        "after consuming {consumed:?} of {produced:?} the lag is {lags:?}"
    );

    let total: usize = produced.iter().sum();
    let rest = consume_and_commit(&consumer, topic, &merged(&none, &consumed), total - 25, 5)?;
    let consumed = merged(&none, &consumed);
    let consumed: BTreeMap<i32, i64> = merged(&consumed, &rest)
        .into_iter()
        .map(|(p, o)| (p, o.unwrap_or(0)))
        .collect();
    let lags = lag()?;
    ensure!(
        lags.values().all(|l| *l == 0),
        "after consuming everything the lag is {lags:?}"
    );

    produce(&bootstrap, topic, &[5, 0, 2], "more").await?;
    let lags = lag()?;
    ensure!(
        lags == expect(&consumed, &[5, 0, 2]),
        "after producing 5 and 2 more records the lag is {lags:?}"
    );
    Ok(())
}
