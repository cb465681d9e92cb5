//! Followers fetch from leaders, as Kafka's replica fetchers do: one task per leader
//! broker, each sending Fetch v12 with this node's replica id for every partition it follows
//! on that leader, at its own log end offset and with the epoch of its last batch.
//!
//! What a follower does with an answer:
//! - records: appended byte for byte at their offsets ([`LogStore::append_replica`]); the
//!   leader's high watermark is taken, capped at the local log end;
//! - a diverging epoch (KIP-320/595): the local log has records the leader does not; it is
//!   truncated to the smaller of the leader's end of that epoch and its own, and fetching
//!   resumes from there — so a replica never keeps records of a deposed leader;
//! - OFFSET_OUT_OF_RANGE below the leader's log start: the local copy restarts empty there;
//! - NOT_LEADER / FENCED or UNKNOWN_LEADER_EPOCH: the state is behind or ahead; retried
//!   after the next metadata change or a short pause.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::replica::{Replica, Role};
use crate::log::{LogStore, StoreError, wait};

/// Fetch version followers send: topic names, replica id in the header fields, epochs.
const REPLICA_FETCH_VERSION: i16 = 12;
const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 8 << 20;
const RETRY: Duration = Duration::from_millis(200);

type Plan = Vec<Arc<Replica>>;

