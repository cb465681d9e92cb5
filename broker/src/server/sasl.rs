//! The authentication phase of a connection on a `SASL_PLAINTEXT` or `SASL_SSL` listener
//! (KIP-43, KIP-152), before any other request is served.
//!
//! Until the client has authenticated, only ApiVersions, SaslHandshake (v0–v1) and
//! SaslAuthenticate (v0–v2) are read; anything else closes the connection, as Kafka does for
//! ILLEGAL_SASL_STATE. SaslHandshake v1 carries the tokens in SaslAuthenticate requests;
//! after a v0 handshake the tokens travel as bare length-prefixed frames (the pre-KIP-152
//! form, cheap to keep since the framing is the same).
//!
//! Bounds, so unauthenticated peers cost little:
//! - every frame is at most [`MAX_UNAUTHENTICATED_FRAME`] bytes, checked before anything is
//!   allocated (Kafka's `sasl.server.max.receive.size` is 512 KiB for Kerberos and OAuth
//!   tokens; PLAIN and SCRAM messages are a few hundred bytes, and 8 KiB × the connection
//!   limit keeps the worst case in single megabytes on a Pi);
//! - at most [`MAX_UNAUTHENTICATED_REQUESTS`] requests, all within the deadline the caller
//!   sets (10 s from accept, see [`AUTH_TIMEOUT`]);
//! - no read-ahead buffer until the client is authenticated;
//! - PLAIN's PBKDF2 runs off the async threads, at most one per core at a time.
//!
//! A failed authentication is answered SASL_AUTHENTICATION_FAILED with the same message for an
//! unknown user and a wrong password, counted in [`crate::auth::AuthMetrics`], logged as a
//! warning naming the peer, mechanism and user (never the password or a token), and the
//! connection is closed [`FAILED_AUTHENTICATION_DELAY`] after the answer.
//!
//! KIP-368 re-authentication: `session_lifetime_ms` is 0 (sessions do not expire), so
//! clients never re-authenticate; a credential removed while a client is connected stays
//! valid for that connection until it closes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestKind, SaslAuthenticateResponse};
use kafka_protocol::protocol::Encodable;
use runnel_client::security::SaslMechanism;
use runnel_client::security::scram::new_nonce;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::connection::{Decoded, decode};
use super::router::Request;
use crate::auth::scram::{self, ScramExchange};
use crate::handlers::{Ctx, api_versions, sasl, str_bytes};
use crate::log::ScramMechanism;
use crate::protocol::frame::{FrameError, read_frame};
use crate::protocol::request::encode_response;

/// Largest frame read before authentication, request header included.
pub const MAX_UNAUTHENTICATED_FRAME: u32 = 8 * 1024;
/// Requests a client may send before it is authenticated (ApiVersions, a retried ApiVersions,
/// SaslHandshake and two SCRAM rounds need five).
pub const MAX_UNAUTHENTICATED_REQUESTS: usize = 8;
/// Time from accept to the end of authentication, TLS handshake included.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection stays open after a failed authentication was answered (Kafka's
/// `connection.failed.authentication.delay.ms`): slows down password guessing, and lets the
/// client read the answer before the close (kafka-python over TLS drops an answer that arrives
/// together with the close).
pub const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(100);

/// Where the exchange stands.
enum Stage {
    /// Before SaslHandshake: ApiVersions or SaslHandshake.
    Start,
    /// After the handshake, before the first token.
    Handshaken(Mechanism),
    /// SCRAM, after the server-first message.
    ScramFinal(Mechanism, Box<ScramExchange>),
}

/// The chosen mechanism and how tokens travel.
#[derive(Debug, Clone, Copy)]
struct Mechanism {
    kind: SaslMechanism,
    /// SaslHandshake v0: bare token frames instead of SaslAuthenticate.
    raw: bool,
}

/// How a token frame arrived, to answer the same way.
struct Reply {
    /// `None` for bare tokens.
    request: Option<(i16, i32)>,
}

/// Where a failed exchange stands, for the log and the answer.
struct Failure {
    reason: String,
    user: Option<String>,
    bad_credentials: bool,
    /// `e=` value for SCRAM.
    scram_error: Option<String>,
}

