//! At-least-once under faults: trucks keep publishing GPS fixes at QoS 1 while the bridge is
//! killed with SIGKILL and restarted, while Mosquitto restarts, and while the `runnel` broker
//! is killed with SIGKILL and restarted. Afterwards every fix Mosquitto acknowledged to a
//! truck is in the topic; duplicates are counted and bounded, and each truck's fixes keep
//! their order.
//!
//! Rounds of the bridge kill: `RUNNEL_FAULT_ITERATIONS` (default 2).
//!
//! Volume: each test publishes at most 4 × 5 000 fixes, at about 8 000 a second, so that the
//! whole file stays within seconds on 2 cores.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use runnel_tests::clients::{self, Record};
use runnel_tests::harness::bridge::{
    Bridge, BridgeToml, TopicReader, Trucks, gps_fix, header, wait_for_subscription,
};
use runnel_tests::harness::mosquitto::{self, Mosquitto};
use runnel_tests::wait_until;
use runnel_tests::{Broker, BrokerOptions};

const TOPIC: &str = "gps";
const FILTER: &str = "trucks/+/gps";
const PARTITIONS: i32 = 3;
const TRUCKS: usize = 4;
/// Fixes per truck at most: with 4 trucks, 20 000 in all.
const MAX_PER_TRUCK: u64 = 5_000;
/// Each truck publishes a chunk of 100 fixes every 50 ms at most: ~8 000 fixes a second.
const CHUNK: u64 = 100;
const CHUNK_INTERVAL: Duration = Duration::from_millis(50);
/// Records the current bridge process writes before a fault is injected: "mid-stream".
const WRITTEN_BEFORE_FAULT: i64 = 1_500;
const BASE_TS_MS: i64 = 1_650_000_000_000;
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(120);

fn iterations() -> Result<usize> {
    runnel_tests::harness::wait::fault_iterations(2)
}

/// A broker, a Mosquitto, the topic, and a bridge subscribed to the trucks. Dropped bridge
/// first, so that its log does not end with the other two going away.
struct Setup {
    bridge: Bridge,
    mosquitto: Mosquitto,
    broker: Broker,
}

async fn setup(name: &str) -> Result<Setup> {
    // A fixed port, so that a restarted broker is where the bridge expects it.
    let port = mosquitto::free_port()?;
    let broker = Broker::start(BrokerOptions::new().listen(format!("127.0.0.1:{port}")))?;
    let mosquitto = Mosquitto::start()?;
    let admin = clients::admin(&broker.bootstrap())?;
    clients::create_topic(&admin, TOPIC, PARTITIONS, &[]).await?;
    let toml = BridgeToml::new(name, mosquitto.port()).ingress(FILTER, TOPIC, &["key_level = 1"]);
    let bridge = Bridge::start(&toml.build(), broker.addr())?;
    wait_for_subscription(&mosquitto, &toml.client_id(), FILTER)?;
    Ok(Setup {
        bridge,
        mosquitto,
        broker,
    })
}

/// Trucks that publish until stopped, or until each published `max_per_truck` fixes.
fn start_trucks(setup: &Setup, prefix: &str, max_per_truck: u64) -> Trucks {
    Trucks::start(
        setup.mosquitto.port(),
        prefix,
        TRUCKS,
        CHUNK,
        CHUNK_INTERVAL,
        max_per_truck,
        BASE_TS_MS,
    )
}

/// `runnel_bridge_written_total` of the bridge's current process.
fn written(bridge: &Bridge) -> Result<i64> {
    bridge.metric("runnel_bridge_written_total", &[("topic", TOPIC)])
}

/// Waits until the bridge's current process has written at least `count` records.
fn wait_until_written(bridge: &Bridge, count: i64) -> Result<i64> {
    wait_until(
        &format!("the bridge to write {count} records"),
        PROGRESS_TIMEOUT,
        || {
            let n = written(bridge)?;
            Ok((n >= count).then_some(n))
        },
    )
    .with_context(|| format!("bridge metrics:\n{}", bridge.metrics_report()))
}

