//! SASL authentication on the broker (`SASL_PLAINTEXT` and `SASL_SSL` listeners), SCRAM users,
//! and the hardening around unauthenticated connections, with real clients:
//!
//! - kcat (librdkafka 2.0 with OpenSSL and its own SCRAM) with PLAIN, SCRAM-SHA-256 and
//!   SCRAM-SHA-512 on both listeners: good credentials produce and consume; a wrong password
//!   and an unknown user are refused with the same message, logged with the peer address and
//!   counted in `/metrics`, and no password ever reaches the log;
//! - runnel-client over SASL_SSL with each mechanism;
//! - confluent-kafka and kafka-python over SASL_SSL with SCRAM-SHA-512, and kafka-python's
//!   AlterUserScramCredentials / DescribeUserScramCredentials (`tests/compat/python_sasl.py`);
//! - `runnel user add|list|remove`: refused while the broker runs, effective after a restart;
//! - a Produce before authentication, oversized frames and tokens, a silent client and a
//!   channel-binding SCRAM client are cut off while an authenticated client keeps working;
//!   SaslHandshake v0 with bare tokens works;
//! - a client certificate names the principal (`User:CN=…`), seen through `super_users`;
//! - `server.max_connections_per_ip` and `server.connections_max_idle_ms`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, ProduceRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use runnel_client::{
    Client, ClientConfig, ClientError, FetchOptions, NewTopic, OutRecord, PartitionBatch, Producer,
    ProducerConfig, SaslMechanism, SaslSettings, SecurityConfig, TlsSettings,
};
use runnel_tests::harness::binary::add_scram_user;
use runnel_tests::harness::bridge::read_metrics;
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;
use runnel_tests::raw::{RawConnection, encode_request, frame};
use runnel_tests::{Broker, BrokerOptions, kcat, python, run_to_exit, runnel_bin};

const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-Pencil-7781";
const WRONG_PASSWORD: &str = "wrong-Crayon-5512";
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const FAILURES: &str = "runnel_sasl_authentication_failures_total";

struct Setup {
    broker: Broker,
    pki: TestPki,
    plain_port: u16,
    sasl_port: u16,
    ssl_port: u16,
    metrics: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A broker with PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners, `alice` added with
    /// `runnel user add` before start, `server_extra` lines in `[server]`, and
    /// `authorization` as the `[authorization]` table's body.
    fn start(server_extra: &str, authorization: &str) -> Result<Setup> {
        let dir = tempfile::tempdir()?;
        let pki = TestPki::generate(&dir.path().join("pki"))?;
        let data = dir.path().join("data");
        add_scram_user(&data, ALICE, ALICE_PASSWORD, &[])?;
        let (plain_port, sasl_port, ssl_port) = (free_port()?, free_port()?, free_port()?);
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = format!(
            r#"
[server]
metrics_listen = "{metrics}"
{server_extra}

[authorization]
{authorization}

[[listener]]
name = "INTERNAL"
protocol = "PLAINTEXT"
listen = "127.0.0.1:{plain_port}"

[[listener]]
name = "SASL"
protocol = "SASL_PLAINTEXT"
listen = "127.0.0.1:{sasl_port}"

[[listener]]
name = "SECURE"
protocol = "SASL_SSL"
listen = "127.0.0.1:{ssl_port}"
advertised = "localhost:{ssl_port}"
[listener.tls]
cert_file = "{}"
key_file = "{}"
"#,
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let path = dir.path().join("runnel.toml");
        std::fs::write(&path, config)?;
        let broker = Broker::start(
            BrokerOptions::new()
                .data_dir(&data)
                .arg("--config")
                .arg(&path),
        )?;
        Ok(Setup {
            broker,
            pki,
            plain_port,
            sasl_port,
            ssl_port,
            metrics,
            _dir: dir,
        })
    }

    fn open() -> Result<Setup> {
        Setup::start("", "allow_everyone_if_no_acl_found = true")
    }

    fn sasl_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sasl_port))
    }

    fn failures(&self) -> Result<f64> {
        read_metrics(self.metrics)?
            .value(FAILURES, &[])
            .with_context(|| format!("no {FAILURES} in /metrics"))
    }

    /// kcat `-X` settings for `mechanism` on the SASL_PLAINTEXT (`tls = false`) or SASL_SSL
    /// listener, and its bootstrap address.
    fn kcat_sasl(
        &self,
        tls: bool,
        mechanism: &str,
        user: &str,
        password: &str,
    ) -> (String, Vec<String>) {
        let mut args = vec![
            "-X".to_string(),
            format!(
                "security.protocol={}",
                if tls { "sasl_ssl" } else { "sasl_plaintext" }
            ),
            "-X".into(),
            format!("sasl.mechanisms={mechanism}"),
            "-X".into(),
            format!("sasl.username={user}"),
            "-X".into(),
            format!("sasl.password={password}"),
        ];
        if tls {
            args.extend([
                "-X".into(),
                format!("ssl.ca.location={}", self.pki.ca.display()),
            ]);
            (format!("localhost:{}", self.ssl_port), args)
        } else {
            (format!("127.0.0.1:{}", self.sasl_port), args)
        }
    }

    fn client(&self, mechanism: SaslMechanism, user: &str, password: &str) -> Result<Client> {
        let mut config = ClientConfig::new(format!("localhost:{}", self.ssl_port), "sasl-test");
        config.connect_timeout = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        config.security = SecurityConfig {
            tls: Some(TlsSettings {
                ca_file: Some(self.pki.ca.clone()),
                ..TlsSettings::default()
            }),
            sasl: Some(SaslSettings {
                mechanism,
                username: user.into(),
                password: password.into(),
            }),
        };
        Ok(Client::try_new(config)?)
    }
}

