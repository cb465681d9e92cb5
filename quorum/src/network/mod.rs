//! The quorum's TCP RPC: message types shared by the [`server`] and the [`client`].
//!
//! One request per frame, one reply per request, in order, on a connection; a connection
//! carries one RPC at a time (the client pools several per peer).

pub(crate) mod client;
pub(crate) mod frame;
pub(crate) mod server;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::types::TypeConfig;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Apply a command on the receiver, which must be the leader.
    Propose(Vec<u8>),
    /// An application message for the receiver's `AppHandler`.
    App {
        from: u64,
        msg: Vec<u8>,
    },
    /// A learner asks to be added to the membership; the receiver must be the leader.
    Join {
        id: u64,
        addr: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Propose(Result<Vec<u8>, Refused>),
    App(Vec<u8>),
    Join(Result<(), Refused>),
}

/// Why a leader-only request was not served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Refused {
    /// The receiver is not the leader; it names the leader it knows of.
    NotLeader(Option<u64>),
    Failed(String),
}
