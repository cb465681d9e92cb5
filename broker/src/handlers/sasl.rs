//! SaslHandshake and SaslAuthenticate responses. The exchange itself runs in the connection
//! before any other request ([`crate::server::sasl`]); a handshake that reaches the router came
//! on a listener without SASL, or after authentication, and is answered ILLEGAL_SASL_STATE as
//! Kafka does (re-authentication, KIP-368, is not offered).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use runnel_client::security::SaslMechanism;

use super::str_bytes;

/// The answer to a SaslHandshake for `requested` on a listener offering `enabled`, and the
/// mechanism to go on with (`None`: UNSUPPORTED_SASL_MECHANISM, the connection closes).
pub fn handshake(
    requested: &str,
    enabled: &[SaslMechanism],
) -> (SaslHandshakeResponse, Option<SaslMechanism>) {
    let chosen = enabled.iter().copied().find(|m| m.name() == requested);
    let error = match chosen {
        Some(_) => 0,
        None => ResponseError::UnsupportedSaslMechanism.code(),
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(error)
        .with_mechanisms(enabled.iter().map(|m| str_bytes(m.name())).collect());
    (response, chosen)
}

/// SaslHandshake outside the authentication phase.
pub fn handshake_out_of_place() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}

/// SaslAuthenticate outside the authentication phase.
pub fn authenticate_out_of_place() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate is only accepted during authentication on a SASL listener \
             (re-authentication is not supported)",
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_handshake_should_accept_only_enabled_mechanisms_and_list_them() {
        let enabled = [SaslMechanism::Plain, SaslMechanism::ScramSha512];
        let (ok, chosen) = handshake("SCRAM-SHA-512", &enabled);
        assert_eq!(
            (ok.error_code, chosen),
            (0, Some(SaslMechanism::ScramSha512))
        );
        assert_eq!(ok.mechanisms.len(), 2);
        let (refused, chosen) = handshake("SCRAM-SHA-256", &enabled);
        assert_eq!(
            (refused.error_code, chosen),
            (ResponseError::UnsupportedSaslMechanism.code(), None)
        );
        assert_eq!(handshake("GSSAPI", &enabled).1, None);
    }
}
