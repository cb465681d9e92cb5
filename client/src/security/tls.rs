//! TLS with rustls and the `ring` provider (never aws-lc-rs: the armv7 cross-build needs ring):
//! PEM files → a rustls client configuration ([`client_config`], also used by the MQTT bridge),
//! the handshake ([`Connector`]) and the stream a [`crate::Connection`] reads and writes
//! ([`Stream`]).
//!
//! TLS 1.2 and 1.3 with rustls's safe defaults; the server certificate is checked against the
//! configured `server_name`, else the host the client dials. A certificate or version problem
//! keeps rustls's own description ([`settings_failure`]) and is not worth retrying; other TLS
//! errors (a reset, an internal error of the server) are ordinary I/O errors.
//!
//! Kafka connections do not resume TLS sessions: a client holds one long-lived connection per
//! broker, so resumption saves next to nothing, and OpenSSL servers that check client
//! certificates without a session id context (socat, as in the tests) answer a resumption
//! attempt with `internal_error`, failing every connection after the first.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{SecurityError, TlsSettings};

const CA_FILE: &str = "CA file";
const CERT_FILE: &str = "client certificate file";
const KEY_FILE: &str = "client key file";

/// Builds a rustls client configuration from `settings`' PEM files: the CAs of `ca_file` (or
/// the system trust store when unset) and, for mutual TLS, `cert_file` with `key_file`.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, SecurityError> {
    build(settings).map(Arc::new)
}

fn build(settings: &TlsSettings) -> Result<rustls::ClientConfig, SecurityError> {
    let client_auth = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(SecurityError::Tls(
                "`cert_file` is set without `key_file`".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(SecurityError::Tls(
                "`key_file` is set without `cert_file`".into(),
            ));
        }
    };
    let roots = match &settings.ca_file {
        Some(path) => file_roots(CA_FILE, path)?,
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SecurityError::Tls(e.to_string()))?
    .with_root_certificates(roots);
    let config = match client_auth {
        Some((cert, key)) => {
            let chain = read_certs(CERT_FILE, cert)?;
            let key_der = read_key(KEY_FILE, key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| SecurityError::File {
                    what: KEY_FILE,
                    path: key.clone(),
                    message: format!("cannot be used with the client certificate: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The rustls configuration and the server name override: what every TLS connection of a
/// client shares.
#[derive(Clone)]
pub struct Connector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Reads the files and checks the server name of `settings`.
    pub fn new(settings: &TlsSettings) -> Result<Self, SecurityError> {
        let server_name = settings
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_string()).map_err(|_| {
                    SecurityError::Tls(format!(
                        "`server_name` {name:?} is neither a DNS name nor an IP address"
                    ))
                })
            })
            .transpose()?;
        let mut config = build(settings)?;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Connector {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The rustls configuration, for callers that drive TLS themselves.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// Runs the handshake over `tcp`, checking the certificate against the configured server
    /// name or the host of `addr` (`host:port`, `[v6]:port`).
    pub async fn connect(&self, addr: &str, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                let host = host_of(addr);
                ServerName::try_from(host.to_string()).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{host:?} is not a valid TLS server name (set `tls.server_name`)"),
                    )
                })?
            }
        };
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}

/// The host part of `host:port` or `[v6]:port`; `addr` itself when it has no port.
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// rustls's description of a TLS failure that retrying cannot fix — a certificate either side
/// refuses, no common TLS version or cipher — with a hint for the usual mistakes; `None` for
/// any other error (not about TLS, or a TLS error that may pass, like an internal error).
pub fn settings_failure(error: &io::Error) -> Option<String> {
    use rustls::{AlertDescription as Alert, CertificateError, Error};
    let tls = error.get_ref()?.downcast_ref::<Error>()?;
    let hint = match tls {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the broker's certificate is not signed by a CA of `tls.ca_file` or of the system \
             trust store)"
        }
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            " (the broker's certificate is not signed by the CA of `tls.ca_file` that has its \
             issuer's name: another CA of the same name?)"
        }
        Error::InvalidCertificate(_)
        | Error::NoCertificatesPresented
        | Error::PeerIncompatible(_) => "",
        Error::AlertReceived(Alert::CertificateRequired) => {
            " (the broker requires a client certificate: set `tls.cert_file` and `tls.key_file`)"
        }
        Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied,
        ) => " (the broker refused our client certificate)",
        Error::AlertReceived(
            Alert::HandshakeFailure | Alert::ProtocolVersion | Alert::InsufficientSecurity,
        ) => " (no TLS version, cipher or certificate both sides accept)",
        _ => return None,
    };
    Some(format!("{tls}{hint}"))
}

