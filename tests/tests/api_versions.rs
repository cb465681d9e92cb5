//! ApiVersions by hand: the served api list, and the KIP-511 answer to a version the broker
//! does not know (UNSUPPORTED_VERSION with the api list, in a v0 response).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Encodable, Message, StrBytes};
use runnel_tests::raw::{self, RawConnection};
use runnel_tests::{Broker, BrokerOptions};

/// Api keys the contract says Runnel serves: Produce, Fetch, ListOffsets, Metadata,
/// ApiVersions, CreateTopics, DeleteTopics, DeleteRecords, DescribeConfigs, CreatePartitions,
/// IncrementalAlterConfigs, DescribeCluster.
const SERVED: [i16; 12] = [0, 1, 2, 3, 18, 19, 20, 21, 32, 37, 44, 60];

#[test]
fn given_api_versions_v99_when_asked_should_answer_unsupported_version_with_the_api_list()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let mut conn = RawConnection::connect(broker.addr())?;
    // A v99 header (flexible, as from v3) with the newest body kafka-protocol can encode (it
    // refuses v99): client_software_name and client_software_version, then tagged fields.
    let correlation_id = 4242;
    let mut request = raw::request_header(ApiKey::ApiVersions, 99, correlation_id)?;
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("runnel-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"))
        .encode(&mut request, ApiVersionsRequest::VERSIONS.max)?;
    conn.send(&raw::frame(&request))?;
    let response = conn.read_frame(Duration::from_secs(10))?;

    // Response header v0 (correlation id only), body v0, nothing after the api list.
    let response = raw::decode_response::<ApiVersionsRequest>(&response, 0, correlation_id)
        .context("the answer to ApiVersions v99 is not a v0 response")?;
    let code = response.error_code;
    ensure!(
        code == ResponseError::UnsupportedVersion.code(),
        "error_code {code}, expected 35"
    );
    let apis = response.api_keys;
    ensure!(!apis.is_empty(), "the api list is empty");
    let own = apis
        .iter()
        .find(|a| a.api_key == ApiKey::ApiVersions as i16)
        .context("the api list lacks ApiVersions itself")?;
    ensure!(
        own.min_version == 0,
        "ApiVersions advertised from v{}, clients fall back to v0",
        own.min_version
    );

    // The connection stays usable: a v0 request now succeeds on it.
    let code = conn
        .call(&ApiVersionsRequest::default(), 0, correlation_id + 1)?
        .error_code;
    ensure!(code == 0, "ApiVersions v0 after v99: error {code}");
    Ok(())
}

#[test]
fn given_api_versions_v0_when_asked_should_list_every_served_api_and_produce_from_v0() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let apis = raw::api_versions(broker.addr())?;
    for key in SERVED {
        let range = apis
            .iter()
            .find(|a| a.api_key == key)
            .with_context(|| format!("api key {key} is not advertised: {apis:?}"))?;
        ensure!(
            range.min_version <= range.max_version,
            "api key {key}: min {} > max {}",
            range.min_version,
            range.max_version
        );
    }
    // librdkafka turns compression off unless Produce is advertised from version 0.
    let produce = apis
        .iter()
        .find(|a| a.api_key == ApiKey::Produce as i16)
        .context("Produce")?;
    ensure!(
        produce.min_version == 0,
        "Produce advertised from v{}",
        produce.min_version
    );
    // Idempotent producers and consumer groups are served.
    for key in [
        ApiKey::InitProducerId,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
    ] {
        ensure!(
            apis.iter().any(|a| a.api_key == key as i16),
            "{key:?} is not advertised"
        );
    }
    // Transactions are not, and must not be advertised (AddPartitionsToTxn, AddOffsetsToTxn,
    // EndTxn, TxnOffsetCommit).
    for key in [24_i16, 25, 26, 28] {
        ensure!(
            apis.iter().all(|a| a.api_key != key),
            "api key {key} is advertised but not served"
        );
    }
    Ok(())
}

#[test]
fn given_describe_cluster_v0_when_asked_should_describe_node_0_at_the_bound_address() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let cluster = raw::describe_cluster(broker.addr())?;
    ensure!(cluster.error_code == 0, "DescribeCluster: {cluster:?}");
    ensure!(
        !cluster.cluster_id.is_empty(),
        "empty cluster id: {cluster:?}"
    );
    ensure!(
        *cluster.controller_id == 0,
        "controller {}",
        *cluster.controller_id
    );
    let brokers: Vec<(i32, String, i32)> = cluster
        .brokers
        .iter()
        .map(|b| (*b.broker_id, b.host.to_string(), b.port))
        .collect();
    let expected = vec![(
        0,
        broker.addr().ip().to_string(),
        i32::from(broker.addr().port()),
    )];
    ensure!(
        brokers == expected,
        "brokers {brokers:?}, expected {expected:?}"
    );
    Ok(())
}
