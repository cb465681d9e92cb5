//! Kafka requests over a plain TCP socket, for what real clients cannot do: send broken frames,
//! ask for absurd versions, or call an API the rdkafka crate does not wrap
//! (IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs). Well-formed requests and every
//! response go through the `kafka-protocol` crate (see [`super::wire`]); only the broken frames
//! are made by hand, in the tests that send them.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeClusterRequest, DescribeClusterResponse,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

pub use super::wire::{CLIENT_ID, decode_response, encode_request, frame, request_header};

/// How long [`RawConnection::call`] waits for an answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Sends `request` at `version` and decodes its response, checking the correlation id and
    /// that nothing follows the response body.
    pub fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response> {
        self.send(&frame(&encode_request(request, version, correlation_id)?))?;
        let response = self.read_frame(RESPONSE_TIMEOUT)?;
        decode_response::<R>(&response, version, correlation_id)
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

/// Asks the broker for its api versions with an ApiVersions v0 request.
pub fn api_versions(addr: SocketAddr) -> Result<Vec<ApiVersion>> {
    let mut conn = RawConnection::connect(addr)?;
    let response = conn.call(&ApiVersionsRequest::default(), 0, 1)?;
    ensure!(
        response.error_code == 0,
        "ApiVersions v0 answered error {}",
        response.error_code
    );
    Ok(response.api_keys)
}

/// IncrementalAlterConfigs operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOp {
    Set = 0,
    Delete = 1,
}

/// The resource type code of a topic in config APIs.
const RESOURCE_TOPIC: i8 = 2;

/// Sends IncrementalAlterConfigs for one topic with `(name, op, value)` entries, at the highest
/// version both sides know (0 or 1), and returns the per-resource results.
pub fn incremental_alter_topic_configs(
    addr: SocketAddr,
    topic: &str,
    entries: &[(&str, AlterOp, Option<&str>)],
) -> Result<Vec<AlterConfigsResourceResponse>> {
    let apis = api_versions(addr)?;
    let range = apis
        .iter()
        .find(|a| a.api_key == ApiKey::IncrementalAlterConfigs as i16)
        .context("ApiVersions does not list IncrementalAlterConfigs (44)")?;
    ensure!(
        range.min_version <= 1,
        "IncrementalAlterConfigs versions {}..={} do not include 0 or 1",
        range.min_version,
        range.max_version
    );
    let version = range.max_version.min(1);
    let configs = entries
        .iter()
        .map(|(name, op, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string((*name).to_owned()))
                .with_config_operation(*op as i8)
                .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(configs),
        ])
        .with_validate_only(false);
    let mut conn = RawConnection::connect(addr)?;
    Ok(conn.call(&request, version, 7)?.responses)
}

/// Sends DescribeCluster v0 and returns the answer.
pub fn describe_cluster(addr: SocketAddr) -> Result<DescribeClusterResponse> {
    let request =
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(false);
    RawConnection::connect(addr)?.call(&request, 0, 60)
}

/// Every partition's `partition_size` from DescribeLogDirs v4 (all topics, every log dir):
/// (topic, partition) → bytes.
pub fn partition_sizes(addr: SocketAddr) -> Result<BTreeMap<(String, i32), i64>> {
    let request = DescribeLogDirsRequest::default().with_topics(None);
    let response = RawConnection::connect(addr)?.call(&request, 4, 35)?;
    ensure!(
        response.error_code == 0,
        "DescribeLogDirs answered error {}",
        response.error_code
    );
    let mut sizes = BTreeMap::new();
    for dir in &response.results {
        for t in &dir.topics {
            for p in &t.partitions {
                sizes.insert((t.name.to_string(), p.partition_index), p.partition_size);
            }
        }
    }
    Ok(sizes)
}
