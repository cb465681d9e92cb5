//! Broker liveness, Kafka's BrokerHeartbeat: every broker registers once per process start
//! and then heartbeats to the controller; the controller fences a broker it has not heard
//! from for `session_timeout_ms` and unfences one that heartbeats again.
//!
//! The controller's "last heard" times live only in its memory. A new controller gives
//! every broker half a session to heartbeat, and the previous controller (which lost the
//! quorum's votes: dead or cut off) two heartbeat intervals, so a broker that died with the
//! old controller is fenced half a second after the election.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::state::{Command, Endpoint};

/// App-level messages between brokers and the controller.
#[derive(Debug, Serialize, Deserialize)]
pub enum AppRequest {
    Heartbeat { id: i32, incarnation: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AppReply {
    /// `accepted`: this incarnation is registered and not fenced (otherwise register
    /// again). `quorum`: the controller still hears from a quorum of voters, so its view of
    /// leadership is current.
    Heartbeat {
        accepted: bool,
        quorum: bool,
    },
    NotController,
    Error(String),
}

/// The controller's record of heartbeats.
#[derive(Default)]
pub struct Heartbeats {
    seen: Mutex<HashMap<i32, Instant>>,
}

impl Heartbeats {
    pub fn record(&self, id: i32) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    fn last(&self, id: i32) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }
}

/// Answers an app request (runs on whichever node receives it).
pub fn answer(cluster: &Cluster, heartbeats: &Heartbeats, bytes: &[u8]) -> Vec<u8> {
    let reply = match serde_json::from_slice::<AppRequest>(bytes) {
        Ok(AppRequest::Heartbeat { id, incarnation }) => {
            if cluster.is_controller() {
                heartbeats.record(id);
                let state = cluster.state();
                let accepted = state
                    .brokers
                    .get(&id)
                    .is_some_and(|b| b.incarnation == incarnation && !b.fenced);
                let quorum = cluster.quorum_confirmed_within(Duration::from_millis(
                    cluster.config.session_timeout_ms / 2,
                ));
                AppReply::Heartbeat { accepted, quorum }
            } else {
                AppReply::NotController
            }
        }
        Err(e) => AppReply::Error(format!("bad request: {e}")),
    };
    serde_json::to_vec(&reply).unwrap_or_default()
}

/// The broker side: registers, then heartbeats every `heartbeat_interval_ms`; re-registers
/// when the controller no longer accepts this incarnation (after being fenced).
pub async fn heartbeat(
    cluster: Arc<Cluster>,
    endpoints: Vec<(String, Endpoint)>,
    shutdown: CancellationToken,
) {
    let incarnation = cluster.incarnation.clone();
    let interval = Duration::from_millis(cluster.config.heartbeat_interval_ms);
    let register = Command::RegisterBroker {
        id: cluster.node_id,
        endpoints,
        incarnation: incarnation.clone(),
    };
    let mut registered = false;
    let mut was_serving = false;
    let request = serde_json::to_vec(&AppRequest::Heartbeat {
        id: cluster.node_id,
        incarnation,
    })
    .unwrap_or_default();
    loop {
        if !registered {
            match cluster.commit(&register).await {
                Ok(()) => {
                    registered = true;
                    tracing::info!(node_id = cluster.node_id, "registered with the controller");
                }
                Err(e) => tracing::warn!(error = %e.message, "registration failed; retrying"),
            }
        }
        if registered {
            let reply = cluster
                .quorum()
                .call_leader(request.clone(), interval.max(Duration::from_millis(500)))
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<AppReply>(&b).ok());
            match reply {
                Some(AppReply::Heartbeat {
                    accepted: false, ..
                }) => {
                    tracing::warn!("the controller fenced this broker; registering again");
                    registered = false;
                    continue;
                }
                Some(AppReply::Heartbeat {
                    accepted: true,
                    quorum: true,
                }) => cluster.heard_from_controller(),
                _ => {}
            }
        }
        let serving = cluster.serving();
        if serving != was_serving {
            if serving {
                tracing::info!("serving: registered, and the controller has a quorum");
            } else {
                tracing::warn!(
                    "not serving: no heartbeat accepted by a controller with a quorum; answering NOT_LEADER_OR_FOLLOWER"
                );
            }
            was_serving = serving;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The controller side: while this node leads the quorum, confirms every heartbeat interval
/// that a quorum of voters still follows it (what heartbeat answers report as `quorum`).
pub async fn confirm_quorum(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let interval = Duration::from_millis(cluster.config.heartbeat_interval_ms);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if cluster.is_controller() && cluster.quorum().confirm_leadership(interval * 2).await {
            cluster.quorum_confirmed();
        }
    }
}

/// The controller side: while this node leads the quorum, fences silent brokers.
pub async fn fence_silent(
    cluster: Arc<Cluster>,
    heartbeats: Arc<Heartbeats>,
    shutdown: CancellationToken,
) {
    let session = Duration::from_millis(cluster.config.session_timeout_ms);
    let tick = Duration::from_millis(cluster.config.heartbeat_interval_ms / 2)
        .max(Duration::from_millis(50));
    let interval = Duration::from_millis(cluster.config.heartbeat_interval_ms);
    let mut leading_since: Option<Instant> = None;
    // The last controller this node knew other than itself.
    let mut previous: Option<i32> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if !cluster.is_controller() {
            leading_since = None;
            if let Some(c) = cluster.controller() {
                previous = Some(c);
            }
            continue;
        }
        let since = *leading_since.get_or_insert_with(|| {
            tracing::info!(node_id = cluster.node_id, previous_controller = ?previous, "this node is the active controller");
            Instant::now()
        });
        let state = cluster.state();
        for (id, b) in &state.brokers {
            if b.fenced {
                continue;
            }
            // A broker not heard from since this controller took over gets half a session:
            // live brokers heartbeat every interval and find the new leader within one.
            // The previous controller lost a quorum's votes, so it is dead or cut off: it
            // gets two heartbeat intervals, and its leaderships move a second sooner.
            let grace = if previous == Some(*id) {
                (2 * interval).min(session)
            } else {
                session / 2
            };
            let baseline = since
                .checked_sub(session.saturating_sub(grace))
                .unwrap_or(since);
            let last = heartbeats.last(*id).map_or(baseline, |t| t.max(baseline));
            if last.elapsed() > session {
                tracing::warn!(
                    broker = id,
                    silent_ms = last.elapsed().as_millis() as u64,
                    "fencing broker: no heartbeat"
                );
                let cmd = Command::FenceBroker {
                    id: *id,
                    unclean: cluster.config.unclean_leader_election,
                };
                if let Err(e) = cluster.commit(&cmd).await {
                    tracing::warn!(broker = id, error = %e.message, "fencing failed");
                }
            }
        }
    }
}
