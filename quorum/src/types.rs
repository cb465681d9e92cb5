//! The public data types of the quorum and the openraft type configuration.
//!
//! Commands, responses and state are opaque bytes: this crate knows nothing about what the
//! application replicates. `TypeConfig` stays crate-private so openraft's types never leak into
//! the broker.

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;

use futures::future::BoxFuture;

openraft::declare_raft_types!(
    /// openraft's type configuration: byte commands, byte responses, nodes addressed by host:port.
    pub(crate) TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One committed application command, as handed to [`StateMachine::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raft log index of the entry (strictly increasing across calls, with gaps where the log
    /// held internal entries such as membership changes).
    pub index: u64,
    /// The command bytes given to [`crate::Quorum::propose`].
    pub data: Vec<u8>,
}

/// The replicated application state.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies committed entries in log order; returns one response per entry. May await durable
    /// side effects (the broker writes offsets/topics into its own store here). Called again for
    /// entries after the last persisted applied index after a crash, so implementations are
    /// idempotent per entry.
    fn apply(&mut self, entries: Vec<Entry>) -> impl Future<Output = Vec<Vec<u8>>> + Send;
    /// The whole state, for snapshots and for persisting after apply.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot (install from leader, or load at start).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// Answers application-level RPCs (`Quorum::call`): `(from node, request) -> reply`.
pub type AppHandler = Arc<dyn Fn(u64, Vec<u8>) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// A node of the current membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// host:port of the node's quorum RPC listener.
    pub addr: String,
    /// `false` for learners (non-voting brokers).
    pub voter: bool,
}
