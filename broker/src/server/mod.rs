//! Accepting connections: a listener bounded by `server.max_connections`, backing off on
//! accept errors, stopping when shutdown is signalled. Every connection runs in a task of
//! the given tracker so shutdown can wait for in-flight requests.

pub mod connection;
pub mod router;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::handlers::Ctx;

/// Accepts connections until `ctx.shutdown` is cancelled.
pub async fn accept_loop(ctx: Arc<Ctx>, listener: TcpListener, tracker: TaskTracker) {
    let limit = Arc::new(Semaphore::new(ctx.config.server.max_connections));
    let next_id = AtomicU64::new(1);
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
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
                let span =
                    tracing::debug_span!("conn", %peer, conn_id, client_id = tracing::field::Empty);
                let ctx = ctx.clone();
                tracker.spawn(
                    async move {
                        tracing::debug!("accepted");
                        connection::serve(ctx, stream).await;
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
