//! DescribeCluster: this single broker, which is also the controller; in cluster mode the
//! registered brokers (v2: fenced ones too when asked) and the active controller. Open to every client
//! (like Metadata); only the cluster's authorized operations, when asked for, need DESCRIBE
//! on it (0 without, as in Kafka).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Ctx, Session, str_bytes};
use crate::acl::{CLUSTER_NAME, Operation, ResourceType};

pub fn handle(
    ctx: &Ctx,
    session: &Session,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let (host, port) = &*session.advertised;
    let response = DescribeClusterResponse::default();
    let response = if req.include_cluster_authorized_operations {
        let acl = &ctx.acl;
        let ops = if acl.allows_cluster(session, Operation::Describe) {
            acl.authorized_operations(session, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            0
        };
        response.with_cluster_authorized_operations(ops)
    } else {
        response
    };
    let response = response.with_cluster_id(str_bytes(&ctx.cluster_id));
    let Some(cluster) = &ctx.cluster else {
        return response
            .with_controller_id(BrokerId(ctx.node_id))
            .with_brokers(vec![
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(ctx.node_id))
                    .with_host(str_bytes(host))
                    .with_port(*port),
            ]);
    };
    // v2 (KIP-919) may ask for fenced brokers too, flagged as such.
    let fenced_too = version >= 2 && req.include_fenced_brokers;
    let state = cluster.state();
    let brokers = state
        .brokers
        .iter()
        .filter(|(_, b)| fenced_too || !b.fenced)
        .filter_map(|(id, b)| {
            let ep = b.endpoint(&session.listener)?;
            let broker = DescribeClusterBroker::default()
                .with_broker_id(BrokerId(*id))
                .with_host(str_bytes(&ep.host))
                .with_port(ep.port);
            Some(if version >= 2 {
                broker.with_is_fenced(b.fenced)
            } else {
                broker
            })
        })
        .collect();
    response
        .with_controller_id(BrokerId(cluster.controller().unwrap_or(-1)))
        .with_brokers(brokers)
}
