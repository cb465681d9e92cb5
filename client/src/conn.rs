//! One TCP connection to one broker: TLS and SASL, framing, correlation ids, API version
//! negotiation.
//!
//! A [`Connection`] runs one request at a time (a mutex around the socket), which keeps the
//! ordering rules of idempotent produce trivially true. Every call has a deadline; a call
//! that times out or fails on I/O marks the connection broken, because the stream may hold
//! half a frame, and the owner ([`crate::Client`]) replaces it. Versions: at connect the
//! connection asks ApiVersions (v3, falling back to v0 as KIP-511 allows) and each call
//! picks the highest version both sides support within the range the caller can fill.
//!
//! Connecting is: TCP, then the TLS handshake when [`Security`] has TLS (both within the
//! connect timeout), then ApiVersions, then SASL when configured ([`crate::security::sasl`]).
//! A broker that limits the SASL session's lifetime gets a connection that reports itself
//! broken shortly before the session expires, so the owner opens a fresh one in time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::error::{ClientError, Result};
use crate::security::tls::{Stream, settings_failure};
use crate::security::{Security, sasl};

/// Largest response frame accepted; a fetch asks for at most tens of MiB.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// An open, version-negotiated connection.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    stream: Mutex<Stream>,
    versions: HashMap<i16, (i16, i16)>,
    next_correlation: AtomicI32,
    broken: AtomicBool,
    timeout: Duration,
    /// When the broker's SASL session ends (shortened by [`sasl`]); `None`: never.
    expires: Option<Instant>,
}

