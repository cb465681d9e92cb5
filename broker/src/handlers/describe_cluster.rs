//! DescribeCluster: this single broker, which is also the controller. Open to every client
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
    response
        .with_cluster_id(str_bytes(&ctx.cluster_id))
        .with_controller_id(BrokerId(ctx.node_id))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(ctx.node_id))
                .with_host(str_bytes(host))
                .with_port(*port),
        ])
}
