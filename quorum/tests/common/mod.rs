//! Test harness: a byte-string state machine and helpers to run quorum nodes on 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use runnel_quorum::{AppHandler, Entry, Quorum, QuorumConfig, StateMachine};
use tokio_util::sync::CancellationToken;

/// Applied commands as strings; the response to each is `ok:<index>:<command>`.
#[derive(Clone, Default)]
pub struct Strings {
    pub items: Arc<Mutex<Vec<String>>>,
}

impl StateMachine for Strings {
    fn apply(&mut self, entries: Vec<Entry>) -> impl Future<Output = Vec<Vec<u8>>> + Send {
        let items = self.items.clone();
        async move {
            let mut items = items.lock().unwrap();
            entries
                .into_iter()
                .map(|e| {
                    let s = String::from_utf8(e.data).unwrap();
                    let reply = format!("ok:{}:{s}", e.index);
                    items.push(s);
                    reply.into_bytes()
                })
                .collect()
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.items.lock().unwrap()).unwrap()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let items: Vec<String> = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        *self.items.lock().unwrap() = items;
        Ok(())
    }
}

pub struct Node {
    pub quorum: Quorum,
    pub sm: Strings,
    pub cfg: QuorumConfig,
}

impl Node {
    pub fn items(&self) -> Vec<String> {
        self.sm.items.lock().unwrap().clone()
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,runnel_quorum=info".into()),
        )
        .with_test_writer()
        .try_init();
}

fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Configurations of `n` voters with fast test timings, LMDB under `dir/<id>`.
pub fn voter_configs(n: u64, dir: &Path, snapshot_every_logs: u64) -> Vec<QuorumConfig> {
    let addrs: BTreeMap<u64, std::net::SocketAddr> = (1..=n).map(|id| (id, free_addr())).collect();
    let voters: BTreeMap<u64, String> = addrs.iter().map(|(id, a)| (*id, a.to_string())).collect();
    addrs
        .iter()
        .map(|(id, addr)| node_config(*id, *addr, voters.clone(), dir, snapshot_every_logs))
        .collect()
}

pub fn learner_config(id: u64, voters: &QuorumConfig, dir: &Path) -> QuorumConfig {
    node_config(
        id,
        free_addr(),
        voters.voters.clone(),
        dir,
        voters.snapshot_every_logs,
    )
}

fn node_config(
    id: u64,
    addr: std::net::SocketAddr,
    voters: BTreeMap<u64, String>,
    dir: &Path,
    snapshot_every_logs: u64,
) -> QuorumConfig {
    let mut cfg = QuorumConfig::new(id, addr, voters, dir.join(id.to_string()));
    cfg.heartbeat_ms = 100;
    cfg.election_timeout_min_ms = 500;
    cfg.election_timeout_max_ms = 1000;
    cfg.snapshot_every_logs = snapshot_every_logs;
    cfg
}

/// The app handler echoes `from:<id>:<msg>`.
pub fn echo_handler() -> AppHandler {
    Arc::new(|from, msg| {
        async move { format!("from:{from}:{}", String::from_utf8_lossy(&msg)).into_bytes() }.boxed()
    })
}

pub async fn start(cfg: QuorumConfig) -> Node {
    let sm = Strings::default();
    let quorum = Quorum::start(
        cfg.clone(),
        sm.clone(),
        echo_handler(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    Node { quorum, sm, cfg }
}

pub async fn start_all(cfgs: &[QuorumConfig]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for cfg in cfgs {
        nodes.push(start(cfg.clone()).await);
    }
    nodes
}

/// Polls `cond` every 20 ms until it holds, panicking with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until all `nodes` agree on one leader and returns it.
pub async fn wait_leader(nodes: &[&Node]) -> u64 {
    wait_for("a leader", Duration::from_secs(10), || {
        let first = nodes[0].quorum.leader();
        first.is_some() && nodes.iter().all(|n| n.quorum.leader() == first)
    })
    .await;
    nodes[0].quorum.leader().unwrap()
}

pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
