//! Hand-built Kafka frames over a plain TCP socket, for what real clients cannot do: send
//! broken frames, ask for absurd versions, or call an API the rdkafka crate does not wrap
//! (IncrementalAlterConfigs, DescribeCluster).
//!
//! Only the handful of fields these tests need are encoded here, following the Kafka protocol
//! guide: a frame is an `INT32` length followed by that many bytes; a request header v1 is
//! `api_key INT16, api_version INT16, correlation_id INT32, client_id NULLABLE_STRING` and v2
//! adds an (empty) tagged-field section; a response header is `correlation_id INT32` (v0) plus
//! a tagged-field section (v1, for flexible versions). ApiVersions responses always use v0.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub use super::wire::{Reader, Writer};

/// Api keys used by the raw tests.
pub mod api {
    pub const PRODUCE: i16 = 0;
    pub const METADATA: i16 = 3;
    pub const API_VERSIONS: i16 = 18;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 44;
    pub const DESCRIBE_CLUSTER: i16 = 60;
}

/// Error codes the raw tests look for.
pub mod error {
    pub const NONE: i16 = 0;
    pub const UNSUPPORTED_VERSION: i16 = 35;
}

/// A request header v1 (`flexible = false`) or v2, ready for a body to be appended.
pub fn request_header(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    flexible: bool,
) -> Writer {
    let mut w = Writer::new();
    w.i16(api_key)
        .i16(api_version)
        .i32(correlation_id)
        .nullable_string(Some("runnel-raw-test"), false)
        .no_tagged_fields(flexible);
    w
}

/// Prefixes `payload` with its INT32 length.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// A plain TCP connection to the broker.
#[derive(Debug)]
pub struct RawConnection {
    stream: TcpStream,
}

impl RawConnection {
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .context("writing to the broker")
    }

    /// Reads one response frame (without its length prefix).
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut len = [0; 4];
        self.stream
            .read_exact(&mut len)
            .context("reading a response length")?;
        let len = usize::try_from(i32::from_be_bytes(len)).context("negative response length")?;
        ensure!(len <= 64 << 20, "response length {len} is implausible");
        let mut body = vec![0; len];
        self.stream
            .read_exact(&mut body)
            .context("reading a response body")?;
        Ok(body)
    }

    /// Sends one request and reads its response, checking the correlation id; returns the
    /// response after the correlation id (and its tagged fields when `flexible_response`).
    pub fn round_trip(
        &mut self,
        request: &[u8],
        correlation_id: i32,
        flexible_response: bool,
    ) -> Result<Vec<u8>> {
        self.send(&frame(request))?;
        let response = self.read_frame(Duration::from_secs(10))?;
        let mut reader = Reader::new(&response);
        let got = reader.i32()?;
        ensure!(
            got == correlation_id,
            "correlation id {got}, expected {correlation_id}"
        );
        reader.skip_tagged_fields(flexible_response)?;
        Ok(response[response.len() - reader.remaining()..].to_vec())
    }

    /// Waits until the broker closes the connection: a read returns EOF or a reset. Bytes the
    /// broker sends before closing are read and counted, not judged. Fails if the connection is
    /// still open after `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut received = 0;
        let mut buf = [0; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the broker kept the connection open for {timeout:?} ({received} bytes received)"
                );
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(received),
                Ok(n) => received += n,
                Err(e) if is_closed(&e) => return Ok(received),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the broker"),
            }
        }
    }
}

fn is_closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// One `(api_key, min_version, max_version)` entry of an ApiVersions response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api_key: i16,
    pub min: i16,
    pub max: i16,
}

/// Parses an ApiVersions v0 response body (after the correlation id) and insists that nothing
/// follows the api list: `error_code INT16, api_keys ARRAY(api_key INT16, min INT16, max INT16)`.
pub fn parse_api_versions_v0(body: &[u8]) -> Result<(i16, Vec<ApiVersionRange>)> {
    let mut reader = Reader::new(body);
    let error_code = reader.i16()?;
    let count = reader.array_len(false)?;
    ensure!(
        count <= reader.remaining() / 6,
        "api list claims {count} entries but {} bytes follow",
        reader.remaining()
    );
    let mut apis = Vec::with_capacity(count);
    for _ in 0..count {
        apis.push(ApiVersionRange {
            api_key: reader.i16()?,
            min: reader.i16()?,
            max: reader.i16()?,
        });
    }
    ensure!(
        reader.remaining() == 0,
        "{} unexpected bytes after the v0 api list",
        reader.remaining()
    );
    Ok((error_code, apis))
}

/// Asks the broker for its api versions with an ApiVersions v0 request.
pub fn api_versions(addr: SocketAddr) -> Result<Vec<ApiVersionRange>> {
    let mut conn = RawConnection::connect(addr)?;
    let request = request_header(api::API_VERSIONS, 0, 1, false);
    let body = conn.round_trip(&request.buf, 1, false)?;
    let (error_code, apis) = parse_api_versions_v0(&body)?;
    ensure!(
        error_code == error::NONE,
        "ApiVersions v0 answered error {error_code}"
    );
    Ok(apis)
}

