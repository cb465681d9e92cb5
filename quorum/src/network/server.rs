//! The RPC server: accepts peers on `cfg.listen` and hands each request to openraft or to the
//! application's handler.
//!
//! Invariants: a malformed or oversized frame closes only its connection; requests on one
//! connection are answered in order; the accept loop and every connection stop on shutdown.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{Refused, Reply, Request, frame};
use crate::types::{AppHandler, TypeConfig};

/// What the server needs to answer requests.
pub(crate) struct Ctx {
    pub raft: Raft<TypeConfig>,
    pub app: AppHandler,
}

/// Accepts connections until `shutdown` is cancelled.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        () = connection(stream, peer, ctx) => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "quorum RPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(mut stream: TcpStream, peer: std::net::SocketAddr, ctx: Arc<Ctx>) {
    loop {
        let req: Request = match frame::read(&mut stream).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "closing quorum RPC connection");
                return;
            }
        };
        let reply = handle(&ctx, req).await;
        if let Err(e) = frame::write(&mut stream, &reply).await {
            tracing::debug!(%peer, error = %e, "cannot answer quorum RPC");
            return;
        }
    }
}

async fn handle(ctx: &Ctx, req: Request) -> Reply {
    match req {
        Request::AppendEntries(rpc) => Reply::AppendEntries(ctx.raft.append_entries(rpc).await),
        Request::Vote(rpc) => Reply::Vote(ctx.raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => {
            Reply::InstallSnapshot(ctx.raft.install_snapshot(rpc).await)
        }
        Request::Propose(cmd) => Reply::Propose(
            ctx.raft
                .client_write(cmd)
                .await
                .map(|resp| resp.data)
                .map_err(refused),
        ),
        Request::App { from, msg } => Reply::App((ctx.app)(from, msg).await),
        Request::Join { id, addr } => Reply::Join(join(ctx, id, addr).await),
    }
}

/// Adds a learner (non-blocking: it catches up in the background) unless already a member.
async fn join(ctx: &Ctx, id: u64, addr: String) -> Result<(), Refused> {
    let known = ctx
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .is_some_and(|node| node.addr == addr);
    if known {
        return Ok(());
    }
    tracing::info!(node = id, %addr, "adding learner");
    ctx.raft
        .add_learner(id, BasicNode::new(addr), false)
        .await
        .map(|_| ())
        .map_err(refused)
}

fn refused(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Refused {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Refused::NotLeader(f.leader_id)
        }
        other => Refused::Failed(other.to_string()),
    }
}
