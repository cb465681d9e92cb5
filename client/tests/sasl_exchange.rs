//! The SASL exchange of [`Connection::connect`] against a scripted broker on a loopback socket:
//! every frame encoded and decoded by the `kafka-protocol` crate, the SCRAM server side built
//! from `runnel_client::security::scram`'s primitives (what the broker will reuse). Until the
//! broker speaks SASL, this is where PLAIN and SCRAM succeed and fail end to end.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use runnel_client::security::scram::{
    self, ClientFinal, ClientFirst, ScramAlgorithm, ScramKeys, ServerFinal, ServerFirst,
};
use runnel_client::{ClientError, Connection, SaslMechanism, SaslSettings, SecurityConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USER: &str = "edge-7";
const PASSWORD: &str = "correct horse";
const SALT: &[u8] = b"0123456789abcdef";
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// What the scripted broker does.
#[derive(Clone)]
struct Script {
    /// Mechanisms it enables.
    mechanisms: Vec<&'static str>,
    /// The password it knows for [`USER`].
    password: &'static str,
    /// SaslAuthenticate's `session_lifetime_ms` (v1+).
    lifetime_ms: i64,
    /// Signs the SCRAM exchange with a key of another password (an impostor).
    forge_signature: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            mechanisms: vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
            password: PASSWORD,
            lifetime_ms: 0,
            forge_signature: false,
        }
    }
}

/// The SCRAM state of one connection on the broker's side.
struct ScramServer {
    algorithm: ScramAlgorithm,
    first: Option<(ClientFirst, String)>,
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let len = stream.read_i32().await.ok()?;
    let mut body = vec![0; usize::try_from(len).ok()?];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

async fn write_response<R: Encodable + HeaderVersion>(
    stream: &mut TcpStream,
    correlation_id: i32,
    response: &R,
    version: i16,
) {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, R::header_version(version))
        .expect("header encodes");
    response
        .encode(&mut buf, version)
        .expect("response encodes");
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    stream.write_all(&frame).await.expect("write");
}

/// Serves one connection as `script` says.
async fn serve(mut stream: TcpStream, script: Script) {
    let mut scram: Option<ScramServer> = None;
    while let Some(mut body) = read_frame(&mut stream).await {
        let key = i16::from_be_bytes([body[0], body[1]]);
        let version = i16::from_be_bytes([body[2], body[3]]);
        let api = ApiKey::try_from(key).expect("a known API");
        let header = RequestHeader::decode(&mut body, api.request_header_version(version))
            .expect("header decodes");
        let id = header.correlation_id;
        match api {
            ApiKey::ApiVersions => {
                ApiVersionsRequest::decode(&mut body, version).expect("decodes");
                let range = |key: ApiKey, min, max| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                };
                let response = ApiVersionsResponse::default().with_api_keys(vec![
                    range(ApiKey::ApiVersions, 0, 3),
                    range(ApiKey::SaslHandshake, 0, 1),
                    range(ApiKey::SaslAuthenticate, 0, 2),
                ]);
                write_response(&mut stream, id, &response, version).await;
            }
            ApiKey::SaslHandshake => {
                assert_eq!(version, 1, "the client asks for SaslHandshake v1");
                let request = SaslHandshakeRequest::decode(&mut body, version).expect("decodes");
                let mechanism = request.mechanism.to_string();
                let enabled = script.mechanisms.contains(&mechanism.as_str());
                let response = SaslHandshakeResponse::default()
                    .with_error_code(if enabled {
                        0
                    } else {
                        UNSUPPORTED_SASL_MECHANISM
                    })
                    .with_mechanisms(
                        script
                            .mechanisms
                            .iter()
                            .map(|m| StrBytes::from_static_str(m))
                            .collect(),
                    );
                write_response(&mut stream, id, &response, version).await;
                scram = match mechanism.as_str() {
                    "SCRAM-SHA-256" => Some(ScramServer::new(ScramAlgorithm::Sha256)),
                    "SCRAM-SHA-512" => Some(ScramServer::new(ScramAlgorithm::Sha512)),
                    _ => None,
                };
            }
            ApiKey::SaslAuthenticate => {
                assert_eq!(version, 2, "the highest version both sides know");
                let request = SaslAuthenticateRequest::decode(&mut body, version).expect("decodes");
                let answer = match scram.as_mut() {
                    Some(server) => server.step(&request.auth_bytes, &script),
                    None => plain(&request.auth_bytes, &script),
                };
                let response = match answer {
                    Ok(bytes) => SaslAuthenticateResponse::default()
                        .with_auth_bytes(bytes)
                        .with_session_lifetime_ms(script.lifetime_ms),
                    Err(message) => SaslAuthenticateResponse::default()
                        .with_error_code(SASL_AUTHENTICATION_FAILED)
                        .with_error_message(Some(StrBytes::from_string(message))),
                };
                write_response(&mut stream, id, &response, version).await;
            }
            other => panic!("unexpected {other:?} before authentication"),
        }
    }
}

/// Kafka's message for a wrong user or password.
fn invalid_credentials(mechanism: &str) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {mechanism}"
    )
}

fn plain(auth: &[u8], script: &Script) -> Result<Bytes, String> {
    let expected = [b"\0", USER.as_bytes(), b"\0", script.password.as_bytes()].concat();
    if auth == expected.as_slice() {
        Ok(Bytes::new())
    } else {
        Err(invalid_credentials("PLAIN"))
    }
}

