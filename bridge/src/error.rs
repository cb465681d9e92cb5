//! The bridge's errors: start-up problems are fatal and name what is wrong; run-time problems
//! of the MQTT link or the sink are retried and only show up in the status.

use crate::config::ConfigError;

/// Why a bridge could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("bridge {bridge}: TLS setup failed: {message}")]
    Tls { bridge: String, message: String },
    #[error("bridge {bridge}: {message}")]
    Startup { bridge: String, message: String },
    #[error("bridge {bridge}: the MQTT client stopped: {message}")]
    Mqtt { bridge: String, message: String },
}

/// A backend failure. `rejected` means the backend refused this very thing for good (a
/// record larger than the topic allows, a topic that does not exist); anything else — broker
/// down, disk budget full, leader moving, even an unexpected protocol error — is retried,
/// because dropping data on an error we do not understand is worse than waiting.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    pub rejected: bool,
}

impl SinkError {
    /// A failure worth retrying.
    pub fn failed(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            rejected: false,
        }
    }

    /// A definitive refusal.
    pub fn rejected(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            rejected: true,
        }
    }
}
