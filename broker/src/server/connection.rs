//! One client connection. Responses go out in request order, as Kafka requires.
//!
//! Produce requests are pipelined: the reader validates and queues a produce's batches, hands
//! the pending response to the writer task and reads the next request while the batches are
//! committed, so a client with many produce requests in flight gets them group-committed
//! together instead of one fsync each. Every other request is a barrier: it runs only after
//! all earlier produces are durable, so its view (offsets, topics) is what a strictly
//! sequential broker would show. Shutdown is checked only between requests; queued responses
//! are still written.
//!
//! On a SASL listener the connection first runs [`super::sasl::authenticate`] (small frames,
//! no read-ahead buffer, a deadline from accept); only an authenticated client gets here. A
//! connection that sends no request for `server.connections_max_idle_ms` is closed (Kafka's
//! `connections.max.idle.ms`); the time counts from the last byte received (so a large request
//! arriving slowly is not idle) or from the last answer, whichever is later.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use runnel_client::security::SaslMechanism;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::router::{self, RouteError};
use crate::handlers::{Ctx, Session, api_versions};
use crate::protocol::frame::{FrameError, read_frame};
use crate::protocol::request::{self, encode_response};

/// Requests read ahead of their responses, at most.
const MAX_IN_FLIGHT: usize = 64;
/// Bytes of produce requests waiting for their commit, at most, before the reader waits:
/// bounds a connection's memory to this plus one request (`server.max_request_size`).
const MAX_PIPELINED_BYTES: usize = 16 * 1024 * 1024;

type Outcome = Result<Option<Bytes>, RouteError>;

/// What a connection needs from its listener besides the [`Session`].
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Mechanisms of a SASL listener; `None`: no SASL.
    pub sasl: Option<Arc<[SaslMechanism]>>,
    /// When the connection was accepted: SASL authentication must end by
    /// `accepted + sasl::AUTH_TIMEOUT`.
    pub accepted: Instant,
}

