//! [`Quorum`]: one running quorum node — starting it, proposing, leader routing, app RPCs.
//!
//! Invariants: proposals are applied only by the leader's `client_write`; a follower or
//! learner forwards them one hop to the leader it knows of and retries (with the leader hint
//! it gets back) until its deadline. A forwarded proposal whose reply was lost may be retried,
//! so commands must be idempotent or detect duplicates (at-least-once across leader changes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::QuorumConfig;
use crate::error::{CallError, ProposeError, QuorumError};
use crate::network::client::{Network, Pool};
use crate::network::server::{self, Ctx};
use crate::network::{Refused, Reply, Request};
use crate::store::Db;
use crate::store::log::LogStore;
use crate::store::state::SmStore;
use crate::types::{AppHandler, Member, StateMachine, TypeConfig};

/// Pause between attempts while no leader is known.
const RETRY: Duration = Duration::from_millis(50);

/// A running quorum node. Cheap to clone; all clones share the node.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    advertised: String,
    voters: BTreeMap<u64, String>,
    raft: Raft<TypeConfig>,
    pool: Arc<Pool>,
    app: AppHandler,
    applied: watch::Receiver<u64>,
    db: Db,
    /// Stops the RPC server and the background tasks.
    stop: CancellationToken,
    stopped: tokio::sync::Mutex<bool>,
}

