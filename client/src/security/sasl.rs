//! SASL on a new connection, right after ApiVersions (KIP-43, KIP-152): SaslHandshake v1 names
//! the mechanism, then SaslAuthenticate frames (v0–v2) carry the mechanism's messages — one
//! round for PLAIN, two for SCRAM ([`super::scram`]).
//!
//! Every refusal, and every broker that cannot do SASL at all, is a
//! [`ClientError::Authentication`]: not retriable, naming the user and what the broker said,
//! never the password. I/O errors and timeouts stay what they are (retriable).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::scram::{self, ScramAlgorithm, ScramClient};
use super::{SaslMechanism, SaslSettings};
use crate::conn::Connection;
use crate::error::{ClientError, Result};

/// SaslHandshake v0 means raw SASL tokens without SaslAuthenticate frames: not spoken here.
const HANDSHAKE_VERSIONS: (i16, i16) = (1, 1);
const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);
/// Re-connect at this share of the session lifetime the broker grants (KIP-368; Kafka's own
/// clients re-authenticate between 85 and 95 %).
const LIFETIME_SHARE: f64 = 0.85;

/// The PLAIN message (RFC 4616) without authorization identity: `\0user\0password`.
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(username.len() + password.len() + 2);
    message.push(0);
    message.extend_from_slice(username.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    message
}

/// A PLAIN message as a server reads it (RFC 4616). `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    /// The authorization identity; empty when the client sent none.
    pub authzid: &'a str,
    pub username: &'a str,
    pub password: &'a [u8],
}

impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses `[authzid] \0 username \0 password` (the server side of [`plain_message`]). The
/// reasons never quote the message, which carries the password.
pub fn parse_plain_message(message: &[u8]) -> std::result::Result<PlainMessage<'_>, &'static str> {
    let mut parts = message.split(|b| *b == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a PLAIN message has exactly three NUL-separated fields");
    };
    let authzid = std::str::from_utf8(authzid).map_err(|_| "the authzid is not UTF-8")?;
    let username = std::str::from_utf8(username).map_err(|_| "the user name is not UTF-8")?;
    if username.is_empty() {
        return Err("no user name");
    }
    if password.is_empty() {
        return Err("no password");
    }
    Ok(PlainMessage {
        authzid,
        username,
        password,
    })
}

/// Authenticates `conn` as `sasl.username`. Returns how long the session may be used when the
/// broker limits it (`connections.max.reauth.ms`), already shortened to [`LIFETIME_SHARE`].
pub(crate) async fn authenticate(
    conn: &Connection,
    sasl: &SaslSettings,
) -> Result<Option<Duration>> {
    let failed = |message: String| ClientError::Authentication {
        addr: conn.addr().to_string(),
        user: sasl.username.clone(),
        message,
    };
    let mechanism = sasl.mechanism;
    if conn.api_range(ApiKey::SaslHandshake).is_none() {
        return Err(failed(
            "the broker does not offer SaslHandshake in its ApiVersions answer, so this \
             listener does not speak SASL (check the port and `security`)"
                .into(),
        ));
    }
    let version = conn
        .pick_version::<SaslHandshakeRequest>(HANDSHAKE_VERSIONS)
        .map_err(|e| failed(e.to_string()))?;
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
    let response = conn.call_at(&request, version).await?;
    if let Some(error) = ResponseError::try_from_code(response.error_code) {
        let offered: Vec<String> = response.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(failed(format!(
            "SaslHandshake for {mechanism} answered {error:?}; the broker offers {}",
            if offered.is_empty() {
                "no mechanism".to_string()
            } else {
                offered.join(", ")
            }
        )));
    }
    let version = conn
        .pick_version::<SaslAuthenticateRequest>(AUTHENTICATE_VERSIONS)
        .map_err(|e| failed(e.to_string()))?;
    let last = match mechanism {
        SaslMechanism::Plain => {
            let message = plain_message(&sasl.username, &sasl.password);
            step(conn, version, message, &failed).await?
        }
        SaslMechanism::ScramSha256 => {
            scram(conn, version, sasl, ScramAlgorithm::Sha256, &failed).await?
        }
        SaslMechanism::ScramSha512 => {
            scram(conn, version, sasl, ScramAlgorithm::Sha512, &failed).await?
        }
    };
    Ok(u64::try_from(last.session_lifetime_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms).mul_f64(LIFETIME_SHARE)))
}

/// The two SCRAM rounds; the server's signature is checked before the connection is used.
async fn scram(
    conn: &Connection,
    version: i16,
    sasl: &SaslSettings,
    algorithm: ScramAlgorithm,
    failed: &impl Fn(String) -> ClientError,
) -> Result<SaslAuthenticateResponse> {
    let nonce = scram::new_nonce().map_err(|e| failed(e.to_string()))?;
    let client = ScramClient::new(algorithm, &sasl.username, &sasl.password, nonce);
    let first = client.client_first().into_bytes();
    let server_first = step(conn, version, first, failed).await?;
    // Up to 16,384 PBKDF2 rounds: off the async worker threads.
    let exchange =
        tokio::task::spawn_blocking(move || client.handle_server_first(&server_first.auth_bytes))
            .await
            .map_err(|e| failed(format!("the SCRAM computation stopped: {e}")))?;
    let (state, client_final) = exchange.map_err(|e| failed(format!("SCRAM: {e}")))?;
    let server_final = step(conn, version, client_final.into_bytes(), failed).await?;
    state
        .verify_server_final(&server_final.auth_bytes)
        .map_err(|e| failed(format!("SCRAM: {e}")))?;
    Ok(server_final)
}

/// One SaslAuthenticate round; an error code becomes an authentication failure that carries
/// the broker's message.
async fn step(
    conn: &Connection,
    version: i16,
    auth_bytes: Vec<u8>,
    failed: &impl Fn(String) -> ClientError,
) -> Result<SaslAuthenticateResponse> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(auth_bytes));
    let response = conn.call_at(&request, version).await?;
    match ResponseError::try_from_code(response.error_code) {
        None => Ok(response),
        Some(error) => Err(failed(match &response.error_message {
            Some(message) if !message.is_empty() => format!("{error:?}: {message}"),
            _ => format!("{error:?}: {error}"),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_credentials_should_build_the_plain_message() {
        assert_eq!(plain_message("user", "pass"), b"\0user\0pass");
        assert_eq!(plain_message("", ""), b"\0\0");
    }

    #[test]
    fn given_plain_messages_when_parsed_should_split_or_refuse_without_quoting() {
        let message = plain_message("user", "pa ss");
        let parsed = parse_plain_message(&message).expect("valid");
        assert_eq!(
            (parsed.authzid, parsed.username, parsed.password),
            ("", "user", &b"pa ss"[..])
        );
        let with_authzid = parse_plain_message(b"admin\0user\0pw").expect("valid");
        assert_eq!(with_authzid.authzid, "admin");
        assert!(!format!("{parsed:?}").contains("pa ss"));
        for bad in [
            &b""[..],
            b"user\0secret",
            b"\0\0secret",
            b"\0user\0",
            b"\0user\0secret\0more",
            b"\0\xff\0secret",
        ] {
            let reason = parse_plain_message(bad).expect_err("refused");
            assert!(!reason.contains("secret"), "{reason}");
        }
    }
}