/// Runs the authentication phase on `rd`/`wr`; returns the authenticated user name, or `None`
/// when the connection must close (everything is logged here). The caller bounds the time.
pub async fn authenticate<R, W>(
    ctx: &Ctx,
    mechanisms: &[SaslMechanism],
    peer: Option<SocketAddr>,
    rd: &mut R,
    wr: &mut W,
    conn_span: &mut Option<tracing::Span>,
) -> Option<String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let mut stage = Stage::Start;
    for _ in 0..MAX_UNAUTHENTICATED_REQUESTS {
        let frame = match read_frame(rd, MAX_UNAUTHENTICATED_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::debug!("client closed the connection before authenticating");
                return None;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "connection error before authentication");
                return None;
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                tracing::warn!(%peer, error = %e, "closing unauthenticated connection: frames before authentication are limited to {MAX_UNAUTHENTICATED_FRAME} bytes");
                return None;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing unauthenticated connection: bad frame");
                return None;
            }
        };
        let next = match stage {
            Stage::Start => start(ctx, mechanisms, &peer, frame, wr, conn_span).await,
            Stage::Handshaken(m) => token(ctx, &peer, m, None, frame, wr).await,
            Stage::ScramFinal(m, exchange) => {
                token(ctx, &peer, m, Some(*exchange), frame, wr).await
            }
        };
        match next? {
            Next::Stage(s) => stage = s,
            Next::Authenticated(user) => {
                ctx.auth.record(true);
                return Some(user);
            }
        }
    }
    tracing::warn!(%peer, "closing unauthenticated connection: more than {MAX_UNAUTHENTICATED_REQUESTS} requests without authenticating");
    None
}

enum Next {
    Stage(Stage),
    Authenticated(String),
}

/// ApiVersions or SaslHandshake.
async fn start<W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    mechanisms: &[SaslMechanism],
    peer: &str,
    frame: Bytes,
    wr: &mut W,
    conn_span: &mut Option<tracing::Span>,
) -> Option<Next> {
    let Request { raw, body } = match decode(frame, conn_span) {
        Ok(Decoded::Answer(bytes)) => {
            write(wr, &bytes).await?;
            return Some(Next::Stage(Stage::Start));
        }
        Ok(Decoded::Request(req)) => *req,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing unauthenticated connection: bad request");
            return None;
        }
    };
    let (version, correlation_id) = (raw.version(), raw.header.correlation_id);
    match body {
        RequestKind::ApiVersions(_) => {
            respond(
                wr,
                ApiKey::ApiVersions,
                version,
                correlation_id,
                &api_versions::handle(),
            )
            .await?;
            Some(Next::Stage(Stage::Start))
        }
        RequestKind::SaslHandshake(req) => {
            let (response, chosen) = sasl::handshake(&req.mechanism, mechanisms);
            respond(
                wr,
                ApiKey::SaslHandshake,
                version,
                correlation_id,
                &response,
            )
            .await?;
            match chosen {
                Some(kind) => Some(Next::Stage(Stage::Handshaken(Mechanism {
                    kind,
                    raw: version == 0,
                }))),
                None => {
                    // Kafka counts this as a failed authentication too.
                    ctx.auth.record(false);
                    tracing::warn!(%peer, mechanism = %req.mechanism, "closing connection: SASL mechanism not enabled on this listener");
                    None
                }
            }
        }
        _ => {
            tracing::warn!(%peer, api = ?raw.api_key, "closing connection: request before SASL authentication (ILLEGAL_SASL_STATE)");
            None
        }
    }
}

