//! `runnel-client` over TLS and with SASL, against the real broker behind a real TLS terminator
//! (socat with OpenSSL: the broker has no TLS listener yet). The broker advertises the
//! terminator's port, so Metadata sends the client back through TLS for every broker
//! connection.
//!
//! - the right CA: records go through and come back byte for byte, over TLS only;
//! - a foreign CA, or a name the certificate does not carry: a non-retriable error naming the
//!   certificate problem, within the connect timeout;
//! - mutual TLS (`verify=1`): a client certificate of the CA is let in, none or a foreign one
//!   is not;
//! - SASL against a broker without SASL (ours, for now): a clear non-retriable
//!   authentication error for every mechanism, plain or over TLS, never the password.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use runnel_client::{
    Client, ClientConfig, ClientError, FetchOptions, NewTopic, OutRecord, PartitionBatch, Producer,
    ProducerConfig, SaslMechanism, SaslSettings, SecurityConfig, TlsSettings,
};
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;
use runnel_tests::harness::socat::{TlsTerminator, TlsTerminatorOptions};
use runnel_tests::{Broker, BrokerOptions};
use tempfile::TempDir;

const TOPIC: &str = "secure";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Far more than a failing connection may take (connect timeout plus one request).
const FAILURE_DEADLINE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "pw-that-must-never-show";

/// A broker reachable only through a TLS terminator, and the PKI that terminator uses.
struct TlsBroker {
    proxy: TlsTerminator,
    pki: TestPki,
    broker: Broker,
    _dir: TempDir,
}

impl TlsBroker {
    fn start(require_client_cert: bool) -> Result<TlsBroker> {
        let dir = tempfile::tempdir()?;
        let pki = TestPki::generate(dir.path())?;
        let port = free_port()?;
        let broker = Broker::start(
            BrokerOptions::new().flag("--advertised-listener", format!("127.0.0.1:{port}")),
        )?;
        let proxy = TlsTerminator::start(TlsTerminatorOptions {
            port,
            target_port: broker.addr().port(),
            pki: pki.clone(),
            require_client_cert,
        })?;
        Ok(TlsBroker {
            proxy,
            pki,
            broker,
            _dir: dir,
        })
    }

    fn config(&self, tls: TlsSettings) -> ClientConfig {
        config(
            &self.proxy.addr(),
            SecurityConfig {
                tls: Some(tls),
                sasl: None,
            },
        )
    }

    /// Logs of both processes, for failure messages.
    fn logs(&self) -> String {
        format!(
            "socat log:\n{}\nbroker log:\n{}",
            self.proxy.log(),
            self.broker.log()
        )
    }
}

fn config(bootstrap: &str, security: SecurityConfig) -> ClientConfig {
    ClientConfig {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: Duration::from_secs(10),
        security,
        ..ClientConfig::new(bootstrap, "client-tls-test")
    }
}

fn trusting(ca: &Path) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.to_path_buf()),
        ..TlsSettings::default()
    }
}

fn with_client_cert(ca: &Path, (cert, key): (PathBuf, PathBuf)) -> TlsSettings {
    TlsSettings {
        cert_file: Some(cert),
        key_file: Some(key),
        ..trusting(ca)
    }
}

/// Binary keys, values and headers of every byte value, of varied lengths.
fn record(i: usize) -> OutRecord {
    let bytes = |len: usize| -> Bytes { (0..len).map(|j| ((i * 31 + j) % 256) as u8).collect() };
    OutRecord {
        key: (!i.is_multiple_of(5)).then(|| bytes(i % 40)),
        value: Some(bytes(1 + (i * 997) % 5000)),
        headers: vec![
            ("h\u{e9}".into(), Some(bytes(i % 17))),
            ("none".into(), None),
        ],
        timestamp_ms: 1_700_000_000_000 + i as i64,
    }
}

