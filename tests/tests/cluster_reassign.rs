//! Growing a cluster online: a fourth, non-voting broker joins, and a replicated partition is
//! moved onto it with AlterPartitionReassignments while an idempotent acks=all producer keeps
//! writing. The move replaces the partition's leader, so leadership must move too.
//!
//! Checked: the reassignment is listed by ListPartitionReassignments until it completes; the
//! partition ends with exactly the target replicas, all in sync, led by one of them; every
//! acknowledged record is stored once; and every replica of the final assignment, the new
//! broker included, holds the same records (each read while it leads).

use std::collections::BTreeSet;

use anyhow::{Result, bail, ensure};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_tests::harness::cluster::{Cluster, ProduceLoop, SETTLE, verify_acked_exactly_once};
use runnel_tests::raw::RawConnection;
use runnel_tests::wait_until;

const TOPIC: &str = "moving";

fn reassign(
    cluster: &mut Cluster,
    via: usize,
    target: &[i32],
    partition: i32,
) -> Result<Vec<(i16, Option<String>)>> {
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    ReassignablePartition::default()
                        .with_partition_index(partition)
                        .with_replicas(Some(target.iter().map(|b| BrokerId(*b)).collect())),
                ]),
        ]);
    let addr = cluster.node(via).kafka;
    let response = RawConnection::connect(addr)?.call(&request, 0, 11)?;
    ensure!(
        response.error_code == 0,
        "AlterPartitionReassignments: error {} {:?}",
        response.error_code,
        response.error_message
    );
    Ok(response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect())
}

/// The partitions ListPartitionReassignments reports as moving: (adding, removing).
fn ongoing(cluster: &mut Cluster, via: usize) -> Result<Vec<(Vec<i32>, Vec<i32>)>> {
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(Some(vec![
            ListPartitionReassignmentsTopics::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_indexes(vec![0]),
        ]));
    let addr = cluster.node(via).kafka;
    let response = RawConnection::connect(addr)?.call(&request, 0, 12)?;
    ensure!(
        response.error_code == 0,
        "ListPartitionReassignments: error {}",
        response.error_code
    );
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Ok(response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (ids(&p.adding_replicas), ids(&p.removing_replicas)))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_new_broker_when_a_partition_is_moved_onto_it_under_load_should_lose_nothing()
-> Result<()> {
    let mut cluster = Cluster::start(3)?;
    cluster.create_topic(TOPIC, 1, 3)?;
    let before = cluster.wait_for_full_isr(TOPIC, 0)?;
    // The new broker joins after the topic exists, so it holds none of it yet.
    let added = cluster.add_node()?;
    let new_id = cluster.node(added).id;
    ensure!(
        !before.replicas.contains(&new_id),
        "the new broker {new_id} already holds the partition: {before:?}"
    );

    let producer = ProduceLoop::start(&cluster.bootstrap(), TOPIC, 1, "mv", 1000, &[])?;
    producer.wait_for_acks_beyond(500, SETTLE)?;

    // Replace the leader by the new broker: the old leader is removed, so leadership moves.
    let mut target: Vec<i32> = before
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != before.leader)
        .collect();
    target.insert(0, new_id);
    let answers = reassign(&mut cluster, 0, &target, 0)?;
    ensure!(
        answers.iter().all(|(code, _)| *code == 0),
        "reassignment to {target:?} refused: {answers:?}"
    );

    // A target naming an unknown broker is refused per partition, and changes nothing.
    let refused = reassign(&mut cluster, 1, &[new_id, 99, before.leader], 0)?;
    ensure!(
        refused.iter().all(|(code, _)| *code != 0),
        "a reassignment to unknown broker 99 was accepted: {refused:?}"
    );

    let wanted: BTreeSet<i32> = target.iter().copied().collect();
    wait_until("the reassignment to complete", SETTLE, || {
        let moving = ongoing(&mut cluster, 2)?;
        let state = cluster.partition_state(TOPIC, 0)?;
        let replicas: BTreeSet<i32> = state.replicas.iter().copied().collect();
        let isr: BTreeSet<i32> = state.isr.iter().copied().collect();
        Ok((moving.is_empty() && replicas == wanted && isr == wanted).then_some(()))
    })?;
    let after = cluster.partition_state(TOPIC, 0)?;
    ensure!(
        wanted.contains(&after.leader) && after.leader_epoch > before.leader_epoch,
        "after the move the leader is {} (epoch {}), expected one of {wanted:?} with a newer epoch than {}",
        after.leader,
        after.leader_epoch,
        before.leader_epoch
    );

    producer.wait_for_acks_beyond(producer.acked_count() + 500, SETTLE)?;
    let report = producer.stop()?;
    if report.acked.is_empty() {
        bail!("nothing was acknowledged");
    }
    verify_acked_exactly_once(&cluster.bootstrap(), TOPIC, "mv", &report)?;
    cluster.compare_replicas(TOPIC, 1)
}