/// A broker connection, in the clear or over TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The CA certificates of the PEM file at `path` (`what` names it in errors). Shared with the
/// broker's TLS listeners.
pub fn file_roots(what: &'static str, path: &Path) -> Result<rustls::RootCertStore, SecurityError> {
    let mut roots = rustls::RootCertStore::empty();
    for (index, ca) in read_certs(what, path)?.into_iter().enumerate() {
        roots.add(ca).map_err(|e| SecurityError::File {
            what,
            path: path.to_path_buf(),
            message: format!("certificate {} is not a usable CA: {e}", index + 1),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, SecurityError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(SecurityError::Tls(format!(
            "`ca_file` is not set and the system trust store has no usable CA certificate{}; \
             install ca-certificates or set `ca_file`",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            }
        )));
    }
    Ok(roots)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        what,
        path: path.to_path_buf(),
        source: Arc::new(source),
    })
}

fn pem_error(what: &'static str, path: &Path, e: pem::Error) -> SecurityError {
    SecurityError::File {
        what,
        path: path.to_path_buf(),
        message: format!("is not valid PEM: {e}"),
    }
}

/// Every certificate of the PEM file at `path`; an error if there is none.
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(SecurityError::File {
            what,
            path: path.to_path_buf(),
            message: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

/// The private key of the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    let bytes = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => SecurityError::File {
            what,
            path: path.to_path_buf(),
            message: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
        },
        e => pem_error(what, path, e),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(ca_file: &Path) -> TlsSettings {
        TlsSettings {
            ca_file: Some(ca_file.to_path_buf()),
            ..TlsSettings::default()
        }
    }

    fn error_of(settings: &TlsSettings) -> String {
        Connector::new(settings)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn given_bad_pem_files_when_loading_should_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let error = error_of(&settings(&missing));
        assert!(
            error.contains("cannot read CA file") && error.contains("missing.pem"),
            "{error}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").expect("write");
        let error = error_of(&settings(&empty));
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );

        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("write");
        let error = error_of(&settings(&broken));
        assert!(
            error.contains("broken.pem") && error.contains("not valid PEM"),
            "{error}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let error = error_of(&settings(&garbage));
        assert!(
            error.contains("garbage.pem") && error.contains("certificate 1 is not a usable CA"),
            "{error}"
        );
    }

    #[test]
    fn given_half_a_client_certificate_or_a_bad_server_name_should_refuse() {
        let only_cert = TlsSettings {
            cert_file: Some(PathBuf::from("c.pem")),
            ..TlsSettings::default()
        };
        assert!(error_of(&only_cert).contains("without `key_file`"));
        let bad_name = TlsSettings {
            server_name: Some("not a name".into()),
            ..TlsSettings::default()
        };
        assert!(error_of(&bad_name).contains("`server_name`"));
    }

    #[test]
    fn given_addresses_should_find_the_host() {
        assert_eq!(host_of("kafka.example.com:9093"), "kafka.example.com");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("::1:9093"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn given_io_errors_should_describe_only_tls_settings_failures() {
        let tls = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let described = settings_failure(&tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
        .expect("a certificate failure");
        assert!(described.contains("certificate"), "{described}");
        let described = settings_failure(&tls(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired,
        )))
        .expect("a certificate failure");
        assert!(described.contains("client certificate"), "{described}");
        let internal = tls(rustls::Error::AlertReceived(
            rustls::AlertDescription::InternalError,
        ));
        assert!(settings_failure(&internal).is_none(), "may pass");
        assert!(settings_failure(&io::Error::from(io::ErrorKind::ConnectionReset)).is_none());
    }
}
