//! Keeps this node's local topics and replica roles in step with the replicated state.
//!
//! Every node holds a local copy of every cluster topic (all partitions; those it does not
//! replicate stay empty), so a reassignment onto this node only needs a fetcher. Local topics
//! the state no longer has are deleted. The loop is level-triggered: each pass compares the
//! latest state with what is local, so a missed or coalesced update cannot leave them apart.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::topics::TopicRegistry;

pub async fn run(cluster: Arc<Cluster>, topics: Arc<TopicRegistry>, shutdown: CancellationToken) {
    let mut state_rx = cluster.watch_state();
    loop {
        let state = state_rx.borrow_and_update().clone();
        // Before anything was applied the state is empty; mirroring it would delete every
        // local topic of a node that has not caught up yet.
        if state.brokers.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = state_rx.changed() => if changed.is_err() { return },
            }
            continue;
        }
        for (name, t) in &state.topics {
            if let Err(e) = topics
                .mirror(name, t.id, t.partitions.len() as u32, &t.configs)
                .await
            {
                tracing::error!(topic = %name, error = %e.message, "cannot create the local copy of a topic");
            }
        }
        for local in topics.list() {
            let keep = state
                .topics
                .get(local.name())
                .is_some_and(|t| t.id == local.id());
            if !keep && let Err(e) = topics.delete(local.name()).await {
                tracing::warn!(topic = %local.name(), error = %e.message, "cannot delete the local copy of a topic");
            }
        }
        cluster.replicas.update(&state, &topics);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = state_rx.changed() => if changed.is_err() { return },
        }
    }
}