impl Quorum {
    /// Opens the storage in `cfg.dir`, restores `sm`, binds `cfg.listen` and starts Raft.
    /// A pristine voter initializes the cluster with all voters (safe on every voter: they
    /// all propose the same membership); a node not among the voters joins as a learner.
    /// Cancelling `shutdown` stops the node like [`Quorum::shutdown`].
    pub async fn start<S: StateMachine>(
        cfg: QuorumConfig,
        sm: S,
        app: AppHandler,
        shutdown: CancellationToken,
    ) -> Result<Quorum, QuorumError> {
        cfg.validate()?;
        let raft_config = Arc::new(cfg.raft_config()?);
        let db = Db::open(&cfg.dir).await?;
        let started = Self::start_on(&cfg, raft_config, db.clone(), sm, app).await;
        let quorum = match started {
            Ok(quorum) => quorum,
            Err(e) => {
                db.close().await;
                return Err(e);
            }
        };
        let stopper = quorum.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => stopper.shutdown().await,
                _ = stopper.inner.stop.cancelled() => {}
            }
        });
        Ok(quorum)
    }

    async fn start_on<S: StateMachine>(
        cfg: &QuorumConfig,
        raft_config: Arc<openraft::Config>,
        db: Db,
        sm: S,
        app: AppHandler,
    ) -> Result<Quorum, QuorumError> {
        let (sm, applied) = SmStore::load(db.clone(), sm).await?;
        let log = LogStore::new(db.clone());
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| QuorumError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let pool = Arc::new(Pool::default());
        let network = Network { pool: pool.clone() };
        let raft = Raft::new(cfg.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let stop = CancellationToken::new();
        let ctx = Arc::new(Ctx {
            raft: raft.clone(),
            app: app.clone(),
        });
        tokio::spawn(server::serve(listener, ctx, stop.clone()));
        let quorum = Quorum {
            inner: Arc::new(Inner {
                id: cfg.node_id,
                advertised: cfg.advertised.clone(),
                voters: cfg.voters.clone(),
                raft,
                pool,
                app,
                applied,
                db,
                stop,
                stopped: tokio::sync::Mutex::new(false),
            }),
        };
        tokio::spawn(quorum.clone().watch_leader());
        if cfg.voters.contains_key(&cfg.node_id) {
            quorum.initialize().await?;
        } else {
            tokio::spawn(quorum.clone().join());
        }
        tracing::info!(node = cfg.node_id, listen = %cfg.listen, "quorum node started");
        Ok(quorum)
    }

    async fn initialize(&self) -> Result<(), QuorumError> {
        let raft = &self.inner.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> = self
            .inner
            .voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Already initialized (by an earlier start or by the leader's log): the goal.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Raft(format!(
                "cannot initialize the cluster: {e}"
            ))),
        }
    }

    /// Proposes a command; on a follower it is forwarded to the current leader over RPC
    /// (retrying across leader changes until `timeout`). Returns the state machine's response
    /// for that entry once applied on the leader.
    pub async fn propose(&self, cmd: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ProposeError> {
        let deadline = Instant::now() + timeout;
        let mut hint: Option<u64> = None;
        loop {
            if self.inner.stop.is_cancelled() {
                return Err(ProposeError::Shutdown);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match hint.take().or_else(|| self.leader()) {
                Some(leader) if leader == self.inner.id => {
                    let write = self.inner.raft.client_write(cmd.clone());
                    match tokio::time::timeout(remaining, write).await {
                        Ok(Ok(resp)) => return Ok(resp.data),
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                            hint = f.leader_id.filter(|l| *l != leader);
                        }
                        Ok(Err(RaftError::Fatal(_))) => return Err(ProposeError::Shutdown),
                        Ok(Err(e)) => return Err(ProposeError::Raft(e.to_string())),
                        Err(_) => return Err(ProposeError::Timeout(timeout)),
                    }
                }
                Some(leader) => {
                    if let Some(addr) = self.addr_of(leader) {
                        let req = Request::Propose(cmd.clone());
                        match self.inner.pool.rpc(&addr, &req, remaining).await {
                            Ok(Reply::Propose(Ok(data))) => return Ok(data),
                            Ok(Reply::Propose(Err(Refused::NotLeader(h)))) => {
                                hint = h.filter(|h| *h != leader);
                            }
                            Ok(Reply::Propose(Err(Refused::Failed(message)))) => {
                                tracing::debug!(leader, %message, "forwarded proposal failed");
                            }
                            Ok(_) => tracing::debug!(leader, %addr, "unexpected proposal reply"),
                            Err(e) => {
                                tracing::debug!(leader, error = %e, "cannot forward proposal")
                            }
                        }
                    }
                }
                None => {}
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ProposeError::Timeout(timeout));
            }
            if hint.is_none() {
                tokio::time::sleep(RETRY.min(remaining)).await;
            }
        }
    }

    /// The current leader as known by this node.
    pub fn leader(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.inner.id)
    }

    /// On the leader: confirms with a round trip to a quorum of voters that it still leads
    /// (Raft's read-index check). False on followers, on a leader cut off from the other
    /// voters, or when `timeout` passes. (openraft's `millis_since_quorum_ack` metric is only
    /// as fresh as the last metrics report, which an idle cluster does not make.)
    pub async fn confirm_leadership(&self, timeout: Duration) -> bool {
        if !self.is_leader() {
            return false;
        }
        matches!(
            tokio::time::timeout(timeout, self.inner.raft.get_read_log_id()).await,
            Ok(Ok(_))
        )
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The last applied log index on THIS node, updated after each persisted apply batch.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.inner.applied.clone()
    }

    /// App-level RPC to node `to` (its [`AppHandler`] answers; a call to self runs locally).
    pub async fn call(
        &self,
        to: u64,
        msg: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        if to == self.inner.id {
            let local = (self.inner.app)(to, msg);
            return tokio::time::timeout(timeout, local)
                .await
                .map_err(|_| CallError::Transport {
                    node: to,
                    addr: self.inner.advertised.clone(),
                    message: format!("local handler timed out after {timeout:?}"),
                });
        }
        let addr = self.addr_of(to).ok_or(CallError::UnknownNode(to))?;
        let req = Request::App {
            from: self.inner.id,
            msg,
        };
        match self.inner.pool.rpc(&addr, &req, timeout).await {
            Ok(Reply::App(reply)) => Ok(reply),
            Ok(_) => Err(CallError::BadReply { node: to, addr }),
            Err(e) => Err(CallError::Transport {
                node: to,
                addr,
                message: e.to_string(),
            }),
        }
    }

    /// [`Quorum::call`] to the current leader, waiting (up to `timeout`) for one to be known.
    pub async fn call_leader(&self, msg: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, CallError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if let Some(leader) = self.leader() {
                return self.call(leader, msg, remaining).await;
            }
            if remaining.is_zero() || self.inner.stop.is_cancelled() {
                return Err(CallError::NoLeader(timeout));
            }
            tokio::time::sleep(RETRY.min(remaining)).await;
        }
    }

    /// The nodes of the current membership, voters and learners.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// Ids of the current voters.
    pub fn voters(&self) -> Vec<u64> {
        self.members()
            .into_iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect()
    }

    /// Stops Raft, the RPC server and the storage; idempotent. The LMDB directory can be
    /// reopened by a new [`Quorum::start`] once this returns.
    pub async fn shutdown(&self) {
        let mut stopped = self.inner.stopped.lock().await;
        if *stopped {
            return;
        }
        self.inner.stop.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(node = self.inner.id, error = %e, "raft did not stop cleanly");
        }
        self.inner.db.close().await;
        *stopped = true;
        tracing::info!(node = self.inner.id, "quorum node stopped");
    }

    /// host:port of `id` from the membership, else from the configured voters.
    fn addr_of(&self, id: u64) -> Option<String> {
        let from_membership = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        from_membership.or_else(|| self.inner.voters.get(&id).cloned())
    }

    /// Logs leader changes.
    async fn watch_leader(self) {
        let mut metrics = self.inner.raft.metrics();
        let mut last = None;
        loop {
            let (leader, term) = {
                let m = metrics.borrow_and_update();
                (m.current_leader, m.current_term)
            };
            if leader != last {
                tracing::info!(node = self.inner.id, ?leader, term, "quorum leader changed");
                last = leader;
            }
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }

    /// A learner asks the voters (or the leader they name) to add it, until it is a member.
    async fn join(self) {
        let voters: Vec<u64> = self.inner.voters.keys().copied().collect();
        let mut next = 0usize;
        let mut target: Option<u64> = None;
        loop {
            if self.inner.stop.is_cancelled() {
                return;
            }
            if self.members().iter().any(|m| m.id == self.inner.id) {
                tracing::info!(node = self.inner.id, "joined the quorum as a learner");
                return;
            }
            let to = match target.take().or_else(|| self.leader()) {
                Some(to) => to,
                None => {
                    next = next.wrapping_add(1);
                    voters.get(next % voters.len().max(1)).copied().unwrap_or(0)
                }
            };
            let mut pause = Duration::from_millis(300);
            if let Some(addr) = self.addr_of(to) {
                let req = Request::Join {
                    id: self.inner.id,
                    addr: self.inner.advertised.clone(),
                };
                match self
                    .inner
                    .pool
                    .rpc(&addr, &req, Duration::from_secs(5))
                    .await
                {
                    Ok(Reply::Join(Ok(()))) => pause = Duration::from_secs(1),
                    Ok(Reply::Join(Err(Refused::NotLeader(leader)))) => {
                        target = leader;
                        pause = Duration::from_millis(50);
                    }
                    Ok(Reply::Join(Err(Refused::Failed(message)))) => {
                        tracing::warn!(node = to, %message, "join refused");
                    }
                    Ok(_) => tracing::warn!(node = to, %addr, "unexpected join reply"),
                    Err(e) => tracing::debug!(node = to, error = %e, "join request failed"),
                }
            }
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
