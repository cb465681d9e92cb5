//! `[[listener]]` tables: named listeners, each with its own bind and advertised address and
//! Kafka security protocol (`listeners` / `advertised.listeners` /
//! `listener.security.protocol.map` in Kafka's terms).
//!
//! Without `[[listener]]` tables the broker has one PLAINTEXT listener named `PLAINTEXT` on
//! `server.listen`, advertised as `server.advertised_listener` — the zero-config default.
//! With them, they replace `server.listen` and `server.advertised_listener`.
//!
//! `SASL_PLAINTEXT` and `SASL_SSL` listeners authenticate every client with one of their
//! `sasl_mechanisms` (Kafka's `sasl.enabled.mechanisms`, per listener) against the SCRAM users
//! of the data directory (`runnel user add`, or AlterUserScramCredentials).

use std::net::SocketAddr;
use std::path::PathBuf;

pub use runnel_client::security::SaslMechanism;
use serde::Deserialize;

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// One listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique; upper-case letters, digits and `_`, like Kafka's listener names.
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Address to bind; port 0 picks a free one (logged).
    pub listen: SocketAddr,
    /// `host:port` returned in Metadata to clients that came in on this listener; defaults to
    /// the bound address.
    #[serde(default)]
    pub advertised: Option<String>,
    /// Required for `SSL` and `SASL_SSL`, refused otherwise.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// SASL mechanisms offered on a `SASL_*` listener (`PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`); unset: all three. Refused on listeners without SASL.
    #[serde(default)]
    pub sasl_mechanisms: Option<Vec<SaslMechanism>>,
}

/// Every mechanism Runnel serves, in the order SaslHandshake lists them.
pub const ALL_SASL_MECHANISMS: [SaslMechanism; 3] = [
    SaslMechanism::ScramSha512,
    SaslMechanism::ScramSha256,
    SaslMechanism::Plain,
];

impl ListenerConfig {
    /// The mechanisms clients may use here; `None` on a listener without SASL.
    pub fn enabled_sasl_mechanisms(&self) -> Option<Vec<SaslMechanism>> {
        self.protocol.uses_sasl().then(|| {
            self.sasl_mechanisms
                .clone()
                .unwrap_or_else(|| ALL_SASL_MECHANISMS.to_vec())
        })
    }
}

/// Whether a TLS listener asks clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    /// A certificate is checked if offered; clients without one are let in.
    Requested,
    /// Clients must present a certificate signed by `client_ca_file`.
    Required,
}

