//! The RPC client: pooled TCP connections per peer address, and openraft's network factory.
//!
//! Invariants: a pooled connection is idle (no request in flight); a connection that failed or
//! timed out is dropped, never returned to the pool; every RPC has a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;

use super::frame::{self, FrameError};
use super::{Reply, Request};
use crate::types::TypeConfig;

/// Idle connections kept per peer.
const MAX_IDLE: usize = 4;

/// A transport failure of one RPC.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RpcError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("RPC to {addr} timed out after {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("RPC to {addr} failed: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("{addr} answered an unexpected reply")]
    BadReply { addr: String },
}

/// Connections to peers, keyed by host:port.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl Pool {
    /// Sends `req` to `addr` and waits for its reply, within `timeout`.
    pub(crate) async fn rpc(
        &self,
        addr: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, RpcError> {
        let run = async {
            // A pooled connection may be stale (the peer restarted): on a closed connection
            // the request was not served, so it is retried once on a fresh one.
            if let Some(mut conn) = self.take(addr) {
                match exchange(&mut conn, addr, req).await {
                    Ok(reply) => return Ok((conn, reply)),
                    Err(RpcError::Closed { .. }) => {}
                    Err(RpcError::Frame {
                        source: FrameError::Io(_),
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
            let mut conn = TcpStream::connect(addr)
                .await
                .map_err(|source| RpcError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            let _ = conn.set_nodelay(true);
            let reply = exchange(&mut conn, addr, req).await?;
            Ok((conn, reply))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok((conn, reply))) => {
                self.put(addr, conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
        }
    }

    fn take(&self, addr: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get_mut(addr).and_then(Vec::pop)
    }

    fn put(&self, addr: &str, conn: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(addr.to_string()).or_default();
        if conns.len() < MAX_IDLE {
            conns.push(conn);
        }
    }
}

async fn exchange(conn: &mut TcpStream, addr: &str, req: &Request) -> Result<Reply, RpcError> {
    let frame_err = |source| RpcError::Frame {
        addr: addr.to_string(),
        source,
    };
    frame::write(conn, req).await.map_err(frame_err)?;
    match frame::read(conn).await.map_err(frame_err)? {
        Some(reply) => Ok(reply),
        None => Err(RpcError::Closed {
            addr: addr.to_string(),
        }),
    }
}

/// openraft's network factory: one [`PeerNetwork`] per replication target.
pub(crate) struct Network {
    pub(crate) pool: Arc<Pool>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
            failing: false,
        }
    }
}

/// The Raft RPCs to one peer.
pub(crate) struct PeerNetwork {
    target: u64,
    addr: String,
    pool: Arc<Pool>,
    /// Set after a failure so that a down peer logs one warning, not one per heartbeat.
    failing: bool,
}

type RaftRpcError<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl PeerNetwork {
    async fn send(&mut self, req: Request, timeout: Duration) -> Result<Reply, Unreachable> {
        match self.pool.rpc(&self.addr, &req, timeout).await {
            Ok(reply) => {
                if self.failing {
                    tracing::info!(node = self.target, addr = %self.addr, "peer reachable again");
                    self.failing = false;
                }
                Ok(reply)
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(node = self.target, error = %e, "raft RPC failed");
                    self.failing = true;
                } else {
                    tracing::debug!(node = self.target, error = %e, "raft RPC failed");
                }
                Err(Unreachable::new(&e))
            }
        }
    }

    fn bad_reply<E: std::error::Error>(&self) -> RaftRpcError<E> {
        RPCError::Unreachable(Unreachable::new(&RpcError::BadReply {
            addr: self.addr.clone(),
        }))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RaftRpcError> {
        match self
            .send(Request::AppendEntries(rpc), option.hard_ttl())
            .await?
        {
            Reply::AppendEntries(Ok(r)) => Ok(r),
            Reply::AppendEntries(Err(e)) => Err(RemoteError::new(self.target, e).into()),
            _ => Err(self.bad_reply()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RaftRpcError<InstallSnapshotError>> {
        match self
            .send(Request::InstallSnapshot(rpc), option.hard_ttl())
            .await?
        {
            Reply::InstallSnapshot(Ok(r)) => Ok(r),
            Reply::InstallSnapshot(Err(e)) => Err(RemoteError::new(self.target, e).into()),
            _ => Err(self.bad_reply()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RaftRpcError> {
        match self.send(Request::Vote(rpc), option.hard_ttl()).await? {
            Reply::Vote(Ok(r)) => Ok(r),
            Reply::Vote(Err(e)) => Err(RemoteError::new(self.target, e).into()),
            _ => Err(self.bad_reply()),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
