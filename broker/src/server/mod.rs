//! Accepting connections on every listener: together bounded by `server.max_connections`,
//! and per client IP address by `server.max_connections_per_ip` (Kafka's
//! `max.connections.per.ip`: a connection over the limit is closed at once), backing off on
//! accept errors, stopping when shutdown is signalled. Every connection runs in a task of the
//! given tracker so shutdown can wait for in-flight requests. On a TLS listener the handshake
//! happens in the connection's task, bounded by [`HANDSHAKE_TIMEOUT`], so a slow or hostile
//! client never holds up the accept loop; a verified client certificate names the principal
//! (`User:<subject DN>`, see [`crate::auth::dn`]) unless SASL authenticates the client.

pub mod connection;
pub mod router;
pub mod sasl;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runnel_client::security::SaslMechanism;

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
    /// The enabled mechanisms of a SASL listener; `None`: no SASL.
    pub sasl: Option<Arc<[SaslMechanism]>>,
}

/// Open connections per client address, shared by every listener.
struct PerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// When a refusal was last logged (ms since `epoch`), so a flood logs once a minute.
    last_warning: AtomicU64,
    refused: AtomicU64,
    epoch: std::time::Instant,
}

/// One admitted connection; gives its slot back when dropped.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn new(limit: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            limit,
            open: Mutex::new(HashMap::new()),
            last_warning: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            drop(open);
            self.refused.fetch_add(1, Ordering::Relaxed);
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            let last = self.last_warning.load(Ordering::Relaxed);
            if (last == 0 || now.saturating_sub(last) >= 60_000)
                && self
                    .last_warning
                    .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    %ip,
                    refused_so_far = self.refused.load(Ordering::Relaxed),
                    "refusing connection: {} open from this address (server.max_connections_per_ip); logged at most once a minute",
                    self.limit
                );
            }
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves every listener until `ctx.shutdown` is cancelled.
pub async fn serve_listeners(ctx: Arc<Ctx>, listeners: Vec<BoundListener>, tracker: TaskTracker) {
    let limit = Arc::new(Semaphore::new(ctx.config.server.max_connections));
    let per_ip = PerIp::new(ctx.config.server.max_connections_per_ip);
    let next_id = Arc::new(AtomicU64::new(1));
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            ctx.clone(),
            listener,
            limit.clone(),
            per_ip.clone(),
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
    per_ip: Arc<PerIp>,
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
                let accepted_at = tokio::time::Instant::now();
                let Some(slot) = per_ip.admit(peer.ip()) else {
                    drop(stream);
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!(
                    "conn",
                    %peer,
                    conn_id,
                    listener = %listener.session.listener,
                    client_id = tracing::field::Empty,
                    principal = tracing::field::Empty
                );
                let ctx = ctx.clone();
                let listener = listener.clone();
                tracker.spawn(
                    async move {
                        tracing::debug!("accepted");
                        open(ctx, &listener, stream, peer, accepted_at).await;
                        drop(slot);
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
async fn open(
    ctx: Arc<Ctx>,
    listener: &BoundListener,
    stream: TcpStream,
    peer: SocketAddr,
    accepted_at: tokio::time::Instant,
) {
    let mut session = listener.session.clone();
    session.peer = Some(peer);
    let options = connection::ConnOptions {
        sasl: listener.sasl.clone(),
        accepted: accepted_at,
    };
    let Some(tls) = &listener.tls else {
        // A TCP stream splits without a lock between its halves (tokio::io::split would take
        // one on every read and write, and the reader and writer run concurrently).
        let (rd, wr) = stream.into_split();
        connection::serve(ctx, session, rd, wr, options).await;
        return;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let accepted = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        accepted = handshake => accepted,
    };
    match accepted {
        Ok(Ok(stream)) => {
            if let Some(leaf) = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                match crate::auth::dn::subject(leaf) {
                    Ok(dn) => {
                        let principal = format!("User:{dn}");
                        tracing::Span::current().record("principal", principal.as_str());
                        session.principal = Arc::from(principal);
                    }
                    Err(e) => {
                        tracing::warn!(%peer, listener = tls.listener(), error = %e, "closing connection: unreadable client certificate subject");
                        return;
                    }
                }
            }
            let (rd, wr) = tokio::io::split(stream);
            connection::serve(ctx, session, rd, wr, options).await
        }
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
