//! The RFC 7677 example, a SCRAM-SHA-512 vector computed with Python's hashlib, a round trip
//! against a server built from the same primitives, and malformed or hostile server messages.

use super::*;

const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
/// RFC 7677 section 3.
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
/// The same exchange with SHA-512 (hashlib.pbkdf2_hmac and hmac of CPython).
const SHA512_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
    p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==";
const SHA512_SERVER_FINAL: &str =
    "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==";

fn rfc_client(algorithm: ScramAlgorithm) -> ScramClient {
    ScramClient::new(algorithm, "user", "pencil", CLIENT_NONCE)
}

/// The client's final state after the RFC's server-first message.
fn after_server_first(algorithm: ScramAlgorithm) -> (ScramClientFinal, String) {
    rfc_client(algorithm)
        .handle_server_first(RFC_SERVER_FIRST.as_bytes())
        .expect("the RFC's server-first message is valid")
}

fn server_first_error(message: &str) -> ScramError {
    rfc_client(ScramAlgorithm::Sha256)
        .handle_server_first(message.as_bytes())
        .expect_err("the server-first message must be refused")
}

#[test]
fn given_the_rfc_7677_example_when_exchanging_should_produce_its_exact_messages() {
    let client = rfc_client(ScramAlgorithm::Sha256);
    assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let (state, client_final) = client
        .handle_server_first(RFC_SERVER_FIRST.as_bytes())
        .expect("valid");
    assert_eq!(client_final, RFC_CLIENT_FINAL);
    state
        .verify_server_final(RFC_SERVER_FINAL.as_bytes())
        .expect("the RFC's server signature verifies");
}

#[test]
fn given_sha512_when_exchanging_should_match_an_independent_implementation() {
    let (state, client_final) = after_server_first(ScramAlgorithm::Sha512);
    assert_eq!(client_final, SHA512_CLIENT_FINAL);
    state
        .verify_server_final(SHA512_SERVER_FINAL.as_bytes())
        .expect("signature verifies");
    // A SHA-256 signature is no SHA-512 signature.
    assert_eq!(
        state.verify_server_final(RFC_SERVER_FINAL.as_bytes()),
        Err(ScramError::ServerSignature)
    );
}

#[test]
fn given_a_server_built_from_the_primitives_when_exchanging_should_authenticate_both_ways() {
    for algorithm in [ScramAlgorithm::Sha256, ScramAlgorithm::Sha512] {
        // What a server stores for the user.
        let salt = b"some salt".to_vec();
        let iterations = NonZeroU32::new(MIN_ITERATIONS).expect("non-zero");
        let stored = algorithm.keys(&algorithm.salted_password(b"s3cret", &salt, iterations));

        let nonce = new_nonce().expect("random");
        let client = ScramClient::new(algorithm, "a=b,c", "s3cret", nonce);
        let first = ClientFirst::parse(client.client_first().as_bytes()).expect("parses");
        assert_eq!(first.username, "a=b,c", "escaped and unescaped");
        let server_first = ServerFirst {
            nonce: format!("{}server", first.nonce),
            salt,
            iterations: MIN_ITERATIONS,
        }
        .message();
        let (state, client_final) = client
            .handle_server_first(server_first.as_bytes())
            .expect("valid");
        let parsed = ClientFinal::parse(client_final.as_bytes()).expect("parses");
        let auth = auth_message(&first.bare(), &server_first, &parsed.without_proof());
        algorithm
            .verify_client_proof(&stored.stored_key, &auth, &parsed.proof)
            .expect("the server accepts the proof");
        assert_eq!(
            algorithm.verify_client_proof(&stored.stored_key, &format!("{auth}x"), &parsed.proof),
            Err(ScramError::ClientProof)
        );
        assert!(algorithm.verify_password(b"s3cret", b"some salt", iterations, &stored.stored_key));
        assert!(!algorithm.verify_password(
            b"s3creT",
            b"some salt",
            iterations,
            &stored.stored_key
        ));
        let signature = algorithm.server_signature(&stored.server_key, &auth);
        state
            .verify_server_final(ServerFinal::Verifier(signature).message().as_bytes())
            .expect("the client accepts the server");
    }
}

#[test]
fn given_a_wrong_password_when_the_server_signs_should_fail_the_exchange() {
    let (state, _) = rfc_client(ScramAlgorithm::Sha256)
        .handle_server_first(RFC_SERVER_FIRST.as_bytes())
        .expect("valid");
    let mut forged = BASE64
        .decode(&RFC_SERVER_FINAL[2..])
        .expect("the RFC's signature is base64");
    forged[0] ^= 1;
    let forged = ServerFinal::Verifier(forged).message();
    assert_eq!(
        state.verify_server_final(forged.as_bytes()),
        Err(ScramError::ServerSignature)
    );
    assert_eq!(
        state.verify_server_final(b"v=AAAA"),
        Err(ScramError::ServerSignature),
        "a signature of the wrong length"
    );
    let refused = state
        .verify_server_final(b"e=invalid-proof")
        .expect_err("an error from the server");
    assert_eq!(refused, ScramError::ServerError("invalid-proof".into()));
    assert!(refused.to_string().contains("invalid-proof"));
}