/// One token of the exchange: the first for PLAIN or SCRAM, or SCRAM's final one.
async fn token<W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    peer: &str,
    mechanism: Mechanism,
    exchange: Option<ScramExchange>,
    frame: Bytes,
    wr: &mut W,
) -> Option<Next> {
    let (bytes, reply) = if mechanism.raw {
        (frame, Reply { request: None })
    } else {
        let Ok(Decoded::Request(req)) = decode(frame, &mut None) else {
            tracing::warn!(%peer, "closing connection: expected SaslAuthenticate (ILLEGAL_SASL_STATE)");
            return None;
        };
        let Request { raw, body } = *req;
        let RequestKind::SaslAuthenticate(req) = body else {
            tracing::warn!(%peer, api = ?raw.api_key, "closing connection: request before SASL authentication (ILLEGAL_SASL_STATE)");
            return None;
        };
        let request = Some((raw.version(), raw.header.correlation_id));
        (req.auth_bytes, Reply { request })
    };
    let outcome = match (mechanism.kind, exchange) {
        (SaslMechanism::Plain, _) => match ctx.auth.check_plain(bytes.to_vec()).await {
            Ok(user) => Ok((Step::Done(user), Vec::new())),
            Err(f) => Err(Failure {
                user: crate::auth::plain::username(&bytes)
                    .ok()
                    .map(str::to_string),
                reason: f.reason,
                bad_credentials: f.bad_credentials,
                scram_error: None,
            }),
        },
        (kind, None) => scram_first(ctx, kind, &bytes),
        (_, Some(exchange)) => {
            let user = exchange.user().to_string();
            match exchange.client_final(&bytes) {
                Ok(server_final) => Ok((Step::Done(user), server_final.into_bytes())),
                Err(f) => Err(Failure {
                    reason: f.reason.clone(),
                    user: Some(user),
                    bad_credentials: f.bad_credentials,
                    scram_error: Some(f.server_final()),
                }),
            }
        }
    };
    match outcome {
        Ok((step, answer)) => {
            answer_token(wr, &reply, Ok(answer)).await?;
            Some(match step {
                Step::Continue(exchange) => Next::Stage(Stage::ScramFinal(mechanism, exchange)),
                Step::Done(user) => Next::Authenticated(user),
            })
        }
        Err(failure) => {
            ctx.auth.record(false);
            tracing::warn!(
                %peer,
                mechanism = mechanism.kind.name(),
                user = failure.user.as_deref().unwrap_or("?"),
                reason = %failure.reason,
                "SASL authentication failed"
            );
            let message = if failure.bad_credentials {
                format!(
                    "Authentication failed: invalid credentials with SASL mechanism {}",
                    mechanism.kind
                )
            } else {
                format!("Authentication failed: {}", failure.reason)
            };
            if answer_token(wr, &reply, Err((message, failure.scram_error)))
                .await
                .is_some()
            {
                tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
            }
            None
        }
    }
}

/// What a successful token leads to.
enum Step {
    /// SCRAM after the server-first message.
    Continue(Box<ScramExchange>),
    Done(String),
}

/// SCRAM's first round: the server-first message, or a failure.
fn scram_first(ctx: &Ctx, kind: SaslMechanism, bytes: &[u8]) -> Result<(Step, Vec<u8>), Failure> {
    let mechanism = match kind {
        SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
        _ => ScramMechanism::Sha512,
    };
    let nonce = new_nonce().map_err(|e| Failure {
        reason: e.to_string(),
        user: None,
        bad_credentials: false,
        scram_error: Some("e=no-resources".into()),
    })?;
    let (exchange, server_first) = scram::client_first(mechanism, bytes, &nonce, |user| {
        ctx.auth.scram_lookup(user, mechanism)
    })
    .map_err(|f| Failure {
        scram_error: Some(f.server_final()),
        reason: f.reason,
        user: None,
        bad_credentials: f.bad_credentials,
    })?;
    Ok((
        Step::Continue(Box::new(exchange)),
        server_first.into_bytes(),
    ))
}

/// Writes a token (or the failure) the way the request came: a SaslAuthenticate response, or
/// a bare frame after a v0 handshake (which has no error field: a SCRAM failure sends its
/// `e=` message, PLAIN just closes).
async fn answer_token<W: AsyncWrite + Unpin>(
    wr: &mut W,
    reply: &Reply,
    answer: Result<Vec<u8>, (String, Option<String>)>,
) -> Option<()> {
    match (reply.request, answer) {
        (Some((version, correlation_id)), answer) => {
            let response = match answer {
                Ok(bytes) => {
                    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes))
                }
                Err((message, scram_error)) => SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(str_bytes(&message)))
                    .with_auth_bytes(Bytes::from(scram_error.unwrap_or_default())),
            };
            respond(
                wr,
                ApiKey::SaslAuthenticate,
                version,
                correlation_id,
                &response,
            )
            .await
        }
        (None, Ok(bytes)) => write(wr, &bare_frame(&bytes)).await,
        (None, Err((_, Some(scram_error)))) => write(wr, &bare_frame(scram_error.as_bytes())).await,
        (None, Err((_, None))) => Some(()),
    }
}

fn bare_frame(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + token.len());
    out.extend_from_slice(&(token.len() as u32).to_be_bytes());
    out.extend_from_slice(token);
    out
}

async fn respond<W: AsyncWrite + Unpin, M: Encodable>(
    wr: &mut W,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> Option<()> {
    match encode_response(api, version, correlation_id, body) {
        Ok(bytes) => write(wr, &bytes).await,
        Err(e) => {
            tracing::warn!(error = %e, ?api, version, "cannot encode a response; closing");
            None
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> Option<()> {
    let written = async {
        wr.write_all(bytes).await?;
        wr.flush().await
    };
    match written.await {
        Ok(()) => Some(()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot write during authentication");
            None
        }
    }
}
