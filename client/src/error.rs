//! What can go wrong talking to a Kafka-compatible cluster, and which of it is worth retrying.

use std::sync::Arc;

use kafka_protocol::ResponseError;

/// Errors of [`crate::Client`] and everything built on it.
/// I/O errors sit behind an `Arc` so one failure can be answered to every batch it hit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: Arc<std::io::Error>,
    },
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        source: Arc<std::io::Error>,
    },
    #[error("no answer from {addr} to {api} within {timeout_ms} ms")]
    Timeout {
        addr: String,
        api: &'static str,
        timeout_ms: u128,
    },
    #[error("cannot encode or decode {api} with {addr}: {message}")]
    Protocol {
        addr: String,
        api: &'static str,
        message: String,
    },
    #[error("{addr} does not serve {api} in versions {ours_min}..={ours_max} (it offers {theirs})")]
    UnsupportedApi {
        addr: String,
        api: &'static str,
        ours_min: i16,
        ours_max: i16,
        theirs: String,
    },
    #[error("{context}: {error}")]
    Kafka {
        context: String,
        error: ResponseError,
    },
    #[error("no bootstrap server answered: {0}")]
    NoBroker(String),
    #[error("topic {topic} partition {partition} has no known leader")]
    NoLeader { topic: String, partition: i32 },
    #[error("broker {0} is not in the cluster metadata")]
    UnknownBroker(i32),
    #[error("gave up after {attempts} attempts over {elapsed_ms} ms; last error: {last}")]
    Exhausted {
        attempts: u32,
        elapsed_ms: u128,
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// A Kafka error code from a response, with what was being done.
    pub fn kafka(context: impl Into<String>, code: i16) -> Option<Self> {
        ResponseError::try_from_code(code).map(|error| ClientError::Kafka {
            context: context.into(),
            error,
        })
    }

    /// Whether trying again (after refreshing metadata or reconnecting) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Io { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoBroker(_)
            | ClientError::NoLeader { .. }
            | ClientError::UnknownBroker(_) => true,
            ClientError::Kafka { error, .. } => error.is_retriable(),
            ClientError::Protocol { .. }
            | ClientError::UnsupportedApi { .. }
            | ClientError::Exhausted { .. } => false,
        }
    }

    /// Whether the error means the cached leader or coordinator is stale.
    pub fn needs_metadata(&self) -> bool {
        match self {
            ClientError::Kafka { error, .. } => matches!(
                error,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::FencedLeaderEpoch
            ),
            other => other.is_retriable(),
        }
    }

    /// The Kafka error code, when the broker answered with one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { error, .. } => Some(*error),
            ClientError::Exhausted { last, .. } => last.code(),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
