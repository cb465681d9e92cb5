//! TLS of `SSL` listeners: the rustls server configuration (ring provider, TLS 1.2 and 1.3)
//! built from PEM files, optionally verifying client certificates, and swapped whole on
//! SIGHUP — new connections get the new certificate, open ones keep the session they have.
//!
//! Invariant: a reload that fails (unreadable file, key not matching) keeps the previous
//! configuration and says why; the listener never ends up without a certificate.

use std::sync::{Arc, RwLock};

use runnel_client::security::SecurityError;
use runnel_client::security::tls::{file_roots, read_certs, read_key};
use tokio_rustls::TlsAcceptor;

use crate::config::listeners::{ClientAuth, ServerTlsConfig};

/// Why a listener's TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] SecurityError),
    #[error("{0}")]
    Rustls(String),
}

/// A TLS listener's current configuration.
pub struct ServerTls {
    listener: String,
    config: ServerTlsConfig,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files and builds the configuration.
    pub fn load(listener: &str, config: &ServerTlsConfig) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            listener: listener.to_string(),
            current: RwLock::new(TlsAcceptor::from(Arc::new(build(config)?))),
            config: config.clone(),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the files; on failure the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = TlsAcceptor::from(Arc::new(build(&self.config)?));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    pub fn listener(&self) -> &str {
        &self.listener
    }
}

fn build(config: &ServerTlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("listener certificate file", &config.cert_file)?;
    let key = read_key("listener key file", &config.key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder =
        match (config.client_auth, &config.client_ca_file) {
            (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
            (auth, Some(ca)) => {
                let roots = Arc::new(file_roots("client CA file", ca)?);
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| {
                    TlsError::Rustls(format!("client CA file {}: {e}", ca.display()))
                })?)
            }
        };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Rustls(format!(
            "{} and {} do not make a usable certificate: {e}",
            config.cert_file.display(),
            config.key_file.display()
        ))
    })?;
    // Kafka clients do not negotiate ALPN; nothing else to set.
    server.alpn_protocols.clear();
    Ok(server)
}
