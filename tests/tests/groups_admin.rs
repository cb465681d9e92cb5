//! Group administration with real clients: ListGroups and DescribeGroups show a live group,
//! its state and its members with their assignments; DeleteGroups refuses a group that still
//! has members and, once they left, deletes it together with its committed offsets.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use runnel_tests::{Broker, clients, groups, wait_until};

const PARTITIONS: i32 = 4;
/// Bounds every wait; only turns a hang into a failure.
const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_live_group_should_be_listed_described_and_deletable_only_once_empty() -> Result<()>
{
    let broker = Broker::start(groups::broker_options())?;
    let bootstrap = broker.bootstrap();
    let (topic, group) = ("described", "described-group");
    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, topic, PARTITIONS, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let records = values.iter().enumerate().map(|(i, value)| {
        FutureRecord::<(), _>::to(topic)
            .partition(i as i32 % PARTITIONS)
            .payload(value)
    });
    clients::send_all(&producer, records).await?;

    let a = groups::subscribed(&bootstrap, group, topic, &[("client.id", "member-a")])?;
    let b = groups::subscribed(&bootstrap, group, topic, &[("client.id", "member-b")])?;
    // Both members consume everything and commit each record (partition → next offset).
    // Written by the record closure, read by the condition.
    let committed: RefCell<BTreeMap<i32, i64>> = RefCell::default();
    groups::poll_until(
        &[&a, &b],
        "two members to share the topic and consume all 20 records",
        SETTLE,
        |index, record| {
            let consumer = if index == 0 { &a } else { &b };
            let next = BTreeMap::from([(record.partition, record.offset + 1)]);
            groups::commit(consumer, topic, &next)?;
            committed
                .borrow_mut()
                .insert(record.partition, record.offset + 1);
            Ok(())
        },
        || {
            let (pa, pb) = (groups::assigned(&a, topic)?, groups::assigned(&b, topic)?);
            Ok(pa.len() == 2
                && pb.len() == 2
                && pa.is_disjoint(&pb)
                && committed.borrow().values().sum::<i64>() == 20)
        },
    )?;

    ensure!(
        groups::list_groups(&bootstrap)?.contains(group),
        "ListGroups does not show {group}"
    );
    let described = groups::describe(&bootstrap, group)?.context("DescribeGroups: no group")?;
    ensure!(
        described.state == "Stable"
            && described.protocol_type == "consumer"
            && described.protocol == "range",
        "DescribeGroups: {described:?}"
    );
    let clients_by_assignment: BTreeMap<String, BTreeSet<i32>> = described
        .members
        .iter()
        .map(|m| {
            let partitions = m.assignment.get(topic).cloned().unwrap_or_default();
            (m.client_id.clone(), partitions)
        })
        .collect();
    let expected = BTreeMap::from([
        ("member-a".to_owned(), groups::assigned(&a, topic)?),
        ("member-b".to_owned(), groups::assigned(&b, topic)?),
    ]);
    ensure!(
        clients_by_assignment == expected,
        "DescribeGroups members (client id → partitions) {clients_by_assignment:?}, the \
         consumers hold {expected:?}"
    );

    let refused = admin
        .delete_groups(&[group], &clients::admin_options())
        .await?;
    ensure!(
        matches!(
            refused.as_slice(),
            [Err((name, RDKafkaErrorCode::NonEmptyGroup))] if name == group
        ),
        "DeleteGroups of a group with members answered {refused:?}"
    );

    // Closing a dynamic member sends LeaveGroup: the group empties at once, offsets stay.
    drop(a);
    drop(b);
    wait_until("the group to be empty", SETTLE, || {
        let g = groups::describe(&bootstrap, group)?;
        Ok(g.filter(|g| g.state == "Empty" && g.members.is_empty()))
    })?;
    let stored = groups::committed(&bootstrap, group, topic, PARTITIONS)?;
    let expected: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(5))).collect();
    ensure!(
        stored == expected,
        "committed offsets of the empty group: {stored:?}"
    );

    let deleted = admin
        .delete_groups(&[group], &clients::admin_options())
        .await?;
    ensure!(
        matches!(deleted.as_slice(), [Ok(name)] if name == group),
        "DeleteGroups of the empty group answered {deleted:?}"
    );
    ensure!(
        !groups::list_groups(&bootstrap)?.contains(group),
        "ListGroups still shows {group} after DeleteGroups"
    );
    let stored = groups::committed(&bootstrap, group, topic, PARTITIONS)?;
    ensure!(
        stored.values().all(Option::is_none),
        "committed offsets after DeleteGroups: {stored:?}"
    );
    let again = admin
        .delete_groups(&[group], &clients::admin_options())
        .await?;
    ensure!(
        matches!(
            again.as_slice(),
            [Err((_, RDKafkaErrorCode::GroupIdNotFound))]
        ),
        "DeleteGroups of a deleted group answered {again:?}"
    );
    Ok(())
}
