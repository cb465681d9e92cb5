//! The cluster's brokers and controller, from DescribeCluster (Kafka 2.8+).
//!
//! Metadata lists only the brokers that are alive and unfenced; DescribeCluster v2, asked with
//! `include_fenced`, also lists the brokers that are registered but fenced (stopped, or cut
//! off from the controller), marked as such. Older versions never say a broker is fenced.

use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use crate::cluster::Client;
use crate::error::{ClientError, Result};

/// v0 names brokers and the controller; v1 adds the endpoint type (brokers, the default);
/// v2 can include fenced brokers.
const DESCRIBE_CLUSTER_VERSIONS: (i16, i16) = (0, 2);

/// One broker as DescribeCluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered but fenced (only a v2 answer asked with `include_fenced` says so).
    pub fenced: bool,
}

/// A DescribeCluster answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    /// -1 when there is no active controller.
    pub controller_id: i32,
    pub brokers: Vec<ClusterBroker>,
}

impl Client {
    /// The cluster's id, controller and brokers, sorted by id; with `include_fenced`, fenced
    /// brokers too where the broker serves DescribeCluster v2. A broker that does not serve
    /// DescribeCluster at all answers [`ClientError::UnsupportedApi`].
    pub async fn describe_cluster(&self, include_fenced: bool) -> Result<ClusterDescription> {
        let conn = self.any_connection().await?;
        let version = conn.pick_version::<DescribeClusterRequest>(DESCRIBE_CLUSTER_VERSIONS)?;
        let request = DescribeClusterRequest::default();
        // Encoding a field the chosen version lacks is refused, so set it only from v2.
        let request = match version >= 2 {
            true => request.with_include_fenced_brokers(include_fenced),
            false => request,
        };
        let response = conn.call_at(&request, version).await?;
        description(response)
    }
}

/// The answer as a [`ClusterDescription`], or its error.
fn description(response: DescribeClusterResponse) -> Result<ClusterDescription> {
    if let Some(e) = ClientError::kafka(
        format!(
            "describing the cluster{}",
            response
                .error_message
                .as_ref()
                .map(|m| format!(" ({})", m.as_str()))
                .unwrap_or_default()
        ),
        response.error_code,
    ) {
        return Err(e);
    }
    let mut brokers: Vec<ClusterBroker> = response
        .brokers
        .iter()
        .map(|b| ClusterBroker {
            id: b.broker_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
            fenced: b.is_fenced,
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(ClusterDescription {
        cluster_id: response.cluster_id.to_string(),
        controller_id: response.controller_id.0,
        brokers,
    })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn broker(id: i32, fenced: bool) -> DescribeClusterBroker {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(9092 + id)
            .with_is_fenced(fenced)
    }

    #[test]
    fn given_brokers_out_of_order_when_describing_should_sort_them_and_keep_fenced() {
        let response = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str("c-1"))
            .with_controller_id(BrokerId(2))
            .with_brokers(vec![broker(3, true), broker(1, false), broker(2, false)]);
        let d = description(response).expect("no error");
        assert_eq!(d.cluster_id, "c-1");
        assert_eq!(d.controller_id, 2);
        let ids: Vec<(i32, bool)> = d.brokers.iter().map(|b| (b.id, b.fenced)).collect();
        assert_eq!(ids, vec![(1, false), (2, false), (3, true)]);
        assert_eq!(d.brokers[0].port, 9093);
    }

    #[test]
    fn given_an_error_code_when_describing_should_fail_with_it() {
        // 31: CLUSTER_AUTHORIZATION_FAILED.
        let response = DescribeClusterResponse::default().with_error_code(31);
        assert!(description(response).is_err());
    }
}