/// Serves one connection (plain TCP or TLS) until the client or shutdown ends it.
pub async fn serve<R, W>(
    ctx: Arc<Ctx>,
    mut session: Session,
    rd: R,
    mut wr: W,
    options: ConnOptions,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let last_read = Arc::new(AtomicU64::new(0));
    let mut rd = Activity {
        inner: rd,
        epoch: options.accepted,
        last_read: last_read.clone(),
    };
    // `client_id` is recorded on the connection's span once, from its first request.
    let mut conn_span = Some(tracing::Span::current());
    if let Some(mechanisms) = &options.sasl {
        let deadline = options.accepted + super::sasl::AUTH_TIMEOUT;
        let exchange = super::sasl::authenticate(
            &ctx,
            mechanisms,
            session.peer,
            &mut rd,
            &mut wr,
            &mut conn_span,
        );
        let user = tokio::select! {
            _ = ctx.shutdown.cancelled() => None,
            user = tokio::time::timeout_at(deadline, exchange) => user.unwrap_or_else(|_| {
                tracing::info!(
                    peer = ?session.peer,
                    "closing connection: not authenticated within {:?} of accepting it",
                    super::sasl::AUTH_TIMEOUT
                );
                None
            }),
        };
        let Some(user) = user else {
            let _ = wr.shutdown().await;
            return;
        };
        let principal = format!("User:{user}");
        tracing::Span::current().record("principal", principal.as_str());
        tracing::debug!(%principal, "authenticated");
        session.principal = Arc::from(principal);
    }
    let idle = Duration::from_millis(ctx.config.server.connections_max_idle_ms);
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let (queue, responses) = mpsc::channel(MAX_IN_FLIGHT);
    // Cancelled by the writer when a response says the connection must close.
    let closing = CancellationToken::new();
    let writer = tokio::spawn(write_responses(wr, responses, closing.clone()).in_current_span());
    let max = ctx.config.server.max_request_size;
    // Completes when the newest queued produce has its response (so all older ones too:
    // the store commits in queue order).
    let mut last_produce: Option<JoinHandle<()>> = None;
    let pipelined = Arc::new(AtomicUsize::new(0));
    // One timer for the connection, moved only when it fires early: no timer work per request.
    let idle_timer = tokio::time::sleep_until(options.accepted + idle);
    tokio::pin!(idle_timer);
    loop {
        // Time spent answering is not idle: the clock starts when we wait for a request, or at
        // the last byte received if that is later.
        let waiting_since = Instant::now();
        let read = read_frame(&mut rd, max);
        tokio::pin!(read);
        let frame = loop {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break None,
                _ = closing.cancelled() => break None,
                frame = &mut read => break Some(frame),
                _ = &mut idle_timer => {
                    let last = options.accepted
                        + Duration::from_millis(last_read.load(Ordering::Relaxed));
                    let due = last.max(waiting_since) + idle;
                    if Instant::now() >= due {
                        tracing::debug!("closing connection: idle for {idle:?} (server.connections_max_idle_ms)");
                        break None;
                    }
                    idle_timer.as_mut().reset(due);
                }
            }
        };
        let Some(frame) = frame else { break };
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
        let frame_len = frame.len();
        let span = tracing::debug_span!("request", api_key, api_version, correlation_id);
        let (done, pending) = oneshot::channel();
        let mut fatal = false;
        match decode(frame, &mut conn_span) {
            Err(e) => {
                fatal = true;
                let _ = done.send(Err(e));
            }
            Ok(Decoded::Answer(bytes)) => {
                let _ = done.send(Ok(Some(bytes)));
            }
            Ok(Decoded::Request(req)) => match *req {
                router::Request {
                    raw,
                    body: RequestKind::Produce(body),
                } => {
                    if pipelined.load(Ordering::Acquire) >= MAX_PIPELINED_BYTES
                        && let Some(earlier) = last_produce.take()
                    {
                        let _ = earlier.await;
                    }
                    let response =
                        span.in_scope(|| router::start_produce_as(&ctx, &session, raw, body));
                    pipelined.fetch_add(frame_len, Ordering::AcqRel);
                    let pipelined = pipelined.clone();
                    last_produce = Some(tokio::spawn(
                        async move {
                            let outcome = response.await;
                            pipelined.fetch_sub(frame_len, Ordering::AcqRel);
                            let _ = done.send(outcome);
                        }
                        .instrument(span),
                    ));
                }
                req => {
                    if let Some(earlier) = last_produce.take() {
                        let _ = earlier.await;
                    }
                    let outcome = router::dispatch(&ctx, &session, req).instrument(span).await;
                    let _ = done.send(outcome);
                }
            },
        }
        if queue.send(pending).await.is_err() || fatal {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// Writes responses in request order; stops at the first request that must close the
/// connection or at a write error. Responses that are ready together share one write: the
/// buffer is flushed only when the writer would otherwise wait.
async fn write_responses<W: AsyncWrite + Unpin>(
    wr: W,
    mut responses: mpsc::Receiver<oneshot::Receiver<Outcome>>,
    closing: CancellationToken,
) {
    let _stop_reader = closing.drop_guard();
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    loop {
        let pending = match responses.try_recv() {
            Ok(pending) => pending,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if !flush(&mut wr).await {
                    return;
                }
                match responses.recv().await {
                    Some(pending) => pending,
                    None => break,
                }
            }
        };
        let outcome = match ready(pending) {
            Ok(outcome) => outcome,
            Err(pending) => {
                if !flush(&mut wr).await {
                    return;
                }
                pending.await.unwrap_or_else(|_| Err(RouteError::Abandoned))
            }
        };
        match outcome {
            Ok(Some(bytes)) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(error = %e, "cannot write response");
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "closing connection");
                let _ = flush(&mut wr).await;
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
    flush(&mut wr).await;
}

/// The outcome if it is already there, else the receiver back.
fn ready(mut pending: oneshot::Receiver<Outcome>) -> Result<Outcome, oneshot::Receiver<Outcome>> {
    match pending.try_recv() {
        Ok(outcome) => Ok(outcome),
        Err(oneshot::error::TryRecvError::Closed) => Ok(Err(RouteError::Abandoned)),
        Err(oneshot::error::TryRecvError::Empty) => Err(pending),
    }
}

async fn flush<W: AsyncWrite + Unpin>(wr: &mut BufWriter<W>) -> bool {
    match wr.flush().await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cannot write response");
            false
        }
    }
}

/// A reader that notes when it last received bytes (ms since `epoch`), for the idle timeout.
struct Activity<R> {
    inner: R,
    epoch: Instant,
    last_read: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Activity<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_read.store(ms, Ordering::Relaxed);
        }
        polled
    }
}

pub(super) enum Decoded {
    Request(Box<router::Request>),
    /// Answered without a handler.
    Answer(Bytes),
}

/// Decodes a request frame, answering an ApiVersions of a version we do not speak directly.
pub(super) fn decode(
    frame: Bytes,
    conn_span: &mut Option<tracing::Span>,
) -> Result<Decoded, RouteError> {
    if let Some(answer) = unsupported_api_versions(&frame)? {
        return Ok(Decoded::Answer(answer));
    }
    let req = router::decode(frame)?;
    if let Some(client_id) = &req.raw.header.client_id
        && let Some(span) = conn_span.take()
    {
        span.record("client_id", client_id.as_str());
    }
    Ok(Decoded::Request(Box::new(req)))
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
