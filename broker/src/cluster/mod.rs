//! Cluster mode (`[cluster]`): the metadata quorum, partition replication and failover.
//!
//! The design follows Kafka's KRaft model:
//! - [`state`]: the replicated metadata (brokers, topics, replica placement, leaders, ISRs)
//!   and the pure function that applies a [`state::Command`] to it;
//! - [`machine`]: that state as the Raft state machine of `runnel-quorum` (openraft), with
//!   the side effects every node performs on apply (group offsets into its offset store);
//! - [`liveness`]: brokers heartbeat to the controller (the Raft leader), which fences a
//!   broker it has not heard from for `session_timeout_ms` and so moves its leaderships;
//! - [`reconcile`]: every node keeps a local copy of every topic matching the state, and
//!   takes its replica roles from it;
//! - [`replica`]: per partition, this node's role, the followers' progress and the high
//!   watermark; [`fetcher`]: followers fetch from leaders with the Fetch protocol;
//! - [`admin`]: topic creation, deletion and config changes go through the quorum.
//!
//! Without `[cluster]` none of this runs and `Ctx::cluster` is `None`.

pub mod admin;
pub mod fetcher;
pub mod liveness;
pub mod machine;
pub mod offsets;
pub mod reconcile;
pub mod replica;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;

use crate::config::cluster::ClusterConfig;
use crate::topics::ApiError;
pub use replica::{ReplicaManager, Role};
pub use state::{ClusterState, Command, Outcome};