async fn create_topic(client: &Client, partitions: i32) -> Result<()> {
    let created = client
        .create_topic(&NewTopic {
            name: TOPIC.into(),
            partitions,
            replication_factor: -1,
            configs: vec![],
        })
        .await?;
    ensure!(created, "topic {TOPIC} was not created");
    Ok(())
}

/// Produces `count` records round-robin over `partitions` and fetches each partition back,
/// comparing every field.
async fn round_trip(client: &Client, partitions: i32, count: usize) -> Result<()> {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let sent: Vec<Vec<OutRecord>> = (0..partitions as usize)
        .map(|p| {
            (0..count)
                .filter(|i| i % partitions as usize == p)
                .map(record)
                .collect()
        })
        .collect();
    let batches = sent
        .iter()
        .enumerate()
        .map(|(p, records)| PartitionBatch {
            topic: TOPIC.into(),
            partition: p as i32,
            records: records.clone(),
        })
        .collect();
    for offset in producer.send(batches).await {
        ensure!(offset? == 0, "a fresh partition starts at offset 0");
    }
    for (partition, expected) in sent.iter().enumerate() {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let fetched = client
                .fetch(
                    TOPIC,
                    partition as i32,
                    got.len() as i64,
                    FetchOptions::default(),
                )
                .await?;
            ensure!(!fetched.records.is_empty(), "fetch returned nothing");
            got.extend(fetched.records);
        }
        ensure!(
            got.len() == expected.len(),
            "partition {partition}: {}",
            got.len()
        );
        for (offset, (got, sent)) in got.iter().zip(expected).enumerate() {
            let same = got.offset == offset as i64
                && got.key == sent.key
                && got.value == sent.value
                && got.headers == sent.headers
                && got.timestamp_ms == sent.timestamp_ms;
            ensure!(same, "partition {partition} offset {offset} differs");
        }
    }
    Ok(())
}