#[test]
fn given_malformed_server_first_messages_should_name_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("", "missing `r=`"),
        ("r=rOprNGfwEbeRWgbNEkqOxyz", "missing `s=`"),
        (
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "missing `i=`",
        ),
        ("s=W22Z,r=rOprNGfwEbeRWgbNEkqOxyz,i=4096", "expected `r=`"),
        (
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=not base64!,i=4096",
            "not base64",
        ),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096", "empty salt"),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22Z,i=-1", "not a number"),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22Z,i=", "not a number"),
        (
            "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22Z,i=4096",
            "mandatory extensions",
        ),
        ("r=,s=W22Z,i=4096", "empty nonce"),
        ("r=rOprNGfwEbeRWgbNEkqO\u{7f},s=W22Z,i=4096", "printable"),
        (
            "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22Z,i=4096,junk",
            "not an attribute",
        ),
    ];
    for (message, expected) in cases {
        let error = server_first_error(message).to_string();
        assert!(
            error.contains(expected) && error.contains("server-first"),
            "{message:?}: {error}"
        );
    }
    let error = rfc_client(ScramAlgorithm::Sha256)
        .handle_server_first(&[b'r', b'=', 0xff, 0xfe])
        .expect_err("not UTF-8");
    assert!(error.to_string().contains("not UTF-8"), "{error}");
    let huge = format!("{RFC_SERVER_FIRST},x={}", "a".repeat(MAX_MESSAGE_BYTES));
    let error = server_first_error(&huge).to_string();
    assert!(error.contains("more than 4096"), "{error}");
    // Extensions after the iteration count are allowed (and ignored).
    rfc_client(ScramAlgorithm::Sha256)
        .handle_server_first(format!("{RFC_SERVER_FIRST},x=1").as_bytes())
        .expect("extensions are ignored");
}

#[test]
fn given_a_server_nonce_that_does_not_extend_ours_should_fail() {
    for nonce in ["someoneelse%hvYDpWUa2", "rOprNGfwEbeRWgbNEkq", CLIENT_NONCE] {
        let message = format!("r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        assert_eq!(
            server_first_error(&message),
            ScramError::NonceMismatch,
            "{nonce}"
        );
    }
}

#[test]
fn given_iteration_counts_outside_kafkas_bounds_should_fail() {
    for count in [
        "0",
        "1",
        "4095",
        "16385",
        "4294967296",
        "99999999999999999999999999",
    ] {
        let message = format!("r={CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={count}");
        let error = server_first_error(&message);
        assert!(
            matches!(error, ScramError::Iterations { .. }),
            "{count}: {error}"
        );
        assert!(error.to_string().contains("4096..=16384"), "{error}");
    }
    for count in [MIN_ITERATIONS, MAX_ITERATIONS] {
        let message = format!("r={CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={count}");
        rfc_client(ScramAlgorithm::Sha256)
            .handle_server_first(message.as_bytes())
            .expect("within bounds");
    }
}

#[test]
fn given_malformed_server_final_messages_should_fail() {
    let (state, _) = after_server_first(ScramAlgorithm::Sha256);
    for (message, expected) in [
        ("", "neither"),
        ("x=abc", "neither"),
        ("v=not base64!", "not base64"),
        ("v", "neither"),
    ] {
        let error = state
            .verify_server_final(message.as_bytes())
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains(expected) && error.contains("server-final"),
            "{message:?}: {error}"
        );
    }
}

#[test]
fn given_user_names_with_separators_should_escape_and_unescape() {
    assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
    assert_eq!(unescape_username("a=3Db=2Cc").expect("valid"), "a=b,c");
    assert_eq!(escape_username("plain"), "plain");
    for bad in ["a=", "a=3", "a=3E", "=XY"] {
        assert!(unescape_username(bad).is_err(), "{bad}");
    }
    let first = ClientFirst::new("a=b,c", "n0nce");
    assert_eq!(first.message(), "n,,n=a=3Db=2Cc,r=n0nce");
}

#[test]
fn given_client_messages_when_parsed_by_a_server_should_round_trip_or_fail_clearly() {
    let first = ClientFirst::parse(b"n,,n=user,r=abc,tokenauth=true").expect("valid");
    assert_eq!(first.username, "user");
    assert_eq!(first.nonce, "abc");
    assert_eq!(first.extensions, vec![("tokenauth".into(), "true".into())]);
    assert_eq!(first.message(), "n,,n=user,r=abc,tokenauth=true");
    assert_eq!(first.gs2_header(), "n,,");
    let with_authzid = ClientFirst::parse(b"n,a=us=2Cer,n=user,r=abc").expect("valid");
    assert_eq!(with_authzid.authzid.as_deref(), Some("us,er"));
    assert_eq!(with_authzid.gs2_header(), "n,a=us=2Cer,");
    for bad in [
        &b"p=tls-unique,,n=user,r=abc"[..],
        b"y,,n=user,r=abc",
        b"n,,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=user",
        b"n,x,n=user,r=abc",
        b"n,,m=x,n=user,r=abc",
        b"garbage",
    ] {
        let error = ClientFirst::parse(bad).expect_err("refused").to_string();
        assert!(error.contains("client-first"), "{bad:?}: {error}");
    }
    let parsed = ClientFinal::parse(RFC_CLIENT_FINAL.as_bytes()).expect("valid");
    assert_eq!(parsed.message(), RFC_CLIENT_FINAL);
    assert!(ClientFinal::parse(b"c=biws,r=abc").is_err(), "no proof");
    assert!(ClientFinal::parse(b"c=biws,r=abc,p=AAAA,x=1").is_err());
}

#[test]
fn given_keys_and_clients_when_debug_printed_should_not_show_secrets() {
    let client = rfc_client(ScramAlgorithm::Sha256);
    assert!(!format!("{client:?}").contains("pencil"));
    let keys = ScramAlgorithm::Sha256.keys(&[7; 32]);
    assert!(format!("{keys:?}").contains("redacted"));
    let nonce = new_nonce().expect("random");
    assert_eq!(nonce.len(), 32);
    assert_ne!(nonce, new_nonce().expect("random"));
}
