//! One module per Kafka API. A handler takes the shared [`Ctx`] and a decoded request and
//! returns the response message; it never touches a socket, so each is testable on its own.
//! Kafka errors travel as per-resource error codes inside the response.

pub mod acls;
pub mod api_versions;
pub mod configs;
pub mod delete_records;
pub mod describe_cluster;
pub mod describe_log_dirs;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod reassignments;
pub mod sasl;
pub mod scram_users;
pub mod topics;

use std::sync::Arc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::group::GroupCoordinator;
use crate::log::{LogStore, MetaStore, OffsetStore, StoreError};
use crate::topics::TopicRegistry;

/// What every handler may use. Cheap to share: everything inside is behind `Arc`.
pub struct Ctx {
    pub config: Arc<Config>,
    pub log: Arc<dyn LogStore>,
    pub meta: Arc<dyn MetaStore>,
    /// Consumer groups' committed offsets.
    pub offsets: Arc<dyn OffsetStore>,
    pub topics: Arc<TopicRegistry>,
    pub groups: Arc<GroupCoordinator>,
    /// Bumped after every storage commit; long-poll fetches wait on it.
    pub changes: watch::Receiver<u64>,
    pub cluster_id: String,
    pub node_id: i32,
    /// Cancelled at shutdown; long waits end early.
    pub shutdown: CancellationToken,
    /// When this process started serving (ms since the epoch), for `runnel.uptime.ms`.
    pub started_at_ms: i64,
    /// Offsets uplinks have not forwarded yet; retention keeps them.
    pub holds: Arc<crate::uplink::Holds>,
    /// Notified when an append failed for the disk budget, so retention frees space at once.
    pub disk_pressure: Arc<tokio::sync::Notify>,
    /// ACLs: who may do what; every handler asks it before acting.
    pub acl: Arc<crate::acl::Authorizer>,
    /// SCRAM credentials (cached) and authentication counters.
    pub auth: Arc<crate::auth::Auth>,
    /// Cluster mode (`[cluster]`): the quorum, replica roles and high watermarks.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// What a handler knows about the connection its request came in on.
#[derive(Debug, Clone)]
pub struct Session {
    /// The listener's name.
    pub listener: Arc<str>,
    /// Host and port clients of this listener are told to connect to (Metadata,
    /// FindCoordinator and DescribeCluster answer with the listener the client used).
    pub advertised: Arc<(String, i32)>,
    /// The client's address; `None` for requests made inside the broker.
    pub peer: Option<std::net::SocketAddr>,
    /// Who the client is, Kafka-style: `User:ANONYMOUS` until something authenticates it.
    pub principal: Arc<str>,
}

/// The principal of unauthenticated clients (Kafka's `KafkaPrincipal.ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Whether this node may serve the partition's leader-only requests. `Ok(None)` on a single
/// node (it leads everything); in cluster mode the replica it leads, or
/// NOT_LEADER_OR_FOLLOWER (LEADER_NOT_AVAILABLE while the partition has no leader).
pub(crate) fn leadership(
    ctx: &Ctx,
    part: &crate::log::PartitionLog,
) -> Result<Option<Arc<crate::cluster::replica::Replica>>, kafka_protocol::ResponseError> {
    let Some(cluster) = &ctx.cluster else {
        return Ok(None);
    };
    match cluster.replicas.get(part.id) {
        Some(r) if r.role().0 == crate::cluster::Role::Leader && cluster.serving() => Ok(Some(r)),
        _ => Err(kafka_protocol::ResponseError::NotLeaderOrFollower),
    }
}

/// Runs blocking storage work (LMDB reads) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(format!("storage task failed: {e}")))?
}