/// What arrived, once every published fix did.
struct Arrived {
    records: Vec<Record>,
    /// Records beyond the first of their fix.
    duplicates: usize,
    /// Duplicates whose `mqtt.dup` header is `false`.
    duplicates_without_dup_flag: usize,
    /// The most copies of one fix.
    max_copies: usize,
}

/// Whether the first copies of each truck's fixes must be in publication order: what the bridge
/// promises as long as Mosquitto delivers in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Checked,
    /// Mosquitto 2.0.11 does not keep the order across its own restart. Seen: after the
    /// restart it re-sent 20 of the bridge's in-flight fixes (seq 580..599, DUP set), then a fix
    /// published after the restart (seq 1000), then the rest (600..619, DUP set); the bridge
    /// wrote them in the order it received them (`mqtt.received_ms`).
    NotGuaranteedByMosquitto,
}

/// Reads the topic until every fix `0..n` of every truck in `published` is there, then checks
/// what the tests share: nothing else is there, each truck's records are keyed by it and on
/// one partition, and (with `Order::Checked`) the first copies of its fixes are in publication
/// order.
fn every_fix_arrived(
    bootstrap: &str,
    published: &[(String, u64)],
    order: Order,
) -> Result<Arrived> {
    let total: u64 = published.iter().map(|(_, n)| n).sum();
    let expected: HashSet<(String, u64)> = published
        .iter()
        .flat_map(|(truck, n)| (0..*n).map(|seq| (truck.clone(), seq)))
        .collect();
    let mut seen = HashSet::new();
    let mut checked = 0;
    let mut reader = TopicReader::new(bootstrap, TOPIC)?;
    let records = reader
        .read_until(
            &format!("all {total} acknowledged fixes"),
            ARRIVAL_TIMEOUT,
            |records| {
                for record in &records[checked..] {
                    if let Ok((truck, seq, _)) = gps_fix(record) {
                        seen.insert((truck, seq));
                    }
                }
                checked = records.len();
                seen.len() as u64 >= total && expected.is_subset(&seen)
            },
        )
        .with_context(|| {
            let missing: Vec<_> = expected.difference(&seen).take(20).collect();
            format!("some missing fixes: {missing:?}")
        })?
        .to_vec();

    let mut copies: BTreeMap<(String, u64), Vec<&Record>> = BTreeMap::new();
    for record in &records {
        let (truck, seq, ts) = gps_fix(record)?;
        ensure!(
            expected.contains(&(truck.clone(), seq)),
            "a fix nobody published: {truck}/{seq}"
        );
        ensure!(record.key_str() == truck, "key of {truck}/{seq}");
        ensure!(
            record.timestamp.to_millis() != Some(ts),
            "no timestamp_json rule, so the timestamp is the receive time, not {ts}"
        );
        copies.entry((truck, seq)).or_default().push(record);
    }
    let mut by_truck: BTreeMap<&str, Vec<(i32, i64, u64)>> = BTreeMap::new();
    for ((truck, seq), list) in &copies {
        let first = list
            .iter()
            .min_by_key(|r| r.offset)
            .context("at least one copy")?;
        by_truck
            .entry(truck)
            .or_default()
            .push((first.partition, first.offset, *seq));
    }
    for (truck, mut firsts) in by_truck {
        firsts.sort_unstable();
        let partitions: HashSet<i32> = firsts.iter().map(|(p, _, _)| *p).collect();
        ensure!(
            partitions.len() == 1,
            "{truck} on partitions {partitions:?}"
        );
        if order == Order::NotGuaranteedByMosquitto {
            continue;
        }
        if let Some(i) = firsts.windows(2).position(|w| w[0].2 >= w[1].2) {
            let around = firsts[i].1;
            bail!(
                "{truck}: the first copies of its fixes are out of publication order near \
                 offset {around}; its records there (offset, seq, mqtt.dup, mqtt.received_ms):\n{}",
                neighbourhood(&records, truck, around)
            );
        }
    }
    let mut duplicates = 0;
    let mut without_flag = 0;
    let mut max_copies = 0;
    for list in copies.values() {
        max_copies = max_copies.max(list.len());
        let mut list = list.clone();
        list.sort_by_key(|r| r.offset);
        for later in &list[1..] {
            duplicates += 1;
            if header(later, "mqtt.dup") != Some(&b"true"[..]) {
                without_flag += 1;
            }
        }
    }
    Ok(Arrived {
        records,
        duplicates,
        duplicates_without_dup_flag: without_flag,
        max_copies,
    })
}

