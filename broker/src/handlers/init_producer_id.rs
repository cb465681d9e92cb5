//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, as Kafka does
//! for requests without a transactional id. Transactions are not supported: a request with a
//! transactional id is refused with INVALID_REQUEST (InitProducerId has no error message
//! field), and the transaction APIs are not advertised.
//!
//! In cluster mode ids are unique across brokers (see [`cluster_wide`]).
//!
//! Authorization (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on at least one topic;
//! CLUSTER_AUTHORIZATION_FAILED otherwise.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Ctx, Session};
use crate::acl::{Operation, ResourceType};
use crate::log::wait;

pub async fn handle(
    ctx: &Ctx,
    session: &Session,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        tracing::info!(
            "InitProducerId with a transactional id refused: transactions are not supported"
        );
        return refused(ResponseError::InvalidRequest);
    }
    let acl = &ctx.acl;
    if !acl.allows_cluster(session, Operation::IdempotentWrite)
        && !acl.allows_some(session, Operation::Write, ResourceType::Topic)
    {
        return refused(ResponseError::ClusterAuthorizationFailed);
    }
    match wait(ctx.meta.next_producer_id()).await {
        Ok(Ok(id)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(cluster_wide(ctx, id)))
            .with_producer_epoch(0),
        Ok(Err(e)) | Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            refused(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// In cluster mode a node's local counter is prefixed with its node id (bits 40..), so ids
/// are unique across the cluster without a round through the quorum: 2^40 ids per node.
fn cluster_wide(ctx: &Ctx, local: i64) -> i64 {
    match &ctx.cluster {
        Some(_) => (i64::from(ctx.node_id) << 40) | (local & ((1 << 40) - 1)),
        None => local,
    }
}
