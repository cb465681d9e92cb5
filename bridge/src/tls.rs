//! The rustls client configuration of an MQTT-over-TLS link: the CA (and optional client
//! certificate) from PEM files, the `ring` provider (no aws-lc-rs, so it cross-builds for
//! armv7), TLS 1.2 and 1.3. The server certificate is verified against the MQTT `host`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::error::BridgeError;

/// Builds the client configuration from `tls`'s files.
pub fn client_config(
    bridge: &str,
    tls: &TlsConfig,
) -> Result<Arc<rustls::ClientConfig>, BridgeError> {
    let fail = |message: String| BridgeError::Tls {
        bridge: bridge.to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = read_certs(bridge, "mqtt.tls.ca_file", &tls.ca_file)?;
    if cas.is_empty() {
        return Err(fail(format!(
            "{} holds no PEM certificate",
            tls.ca_file.display()
        )));
    }
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| fail(format!("{}: {e}", tls.ca_file.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(bridge, "mqtt.tls.client_cert_file", cert)?;
            let key = read_key(bridge, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read_certs(
    bridge: &str,
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, BridgeError> {
    let bytes = read(bridge, what, path)?;
    rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| file_error(bridge, what, path, source))
}

fn read_key(bridge: &str, path: &Path) -> Result<PrivateKeyDer<'static>, BridgeError> {
    let what = "mqtt.tls.client_key_file";
    let bytes = read(bridge, what, path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|source| file_error(bridge, what, path, source))?
        .ok_or_else(|| BridgeError::Tls {
            bridge: bridge.to_string(),
            message: format!("{} holds no PEM private key", path.display()),
        })
}

fn read(bridge: &str, what: &'static str, path: &Path) -> Result<Vec<u8>, BridgeError> {
    std::fs::read(path).map_err(|source| file_error(bridge, what, path, source))
}

fn file_error(
    bridge: &str,
    what: &'static str,
    path: &Path,
    source: std::io::Error,
) -> BridgeError {
    BridgeError::File {
        bridge: bridge.to_string(),
        what,
        path: path.to_path_buf(),
        source,
    }
}
