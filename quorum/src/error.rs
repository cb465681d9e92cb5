//! Error types of the quorum's public API, one enum per operation family.

use std::path::PathBuf;

/// Starting (or running) a quorum node failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error("quorum storage in {dir}: {message}")]
    Storage { dir: PathBuf, message: String },
    #[error("cannot bind the quorum RPC listener on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("raft failed: {0}")]
    Raft(String),
}

/// A proposal was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("no leader accepted the proposal within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the quorum is shut down")]
    Shutdown,
    #[error("proposal failed: {0}")]
    Raft(String),
}

/// An application RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("node {0} is not a known member")]
    UnknownNode(u64),
    #[error("no leader known within {0:?}")]
    NoLeader(std::time::Duration),
    #[error("RPC to node {node} at {addr} failed: {message}")]
    Transport {
        node: u64,
        addr: String,
        message: String,
    },
    #[error("node {node} at {addr} answered an unexpected reply")]
    BadReply { node: u64, addr: String },
}