/// The part of kcat's error after "SASL authentication error: ", up to " (after".
fn kcat_reason(error: &anyhow::Error) -> Option<String> {
    let text = format!("{error:#}");
    let start = text.find("SASL authentication error: ")? + "SASL authentication error: ".len();
    let rest = &text[start..];
    Some(rest[..rest.find(" (after").unwrap_or(rest.len())].to_string())
}

fn record(value: &str) -> OutRecord {
    OutRecord {
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    }
}

async fn produce(client: &Client, topic: &str, values: &[&str]) -> Result<()> {
    client
        .create_topic(&NewTopic {
            name: topic.into(),
            partitions: 1,
            replication_factor: -1,
            configs: Vec::new(),
        })
        .await?;
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let batch = PartitionBatch {
        topic: topic.into(),
        partition: 0,
        records: values.iter().map(|v| record(v)).collect(),
    };
    for r in producer.send(vec![batch]).await {
        r?;
    }
    Ok(())
}

async fn values(client: &Client, topic: &str) -> Result<Vec<String>> {
    let fetched = client.fetch(topic, 0, 0, FetchOptions::default()).await?;
    Ok(fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect())
}

#[test]
fn given_each_mechanism_when_kcat_authenticates_should_produce_consume_and_refuse_bad_credentials_alike()
-> Result<()> {
    let s = Setup::open()?;
    for tls in [false, true] {
        for mechanism in MECHANISMS {
            let (bootstrap, args) = s.kcat_sasl(tls, mechanism, ALICE, ALICE_PASSWORD);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let topic = format!(
                "kcat-{}-{}",
                if tls { "ssl" } else { "plain" },
                mechanism.to_lowercase()
            );
            kcat::produce(&bootstrap, &topic, Some(0), "one\ntwo\n", &args)?;
            let read = kcat::run(
                &[
                    &[
                        "-C",
                        "-b",
                        &bootstrap,
                        "-t",
                        &topic,
                        "-p",
                        "0",
                        "-o",
                        "beginning",
                        "-e",
                        "-q",
                        "-f",
                        "%s\\n",
                    ][..],
                    &args,
                ]
                .concat(),
                b"",
                kcat::KCAT_TIMEOUT,
            )?;
            ensure!(
                read.stdout.lines().collect::<Vec<_>>() == ["one", "two"],
                "{mechanism} tls={tls}: consumed {:?}",
                read.stdout
            );
        }
    }
    ensure!(s.failures()? == 0.0, "no failure yet");
    let mut refused = 0;
    for mechanism in MECHANISMS {
        let mut reasons = Vec::new();
        for (user, password) in [(ALICE, WRONG_PASSWORD), ("mallory", ALICE_PASSWORD)] {
            let (bootstrap, args) = s.kcat_sasl(false, mechanism, user, password);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let Err(error) = kcat::produce(&bootstrap, "refused", Some(0), "nope\n", &args) else {
                bail!("{mechanism}: {user} with a bad password was let in");
            };
            let reason =
                kcat_reason(&error).with_context(|| format!("{mechanism} {user}: {error:#}"))?;
            reasons.push(reason);
            refused += 1;
        }
        ensure!(
            reasons[0] == reasons[1],
            "{mechanism}: a wrong password and an unknown user are told apart: {reasons:?}"
        );
        ensure!(
            reasons[0]
                == format!(
                    "Authentication failed: invalid credentials with SASL mechanism {mechanism}"
                ),
            "{mechanism}: {}",
            reasons[0]
        );
    }
    let log = s.broker.log();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SASL authentication failed"))
        .collect();
    ensure!(
        logged.len() >= refused,
        "{} failures logged, {refused} expected:\n{log}",
        logged.len()
    );
    for line in &logged {
        ensure!(
            line.contains("peer=127.0.0.1:") && line.contains("mechanism="),
            "{line}"
        );
    }
    ensure!(
        logged.iter().any(|l| l.contains("user=\"mallory\"")),
        "the unknown user is named in the log"
    );
    ensure!(
        s.failures()? == logged.len() as f64,
        "metrics and log disagree"
    );
    for secret in [ALICE_PASSWORD, WRONG_PASSWORD] {
        ensure!(!log.contains(secret), "a password reached the log");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_runnel_client_over_sasl_ssl_should_authenticate_with_each_mechanism() -> Result<()> {
    let s = Setup::open()?;
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let client = s.client(mechanism, ALICE, ALICE_PASSWORD)?;
        let topic = format!("client-{}", mechanism.name().to_lowercase());
        produce(&client, &topic, &["a", "b"]).await?;
        ensure!(values(&client, &topic).await? == ["a", "b"], "{mechanism}");
        let wrong = s.client(mechanism, ALICE, WRONG_PASSWORD)?;
        let error = wrong
            .metadata(&[], false)
            .await
            .expect_err("wrong password");
        ensure!(
            matches!(error, ClientError::Authentication { .. }),
            "{error:?}"
        );
        ensure!(!error.is_retriable(), "{error}");
        ensure!(error.to_string().contains("invalid credentials"), "{error}");
        ensure!(!error.to_string().contains(WRONG_PASSWORD), "{error}");
    }
    Ok(())
}

#[test]
fn given_the_python_clients_over_sasl_ssl_should_authenticate_and_manage_users() -> Result<()> {
    python::python_bin()?;
    let s = Setup::open()?;
    let ca = s.pki.ca.display().to_string();
    let bootstrap = format!("localhost:{}", s.ssl_port);
    let script = python::compat_script("python_sasl.py");
    let output = python::run_script(
        &script,
        &[bootstrap.as_str(), ca.as_str(), ALICE, ALICE_PASSWORD],
        Duration::from_secs(180),
    )?;
    ensure!(
        output.status.success(),
        "{} exited with {}\n{}",
        script.display(),
        output.status,
        output.printed()
    );
    print!("{}", output.stdout);
    ensure!(
        s.broker
            .log()
            .contains("SCRAM credentials altered user=py-carol principal=User:alice"),
        "the alteration is logged with who made it"
    );
    ensure!(!s.broker.log().contains("carol-secret-41"));
    Ok(())
}

#[test]
fn given_runnel_user_when_the_broker_runs_should_refuse_and_after_a_stop_should_manage_users()
-> Result<()> {
    let mut s = Setup::open()?;
    let data = s.broker.data_dir().display().to_string();
    let (status, output) = run_to_exit(
        &[
            "--data-dir",
            &data,
            "user",
            "add",
            "dave",
            "--password-file",
            "/dev/null",
        ],
        &[],
        Duration::from_secs(20),
    )?;
    ensure!(status.code() == Some(1), "{status}: {output}");
    ensure!(
        output.contains("stop the broker") && output.contains("AlterUserScramCredentials"),
        "{output}"
    );
    let status = s.broker.terminate()?;
    ensure!(status.success(), "{status}");
    // The password on stdin (a pipe: one line), SCRAM-SHA-512 only.
    let mut child = Command::new(runnel_bin()?)
        .args([
            "--data-dir",
            &data,
            "user",
            "add",
            "dave",
            "--mechanism",
            "SCRAM-SHA-512",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"dave-Marker-9931\n")?;
    let output = child.wait_with_output()?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(output.status.success(), "{printed}");
    ensure!(!printed.contains("dave-Marker-9931"), "echoed: {printed}");
    let (_, listed) = run_to_exit(
        &["--data-dir", &data, "user", "list"],
        &[],
        Duration::from_secs(20),
    )?;
    ensure!(
        listed.contains("dave\tSCRAM-SHA-512\t8192 iterations")
            && !listed.contains("dave\tSCRAM-SHA-256"),
        "{listed}"
    );
    s.broker.restart()?;
    let (bootstrap, args) = s.kcat_sasl(false, "SCRAM-SHA-512", "dave", "dave-Marker-9931");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kcat::produce(&bootstrap, "dave", Some(0), "hi\n", &args)?;
    let (bootstrap, args256) = s.kcat_sasl(false, "SCRAM-SHA-256", "dave", "dave-Marker-9931");
    let args256: Vec<&str> = args256.iter().map(String::as_str).collect();
    ensure!(
        kcat::produce(&bootstrap, "dave", Some(0), "hi\n", &args256).is_err(),
        "dave has no SCRAM-SHA-256 credential"
    );
    s.broker.terminate()?;
    let (status, output) = run_to_exit(
        &["--data-dir", &data, "user", "remove", "dave"],
        &[],
        Duration::from_secs(20),
    )?;
    ensure!(
        status.success() && output.contains("removed user \"dave\""),
        "{output}"
    );
    s.broker.restart()?;
    ensure!(
        kcat::produce(&bootstrap, "dave", Some(0), "hi\n", &args).is_err(),
        "a removed user was let in"
    );
    ensure!(!s.broker.log().contains("dave-Marker-9931"));
    Ok(())
}

/// Reads frames until the broker closes, failing if it answers anything.
fn expect_cut_off(conn: &mut RawConnection, within: Duration, what: &str) -> Result<()> {
    let received = conn
        .expect_closed(within)
        .with_context(|| what.to_string())?;
    ensure!(
        received == 0,
        "{what}: the broker answered {received} bytes before closing"
    );
    Ok(())
}

fn call_ok<R: kafka_protocol::protocol::Request>(
    conn: &mut RawConnection,
    request: &R,
    version: i16,
) -> Result<R::Response> {
    conn.call(request, version, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_unauthenticated_garbage_should_cut_it_off_while_an_authenticated_client_keeps_working()
-> Result<()> {
    let s = Setup::open()?;
    let addr = s.sasl_addr();
    let client = s.client(SaslMechanism::ScramSha512, ALICE, ALICE_PASSWORD)?;
    produce(&client, "steady", &["before"]).await?;
    // A client that never sends anything: closed at the authentication deadline.
    let opened = Instant::now();
    let mut silent = RawConnection::connect(addr)?;

    // A Produce before authentication: closed without an answer.
    let mut early = RawConnection::connect(addr)?;
    early.send(&frame(&encode_request(&ProduceRequest::default(), 3, 1)?))?;
    expect_cut_off(&mut early, Duration::from_secs(5), "Produce before SASL")?;

    // A frame header declaring 1 MiB: closed before the body is read.
    let mut huge = RawConnection::connect(addr)?;
    huge.send(&(1u32 << 20).to_be_bytes())?;
    expect_cut_off(&mut huge, Duration::from_secs(5), "1 MiB frame before SASL")?;

    // ApiVersions and the handshake are served; then an oversized SaslAuthenticate token.
    let mut big = RawConnection::connect(addr)?;
    let versions = call_ok(&mut big, &ApiVersionsRequest::default(), 0)?;
    ensure!(
        versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslHandshake as i16),
        "SaslHandshake is advertised"
    );
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let answer = call_ok(&mut big, &handshake, 1)?;
    ensure!(
        answer.error_code == 0 && answer.mechanisms.len() == 3,
        "{answer:?}"
    );
    let token =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(vec![b'x'; 16 * 1024]));
    big.send(&frame(&encode_request(&token, 1, 2)?))?;
    expect_cut_off(
        &mut big,
        Duration::from_secs(5),
        "16 KiB SaslAuthenticate token",
    )?;

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the list, then closed.
    let mut gssapi = RawConnection::connect(addr)?;
    let answer = call_ok(
        &mut gssapi,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI")),
        1,
    )?;
    ensure!(answer.error_code == 33, "{answer:?}");
    gssapi.expect_closed(Duration::from_secs(5))?;

    // SCRAM asking for channel binding: SASL_AUTHENTICATION_FAILED (58) with e=, then closed.
    let mut binding = RawConnection::connect(addr)?;
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256"));
    ensure!(call_ok(&mut binding, &handshake, 1)?.error_code == 0);
    let first = SaslAuthenticateRequest::default()
        .with_auth_bytes(Bytes::from_static(b"p=tls-server-end-point,,n=alice,r=abc"));
    let answer = call_ok(&mut binding, &first, 2)?;
    ensure!(answer.error_code == 58, "{answer:?}");
    ensure!(
        &answer.auth_bytes[..] == b"e=channel-binding-not-supported",
        "{answer:?}"
    );
    binding.expect_closed(Duration::from_secs(5))?;

    // SaslHandshake v0: bare PLAIN token, bare (empty) answer, then requests are served.
    let mut legacy = RawConnection::connect(addr)?;
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    ensure!(call_ok(&mut legacy, &handshake, 0)?.error_code == 0);
    legacy.send(&frame(format!("\0{ALICE}\0{ALICE_PASSWORD}").as_bytes()))?;
    let answer = legacy.read_frame(Duration::from_secs(10))?;
    ensure!(
        answer.is_empty(),
        "PLAIN's bare answer is empty: {answer:?}"
    );
    let meta = call_ok(
        &mut legacy,
        &MetadataRequest::default().with_topics(None),
        1,
    )?;
    ensure!(
        meta.topics
            .iter()
            .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "steady"))
    );
    // … and a bad bare token just closes.
    let mut legacy_bad = RawConnection::connect(addr)?;
    ensure!(call_ok(&mut legacy_bad, &handshake, 0)?.error_code == 0);
    legacy_bad.send(&frame(format!("\0{ALICE}\0{WRONG_PASSWORD}").as_bytes()))?;
    expect_cut_off(
        &mut legacy_bad,
        Duration::from_secs(10),
        "bad bare PLAIN token",
    )?;

    // The authenticated client never noticed.
    produce(&client, "steady", &["after"]).await?;
    ensure!(values(&client, "steady").await? == ["before", "after"]);

    expect_cut_off(&mut silent, Duration::from_secs(20), "silent client")?;
    let waited = opened.elapsed();
    ensure!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "the silent client was closed after {waited:?}, expected about 10 s"
    );
    let log = s.broker.log();
    for expected in [
        "request before SASL authentication (ILLEGAL_SASL_STATE)",
        "frames before authentication are limited to 8192 bytes",
        "SASL mechanism not enabled on this listener",
        "not authenticated within 10s",
    ] {
        ensure!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
    ensure!(!log.contains(WRONG_PASSWORD) && !log.contains(ALICE_PASSWORD));
    // GSSAPI handshake, channel binding and the bad bare token are failed authentications.
    ensure!(s.failures()? == 3.0, "{}", s.failures()?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_client_certificate_should_name_the_principal_after_its_subject() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::generate(dir.path())?;
    let port = free_port()?;
    let config = format!(
        r#"
[authorization]
super_users = ["User:CN=truck-7"]

[[listener]]
name = "MTLS"
protocol = "SSL"
listen = "127.0.0.1:{port}"
advertised = "localhost:{port}"
[listener.tls]
cert_file = "{}"
key_file = "{}"
client_auth = "required"
client_ca_file = "{}"
"#,
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let path = dir.path().join("runnel.toml");
    std::fs::write(&path, config)?;
    let _broker = Broker::start(BrokerOptions::new().arg("--config").arg(&path))?;
    let client = |name: &str| -> Result<Client> {
        let (cert, key) = pki.client_cert(name)?;
        let mut config = ClientConfig::new(format!("localhost:{port}"), "mtls-test");
        config.request_timeout = Duration::from_secs(10);
        config.security = SecurityConfig {
            tls: Some(TlsSettings {
                ca_file: Some(pki.ca.clone()),
                cert_file: Some(cert),
                key_file: Some(key),
                server_name: None,
            }),
            sasl: None,
        };
        Ok(Client::try_new(config)?)
    };
    let truck = client("truck-7")?;
    produce(&truck, "mtls", &["from truck-7"]).await?;
    ensure!(values(&truck, "mtls").await? == ["from truck-7"]);
    let intruder = client("intruder")?;
    ensure!(
        produce(&intruder, "mtls", &["from intruder"])
            .await
            .is_err(),
        "User:CN=intruder is no super user and has no ACL"
    );
    ensure!(values(&truck, "mtls").await? == ["from truck-7"]);
    Ok(())
}

#[test]
fn given_connection_limits_should_refuse_extra_connections_per_ip_and_close_idle_ones() -> Result<()>
{
    let s = Setup::start(
        "max_connections_per_ip = 3\nconnections_max_idle_ms = 2000",
        "allow_everyone_if_no_acl_found = true",
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], s.plain_port));
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = RawConnection::connect(addr)?;
        call_ok(&mut conn, &ApiVersionsRequest::default(), 0)?;
        held.push(conn);
    }
    let mut fourth = RawConnection::connect(addr)?;
    expect_cut_off(
        &mut fourth,
        Duration::from_secs(2),
        "a 4th connection from one address",
    )?;
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut replacement = RawConnection::connect(addr)?;
    call_ok(&mut replacement, &ApiVersionsRequest::default(), 0)?;
    // Idle connections close after 2 s; one that keeps talking stays.
    let started = Instant::now();
    let mut busy = held.pop().context("held")?;
    while started.elapsed() < Duration::from_secs(3) {
        call_ok(&mut busy, &ApiVersionsRequest::default(), 0)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut idle = held.pop().context("held")?;
    idle.expect_closed(Duration::from_secs(5))?;
    replacement.expect_closed(Duration::from_secs(5))?;
    call_ok(&mut busy, &ApiVersionsRequest::default(), 0)?;
    ensure!(s.broker.log().contains("server.max_connections_per_ip"));
    Ok(())
}

