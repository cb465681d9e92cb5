//! Consumer groups for tests: subscribed rdkafka consumers whose context records every
//! rebalance callback, commits and committed-offset look-ups with explicit offsets, and the
//! group as ListGroups/DescribeGroups show it, with each member's assignment decoded.
//!
//! Everything here blocks, like the rest of the rdkafka helpers. A subscribed `BaseConsumer`
//! only sees its rebalances (and only acts on them) inside `poll`, so a test that runs several
//! members keeps polling all of them, round robin, for as long as it waits for anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};

use super::broker::BrokerOptions;
use super::clients::{self, REQUEST_TIMEOUT, Record};

/// `--group-initial-rebalance-delay-ms` for group tests: short, so a new group settles fast.
pub const INITIAL_REBALANCE_DELAY_MS: u64 = 200;
/// `--group-min-session-timeout-ms` for group tests, so sessions can expire within seconds.
pub const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;
/// The consumers' `heartbeat.interval.ms`: members learn of a rebalance at their next heartbeat.
pub const HEARTBEAT_INTERVAL_MS: u64 = 300;
/// The consumers' default `session.timeout.ms`.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;

/// Broker options with the short group timings above; add flags to the result as needed.
pub fn broker_options() -> BrokerOptions {
    BrokerOptions::new()
        .flag(
            "--group-initial-rebalance-delay-ms",
            INITIAL_REBALANCE_DELAY_MS,
        )
        .flag("--group-min-session-timeout-ms", MIN_SESSION_TIMEOUT_MS)
}

/// One rebalance callback as the consumer's context saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    Assign(BTreeSet<(String, i32)>),
    Revoke(BTreeSet<(String, i32)>),
    Error(String),
}

/// Records the rebalance callbacks of one consumer, in order.
#[derive(Debug, Default)]
pub struct GroupContext {
    events: Mutex<Vec<RebalanceEvent>>,
}

impl GroupContext {
    /// Every rebalance callback so far.
    pub fn events(&self) -> Vec<RebalanceEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many rebalance callbacks (assign, revoke or error) ran so far.
    pub fn count(&self) -> usize {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn partition_set(list: &TopicPartitionList) -> BTreeSet<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            Rebalance::Assign(list) => RebalanceEvent::Assign(partition_set(list)),
            Rebalance::Revoke(list) => RebalanceEvent::Revoke(partition_set(list)),
            Rebalance::Error(error) => RebalanceEvent::Error(error.to_string()),
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }
}

/// A consumer that joins groups and records its rebalances.
pub type GroupConsumer = BaseConsumer<GroupContext>;

/// A group consumer (not yet subscribed). Defaults: `enable.auto.commit=false`,
/// `auto.offset.reset=earliest`, `session.timeout.ms` = [`SESSION_TIMEOUT_MS`],
/// `heartbeat.interval.ms` = [`HEARTBEAT_INTERVAL_MS`]; `overrides` win.
pub fn group_consumer(
    bootstrap: &str,
    group: &str,
    overrides: &[(&str, &str)],
) -> Result<GroupConsumer> {
    let mut config: ClientConfig = clients::base_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS.to_string());
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    config
        .create_with_context(GroupContext::default())
        .with_context(|| format!("creating a consumer for group {group}"))
}

/// A group consumer subscribed to `topic`.
pub fn subscribed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    overrides: &[(&str, &str)],
) -> Result<GroupConsumer> {
    let consumer = group_consumer(bootstrap, group, overrides)?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    Ok(consumer)
}

/// The partitions of `topic` currently assigned to `consumer`.
pub fn assigned(consumer: &GroupConsumer, topic: &str) -> Result<BTreeSet<i32>> {
    let list = consumer.assignment().context("reading the assignment")?;
    Ok(list
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect())
}

/// Polls once for at most `timeout`: a record, nothing, or an error for a consumer error.
/// Rebalance callbacks run inside this call.
pub fn poll_record(consumer: &GroupConsumer, timeout: Duration) -> Result<Option<Record>> {
    match consumer.poll(timeout) {
        None => Ok(None),
        Some(Ok(message)) => Ok(Some(Record::from(&message))),
        Some(Err(error)) => bail!("consumer error: {error}"),
    }
}

/// Commits `offsets` (partition → next offset to read) of `topic` synchronously.
pub fn commit(consumer: &GroupConsumer, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .with_context(|| format!("adding {topic}/{partition} at {offset}"))?;
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .with_context(|| format!("committing {topic} {offsets:?}"))
}

