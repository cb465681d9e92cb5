//! The server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks it
//! (KIP-84), built on the message parsers and key derivation of `runnel_client`'s
//! [`scram`](runnel_client::security::scram) module. Pure: the caller passes the credential
//! lookup and the server nonce, so the fuzz target and the unit tests drive it without I/O.
//!
//! Invariants:
//! - a user without a credential for the mechanism gets a *mock* exchange (RFC 5802 §5.1: a
//!   salt derived from the user name, the usual iteration count) that fails at the proof, so
//!   the answers and their timing do not tell whether the user exists;
//! - only `n,,` / `n,a=user,` GS2 headers are accepted (no channel binding, as in Kafka), and the
//!   final message's `c=` must repeat the header exactly;
//! - the final nonce must end with the client's nonce followed by ours (Kafka's own check,
//!   which librdkafka relies on);
//! - the proof is checked in constant time; failures never carry the proof or keys, and the
//!   reasons meant for logs never quote the client-final message.

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use runnel_client::security::scram::{
    ClientFinal, ClientFirst, ScramAlgorithm, ServerFinal, ServerFirst, auth_message,
};

use crate::log::{ScramCredential, ScramMechanism};

/// Why an exchange failed: what to log and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramFailure {
    /// For the broker's log: no secrets, and the same wording for every client-final problem.
    pub reason: String,
    /// RFC 5802's `server-error-value`, sent as `e=` when the exchange got that far.
    pub server_error: &'static str,
    /// Whether the credentials were wrong (or the user unknown), rather than the messages
    /// malformed: the client is told the same thing in both cases, the log is not.
    pub bad_credentials: bool,
}

impl ScramFailure {
    fn malformed(reason: impl Into<String>, server_error: &'static str) -> Self {
        ScramFailure {
            reason: reason.into(),
            server_error,
            bad_credentials: false,
        }
    }

    /// The `server-final-message` carrying the error.
    pub fn server_final(&self) -> String {
        ServerFinal::Error(self.server_error.to_string()).message()
    }
}

/// The algorithm of a stored mechanism.
pub fn algorithm(mechanism: ScramMechanism) -> ScramAlgorithm {
    match mechanism {
        ScramMechanism::Sha256 => ScramAlgorithm::Sha256,
        ScramMechanism::Sha512 => ScramAlgorithm::Sha512,
    }
}

/// A credential as the exchange uses it.
#[derive(Clone)]
pub struct Lookup {
    pub credential: ScramCredential,
    /// `false` for a mock credential: the exchange goes on and fails at the proof.
    pub real: bool,
}

/// An exchange after the server-first message: what the client-final message is checked
/// against.
pub struct ScramExchange {
    algorithm: ScramAlgorithm,
    user: String,
    lookup: Lookup,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramExchange")
            .field("algorithm", &self.algorithm)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Reads the client-first message and answers with the server-first message. `lookup` finds
/// the user's credential (or a mock one); `server_nonce` is appended to the client's nonce
/// (use `runnel_client::security::scram::new_nonce`).
pub fn client_first(
    mechanism: ScramMechanism,
    message: &[u8],
    server_nonce: &str,
    lookup: impl FnOnce(&str) -> Lookup,
) -> Result<(ScramExchange, String), ScramFailure> {
    let first = ClientFirst::parse(message).map_err(|e| {
        let code = if e.to_string().contains("channel binding") {
            "channel-binding-not-supported"
        } else {
            "other-error"
        };
        ScramFailure::malformed(e.to_string(), code)
    })?;
    if let Some(authzid) = &first.authzid
        && *authzid != first.username
    {
        return Err(ScramFailure::malformed(
            "the authorization id differs from the user name",
            "other-error",
        ));
    }
    if let Some((key, _)) = first.extensions.first() {
        // Kafka's only extension is `tokenauth` (delegation tokens), which Runnel lacks.
        return Err(ScramFailure::malformed(
            format!("extension `{key}` is not supported"),
            "extensions-not-supported",
        ));
    }
    // The bare message exactly as received goes into the AuthMessage: everything after the
    // GS2 header (which parse() has checked is `n,` + authzid + `,`).
    let text = std::str::from_utf8(message).map_err(|_| {
        ScramFailure::malformed("client-first message is not UTF-8", "invalid-encoding")
    })?;
    let gs2_header = first.gs2_header();
    let client_first_bare = text
        .get(gs2_header.len()..)
        .filter(|_| text.starts_with(&gs2_header))
        .ok_or_else(|| ScramFailure::malformed("unusual GS2 header encoding", "other-error"))?
        .to_string();
    let lookup = lookup(&first.username);
    let iterations = u32::try_from(lookup.credential.iterations).unwrap_or(0);
    let nonce = format!("{}{server_nonce}", first.nonce);
    let server_first = ServerFirst {
        nonce: nonce.clone(),
        salt: lookup.credential.salt.clone(),
        iterations,
    }
    .message();
    Ok((
        ScramExchange {
            algorithm: algorithm(mechanism),
            user: first.username,
            lookup,
            gs2_header,
            client_first_bare,
            server_first: server_first.clone(),
            nonce,
        },
        server_first,
    ))
}

impl ScramExchange {
    /// The user named in the client-first message (authenticated only once
    /// [`ScramExchange::client_final`] succeeds).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the user has a credential for this mechanism (for the log only).
    pub fn known_user(&self) -> bool {
        self.lookup.real
    }

