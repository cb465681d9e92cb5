//! The server exchange against runnel-client's SCRAM client (itself checked against RFC 7677
//! and an independent SHA-512 implementation), and hostile or broken client messages.

use std::num::NonZeroU32;

use runnel_client::security::scram::{ScramClient, ScramError};

use super::*;

const SALT: &[u8] = b"0123456789abcdef";
const MOCK_SALT: &[u8] = b"fedcba9876543210";

fn stored(mechanism: ScramMechanism, password: &str) -> ScramCredential {
    let iterations = NonZeroU32::new(4096).expect("non-zero");
    credential_from_password(
        "alice",
        mechanism,
        password.as_bytes(),
        SALT.to_vec(),
        iterations,
    )
}

/// A lookup that knows `alice` with password `pencil`, and mocks everyone else.
fn lookup(mechanism: ScramMechanism) -> impl Fn(&str) -> Lookup {
    move |user| {
        if user == "alice" {
            Lookup {
                credential: stored(mechanism, "pencil"),
                real: true,
            }
        } else {
            let mut credential = stored(mechanism, "mock");
            credential.user = user.to_string();
            credential.salt = MOCK_SALT.to_vec();
            Lookup {
                credential,
                real: false,
            }
        }
    }
}

/// Runs a whole exchange with runnel-client's client; returns the server's verdict and, on
/// success, whether the client accepted the server's signature.
fn exchange(
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> Result<Result<(), ScramError>, ScramFailure> {
    let client = ScramClient::new(algorithm(mechanism), user, password, "clientnonce");
    let (state, server_first) = client_first(
        mechanism,
        client.client_first().as_bytes(),
        "servernonce",
        lookup(mechanism),
    )?;
    let (client_state, client_final) = client
        .handle_server_first(server_first.as_bytes())
        .expect("the client accepts our server-first message");
    let server_final = state.client_final(client_final.as_bytes())?;
    Ok(client_state.verify_server_final(server_final.as_bytes()))
}

#[test]
fn given_the_right_password_when_exchanging_should_authenticate_both_ways() {
    for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        assert_eq!(exchange(mechanism, "alice", "pencil"), Ok(Ok(())));
    }
}

#[test]
fn given_a_wrong_password_or_an_unknown_user_should_fail_alike_at_the_proof() {
    for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let wrong = exchange(mechanism, "alice", "pencil2").expect_err("wrong password");
        let unknown = exchange(mechanism, "mallory", "pencil").expect_err("unknown user");
        for failure in [&wrong, &unknown] {
            assert!(failure.bad_credentials);
            assert_eq!(failure.server_final(), "e=invalid-proof");
        }
        assert_ne!(wrong.reason, unknown.reason, "the log tells them apart");
    }
}

#[test]
fn given_an_unknown_user_when_answering_should_look_like_a_real_one() {
    let mechanism = ScramMechanism::Sha256;
    let (_, real) =
        client_first(mechanism, b"n,,n=alice,r=abc", "xyz", lookup(mechanism)).expect("valid");
    let (state, mock) =
        client_first(mechanism, b"n,,n=mallory,r=abc", "xyz", lookup(mechanism)).expect("valid");
    assert!(!state.known_user());
    let parsed = |m: &str| ServerFirst::parse(m.as_bytes()).expect("a well-formed server-first");
    assert_eq!(parsed(&real).iterations, parsed(&mock).iterations);
    assert_eq!(parsed(&real).salt.len(), parsed(&mock).salt.len());
    assert_eq!(parsed(&mock).nonce, "abcxyz");
}

#[test]
fn given_channel_binding_or_extensions_when_starting_should_refuse_with_an_error_value() {
    let mechanism = ScramMechanism::Sha512;
    let refuse = |message: &[u8]| {
        client_first(mechanism, message, "s", lookup(mechanism)).expect_err("refused")
    };
    assert_eq!(
        refuse(b"p=tls-unique,,n=alice,r=abc").server_error,
        "channel-binding-not-supported"
    );
    assert_eq!(
        refuse(b"y,,n=alice,r=abc").server_error,
        "channel-binding-not-supported"
    );
    assert_eq!(
        refuse(b"n,,n=alice,r=abc,tokenauth=true").server_error,
        "extensions-not-supported"
    );
    let other = refuse(b"n,a=bob,n=alice,r=abc");
    assert!(other.reason.contains("authorization id"), "{other:?}");
    assert!(!refuse(b"n,,n=alice").bad_credentials);
    client_first(
        mechanism,
        b"n,a=alice,n=alice,r=abc",
        "s",
        lookup(mechanism),
    )
    .expect("an authzid equal to the user is fine");
}

#[test]
fn given_a_tampered_client_final_should_refuse_without_quoting_it() {
    let mechanism = ScramMechanism::Sha256;
    let start = || {
        client_first(mechanism, b"n,,n=alice,r=abc", "xyz", lookup(mechanism))
            .expect("valid")
            .0
    };
    let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let cases = [
        (
            format!("c=eSws,r=abcxyz,{proof}"),
            "channel-bindings-dont-match",
        ),
        (format!("c=biws,r=abcxyq,{proof}"), "other-error"),
        (format!("c=biws,r=abc,{proof}"), "other-error"),
        (format!("c=biws,r=abcxyzabc,{proof}"), "other-error"),
        (
            "c=biws,r=abcxyz,p=secretproof!".to_string(),
            "invalid-encoding",
        ),
        (format!("c=biws,r=abcxyz,{proof}"), "invalid-proof"),
    ];
    for (message, expected) in cases {
        let failure = start()
            .client_final(message.as_bytes())
            .expect_err("refused");
        assert_eq!(failure.server_error, expected, "{message}");
        assert!(!failure.reason.contains("secretproof"), "{failure:?}");
        assert!(!failure.reason.contains("dHzb"), "{failure:?}");
    }
}

#[test]
fn given_a_salted_password_when_stored_should_match_the_password_derivation() {
    let iterations = NonZeroU32::new(4096).expect("non-zero");
    for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let salted = algorithm(mechanism).salted_password(b"pencil", SALT, iterations);
        let from_salted = credential_from_salted("alice", mechanism, SALT.to_vec(), 4096, &salted);
        assert_eq!(from_salted, stored(mechanism, "pencil"));
    }
}

#[test]
fn given_librdkafkas_doubled_client_nonce_should_authenticate_like_kafka() {
    // librdkafka 2.0 (Debian 12's kcat) sends r=<client nonce><server's r=> in its final
    // message and signs exactly that; Kafka accepts it because it checks endsWith.
    let mechanism = ScramMechanism::Sha256;
    let alg = algorithm(mechanism);
    let (state, server_first) =
        client_first(mechanism, b"n,,n=alice,r=abc", "xyz", lookup(mechanism)).expect("valid");
    let iterations = NonZeroU32::new(4096).expect("non-zero");
    let keys = alg.keys(&alg.salted_password(b"pencil", SALT, iterations));
    let without_proof = "c=biws,r=abcabcxyz";
    let auth = auth_message("n=alice,r=abc", &server_first, without_proof);
    let proof = BASE64.encode(alg.client_proof(&keys, &auth));
    let server_final = state
        .client_final(format!("{without_proof},p={proof}").as_bytes())
        .expect("accepted");
    assert!(server_final.starts_with("v="), "{server_final}");
}