/// A TLS listener's certificate, key and client authentication. The files are read at start
/// and again on SIGHUP (new connections get the new ones; open connections keep theirs).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, the broker's certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM CAs client certificates must chain to; required unless `client_auth = "none"`.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Checks names, protocols and TLS settings; `Err` is (key, reason).
pub fn validate(listeners: &[ListenerConfig]) -> Result<(), (&'static str, String)> {
    let mut names = std::collections::HashSet::new();
    let mut binds = std::collections::HashSet::new();
    for l in listeners {
        let at = |reason: String| format!("listener {:?}: {reason}", l.name);
        if l.name.is_empty()
            || !l
                .name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err((
                "listener.name",
                at("use upper-case letters, digits and '_'".into()),
            ));
        }
        if !names.insert(l.name.as_str()) {
            return Err(("listener.name", at("is used twice".into())));
        }
        if l.listen.port() != 0 && !binds.insert(l.listen) {
            return Err((
                "listener.listen",
                at(format!("{} is bound by another listener", l.listen)),
            ));
        }
        if l.listen.ip().is_unspecified() && l.advertised.is_none() {
            return Err((
                "listener.advertised",
                at(format!(
                    "must be set when listening on {}: clients cannot connect to an unspecified address",
                    l.listen
                )),
            ));
        }
        if let Some(a) = &l.advertised {
            crate::server::parse_host_port(a).map_err(|e| ("listener.advertised", at(e)))?;
        }
        match (&l.sasl_mechanisms, l.protocol.uses_sasl()) {
            (Some(_), false) => {
                return Err((
                    "listener.sasl_mechanisms",
                    at(format!(
                        "{} does not use SASL; remove sasl_mechanisms or use SASL_PLAINTEXT or SASL_SSL",
                        l.protocol.name()
                    )),
                ));
            }
            (Some(list), true) => {
                if list.is_empty() {
                    return Err((
                        "listener.sasl_mechanisms",
                        at("must name at least one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (or be left out for all three)".into()),
                    ));
                }
                if let Some((_, twice)) = list
                    .iter()
                    .enumerate()
                    .find(|(i, m)| list[..*i].contains(m))
                {
                    return Err((
                        "listener.sasl_mechanisms",
                        at(format!("{twice} is listed twice")),
                    ));
                }
            }
            (None, _) => {}
        }
        match (&l.tls, l.protocol.uses_tls()) {
            (None, true) => {
                return Err((
                    "listener.tls",
                    at(format!(
                        "{} needs a [listener.tls] table with cert_file and key_file",
                        l.protocol.name()
                    )),
                ));
            }
            (Some(_), false) => {
                return Err((
                    "listener.tls",
                    at(format!(
                        "{} does not use TLS; remove [listener.tls] or use SSL or SASL_SSL",
                        l.protocol.name()
                    )),
                ));
            }
            (Some(tls), true) => {
                if tls.client_auth != ClientAuth::None && tls.client_ca_file.is_none() {
                    return Err((
                        "listener.tls.client_ca_file",
                        at("client_auth needs the CAs client certificates must chain to".into()),
                    ));
                }
                crate::server::tls::ServerTls::load(&l.name, tls)
                    .map_err(|e| ("listener.tls", at(e.to_string())))?;
            }
            (None, false) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(text: &str) -> Result<ListenerConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    const SASL: &str = "name = \"SASL\"\nprotocol = \"SASL_PLAINTEXT\"\nlisten = \"127.0.0.1:0\"\n";

    #[test]
    fn given_a_sasl_listener_should_default_to_every_mechanism() {
        let l = listener(SASL).expect("parses");
        validate(std::slice::from_ref(&l)).expect("valid");
        assert_eq!(
            l.enabled_sasl_mechanisms(),
            Some(ALL_SASL_MECHANISMS.to_vec())
        );
        let chosen =
            listener(&format!("{SASL}sasl_mechanisms = [\"SCRAM-SHA-512\"]\n")).expect("parses");
        validate(std::slice::from_ref(&chosen)).expect("valid");
        assert_eq!(
            chosen.enabled_sasl_mechanisms(),
            Some(vec![SaslMechanism::ScramSha512])
        );
    }

    #[test]
    fn given_bad_mechanism_lists_should_refuse_naming_the_key() {
        let unknown = listener(&format!("{SASL}sasl_mechanisms = [\"GSSAPI\"]\n"))
            .expect_err("unknown mechanism");
        assert!(unknown.contains("SCRAM-SHA-512"), "{unknown}");
        for (text, why) in [
            (format!("{SASL}sasl_mechanisms = []\n"), "at least one"),
            (
                format!("{SASL}sasl_mechanisms = [\"PLAIN\", \"PLAIN\"]\n"),
                "twice",
            ),
            (
                "name = \"P\"\nprotocol = \"PLAINTEXT\"\nlisten = \"127.0.0.1:0\"\nsasl_mechanisms = [\"PLAIN\"]\n"
                    .to_string(),
                "does not use SASL",
            ),
        ] {
            let l = listener(&text).expect("parses");
            let (key, reason) = validate(&[l]).expect_err("refused");
            assert_eq!(key, "listener.sasl_mechanisms");
            assert!(reason.contains(why), "{reason}");
        }
        let no_tls = listener("name = \"S\"\nprotocol = \"SASL_SSL\"\nlisten = \"127.0.0.1:0\"\n")
            .expect("parses");
        assert_eq!(validate(&[no_tls]).expect_err("no tls").0, "listener.tls");
    }
}
