//! DescribeCluster: this single broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Ctx, Session, str_bytes};

pub fn handle(
    ctx: &Ctx,
    session: &Session,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let (host, port) = &*session.advertised;
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&ctx.cluster_id))
        .with_controller_id(BrokerId(ctx.node_id))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(ctx.node_id))
                .with_host(str_bytes(host))
                .with_port(*port),
        ])
}