/// Collects the errors librdkafka reports through the client's error callback.
#[derive(Default)]
struct ErrorLog(std::sync::Mutex<Vec<(Option<rdkafka::types::RDKafkaErrorCode>, String)>>);

impl rdkafka::ClientContext for ErrorLog {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let mut errors = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        errors.push((error.rdkafka_error_code(), format!("{error}: {reason}")));
    }
}

impl rdkafka::producer::ProducerContext for ErrorLog {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_rdkafka_over_sasl_ssl_with_scram_sha_512_should_round_trip_in_a_group_and_refuse_a_wrong_password()
-> Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, FutureRecord, Producer as _};
    use rdkafka::types::RDKafkaErrorCode;
    use runnel_tests::{clients, groups};

    const N: usize = 500;
    let s = Setup::open()?;
    let topic = "rdkafka-scram";
    let client = s.client(SaslMechanism::ScramSha512, ALICE, ALICE_PASSWORD)?;
    client
        .create_topic(&NewTopic {
            name: topic.into(),
            partitions: 1,
            replication_factor: -1,
            configs: Vec::new(),
        })
        .await?;
    let bootstrap = format!("localhost:{}", s.ssl_port);
    let ca = s.pki.ca.display().to_string();
    let security = |password: &'static str| {
        vec![
            ("security.protocol", "SASL_SSL".to_string()),
            ("sasl.mechanisms", "SCRAM-SHA-512".into()),
            ("sasl.username", ALICE.into()),
            ("sasl.password", password.into()),
            ("ssl.ca.location", ca.clone()),
        ]
    };
    let good = security(ALICE_PASSWORD);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Every byte value, in records of varying length, with keys.
    let values: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            (0..(i % 300 + 1))
                .map(|j| ((i * 7 + j) % 256) as u8)
                .collect()
        })
        .collect();
    let keys: Vec<String> = (0..N).map(|i| format!("k{i}")).collect();
    let producer = clients::producer(&bootstrap, &[&good[..], &[("acks", "all")]].concat())?;
    let deliveries = clients::send_all(
        &producer,
        values.iter().zip(&keys).map(|(v, k)| {
            FutureRecord::to(topic)
                .key(k.as_str())
                .payload(v.as_slice())
        }),
    )
    .await?;
    ensure!(deliveries.len() == N, "{} delivered", deliveries.len());

    let consumer = groups::subscribed(&bootstrap, "scram-app", topic, &good)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::with_capacity(N);
    while seen.len() < N {
        ensure!(
            Instant::now() < deadline,
            "consumed {} of {N} records within 30 s",
            seen.len()
        );
        if let Some(r) = groups::poll_record(&consumer, Duration::from_millis(200))? {
            seen.push(r);
        }
    }
    for (i, r) in seen.iter().enumerate() {
        ensure!(r.offset == i as i64, "record {i} at offset {}", r.offset);
        ensure!(r.key.as_deref() == Some(keys[i].as_bytes()), "key {i}");
        ensure!(
            r.value.as_deref() == Some(values[i].as_slice()),
            "value {i} differs"
        );
    }
    groups::commit(&consumer, topic, &[(0, N as i64)].into())?;
    drop(consumer);

    // A wrong password: an authentication error through the error callback, within seconds,
    // and the record is never delivered.
    let bad = security(WRONG_PASSWORD);
    let mut config = clients::base_config(&bootstrap);
    for (key, value) in &bad {
        config.set(*key, value);
    }
    let refused: BaseProducer<ErrorLog> = config
        .set("acks", "all")
        .set("message.timeout.ms", "5000")
        .create_with_context(ErrorLog::default())
        .context("creating the refused producer")?;
    refused
        .send(BaseRecord::<(), _>::to(topic).payload("nope"))
        .map_err(|(e, _)| e)?;
    let start = Instant::now();
    let auth_error = loop {
        refused.poll(Duration::from_millis(100));
        let errors = refused
            .context()
            .0
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        if let Some((_, text)) = errors
            .iter()
            .find(|(code, _)| *code == Some(RDKafkaErrorCode::Authentication))
        {
            break text.clone();
        }
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "no authentication error within 20 s; errors: {errors:?}"
        );
    };
    ensure!(auth_error.contains("SCRAM-SHA-512"), "{auth_error}");
    ensure!(!auth_error.contains(WRONG_PASSWORD), "{auth_error}");
    let flushed = refused.flush(Duration::from_secs(10));
    ensure!(
        refused.in_flight_count() == 0,
        "the refused record is still queued after the flush: {flushed:?}"
    );
    let after = client
        .fetch(topic, 0, N as i64, FetchOptions::default())
        .await?;
    ensure!(
        after.records.is_empty(),
        "{} records after the refused produce",
        after.records.len()
    );
    Ok(())
}
