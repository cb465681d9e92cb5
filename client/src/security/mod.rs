//! How a connection is secured: Kafka's `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT,
//! SASL_SSL) and `sasl.mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
//!
//! [`SecurityConfig`] is plain serde data, meant to sit in any TOML config (the bridge's
//! `[kafka]` table, the uplink's). [`SecurityConfig::load`] reads the PEM files and builds the
//! rustls configuration once, so every problem with a file shows up at start-up, naming the
//! file; [`Security`] is the result, shared by every connection of a [`crate::Client`].
//!
//! - [`tls`]: PEM files → rustls client configuration (ring provider), the TLS handshake;
//! - [`sasl`]: SaslHandshake and SaslAuthenticate after ApiVersions, PLAIN and SCRAM;
//! - [`scram`]: the SCRAM messages and key derivation, pure functions the broker can reuse.
//!
//! Credentials are never logged and never part of an error message.

pub mod sasl;
pub mod scram;
pub mod tls;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// TLS and SASL settings of a client. The default, neither, is Kafka's PLAINTEXT.
///
/// ```toml
/// [kafka.tls]                  # SSL (SASL_SSL together with [kafka.sasl])
/// ca_file = "/etc/runnel/kafka-ca.pem"
/// [kafka.sasl]                 # SASL_PLAINTEXT, or SASL_SSL with [kafka.tls]
/// mechanism = "SCRAM-SHA-512"  # or "PLAIN", "SCRAM-SHA-256"
/// username = "edge-7"
/// password = "…"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSettings>,
}

/// TLS to the brokers.
///
/// `ca_file` unset means the system's trust store (through `rustls-native-certs`, which the
/// MQTT side already builds: `/etc/ssl/certs` on Debian, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
/// That is what a hosted Kafka with a public certificate needs, and adding `webpki-roots`
/// instead would freeze a copy of Mozilla's roots into every binary, to go stale on devices
/// that are rarely updated. A private cluster sets `ca_file` to its own CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA certificates that sign the brokers' certificates; unset: the system
    /// trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; set together with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Name checked against every broker's certificate; unset: the host part of the address
    /// the client connects to (the bootstrap server, then each broker's advertised host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// SASL authentication. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `sasl.mechanism`, spelled as Kafka spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a [`SecurityConfig`] cannot be used. Every file problem names the setting and the path.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("{what} {}: {message}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("SASL: {0}")]
    Sasl(String),
}

/// A loaded [`SecurityConfig`]: the rustls configuration built once, and the SASL settings.
#[derive(Debug, Clone, Default)]
pub struct Security {
    tls: Option<tls::Connector>,
    sasl: Option<SaslSettings>,
}

impl SecurityConfig {
    /// Kafka's name for this combination: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub fn protocol(&self) -> &'static str {
        match (&self.tls, &self.sasl) {
            (None, None) => "PLAINTEXT",
            (Some(_), None) => "SSL",
            (None, Some(_)) => "SASL_PLAINTEXT",
            (Some(_), Some(_)) => "SASL_SSL",
        }
    }

    /// Checks the settings and reads the PEM files.
    pub fn load(&self) -> Result<Security, SecurityError> {
        let tls = self.tls.as_ref().map(tls::Connector::new).transpose()?;
        if let Some(sasl) = &self.sasl {
            sasl.check()?;
        }
        Ok(Security {
            tls,
            sasl: self.sasl.clone(),
        })
    }
}

impl SaslSettings {
    fn check(&self) -> Result<(), SecurityError> {
        if self.username.is_empty() {
            return Err(SecurityError::Sasl("`username` must not be empty".into()));
        }
        if self.mechanism == SaslMechanism::Plain
            && (self.username.contains('\0') || self.password.contains('\0'))
        {
            return Err(SecurityError::Sasl(
                "PLAIN cannot carry a NUL character in `username` or `password`".into(),
            ));
        }
        Ok(())
    }
}

impl Security {
    /// No TLS, no SASL.
    pub fn plaintext() -> Self {
        Security::default()
    }

    pub fn tls(&self) -> Option<&tls::Connector> {
        self.tls.as_ref()
    }

    pub fn sasl(&self) -> Option<&SaslSettings> {
        self.sasl.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_toml_when_parsed_should_fill_settings_and_name_the_protocol() {
        let config: SecurityConfig = toml::from_str(
            r#"
[tls]
ca_file = "/etc/ca.pem"
server_name = "kafka.example.com"
[sasl]
mechanism = "SCRAM-SHA-512"
username = "edge"
password = "hunter2"
"#,
        )
        .expect("parses");
        assert_eq!(config.protocol(), "SASL_SSL");
        let tls = config.tls.as_ref().expect("tls");
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(tls.server_name.as_deref(), Some("kafka.example.com"));
        let sasl = config.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        let back: SecurityConfig =
            toml::from_str(&toml::to_string(&config).expect("serializes")).expect("re-parses");
        assert_eq!(back, config);

        assert_eq!(SecurityConfig::default().protocol(), "PLAINTEXT");
        let plain: SecurityConfig =
            toml::from_str("sasl = { mechanism = \"PLAIN\", username = \"u\", password = \"p\" }")
                .expect("parses");
        assert_eq!(plain.protocol(), "SASL_PLAINTEXT");
        let ssl: SecurityConfig = toml::from_str("tls = {}").expect("parses");
        assert_eq!(ssl.protocol(), "SSL");
    }

    #[test]
    fn given_unknown_keys_or_mechanisms_when_parsed_should_fail() {
        for text in [
            "tls = { cafile = \"x\" }",
            "sasl = { mechanism = \"GSSAPI\", username = \"u\", password = \"p\" }",
            "sasl = { mechanism = \"PLAIN\", username = \"u\" }",
            "protocol = \"SSL\"",
        ] {
            assert!(toml::from_str::<SecurityConfig>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn given_sasl_settings_when_debug_printed_should_redact_the_password() {
        let config = SecurityConfig {
            tls: None,
            sasl: Some(SaslSettings {
                mechanism: SaslMechanism::Plain,
                username: "edge".into(),
                password: "hunter2".into(),
            }),
        };
        let shown = format!("{config:?} {:?}", config.load().expect("valid"));
        assert!(
            shown.contains("edge") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn given_invalid_sasl_settings_when_loaded_should_say_why() {
        let sasl = |mechanism, username: &str, password: &str| SecurityConfig {
            tls: None,
            sasl: Some(SaslSettings {
                mechanism,
                username: username.into(),
                password: password.into(),
            }),
        };
        let error = sasl(SaslMechanism::ScramSha256, "", "p")
            .load()
            .expect_err("empty user")
            .to_string();
        assert!(error.contains("`username`"), "{error}");
        let error = sasl(SaslMechanism::Plain, "u", "a\0b")
            .load()
            .expect_err("NUL")
            .to_string();
        assert!(error.contains("NUL") && !error.contains("a\0b"), "{error}");
        sasl(SaslMechanism::ScramSha256, "u", "a\0b")
            .load()
            .expect("SCRAM carries any password");
    }
}