    /// Checks the client-final message; on success returns the server-final message (`v=`).
    pub fn client_final(self, message: &[u8]) -> Result<String, ScramFailure> {
        // Never quote this message in a reason: it carries the proof.
        let last = ClientFinal::parse(message).map_err(|_| {
            ScramFailure::malformed("malformed client-final message", "invalid-encoding")
        })?;
        if BASE64.decode(&last.channel_binding).ok().as_deref() != Some(self.gs2_header.as_bytes())
        {
            return Err(ScramFailure::malformed(
                "the channel binding (c=) does not repeat the GS2 header",
                "channel-bindings-dont-match",
            ));
        }
        // Kafka checks `endsWith`, not equality, and librdkafka up to at least 2.0 (Debian
        // 12's kcat) relies on it: its final nonce is the client nonce followed by the whole
        // server nonce (which starts with the client nonce again). Our fresh part is still at
        // the end, so a replayed final message cannot match, and the proof covers it.
        if !last.nonce.ends_with(&self.nonce) {
            return Err(ScramFailure::malformed(
                "the client-final nonce is not the one the server sent",
                "other-error",
            ));
        }
        let auth = auth_message(
            &self.client_first_bare,
            &self.server_first,
            &last.without_proof(),
        );
        let credential = &self.lookup.credential;
        let verified = self
            .algorithm
            .verify_client_proof(&credential.stored_key, &auth, &last.proof)
            .is_ok();
        if !(verified && self.lookup.real) {
            return Err(ScramFailure {
                reason: if self.lookup.real {
                    "invalid proof (wrong password)".into()
                } else {
                    "unknown user, or no credential for this mechanism".into()
                },
                server_error: "invalid-proof",
                bad_credentials: true,
            });
        }
        let signature = self
            .algorithm
            .server_signature(&credential.server_key, &auth);
        Ok(ServerFinal::Verifier(signature).message())
    }
}

/// The stored part of a credential from a salted password (AlterUserScramCredentials carries
/// salted passwords; `runnel user add` derives one).
pub fn credential_from_salted(
    user: &str,
    mechanism: ScramMechanism,
    salt: Vec<u8>,
    iterations: i32,
    salted_password: &[u8],
) -> ScramCredential {
    let keys = algorithm(mechanism).keys(salted_password);
    ScramCredential {
        user: user.to_string(),
        mechanism,
        salt,
        iterations,
        stored_key: keys.stored_key,
        server_key: keys.server_key,
    }
}

/// A credential from a password: Hi(password, salt, iterations), then the keys. Costs the
/// PBKDF2 iterations.
pub fn credential_from_password(
    user: &str,
    mechanism: ScramMechanism,
    password: &[u8],
    salt: Vec<u8>,
    iterations: NonZeroU32,
) -> ScramCredential {
    let salted = algorithm(mechanism).salted_password(password, &salt, iterations);
    let iterations = i32::try_from(iterations.get()).unwrap_or(i32::MAX);
    credential_from_salted(user, mechanism, salt, iterations, &salted)
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