/// How long a proposal may wait for the quorum (a leader election included).
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// This node's handle on the cluster.
pub struct Cluster {
    pub node_id: i32,
    pub config: ClusterConfig,
    quorum: runnel_quorum::Quorum,
    state: watch::Receiver<Arc<ClusterState>>,
    pub replicas: Arc<ReplicaManager>,
    /// This process's registration id (a restart registers a new one).
    pub incarnation: String,
    /// When a controller that hears from a quorum last accepted our heartbeat.
    last_heard: std::sync::Mutex<std::time::Instant>,
    /// On the controller: when a quorum of voters last confirmed its leadership.
    quorum_confirmed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Cluster {
    pub(crate) fn new(
        node_id: i32,
        config: ClusterConfig,
        quorum: runnel_quorum::Quorum,
        state: watch::Receiver<Arc<ClusterState>>,
    ) -> Self {
        let lag = Duration::from_millis(config.replica_lag_time_max_ms);
        Cluster {
            node_id,
            config,
            quorum,
            state,
            replicas: Arc::new(ReplicaManager::new(node_id, lag)),
            incarnation: uuid::Uuid::new_v4().to_string(),
            last_heard: std::sync::Mutex::new(std::time::Instant::now()),
            quorum_confirmed_at: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn quorum_confirmed(&self) {
        *self
            .quorum_confirmed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// On the controller: whether a quorum confirmed its leadership within `within`.
    pub(crate) fn quorum_confirmed_within(&self, within: Duration) -> bool {
        self.quorum_confirmed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < within)
    }

    pub(crate) fn heard_from_controller(&self) {
        *self.last_heard.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    /// Whether this node may act on the leaderships its state gives it: its own registration
    /// is applied locally (so a restarted node does not act on the state it saved before),
    /// it is not fenced, and a controller backed by a quorum accepted its heartbeat within
    /// the session timeout (so a node cut off from the others stops answering as leader and
    /// clients go and find the new one).
    pub fn serving(&self) -> bool {
        let state = self.state();
        let registered = state
            .brokers
            .get(&self.node_id)
            .is_some_and(|b| b.incarnation == self.incarnation && !b.fenced);
        let heard = self
            .last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        registered && heard < Duration::from_millis(self.config.session_timeout_ms)
    }

    /// The metadata as of the last entry applied on this node.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    pub fn watch_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// The active controller (the Raft leader), if one is known.
    pub fn controller(&self) -> Option<i32> {
        self.quorum.leader().and_then(|l| i32::try_from(l).ok())
    }

    pub fn is_controller(&self) -> bool {
        self.quorum.is_leader()
    }

    pub fn quorum(&self) -> &runnel_quorum::Quorum {
        &self.quorum
    }

    /// Commits `cmd` through the quorum and returns what applying it answered.
    pub async fn propose(&self, cmd: &Command) -> Result<Outcome, ApiError> {
        let bytes = serde_json::to_vec(cmd)
            .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
        let reply = self
            .quorum
            .propose(bytes, PROPOSE_TIMEOUT)
            .await
            .map_err(|e| {
                ApiError::new(
                    ResponseError::RequestTimedOut,
                    format!("the metadata quorum did not commit the change: {e}"),
                )
            })?;
        serde_json::from_slice(&reply).map_err(|e| {
            ApiError::new(
                ResponseError::UnknownServerError,
                format!("bad answer from the metadata quorum: {e}"),
            )
        })
    }

    /// Like [`Cluster::propose`], with a refusal turned into its Kafka error.
    pub async fn commit(&self, cmd: &Command) -> Result<(), ApiError> {
        let outcome = self.propose(cmd).await?;
        if outcome.is_ok() {
            Ok(())
        } else {
            Err(ApiError::new(
                ResponseError::try_from_code(outcome.error_code)
                    .unwrap_or(ResponseError::UnknownServerError),
                outcome.message,
            ))
        }
    }

    /// Controlled shutdown: asks the controller to fence this broker now, so its
    /// leaderships move at once instead of after a session timeout. Best effort (2 s).
    pub async fn leave(&self) {
        let cmd = Command::FenceBroker {
            id: self.node_id,
            unclean: false,
        };
        let Ok(bytes) = serde_json::to_vec(&cmd) else {
            return;
        };
        match self.quorum.propose(bytes, Duration::from_secs(2)).await {
            Ok(_) => tracing::info!("controlled shutdown: leaderships moved to other brokers"),
            Err(e) => {
                tracing::warn!(error = %e, "controlled shutdown failed; the controller will fence this broker after its session timeout")
            }
        }
    }

    /// The broker coordinating `group`: a stable hash of the group id over the registered
    /// brokers, skipping fenced ones (Kafka hashes onto `__consumer_offsets` partitions,
    /// whose leaders move the same way).
    pub fn coordinator(&self, group: &str) -> Option<i32> {
        coordinator_in(&self.state(), group)
    }

    /// Waits until the local state has applied everything committed so far, up to `timeout`
    /// — so a node answers with what it just proposed.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) {
        let mut applied = self.quorum.applied();
        let _ = tokio::time::timeout(timeout, applied.wait_for(|a| *a >= index)).await;
    }
}

/// Proposes the ISR changes leaders want: shrinks for lagging followers (checked every
/// quarter of `replica_lag_time_max_ms`).
pub async fn maintain_isr(cluster: Arc<Cluster>, shutdown: tokio_util::sync::CancellationToken) {
    let tick = Duration::from_millis(cluster.config.replica_lag_time_max_ms / 4)
        .max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        for (replica, change) in cluster.replicas.laggards() {
            tracing::warn!(topic = %change.topic, partition = change.partition, isr = ?change.isr, "shrinking the ISR: followers fell behind");
            change_isr(cluster.clone(), replica, change).await;
        }
    }
}

/// Commits one ISR change of a partition this node leads.
pub async fn change_isr(
    cluster: Arc<Cluster>,
    replica: Arc<replica::Replica>,
    change: replica::IsrChange,
) {
    let cmd = Command::AlterIsr {
        topic: change.topic.clone(),
        partition: change.partition,
        leader: cluster.node_id,
        leader_epoch: change.leader_epoch,
        isr: change.isr.clone(),
    };
    if let Err(e) = cluster.commit(&cmd).await {
        tracing::info!(topic = %change.topic, partition = change.partition, error = %e.message, "ISR change not made");
    }
    replica.isr_change_done();
}

/// Starts the quorum member of this node (restoring its state from `dir`) and returns the
/// cluster handle with the controller's heartbeat record. Background tasks start with
/// [`spawn_tasks`] once the broker's context exists.
pub async fn start(
    node_id: i32,
    config: ClusterConfig,
    dir: &std::path::Path,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(Arc<Cluster>, Arc<liveness::Heartbeats>), String> {
    let voters = config.voter_map().map_err(|e| e.to_string())?;
    let (machine, state) = machine::Machine::new();
    let cell: Arc<std::sync::OnceLock<Arc<Cluster>>> = Arc::default();
    let heartbeats = Arc::new(liveness::Heartbeats::default());
    let app: runnel_quorum::AppHandler = {
        let cell = cell.clone();
        let heartbeats = heartbeats.clone();
        Arc::new(move |_from, bytes: Vec<u8>| {
            let cell = cell.clone();
            let heartbeats = heartbeats.clone();
            Box::pin(async move {
                match cell.get() {
                    Some(c) => liveness::answer(c, &heartbeats, &bytes),
                    None => {
                        serde_json::to_vec(&liveness::AppReply::NotController).unwrap_or_default()
                    }
                }
            })
        })
    };
    let quorum_config = runnel_quorum::QuorumConfig {
        node_id: node_id as u64,
        listen: config.listen,
        advertised: config
            .advertised
            .clone()
            .unwrap_or_else(|| config.listen.to_string()),
        voters,
        dir: dir.join("quorum"),
        // openraft's leader lease equals the maximum election timeout: a new controller
        // comes at most lease + timeout after the old one died, ~1.5 s here (the 5 s
        // failover budget also holds the session timeout and the clients' refresh).
        heartbeat_ms: 100,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1000,
        snapshot_every_logs: 5000,
    };
    let quorum = runnel_quorum::Quorum::start(quorum_config, machine, app, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    let cluster = Arc::new(Cluster::new(node_id, config, quorum, state));
    let _ = cell.set(cluster.clone());
    Ok((cluster, heartbeats))
}

/// Starts reconciliation, replica fetchers, heartbeats, fencing and ISR upkeep.
pub fn spawn_tasks(
    ctx: &Arc<crate::handlers::Ctx>,
    cluster: &Arc<Cluster>,
    heartbeats: Arc<liveness::Heartbeats>,
    endpoints: Vec<(String, state::Endpoint)>,
    tracker: &tokio_util::task::TaskTracker,
) {
    let stop = ctx.shutdown.clone();
    tracker.spawn(reconcile::run(
        cluster.clone(),
        ctx.topics.clone(),
        stop.clone(),
    ));
    tracker.spawn(fetcher::run(cluster.clone(), ctx.log.clone(), stop.clone()));
    tracker.spawn(liveness::heartbeat(
        cluster.clone(),
        endpoints,
        stop.clone(),
    ));
    tracker.spawn(liveness::fence_silent(
        cluster.clone(),
        heartbeats,
        stop.clone(),
    ));
    tracker.spawn(liveness::confirm_quorum(cluster.clone(), stop.clone()));
    tracker.spawn(maintain_isr(cluster.clone(), stop));
}

/// FNV-1a's standard offset basis.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a of `bytes` from `seed`: stable across versions and platforms, unlike std's
/// hasher, so every node computes the same coordinators and cluster id.
pub(crate) fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// See [`Cluster::coordinator`].
pub fn coordinator_in(state: &ClusterState, group: &str) -> Option<i32> {
    let all: Vec<i32> = state.brokers.keys().copied().collect();
    if all.is_empty() {
        return None;
    }
    let h = fnv1a(FNV_OFFSET, group.as_bytes());
    let start = (h % all.len() as u64) as usize;
    (0..all.len())
        .map(|i| all[(start + i) % all.len()])
        .find(|id| state.brokers.get(id).is_some_and(|b| !b.fenced))
}
