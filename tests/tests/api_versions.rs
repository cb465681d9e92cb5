//! ApiVersions by hand: the served api list, and the KIP-511 answer to a version the broker
//! does not know (UNSUPPORTED_VERSION with the api list, in a v0 response).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use runnel_tests::raw::{self, RawConnection, api, error};
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
    // A v3-style request (flexible header and body) at version 99: client_software_name and
    // client_software_version as compact strings, then empty tagged fields.
    let correlation_id = 4242;
    let mut request = raw::request_header(api::API_VERSIONS, 99, correlation_id, true);
    request
        .string("runnel-tests", true)
        .string("0.1.0", true)
        .no_tagged_fields(true);
    conn.send(&raw::frame(&request.buf))?;
    let response = conn.read_frame(Duration::from_secs(10))?;

    // Response header v0 (correlation id only), body v0.
    let mut reader = raw::Reader::new(&response);
    let got = reader.i32()?;
    ensure!(
        got == correlation_id,
        "correlation id {got}, expected {correlation_id}"
    );
    let (code, apis) = raw::parse_api_versions_v0(&response[4..])
        .context("the answer to ApiVersions v99 is not a v0 response")?;
    ensure!(
        code == error::UNSUPPORTED_VERSION,
        "error_code {code}, expected 35"
    );
    ensure!(!apis.is_empty(), "the api list is empty");
    let own = apis
        .iter()
        .find(|a| a.api_key == api::API_VERSIONS)
        .context("the api list lacks ApiVersions itself")?;
    ensure!(
        own.min == 0,
        "ApiVersions advertised from v{}, clients fall back to v0",
        own.min
    );

    // The connection stays usable: a v0 request now succeeds on it.
    let request = raw::request_header(api::API_VERSIONS, 0, correlation_id + 1, false);
    let body = conn.round_trip(&request.buf, correlation_id + 1, false)?;
    let (code, _) = raw::parse_api_versions_v0(&body)?;
    ensure!(
        code == error::NONE,
        "ApiVersions v0 after v99: error {code}"
    );
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
            range.min <= range.max,
            "api key {key}: min {} > max {}",
            range.min,
            range.max
        );
    }
    // librdkafka turns compression off unless Produce is advertised from version 0.
    let produce = apis
        .iter()
        .find(|a| a.api_key == api::PRODUCE)
        .context("Produce")?;
    ensure!(produce.min == 0, "Produce advertised from v{}", produce.min);
    // Not served yet: consumer groups and InitProducerId must not be advertised.
    for key in [10_i16, 11, 8, 22] {
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
    ensure!(
        cluster.error_code == error::NONE,
        "DescribeCluster: {cluster:?}"
    );
    ensure!(
        !cluster.cluster_id.is_empty(),
        "empty cluster id: {cluster:?}"
    );
    ensure!(
        cluster.controller_id == 0,
        "controller {}",
        cluster.controller_id
    );
    let expected = vec![(
        0,
        broker.addr().ip().to_string(),
        i32::from(broker.addr().port()),
    )];
    ensure!(
        cluster.brokers == expected,
        "brokers {:?}, expected {expected:?}",
        cluster.brokers
    );
    Ok(())
}
