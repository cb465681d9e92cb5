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
use crate::protocol::request::{self, DecodeError, encode_response};

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
    let (key, version, correlation_id) =
        request::peek_prefix(&frame).ok_or(DecodeError::Short(frame.len()))?;
    let api_key = ApiKey::try_from(key).map_err(|()| DecodeError::UnknownApi(key))?;
    let api = router::lookup(api_key).ok_or(RouteError::UnsupportedApi(api_key))?;
    if version < api.min || version > api.max {
        if api_key == ApiKey::ApiVersions && version > api.max {
            // KIP-511: answer in v0 with our versions so the client retries with one of them.
            let body = api_versions::unsupported();
            return encode_response(api_key, 0, correlation_id, &body)
                .map(Some)
                .map_err(|e| RouteError::Encode {
                    api: api_key,
                    version: 0,
                    reason: e.to_string(),
                });
        }
        return Err(RouteError::UnsupportedVersion {
            api: api_key,
            version,
            min: api.min,
            max: api.max,
        });
    }
    let raw = request::parse(frame)?;
    if let Some(client_id) = &raw.header.client_id {
        conn_span.record("client_id", client_id.as_str());
    }
    router::dispatch(ctx, raw).await
}