impl ScramServer {
    fn new(algorithm: ScramAlgorithm) -> Self {
        ScramServer {
            algorithm,
            first: None,
        }
    }

    fn keys(&self, password: &str) -> ScramKeys {
        let iterations = std::num::NonZeroU32::new(scram::MIN_ITERATIONS).expect("non-zero");
        self.algorithm.keys(
            &self
                .algorithm
                .salted_password(password.as_bytes(), SALT, iterations),
        )
    }

    fn step(&mut self, auth: &[u8], script: &Script) -> Result<Bytes, String> {
        match self.first.take() {
            None => {
                let first = ClientFirst::parse(auth).map_err(|e| e.to_string())?;
                assert_eq!(first.username, USER);
                let server_first = ServerFirst {
                    nonce: format!("{}srv-nonce", first.nonce),
                    salt: SALT.to_vec(),
                    iterations: scram::MIN_ITERATIONS,
                }
                .message();
                self.first = Some((first, server_first.clone()));
                Ok(Bytes::from(server_first))
            }
            Some((first, server_first)) => {
                let client_final = ClientFinal::parse(auth).map_err(|e| e.to_string())?;
                let auth_message = scram::auth_message(
                    &first.bare(),
                    &server_first,
                    &client_final.without_proof(),
                );
                let stored = self.keys(script.password);
                self.algorithm
                    .verify_client_proof(&stored.stored_key, &auth_message, &client_final.proof)
                    .map_err(|_| invalid_credentials(self.algorithm.mechanism()))?;
                let signer = if script.forge_signature {
                    self.keys("not the password")
                } else {
                    stored
                };
                let signature = self
                    .algorithm
                    .server_signature(&signer.server_key, &auth_message);
                Ok(Bytes::from(ServerFinal::Verifier(signature).message()))
            }
        }
    }
}

/// Connects to a scripted broker as [`USER`] with `password` and `mechanism`.
async fn connect(
    script: Script,
    mechanism: SaslMechanism,
    password: &str,
) -> Result<Connection, ClientError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            serve(stream, script).await;
        }
    });
    let security = SecurityConfig {
        tls: None,
        sasl: Some(SaslSettings {
            mechanism,
            username: USER.into(),
            password: password.into(),
        }),
    }
    .load()
    .expect("valid settings");
    let connecting = Connection::connect(
        &addr,
        "sasl-test",
        Duration::from_secs(5),
        Duration::from_secs(5),
        &security,
    );
    tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("the exchange must not hang")
}

const ALL: [SaslMechanism; 3] = [
    SaslMechanism::Plain,
    SaslMechanism::ScramSha256,
    SaslMechanism::ScramSha512,
];

#[tokio::test]
async fn given_the_right_password_when_connecting_should_authenticate_with_every_mechanism() {
    for mechanism in ALL {
        let conn = connect(Script::default(), mechanism, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        assert!(
            !conn.is_broken(),
            "{mechanism}: a session without a lifetime"
        );
    }
}

#[tokio::test]
async fn given_a_wrong_password_when_connecting_should_fail_with_the_brokers_message() {
    for mechanism in ALL {
        let error = connect(Script::default(), mechanism, "wrong password")
            .await
            .expect_err("refused");
        let text = error.to_string();
        assert!(
            matches!(error, ClientError::Authentication { .. }),
            "{error:?}"
        );
        assert!(!error.is_retriable(), "{text}");
        assert!(
            text.starts_with(&format!("authentication failed for user {USER}: "))
                && text.contains(&invalid_credentials(mechanism.name())),
            "{text}"
        );
        assert!(!text.contains("wrong password"), "{text}");
    }
}

#[tokio::test]
async fn given_a_mechanism_the_broker_does_not_enable_should_fail_listing_what_it_offers() {
    let script = Script {
        mechanisms: vec!["SCRAM-SHA-512"],
        ..Script::default()
    };
    let error = connect(script, SaslMechanism::Plain, PASSWORD)
        .await
        .expect_err("refused");
    let text = error.to_string();
    assert!(!error.is_retriable(), "{text}");
    assert!(
        text.contains("UnsupportedSaslMechanism") && text.contains("offers SCRAM-SHA-512"),
        "{text}"
    );
}

#[tokio::test]
async fn given_a_server_that_does_not_know_the_password_when_using_scram_should_refuse_it() {
    for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        let script = Script {
            forge_signature: true,
            ..Script::default()
        };
        let error = connect(script, mechanism, PASSWORD)
            .await
            .expect_err("the impostor is refused");
        let text = error.to_string();
        assert!(
            matches!(error, ClientError::Authentication { .. }),
            "{error:?}"
        );
        assert!(text.contains("signature does not match"), "{text}");
    }
}

#[tokio::test]
async fn given_a_session_lifetime_when_it_is_nearly_over_should_report_the_connection_broken() {
    let script = Script {
        lifetime_ms: 1,
        ..Script::default()
    };
    let conn = connect(script, SaslMechanism::ScramSha256, PASSWORD)
        .await
        .expect("authenticated");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        conn.is_broken(),
        "replaced before the broker ends the session"
    );
}