/// IncrementalAlterConfigs operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOp {
    Set = 0,
    Delete = 1,
}

/// The resource type code of a topic in config APIs.
pub const RESOURCE_TOPIC: i8 = 2;

/// One IncrementalAlterConfigs result: `(resource_name, error_code, error_message)`.
pub type AlterResult = (String, i16, Option<String>);

/// Sends IncrementalAlterConfigs for one topic with `(name, op, value)` entries, at the highest
/// version both sides know (0 or 1), and returns the per-resource results.
pub fn incremental_alter_topic_configs(
    addr: SocketAddr,
    topic: &str,
    entries: &[(&str, AlterOp, Option<&str>)],
) -> Result<Vec<AlterResult>> {
    let apis = api_versions(addr)?;
    let range = apis
        .iter()
        .find(|a| a.api_key == api::INCREMENTAL_ALTER_CONFIGS)
        .context("ApiVersions does not list IncrementalAlterConfigs (44)")?;
    ensure!(
        range.min <= 1,
        "IncrementalAlterConfigs versions {}..={} do not include 0 or 1",
        range.min,
        range.max
    );
    let version = range.max.min(1);
    let flexible = version >= 1;
    let correlation_id = 7;
    let mut request = request_header(
        api::INCREMENTAL_ALTER_CONFIGS,
        version,
        correlation_id,
        flexible,
    );
    request
        .array_len(1, flexible)
        .i8(RESOURCE_TOPIC)
        .string(topic, flexible)
        .array_len(entries.len(), flexible);
    for (name, op, value) in entries {
        request
            .string(name, flexible)
            .i8(*op as i8)
            .nullable_string(*value, flexible)
            .no_tagged_fields(flexible);
    }
    request
        .no_tagged_fields(flexible)
        .bool(false) // validate_only
        .no_tagged_fields(flexible);

    let mut conn = RawConnection::connect(addr)?;
    let body = conn.round_trip(&request.buf, correlation_id, flexible)?;
    let mut reader = Reader::new(&body);
    let _throttle_time_ms = reader.i32()?;
    let count = reader.array_len(flexible)?;
    let mut results = Vec::new();
    for _ in 0..count {
        let error_code = reader.i16()?;
        let message = reader.nullable_string(flexible)?;
        let _resource_type = reader.i8()?;
        let name = reader.string(flexible)?;
        reader.skip_tagged_fields(flexible)?;
        results.push((name, error_code, message));
    }
    Ok(results)
}

/// What a DescribeCluster v0 response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub error_code: i16,
    pub cluster_id: String,
    pub controller_id: i32,
    /// `(broker_id, host, port)`
    pub brokers: Vec<(i32, String, i32)>,
}

/// Sends DescribeCluster v0 (flexible from v0) and parses the answer.
pub fn describe_cluster(addr: SocketAddr) -> Result<ClusterDescription> {
    let correlation_id = 60;
    let mut request = request_header(api::DESCRIBE_CLUSTER, 0, correlation_id, true);
    request
        .bool(false) // include_cluster_authorized_operations
        .no_tagged_fields(true);
    let mut conn = RawConnection::connect(addr)?;
    let body = conn.round_trip(&request.buf, correlation_id, true)?;
    let mut reader = Reader::new(&body);
    let _throttle_time_ms = reader.i32()?;
    let error_code = reader.i16()?;
    let _error_message = reader.nullable_string(true)?;
    let cluster_id = reader.string(true)?;
    let controller_id = reader.i32()?;
    let count = reader.array_len(true)?;
    let mut brokers = Vec::new();
    for _ in 0..count {
        let broker_id = reader.i32()?;
        let host = reader.string(true)?;
        let port = reader.i32()?;
        let _rack = reader.nullable_string(true)?;
        reader.skip_tagged_fields(true)?;
        brokers.push((broker_id, host, port));
    }
    let _authorized_operations = reader.i32()?;
    reader.skip_tagged_fields(true)?;
    ensure!(
        reader.remaining() == 0,
        "{} bytes after the DescribeCluster v0 body",
        reader.remaining()
    );
    Ok(ClusterDescription {
        error_code,
        cluster_id,
        controller_id,
        brokers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_v0_api_list_when_parsing_should_return_entries() -> Result<()> {
        let mut w = Writer::new();
        w.i16(35).i32(1).i16(18).i16(0).i16(4);
        let (code, apis) = parse_api_versions_v0(&w.buf)?;
        assert_eq!(code, 35);
        assert_eq!(
            apis,
            vec![ApiVersionRange {
                api_key: 18,
                min: 0,
                max: 4
            }]
        );
        Ok(())
    }

    #[test]
    fn given_trailing_bytes_when_parsing_v0_should_fail() {
        let mut w = Writer::new();
        w.i16(0).i32(0).i32(0);
        assert!(parse_api_versions_v0(&w.buf).is_err());
    }
}