impl Connection {
    /// Connects to `addr` (`host:port`), secures the connection as `security` says and
    /// negotiates API versions. TLS failures are [`ClientError::Tls`] and SASL failures
    /// [`ClientError::Authentication`], neither retriable.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        security: &Security,
    ) -> Result<Self> {
        let stream = tokio::time::timeout(connect_timeout, open_stream(addr, security))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.to_string(),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no {}connection within {} ms",
                        if security.tls().is_some() { "TLS " } else { "" },
                        connect_timeout.as_millis()
                    ),
                )),
            })??;
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            stream: Mutex::new(stream),
            versions: HashMap::new(),
            next_correlation: AtomicI32::new(1),
            broken: AtomicBool::new(false),
            timeout: request_timeout,
            expires: None,
        };
        let secured = async {
            conn.versions = conn.negotiate().await?;
            if let Some(settings) = security.sasl() {
                let lifetime = sasl::authenticate(&conn, settings).await?;
                conn.expires = lifetime.map(|l| Instant::now() + l);
            }
            Ok(())
        };
        // With TLS 1.3 a server that refuses our client certificate says so only after the
        // handshake, in answer to the first request: still a TLS failure, not an I/O error.
        match secured.await {
            Ok(()) => Ok(conn),
            Err(ClientError::Io { addr, source }) => Err(match settings_failure(&source) {
                Some(message) => ClientError::Tls { addr, message },
                None => ClientError::Io { addr, source },
            }),
            Err(e) => Err(e),
        }
    }

    /// The `host:port` this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether a failed call left the stream unusable, or the broker's SASL session is about
    /// to end.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.expires.is_some_and(|e| Instant::now() >= e)
    }

    /// The broker's version range for `key`, if it serves it.
    pub fn api_range(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.versions.get(&(key as i16)).copied()
    }

    /// Sends `request` at the highest version in `ours` that the broker serves and returns
    /// its response.
    pub async fn call<R: Request>(&self, request: &R, ours: (i16, i16)) -> Result<R::Response> {
        let version = self.pick_version::<R>(ours)?;
        self.call_at(request, version).await
    }

    /// The version [`Connection::call`] would use.
    pub fn pick_version<R: Request>(&self, ours: (i16, i16)) -> Result<i16> {
        let theirs = self.versions.get(&R::KEY).copied();
        match theirs {
            Some((min, max)) if min.max(ours.0) <= max.min(ours.1) => Ok(max.min(ours.1)),
            _ => Err(ClientError::UnsupportedApi {
                addr: self.addr.clone(),
                api: api_name(R::KEY),
                ours_min: ours.0,
                ours_max: ours.1,
                theirs: theirs.map_or("nothing".into(), |(a, b)| format!("{a}..={b}")),
            }),
        }
    }

    /// Sends `request` at exactly `version`.
    pub async fn call_at<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        let api = api_name(R::KEY);
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(request, version, correlation_id)?;
        let mut stream = self.stream.lock().await;
        if self.is_broken() {
            return Err(self.io_error(std::io::ErrorKind::NotConnected.into()));
        }
        let exchange = async {
            stream.write_all(&frame).await?;
            // TLS may hold the last record back until flushed (a no-op for plain TCP).
            stream.flush().await?;
            let len = stream.read_i32().await?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_RESPONSE_BYTES)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("response length {len} is out of range"),
                    )
                })?;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(Bytes::from(body))
        };
        let body = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                self.broken.store(true, Ordering::Relaxed);
                return Err(self.io_error(e));
            }
            Err(_) => {
                self.broken.store(true, Ordering::Relaxed);
                return Err(ClientError::Timeout {
                    addr: self.addr.clone(),
                    api,
                    timeout_ms: self.timeout.as_millis(),
                });
            }
        };
        drop(stream);
        self.decode::<R>(body, version, correlation_id)
    }

    fn encode<R: Request>(&self, request: &R, version: i16, correlation_id: i32) -> Result<Bytes> {
        let key = R::KEY;
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        let header_version = ApiKey::try_from(key)
            .map(|k| k.request_header_version(version))
            .unwrap_or(1);
        header
            .encode(&mut buf, header_version)
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| self.protocol(api_name(key), e))?;
        let len = i32::try_from(buf.len() - 4).map_err(|_| ClientError::Protocol {
            addr: self.addr.clone(),
            api: api_name(key),
            message: "request larger than 2 GiB".into(),
        })?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf.freeze())
    }

    fn decode<R: Request>(
        &self,
        mut body: Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response> {
        let key = R::KEY;
        let header_version = ApiKey::try_from(key)
            .map(|k| k.response_header_version(version))
            .unwrap_or(0);
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| self.protocol(api_name(key), e))?;
        if header.correlation_id != correlation_id {
            self.broken.store(true, Ordering::Relaxed);
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                api: api_name(key),
                message: format!(
                    "correlation id {} in answer to {correlation_id}",
                    header.correlation_id
                ),
            });
        }
        R::Response::decode(&mut body, version).map_err(|e| self.protocol(api_name(key), e))
    }

    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runnel-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response = self.call_at(&request, 3).await?;
        if response.error_code == UNSUPPORTED_VERSION {
            response = self.call_at(&ApiVersionsRequest::default(), 0).await?;
        }
        if let Some(e) = ClientError::kafka(
            format!("ApiVersions from {}", self.addr),
            response.error_code,
        ) {
            return Err(e);
        }
        Ok(response
            .api_keys
            .iter()
            .map(|a| (a.api_key, (a.min_version, a.max_version)))
            .collect())
    }

    fn io_error(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source: Arc::new(source),
        }
    }

    fn protocol(&self, api: &'static str, e: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            api,
            message: e.to_string(),
        }
    }
}

const UNSUPPORTED_VERSION: i16 = 35;

/// TCP to `addr`, then the TLS handshake when `security` has TLS.
async fn open_stream(addr: &str, security: &Security) -> Result<Stream> {
    let connect_error = |source: std::io::Error| ClientError::Connect {
        addr: addr.to_string(),
        source: Arc::new(source),
    };
    let tcp = TcpStream::connect(addr).await.map_err(connect_error)?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = security.tls() else {
        return Ok(Stream::Plain(tcp));
    };
    match tls.connect(addr, tcp).await {
        Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
        Err(e) => Err(match settings_failure(&e) {
            Some(message) => ClientError::Tls {
                addr: addr.to_string(),
                message,
            },
            None => connect_error(e),
        }),
    }
}

/// The Kafka name of an API key, for messages.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::DescribeCluster) => "DescribeCluster",
        Ok(ApiKey::ListGroups) => "ListGroups",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::SaslHandshake) => "SaslHandshake",
        Ok(ApiKey::SaslAuthenticate) => "SaslAuthenticate",
        Ok(_) => "a Kafka API",
        Err(()) => "an unknown API",
    }
}
