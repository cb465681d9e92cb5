//! A minimal HTTP endpoint for Prometheus: `GET /metrics` answers the text exposition the
//! caller renders (every bridge's counters, [`crate::status::render_metrics`], and in the
//! broker also its uplinks'); anything else is a 404.
//! One short-lived connection at a time per request, `Connection: close`; requests larger
//! than 8 KiB or slower than 5 s are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::status::{BridgeStats, render_metrics};

/// Renders the metrics text for one scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// What `runnel-bridge` serves: its bridges' counters.
pub fn bridges(stats: Vec<Arc<BridgeStats>>) -> Render {
    Arc::new(move || render_metrics(&stats.iter().map(|s| s.snapshot()).collect::<Vec<_>>()))
}

/// Binds `addr`; the returned future serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    render: Render,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &render)).await;
            });
        }
    }))
}

async fn answer(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || request.len() > 8192 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let (status, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?")
    {
        ("200 OK", render())
    } else {
        (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
