//! SASL PLAIN (RFC 4616) checked against the stored SCRAM credentials, so there is one
//! credential store: the password is run through the credential's PBKDF2 (its salt and
//! iteration count) and the resulting StoredKey compared in constant time. Users known only by
//! a mock credential fail the same way, after the same work.
//!
//! PLAIN sends the password itself: use it over `SASL_SSL` only, unless the network is trusted.

use runnel_client::security::sasl::parse_plain_message;
use std::num::NonZeroU32;

use super::scram::{Lookup, algorithm};

/// Why a PLAIN exchange failed. `reason` is for the log and never quotes the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainFailure {
    pub reason: String,
    /// Wrong password or unknown user, rather than a malformed message.
    pub bad_credentials: bool,
}

/// The user name of a PLAIN message, for the credential lookup that precedes [`check`]; the
/// rest of the message is checked there.
pub fn username(message: &[u8]) -> Result<&str, PlainFailure> {
    parse_plain_message(message)
        .map(|m| m.username)
        .map_err(|reason| PlainFailure {
            reason: format!("malformed PLAIN message: {reason}"),
            bad_credentials: false,
        })
}

/// Checks a PLAIN message against the credential `lookup` returned for its user. Blocking: it
/// costs the credential's PBKDF2 iterations. Returns the authenticated user name.
pub fn check(message: &[u8], lookup: &Lookup) -> Result<String, PlainFailure> {
    let parsed = parse_plain_message(message).map_err(|reason| PlainFailure {
        reason: format!("malformed PLAIN message: {reason}"),
        bad_credentials: false,
    })?;
    if !parsed.authzid.is_empty() && parsed.authzid != parsed.username {
        return Err(PlainFailure {
            reason: "the authorization id differs from the user name".into(),
            bad_credentials: false,
        });
    }
    let credential = &lookup.credential;
    let verified = u32::try_from(credential.iterations)
        .ok()
        .and_then(NonZeroU32::new)
        .is_some_and(|iterations| {
            algorithm(credential.mechanism).verify_password(
                parsed.password,
                &credential.salt,
                iterations,
                &credential.stored_key,
            )
        });
    if verified && lookup.real {
        return Ok(parsed.username.to_string());
    }
    Err(PlainFailure {
        reason: if lookup.real {
            "wrong password".into()
        } else {
            "unknown user".into()
        },
        bad_credentials: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::credential_from_password;
    use crate::log::ScramMechanism;

    fn lookup(real: bool) -> Lookup {
        let iterations = NonZeroU32::new(4096).expect("non-zero");
        Lookup {
            credential: credential_from_password(
                "alice",
                ScramMechanism::Sha512,
                b"pencil",
                b"salt".to_vec(),
                iterations,
            ),
            real,
        }
    }

    #[test]
    fn given_the_right_password_should_authenticate_the_user() {
        assert_eq!(check(b"\0alice\0pencil", &lookup(true)), Ok("alice".into()));
        assert_eq!(
            check(b"alice\0alice\0pencil", &lookup(true)),
            Ok("alice".into())
        );
        assert_eq!(username(b"\0alice\0pencil"), Ok("alice"));
    }

    #[test]
    fn given_bad_credentials_or_messages_should_refuse_without_quoting_the_password() {
        let wrong = check(b"\0alice\0pencil2", &lookup(true)).expect_err("wrong");
        assert!(wrong.bad_credentials);
        let unknown = check(b"\0alice\0pencil", &lookup(false)).expect_err("mock");
        assert!(unknown.bad_credentials);
        let other = check(b"bob\0alice\0pencil", &lookup(true)).expect_err("authzid");
        assert!(!other.bad_credentials);
        for bad in [&b"\0alice"[..], b"\0\0pencil", b"\0alice\0pencil\0x"] {
            let failure = check(bad, &lookup(true)).expect_err("malformed");
            assert!(!failure.reason.contains("pencil"), "{failure:?}");
        }
    }
}
