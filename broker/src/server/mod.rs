//! Accepting connections on every listener: together bounded by `server.max_connections`,
//! backing off on accept errors, stopping when shutdown is signalled. Every connection runs in
//! a task of the given tracker so shutdown can wait for in-flight requests. On a TLS listener
//! the handshake happens in the connection's task, bounded by [`HANDSHAKE_TIMEOUT`], so a slow
//! or hostile client never holds up the accept loop.

pub mod connection;
pub mod router;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::listeners::SecurityProtocol;
use crate::handlers::{Ctx, Session};

/// Longest a client may take to complete a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound listener and what its connections share.
pub struct BoundListener {
    pub tcp: TcpListener,
    pub bound: SocketAddr,
    pub protocol: SecurityProtocol,
    /// Name and advertised address, handed to every request of its connections.
    pub session: Session,
    /// Set for TLS listeners.
    pub tls: Option<Arc<tls::ServerTls>>,
}

/// Serves every listener until `ctx.shutdown` is cancelled.
pub async fn serve_listeners(ctx: Arc<Ctx>, listeners: Vec<BoundListener>, tracker: TaskTracker) {
    let limit = Arc::new(Semaphore::new(ctx.config.server.max_connections));
    let next_id = Arc::new(AtomicU64::new(1));
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            ctx.clone(),
            listener,
            limit.clone(),
            next_id.clone(),
            tracker.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

/// Accepts connections of one listener until `ctx.shutdown` is cancelled.
async fn accept_loop(
    ctx: Arc<Ctx>,
    listener: BoundListener,
    limit: Arc<Semaphore>,
    next_id: Arc<AtomicU64>,
    tracker: TaskTracker,
) {
    let listener = Arc::new(listener);
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            accepted = listener.tcp.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!(
                    "conn",
                    %peer,
                    conn_id,
                    listener = %listener.session.listener,
                    client_id = tracing::field::Empty
                );
                let ctx = ctx.clone();
                let listener = listener.clone();
                tracker.spawn(
                    async move {
                        tracing::debug!("accepted");
                        open(ctx, &listener, stream, peer).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Typically EMFILE: wait for connections to close rather than spin.
                tracing::warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Serves one accepted connection, after its TLS handshake on a TLS listener.
async fn open(ctx: Arc<Ctx>, listener: &BoundListener, stream: TcpStream, peer: SocketAddr) {
    let mut session = listener.session.clone();
    session.peer = Some(peer);
    let Some(tls) = &listener.tls else {
        connection::serve(ctx, session, stream).await;
        return;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let accepted = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        accepted = handshake => accepted,
    };
    match accepted {
        Ok(Ok(stream)) => connection::serve(ctx, session, stream).await,
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener = tls.listener(), error = %e, "TLS handshake failed")
        }
        Err(_) => {
            tracing::warn!(%peer, listener = tls.listener(), "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}")
        }
    }
}

/// Splits `host:port` (IPv6 hosts in brackets).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number in 0..65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("host is empty".into());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::parse_host_port;

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("a.b:9092"), Ok(("a.b".into(), 9092)));
        assert_eq!(parse_host_port("[::1]:1"), Ok(("::1".into(), 1)));
        assert!(parse_host_port("nohost").is_err());
        assert!(parse_host_port(":1").is_err());
        assert!(parse_host_port("h:99999").is_err());
    }
}
