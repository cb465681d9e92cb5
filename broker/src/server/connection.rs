//! One client connection: read a frame, route it, write the response, in order. Requests on
//! a connection are handled one at a time, as Kafka does, which keeps produce order and
//! response order trivially correct; clients pipeline by keeping several in flight on the
//! socket. Shutdown is checked only between requests, so in-flight work completes.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::router::{self, RouteError};
use crate::handlers::{Ctx, api_versions};
use crate::protocol::frame::{FrameError, read_frame};
use crate::protocol::request::{self, encode_response};

pub async fn serve(ctx: Arc<Ctx>, stream: TcpStream) {
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let max = ctx.config.server.max_request_size;
    let conn_span = tracing::Span::current();
    loop {
        let frame = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            frame = read_frame(&mut rd, max) => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::debug!("client closed the connection");
                break;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "connection error");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "closing connection: bad frame");
                break;
            }
        };
        let (api_key, api_version, correlation_id) =
            request::peek_prefix(&frame).unwrap_or((-1, -1, -1));
        let span = tracing::debug_span!("request", api_key, api_version, correlation_id);
        match handle(&ctx, frame, &conn_span).instrument(span).await {
            Ok(Some(response)) => {
                let written = async {
                    wr.write_all(&response).await?;
                    wr.flush().await
                };
                if let Err(e) = written.await {
                    tracing::debug!(error = %e, "cannot write response");
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(api_key, api_version, correlation_id, error = %e, "closing connection");
                break;
            }
        }
    }
}

async fn handle(
    ctx: &Ctx,
    frame: Bytes,
    conn_span: &tracing::Span,
) -> Result<Option<Bytes>, RouteError> {
    if let Some(answer) = unsupported_api_versions(&frame)? {
        return Ok(Some(answer));
    }
    let req = router::decode(frame)?;
    if let Some(client_id) = &req.raw.header.client_id {
        conn_span.record("client_id", client_id.as_str());
    }
    router::dispatch(ctx, req).await
}

/// KIP-511: an ApiVersions request newer than we speak is answered in v0 with our versions,
/// so the client retries with one of them (its header may not even be parseable).
fn unsupported_api_versions(frame: &[u8]) -> Result<Option<Bytes>, RouteError> {
    let Some((key, version, correlation_id)) = request::peek_prefix(frame) else {
        return Ok(None);
    };
    let max = router::lookup(ApiKey::ApiVersions).map_or(0, |a| a.max);
    if key != ApiKey::ApiVersions as i16 || version <= max {
        return Ok(None);
    }
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &api_versions::unsupported(),
    )
    .map(Some)
    .map_err(|e| RouteError::Encode {
        api: ApiKey::ApiVersions,
        version: 0,
        reason: e.to_string(),
    })
}
