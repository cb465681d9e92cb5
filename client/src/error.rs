//! What can go wrong talking to a Kafka-compatible cluster, and which of it is worth retrying.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::security::SecurityError;

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
    #[error("TLS with {addr} failed: {message}")]
    Tls { addr: String, message: String },
    #[error("authentication failed for user {user}: {message} (broker {addr})")]
    Authentication {
        addr: String,
        user: String,
        message: String,
    },
    #[error("invalid security settings: {0}")]
    Security(#[from] SecurityError),
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
            // A certificate, a password or a PEM file does not fix itself by retrying (Kafka's
            // own clients treat SslAuthenticationException and SaslAuthenticationException alike).
            ClientError::Protocol { .. }
            | ClientError::UnsupportedApi { .. }
            | ClientError::Tls { .. }
            | ClientError::Authentication { .. }
            | ClientError::Security(_)
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

    /// Whether the error is about the security settings (TLS, SASL, PEM files) rather than
    /// about one broker: every broker would answer the same.
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            ClientError::Tls { .. } | ClientError::Authentication { .. } | ClientError::Security(_)
        )
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