/// `truck`'s records within 20 offsets of `offset`, one per line, for failure messages.
fn neighbourhood(records: &[Record], truck: &str, offset: i64) -> String {
    let mut lines: Vec<(i64, String)> = records
        .iter()
        .filter(|r| r.key_str() == truck && (r.offset - offset).abs() <= 20)
        .map(|r| {
            let seq = gps_fix(r).map(|(_, seq, _)| seq.to_string());
            let text =
                |name| String::from_utf8_lossy(header(r, name).unwrap_or_default()).into_owned();
            (
                r.offset,
                format!(
                    "{} {} {} {}",
                    r.offset,
                    seq.unwrap_or_else(|e| e.to_string()),
                    text("mqtt.dup"),
                    text("mqtt.received_ms")
                ),
            )
        })
        .collect();
    lines.sort();
    lines
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_publishing_trucks_when_the_bridge_is_killed_and_restarted_should_lose_no_acked_fix()
-> Result<()> {
    let iterations = iterations()?;
    let mut setup = setup("kill-bridge").await?;
    // Enough fixes for every round to find the stream still flowing, however many rounds.
    let needed = (iterations as u64 + 2) * WRITTEN_BEFORE_FAULT as u64 * 2 / TRUCKS as u64;
    let trucks = start_trucks(&setup, "kill-bridge-truck", MAX_PER_TRUCK.max(needed));

    for round in 1..=iterations {
        tokio::task::block_in_place(|| -> Result<()> {
            wait_until_written(&setup.bridge, WRITTEN_BEFORE_FAULT)
                .with_context(|| format!("round {round}, before the kill"))?;
            setup.bridge.kill9()?;
            setup.bridge.restart()
        })?;
    }
    // The last process picks up where the killed ones left off.
    tokio::task::block_in_place(|| wait_until_written(&setup.bridge, WRITTEN_BEFORE_FAULT))?;
    let published = trucks.stop().await?;
    let bootstrap = setup.broker.bootstrap();
    let arrived =
        tokio::task::block_in_place(|| every_fix_arrived(&bootstrap, &published, Order::Checked))
            .with_context(|| format!("bridge metrics:\n{}", setup.bridge.metrics_report()))?;

    let total: u64 = published.iter().map(|(_, n)| n).sum();
    eprintln!(
        "{iterations} kills: {total} fixes acked by Mosquitto, {} records, {} duplicates, at \
         most {} copies of one fix",
        arrived.records.len(),
        arrived.duplicates,
        arrived.max_copies
    );
    // The bound. A kill duplicates exactly the fixes the killed process had made durable but
    // whose PUBACK had not reached Mosquitto yet: Mosquitto re-sends them, with the DUP flag,
    // to the next process, and only once per reconnect. So (1) every copy after the first of
    // a fix carries `mqtt.dup = true` (the bridge itself never writes a delivery twice), and
    // (2) no fix has more copies than 1 + kills. (A bound on the number of duplicates per kill
    // would be Mosquitto's `max_inflight_messages`, but Mosquitto 2.0.11 sends more than that
    // once acknowledgements flow, so it is not a bound to assert on.)
    assert_eq!(
        arrived.duplicates_without_dup_flag, 0,
        "duplicates that Mosquitto did not redeliver: the bridge wrote something twice"
    );
    assert!(
        arrived.max_copies <= 1 + iterations,
        "a fix was written {} times in {iterations} kills",
        arrived.max_copies
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_publishing_trucks_when_mosquitto_restarts_should_lose_no_acked_fix() -> Result<()> {
    let mut setup = setup("restart-mqtt").await?;
    let trucks = start_trucks(&setup, "restart-mqtt-truck", MAX_PER_TRUCK);

    let before = tokio::task::block_in_place(|| -> Result<i64> {
        wait_until_written(&setup.bridge, WRITTEN_BEFORE_FAULT)?;
        // Graceful: Mosquitto saves the sessions (the bridge's queue) and restarts on the
        // same port; the trucks and the bridge reconnect by themselves.
        setup.mosquitto.restart()?;
        written(&setup.bridge)
    })?;
    tokio::task::block_in_place(|| {
        wait_until_written(&setup.bridge, before + WRITTEN_BEFORE_FAULT)
    })
    .context("after the Mosquitto restart")?;
    let published = trucks.stop().await?;
    let bootstrap = setup.broker.bootstrap();
    let arrived = tokio::task::block_in_place(|| {
        every_fix_arrived(&bootstrap, &published, Order::NotGuaranteedByMosquitto)
    })
    .with_context(|| format!("bridge metrics:\n{}", setup.bridge.metrics_report()))?;

    let total: u64 = published.iter().map(|(_, n)| n).sum();
    eprintln!(
        "Mosquitto restart: {total} fixes, {} records, {} duplicates ({} without the DUP flag)",
        arrived.records.len(),
        arrived.duplicates,
        arrived.duplicates_without_dup_flag
    );
    let reconnects = setup.bridge.metric("runnel_bridge_reconnects_total", &[])?;
    assert!(reconnects >= 1, "the bridge never noticed the restart");
    // A fix can be duplicated twice over by one restart: a truck re-sends what Mosquitto had
    // not acknowledged yet (Mosquitto may have forwarded it already: copy 2), and Mosquitto
    // re-sends to the bridge what the bridge had not acknowledged yet (each of those copies
    // once more: copies 3 and 4).
    assert!(
        arrived.max_copies <= 4,
        "a fix was written {} times in one Mosquitto restart",
        arrived.max_copies
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_publishing_trucks_when_the_broker_is_killed_and_restarted_should_resume_and_lose_no_acked_fix()
-> Result<()> {
    let mut setup = setup("kill-broker").await?;
    let trucks = start_trucks(&setup, "kill-broker-truck", MAX_PER_TRUCK);
    const FAILED_WRITE: &str = "write failed; retrying";

    let (written_at_kill, pending) = tokio::task::block_in_place(|| -> Result<(i64, i64)> {
        wait_until_written(&setup.bridge, WRITTEN_BEFORE_FAULT)?;
        let failures_before = setup.bridge.log().matches(FAILED_WRITE).count();
        setup.broker.kill9()?;
        // The trucks keep publishing, so the bridge keeps trying to write; it must say so.
        wait_until(
            "the bridge to report a failed write",
            PROGRESS_TIMEOUT,
            || {
                let failures = setup.bridge.log().matches(FAILED_WRITE).count();
                Ok((failures > failures_before).then_some(()))
            },
        )
        .with_context(|| format!("bridge log tail:\n{}", setup.bridge.log_tail(20)))?;
        let written_at_kill = written(&setup.bridge)?;
        // The batch that failed is neither written nor acknowledged while the broker is down.
        let pending = setup.bridge.metric("runnel_bridge_pending_messages", &[])?;
        setup.broker.restart()?;
        Ok((written_at_kill, pending))
    })?;
    assert!(
        pending > 0,
        "nothing pending after a failed write: the bridge acknowledged what it could not write"
    );
    // Nobody restarts the bridge: it resumes by itself.
    tokio::task::block_in_place(|| {
        wait_until_written(&setup.bridge, written_at_kill + WRITTEN_BEFORE_FAULT)
    })
    .context("after the broker restart")?;
    let published = trucks.stop().await?;
    let bootstrap = setup.broker.bootstrap();
    let arrived =
        tokio::task::block_in_place(|| every_fix_arrived(&bootstrap, &published, Order::Checked))
            .with_context(|| format!("bridge metrics:\n{}", setup.bridge.metrics_report()))?;

    let total: u64 = published.iter().map(|(_, n)| n).sum();
    eprintln!(
        "broker kill: {total} fixes, {} records, {} duplicates, {pending} pending at the outage",
        arrived.records.len(),
        arrived.duplicates
    );
    // The bridge re-sends a batch whose write failed; the broker may have made part of it
    // durable before it died: at most one extra copy of a fix.
    assert!(
        arrived.max_copies <= 2,
        "a fix was written {} times in one broker kill",
        arrived.max_copies
    );
    Ok(())
}