/// The committed offsets of `group` for partitions `0..partitions` of `topic` (OffsetFetch,
/// from a consumer that does not join the group): `None` where nothing is committed.
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let consumer = clients::consumer(bootstrap, &[("group.id", group)])?;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let answer = consumer
        .committed_offsets(list, REQUEST_TIMEOUT)
        .with_context(|| format!("OffsetFetch for group {group}"))?;
    let mut out = BTreeMap::new();
    for element in answer.elements() {
        if let Err(error) = element.error() {
            bail!(
                "OffsetFetch {group} {topic}/{}: {error}",
                element.partition()
            );
        }
        let offset = match element.offset() {
            Offset::Offset(n) => Some(n),
            Offset::Invalid => None,
            other => bail!(
                "OffsetFetch {group} {topic}/{}: unexpected offset {other:?}",
                element.partition()
            ),
        };
        out.insert(element.partition(), offset);
    }
    Ok(out)
}

/// A group member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub client_id: String,
    /// topic → partitions, decoded from the member's consumer-protocol assignment.
    pub assignment: BTreeMap<String, BTreeSet<i32>>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSnapshot>,
}

impl GroupSnapshot {
    /// Each member's partitions of `topic`, by member id.
    pub fn partitions_of(&self, topic: &str) -> BTreeMap<String, BTreeSet<i32>> {
        self.members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.assignment.get(topic).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Decodes a consumer-protocol assignment (an INT16 version, then the body).
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, BTreeSet<i32>>> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Some((version, body)) = bytes.split_first_chunk::<2>() else {
        bail!("a {}-byte assignment has no version", bytes.len());
    };
    let version = i16::from_be_bytes(*version);
    let mut buf = Bytes::copy_from_slice(body);
    // Newer versions only add fields; decode them as the newest the crate knows.
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version.min(3))
        .with_context(|| format!("decoding a v{version} consumer-protocol assignment"))?;
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .map(|tp| (tp.topic.to_string(), tp.partitions.into_iter().collect()))
        .collect())
}

/// The group as DescribeGroups shows it (via librdkafka's `list_groups` for one group);
/// `None` if the broker does not return it.
pub fn describe(bootstrap: &str, group: &str) -> Result<Option<GroupSnapshot>> {
    let consumer = clients::consumer(bootstrap, &[])?;
    let list = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .with_context(|| format!("DescribeGroups {group}"))?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(None);
    };
    let members = info
        .members()
        .iter()
        .map(|m| {
            Ok(MemberSnapshot {
                member_id: m.id().to_owned(),
                client_id: m.client_id().to_owned(),
                assignment: decode_assignment(m.assignment().unwrap_or_default())
                    .with_context(|| format!("member {} of {group}", m.id()))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(GroupSnapshot {
        state: info.state().to_owned(),
        protocol_type: info.protocol_type().to_owned(),
        protocol: info.protocol().to_owned(),
        members,
    }))
}

/// The names of every group ListGroups returns.
pub fn list_groups(bootstrap: &str) -> Result<BTreeSet<String>> {
    let consumer = clients::consumer(bootstrap, &[])?;
    let list = consumer
        .fetch_group_list(None, REQUEST_TIMEOUT)
        .context("ListGroups")?;
    Ok(list.groups().iter().map(|g| g.name().to_owned()).collect())
}

/// How long one consumer's `poll` may block in [`poll_until`] before the next one's turn.
const POLL_SLICE: Duration = Duration::from_millis(20);

/// Polls every consumer in turn (each for up to 20 ms) and hands each record to `on_record`
/// with the index of the consumer that delivered it, until `done()` holds. Fails at the
/// deadline, naming `what` and each consumer's assignment and rebalance callbacks.
pub fn poll_until(
    consumers: &[&GroupConsumer],
    what: &str,
    timeout: Duration,
    mut on_record: impl FnMut(usize, Record) -> Result<()>,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        for (index, consumer) in consumers.iter().enumerate() {
            if let Some(record) = poll_record(consumer, POLL_SLICE)
                .with_context(|| format!("consumer #{index} while waiting for {what}"))?
            {
                on_record(index, record)?;
            }
        }
        if done()? {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            let states: Vec<String> = consumers
                .iter()
                .enumerate()
                .map(|(index, c)| {
                    let assignment = c
                        .assignment()
                        .map(|l| format!("{:?}", partition_set(&l)))
                        .unwrap_or_else(|e| format!("<{e}>"));
                    format!(
                        "consumer #{index}: assignment {assignment}, rebalances {:?}",
                        c.context().events()
                    )
                })
                .collect();
            bail!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                states.join("\n")
            );
        }
    }
}
