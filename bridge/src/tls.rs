//! The rustls client configuration of an MQTT-over-TLS link, built by the Kafka client's
//! [`runnel_client::security::tls::client_config`] so both links read PEM files the same way:
//! the CA (and optional client certificate) from PEM files, the `ring` provider (no aws-lc-rs,
//! so it cross-builds for armv7), TLS 1.2 and 1.3. The server certificate is verified against
//! the MQTT `host`.

use std::sync::Arc;

use runnel_client::security::{TlsSettings, tls};

use crate::config::TlsConfig;
use crate::error::BridgeError;

/// Builds the client configuration from `tls`'s files; errors name the file and the problem.
pub fn client_config(
    bridge: &str,
    config: &TlsConfig,
) -> Result<Arc<rustls::ClientConfig>, BridgeError> {
    let settings = TlsSettings {
        ca_file: Some(config.ca_file.clone()),
        cert_file: config.client_cert_file.clone(),
        key_file: config.client_key_file.clone(),
        server_name: None,
    };
    tls::client_config(&settings).map_err(|e| BridgeError::Tls {
        bridge: bridge.to_string(),
        message: e.to_string(),
    })
}