/// The error of a call that must fail, within [`FAILURE_DEADLINE`] (it must not hang).
async fn failure<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = runnel_client::Result<T>>,
) -> Result<ClientError> {
    let started = Instant::now();
    let result = tokio::time::timeout(FAILURE_DEADLINE, call)
        .await
        .context("the call hung instead of failing")?;
    match result {
        Ok(v) => bail!("the call succeeded: {v:?}"),
        Err(e) => {
            eprintln!("failed after {:?}: {e}", started.elapsed());
            Ok(e)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_right_ca_when_producing_over_tls_should_fetch_back_every_byte() -> Result<()> {
    let setup = TlsBroker::start(false)?;
    let client = Client::try_new(setup.config(trusting(&setup.pki.ca)))?;
    let work = async {
        create_topic(&client, 2).await?;
        round_trip(&client, 2, 300).await?;
        // Metadata sent the client to the TLS port, not to the broker's own.
        let meta = client.metadata(&[TOPIC], false).await?;
        let ports: Vec<i32> = meta.brokers.iter().map(|b| b.port).collect();
        ensure!(ports == vec![i32::from(setup.proxy.port())], "{ports:?}");
        anyhow::Ok(())
    };
    work.await.with_context(|| setup.logs())?;

    // The terminator's port speaks only TLS: a plaintext client gets nowhere.
    let plain = Client::new(config(&setup.proxy.addr(), SecurityConfig::default()));
    let error = failure(plain.metadata(&[], false)).await?;
    ensure!(!error.is_security(), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_foreign_ca_or_a_wrong_name_when_connecting_should_fail_naming_the_certificate()
-> Result<()> {
    let setup = TlsBroker::start(false)?;
    let other_dir = tempfile::tempdir()?;
    let foreign = TestPki::generate(other_dir.path())?;

    let client = Client::try_new(setup.config(trusting(&foreign.ca)))?;
    let error = failure(client.metadata(&[], false)).await?;
    ensure!(matches!(error, ClientError::Tls { .. }), "{error:?}");
    ensure!(!error.is_retriable(), "{error}");
    let text = error.to_string();
    ensure!(
        text.contains("certificate") && text.contains("UnknownIssuer"),
        "{text}"
    );
    // The producer gives up at once instead of retrying for its delivery timeout.
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let started = Instant::now();
    let results = producer
        .send(vec![PartitionBatch {
            topic: TOPIC.into(),
            partition: 0,
            records: vec![record(1)],
        }])
        .await;
    let error = results
        .into_iter()
        .next()
        .context("one result per batch")?
        .expect_err("nothing can be produced");
    ensure!(error.to_string().contains("certificate"), "{error}");
    ensure!(
        started.elapsed() < ProducerConfig::default().delivery_timeout,
        "the producer retried a certificate error"
    );

    let wrong_name = TlsSettings {
        server_name: Some("kafka.example.com".into()),
        ..trusting(&setup.pki.ca)
    };
    let client = Client::try_new(setup.config(wrong_name))?;
    let error = failure(client.metadata(&[], false)).await?;
    ensure!(matches!(error, ClientError::Tls { .. }), "{error:?}");
    ensure!(error.to_string().contains("certificate"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_mutual_tls_when_connecting_should_admit_only_a_client_certificate_of_the_ca()
-> Result<()> {
    let setup = TlsBroker::start(true)?;
    let ca = &setup.pki.ca;

    let client =
        Client::try_new(setup.config(with_client_cert(ca, setup.pki.client_cert("edge-1")?)))?;
    async {
        create_topic(&client, 1).await?;
        round_trip(&client, 1, 50).await
    }
    .await
    .with_context(|| setup.logs())?;

    let anonymous = Client::try_new(setup.config(trusting(ca)))?;
    let error = failure(anonymous.metadata(&[], false)).await?;
    ensure!(matches!(error, ClientError::Tls { .. }), "{error:?}");
    ensure!(!error.is_retriable(), "{error}");
    ensure!(error.to_string().contains("client certificate"), "{error}");

    let other_dir = tempfile::tempdir()?;
    let foreign = TestPki::generate(other_dir.path())?;
    let stranger =
        Client::try_new(setup.config(with_client_cert(ca, foreign.client_cert("stranger")?)))?;
    let error = failure(stranger.metadata(&[], false)).await?;
    ensure!(matches!(error, ClientError::Tls { .. }), "{error:?}");
    ensure!(error.to_string().contains("certificate"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_broker_without_sasl_when_authenticating_should_fail_clearly_and_not_retry()
-> Result<()> {
    let setup = TlsBroker::start(false)?;
    let plain_addr = setup.broker.bootstrap();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let sasl = SaslSettings {
            mechanism,
            username: "edge-7".into(),
            password: PASSWORD.into(),
        };
        // SASL_PLAINTEXT to the broker itself, and SASL_SSL through the terminator.
        for (bootstrap, tls) in [
            (plain_addr.clone(), None),
            (setup.proxy.addr(), Some(trusting(&setup.pki.ca))),
        ] {
            let security = SecurityConfig {
                tls,
                sasl: Some(sasl.clone()),
            };
            let protocol = security.protocol();
            let client = Client::try_new(config(&bootstrap, security))?;
            let error = failure(client.metadata(&[], false)).await?;
            let text = error.to_string();
            ensure!(
                matches!(error, ClientError::Authentication { .. }),
                "{protocol} {mechanism}: {error:?}"
            );
            ensure!(!error.is_retriable(), "{text}");
            ensure!(
                text.contains("authentication failed for user edge-7")
                    && text.contains("SaslHandshake"),
                "{text}"
            );
            ensure!(!text.contains(PASSWORD), "the password leaked: {text}");
            ensure!(
                !format!("{error:?} {:?}", client.config()).contains(PASSWORD),
                "the password leaked into Debug"
            );
        }
    }
    Ok(())
}