/// Keeps one fetcher per leader this node follows, re-planned on every role change.
pub async fn run(cluster: Arc<Cluster>, log: Arc<dyn LogStore>, shutdown: CancellationToken) {
    let mut changes = cluster.replicas.changes();
    let mut fetchers: HashMap<i32, (watch::Sender<Plan>, CancellationToken)> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let mut wanted: HashMap<i32, Plan> = HashMap::new();
        for r in cluster.replicas.all() {
            if let (Role::Follower { leader }, _) = r.role() {
                wanted.entry(leader).or_default().push(r);
            }
        }
        fetchers.retain(|leader, (_, stop)| {
            let keep = wanted.contains_key(leader);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (leader, mut plan) in wanted {
            plan.sort_by_key(|r| r.log.id);
            match fetchers.get(&leader) {
                Some((tx, _)) => {
                    tx.send_if_modified(|old| {
                        let same = old.len() == plan.len()
                            && old.iter().zip(&plan).all(|(a, b)| Arc::ptr_eq(a, b));
                        if !same {
                            *old = plan;
                        }
                        !same
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(plan);
                    let stop = shutdown.child_token();
                    tokio::spawn(follow(
                        cluster.clone(),
                        log.clone(),
                        leader,
                        rx,
                        stop.clone(),
                    ));
                    fetchers.insert(leader, (tx, stop));
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Fetches from `leader` until stopped.
async fn follow(
    cluster: Arc<Cluster>,
    log: Arc<dyn LogStore>,
    leader: i32,
    plan: watch::Receiver<Plan>,
    stop: CancellationToken,
) {
    let me = cluster.node_id;
    let mut conn: Option<runnel_client::Connection> = None;
    let mut refused = HashMap::new();
    tracing::info!(leader, "replica fetcher started");
    while !stop.is_cancelled() {
        let parts = plan.borrow().clone();
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            let state = cluster.state();
            let Some(ep) = state
                .brokers
                .get(&leader)
                .and_then(|b| b.replication_endpoint())
                .cloned()
            else {
                pause(&stop).await;
                continue;
            };
            let addr = format!("{}:{}", ep.host, ep.port);
            match runnel_client::Connection::connect(
                &addr,
                &format!("runnel-replica-{me}"),
                Duration::from_secs(3),
                Duration::from_secs(10),
                &runnel_client::security::Security::plaintext(),
            )
            .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "cannot reach the leader");
                    pause(&stop).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        let request = match build(&log, me, &parts).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot plan a replica fetch");
                pause(&stop).await;
                continue;
            }
        };
        let response = tokio::select! {
            _ = stop.cancelled() => return,
            r = c.call_at(&request, REPLICA_FETCH_VERSION) => r,
        };
        match response {
            Ok(resp) => {
                if !handle(&cluster, &log, &parts, resp, &mut refused).await {
                    pause(&stop).await;
                }
            }
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed");
                conn = None;
                pause(&stop).await;
            }
        }
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(RETRY) => {}
    }
}

/// The Fetch request for `parts` at their current log ends.
async fn build(
    log: &Arc<dyn LogStore>,
    me: i32,
    parts: &[Arc<Replica>],
) -> Result<FetchRequest, StoreError> {
    let epochs = {
        let log = log.clone();
        let ids: Vec<_> = parts.iter().map(|r| r.log.id).collect();
        crate::handlers::blocking(move || {
            ids.iter()
                .map(|id| log.latest_epoch(*id).map(|e| e.map_or(-1, |e| e.epoch)))
                .collect::<Result<Vec<i32>, _>>()
        })
        .await?
    };
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (r, last_epoch) in parts.iter().zip(epochs) {
        let (_, leader_epoch) = r.role();
        let p = FetchPartition::default()
            .with_partition(r.index)
            .with_current_leader_epoch(leader_epoch)
            .with_fetch_offset(r.log.next_offset())
            .with_last_fetched_epoch(last_epoch)
            .with_log_start_offset(r.log.log_start())
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        match topics.iter_mut().find(|t| t.topic.as_str() == r.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(crate::handlers::topic_name(&r.topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    Ok(FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics))
}

/// Applies one response; false when nothing could be done (pause before the next try).
/// `refused` holds each partition's last refusal code, so a refusal is logged when it starts
/// or changes, not on every retry.
async fn handle(
    cluster: &Cluster,
    log: &Arc<dyn LogStore>,
    parts: &[Arc<Replica>],
    resp: FetchResponse,
    refused: &mut HashMap<crate::log::PartitionId, i16>,
) -> bool {
    let mut progressed = false;
    for t in resp.responses {
        for p in t.partitions {
            let Some(r) = parts
                .iter()
                .find(|r| r.topic == t.topic.as_str() && r.index == p.partition_index)
            else {
                continue;
            };
            let code = p.error_code;
            let refusal = code != 0 && code != ResponseError::OffsetOutOfRange.code();
            let before = if refusal {
                refused.insert(r.log.id, code)
            } else {
                refused.remove(&r.log.id)
            };
            if refusal && before != Some(code) {
                tracing::info!(topic = %r.topic, partition = r.index, error = ?ResponseError::try_from_code(code), "leader refused the replica fetch; retrying");
            }
            match one(cluster, log, r, p).await {
                Ok(moved) => progressed |= moved,
                Err(e) => {
                    tracing::warn!(topic = %r.topic, partition = r.index, error = %e, "replication step failed")
                }
            }
        }
    }
    progressed
}

async fn one(
    cluster: &Cluster,
    log: &Arc<dyn LogStore>,
    r: &Arc<Replica>,
    p: kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<bool, StoreError> {
    let code = ResponseError::try_from_code(p.error_code);
    match code {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => {
            let local = r.log.next_offset();
            if local < p.log_start_offset {
                tracing::warn!(topic = %r.topic, partition = r.index, local, leader_log_start = p.log_start_offset, "behind the leader's log start: restarting the local copy there");
                wait(log.reset_to(r.log.id, p.log_start_offset)).await??;
            } else {
                let to = p.high_watermark.max(0);
                tracing::warn!(topic = %r.topic, partition = r.index, local, to, "ahead of the leader: truncating to its high watermark");
                wait(log.truncate_back(r.log.id, to)).await??;
            }
            return Ok(true);
        }
        Some(_) => return Ok(false),
    }
    if p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0 {
        let leader_end = p.diverging_epoch.end_offset;
        let epoch = p.diverging_epoch.epoch;
        let own_end = {
            let log = log.clone();
            let id = r.log.id;
            crate::handlers::blocking(move || log.epoch_end_offset(id, epoch)).await?
        };
        let to = own_end.map_or(leader_end.min(r.log.log_start()), |e| {
            e.end_offset.min(leader_end)
        });
        let to = to.max(0);
        tracing::warn!(topic = %r.topic, partition = r.index, epoch, leader_end, to, "log diverged from the leader: truncating");
        wait(log.truncate_back(r.log.id, to)).await??;
        cluster.replicas.follower_hw(r, p.high_watermark);
        return Ok(true);
    }
    let records: Bytes = p.records.unwrap_or_default();
    if !records.is_empty() {
        wait(log.append_replica(r.log.clone(), records)).await??;
    }
    cluster.replicas.follower_hw(r, p.high_watermark);
    Ok(true)
}
