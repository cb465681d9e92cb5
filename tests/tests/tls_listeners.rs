//! Named listeners and TLS on the broker itself (`[[listener]]` tables), with real clients:
//! kcat (librdkafka with OpenSSL) over `security.protocol=ssl`, runnel-client over rustls, and
//! rdkafka over the PLAINTEXT listener of the same broker.
//!
//! - a PLAINTEXT and an SSL listener side by side: the same records through both, and Metadata
//!   answers with the address of the listener the client came in on;
//! - mutual TLS: a client certificate of the CA is let in, none is refused;
//! - SIGHUP reloads the certificate: new connections get the new one, an open connection keeps
//!   working;
//! - plaintext Kafka bytes and silence on the TLS port are cut off without affecting others;
//! - a broken listener config stops start-up naming the key.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use runnel_client::{
    Client, ClientConfig, FetchOptions, NewTopic, OutRecord, PartitionBatch, Producer,
    ProducerConfig, SecurityConfig, TlsSettings,
};
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;
use runnel_tests::{Broker, BrokerOptions, kcat, run_to_exit};

struct Setup {
    broker: Broker,
    pki: TestPki,
    plain_port: u16,
    tls_port: u16,
    /// The files the listener reads (copies of the PKI's, so a test can swap them).
    cert: PathBuf,
    key: PathBuf,
    dir: tempfile::TempDir,
}

fn start(client_auth: &str) -> Result<Setup> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::generate(&dir.path().join("pki-a"))?;
    let cert = dir.path().join("listener.pem");
    let key = dir.path().join("listener.key");
    std::fs::copy(&pki.server_cert, &cert)?;
    std::fs::copy(&pki.server_key, &key)?;
    let (plain_port, tls_port) = (free_port()?, free_port()?);
    let client_ca = if client_auth == "none" {
        String::new()
    } else {
        format!("client_ca_file = \"{}\"\n", pki.ca.display())
    };
    // An SSL listener makes ACLs closed by default; these tests are about TLS, not ACLs.
    let config = format!(
        r#"
[authorization]
allow_everyone_if_no_acl_found = true

[[listener]]
name = "INTERNAL"
protocol = "PLAINTEXT"
listen = "127.0.0.1:{plain_port}"

[[listener]]
name = "SECURE"
protocol = "SSL"
listen = "127.0.0.1:{tls_port}"
advertised = "localhost:{tls_port}"
[listener.tls]
cert_file = "{}"
key_file = "{}"
client_auth = "{client_auth}"
{client_ca}"#,
        cert.display(),
        key.display()
    );
    let path = dir.path().join("runnel.toml");
    std::fs::write(&path, config)?;
    let broker = Broker::start(BrokerOptions::new().arg("--config").arg(&path))?;
    ensure!(
        broker.addr().port() == plain_port,
        "the first listener is the one the harness sees"
    );
    Ok(Setup {
        broker,
        pki,
        plain_port,
        tls_port,
        cert,
        key,
        dir,
    })
}

fn tls_client(port: u16, ca: &Path, client_cert: Option<(PathBuf, PathBuf)>) -> Result<Client> {
    let mut config = ClientConfig::new(format!("localhost:{port}"), "tls-listener-test");
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(10);
    let (cert_file, key_file) = match client_cert {
        Some((c, k)) => (Some(c), Some(k)),
        None => (None, None),
    };
    config.security = SecurityConfig {
        tls: Some(TlsSettings {
            ca_file: Some(ca.to_path_buf()),
            cert_file,
            key_file,
            server_name: None,
        }),
        sasl: None,
    };
    Ok(Client::try_new(config)?)
}

/// Writes `values` to partition 0 of `topic`, creating the topic if needed.
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
    let records = values
        .iter()
        .map(|v| OutRecord {
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        })
        .collect();
    for r in producer
        .send(vec![PartitionBatch {
            topic: topic.into(),
            partition: 0,
            records,
        }])
        .await
    {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_plaintext_and_ssl_listeners_should_serve_both_and_advertise_the_one_used()
-> Result<()> {
    let s = start("none")?;
    // rdkafka (no OpenSSL in this build) writes through the PLAINTEXT listener …
    let producer = runnel_tests::clients::producer(&format!("127.0.0.1:{}", s.plain_port), &[])?;
    runnel_tests::clients::send_one(
        &producer,
        rdkafka::producer::FutureRecord::to("mixed")
            .key("k")
            .payload("via plaintext"),
    )
    .await?;
    // … runnel-client writes and reads through TLS …
    let client = tls_client(s.tls_port, &s.pki.ca, None)?;
    produce(&client, "mixed", &["via tls"]).await?;
    ensure!(values(&client, "mixed").await? == ["via plaintext", "via tls"]);
    let meta = client.metadata(&[], false).await?;
    let hosts: Vec<(String, i32)> = meta
        .brokers
        .iter()
        .map(|b| (b.host.clone(), b.port))
        .collect();
    ensure!(
        hosts == [("localhost".to_string(), i32::from(s.tls_port))],
        "Metadata over TLS advertised {hosts:?}"
    );
    // … and kcat (librdkafka + OpenSSL) lists and reads over TLS.
    let bootstrap = format!("localhost:{}", s.tls_port);
    let ca = s.pki.ca.display().to_string();
    let tls_args = ["-X", "security.protocol=ssl", "-X"];
    let ca_arg = format!("ssl.ca.location={ca}");
    let listed = kcat::run(
        &[&["-b", &bootstrap, "-L"][..], &tls_args, &[ca_arg.as_str()]].concat(),
        b"",
        Duration::from_secs(30),
    )?;
    ensure!(
        listed
            .stdout
            .contains(&format!("at localhost:{}", s.tls_port)),
        "kcat -L over TLS:\n{}",
        listed.stdout
    );
    let read = kcat::run(
        &[
            &["-b", &bootstrap, "-C", "-t", "mixed", "-e", "-f", "%s\\n"][..],
            &tls_args,
            &[ca_arg.as_str()],
        ]
        .concat(),
        b"",
        Duration::from_secs(30),
    )?;
    ensure!(
        read.stdout.lines().collect::<Vec<_>>() == ["via plaintext", "via tls"],
        "kcat over TLS read {:?}",
        read.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_required_client_auth_should_admit_only_clients_with_a_certificate_of_the_ca()
-> Result<()> {
    let s = start("required")?;
    let cert = s.pki.client_cert("truck-7")?;
    let good = tls_client(s.tls_port, &s.pki.ca, Some(cert))?;
    produce(&good, "mtls", &["with a certificate"]).await?;
    let anonymous = tls_client(s.tls_port, &s.pki.ca, None)?;
    let started = Instant::now();
    let refused = anonymous.metadata(&[], false).await;
    let Err(e) = refused else {
        bail!("a client without a certificate was let in");
    };
    ensure!(
        started.elapsed() < Duration::from_secs(20),
        "refusal took {:?}",
        started.elapsed()
    );
    // The client can see the alert a moment before the broker's log line is written.
    runnel_tests::wait_until(
        "the refused handshake to be logged",
        Duration::from_secs(5),
        || {
            Ok(s.broker
                .log()
                .contains("TLS handshake failed")
                .then_some(()))
        },
    )
    .with_context(|| format!("the broker did not log the refused handshake ({e})"))?;
    // The refused client did not disturb the admitted one.
    ensure!(values(&good, "mtls").await? == ["with a certificate"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_new_certificate_files_when_sighup_should_serve_them_to_new_connections_only()
-> Result<()> {
    let s = start("none")?;
    let old_ca = s.pki.ca.clone();
    let open = tls_client(s.tls_port, &old_ca, None)?;
    produce(&open, "reload", &["before"]).await?;
    let next = TestPki::generate(&s.dir.path().join("pki-b"))?;
    std::fs::copy(&next.server_cert, &s.cert)?;
    std::fs::copy(&next.server_key, &s.key)?;
    s.broker.hangup()?;
    let reloaded = s.broker.log();
    runnel_tests::wait_until("the reload to be logged", Duration::from_secs(10), || {
        Ok(s.broker
            .log()
            .contains("reloaded TLS certificate")
            .then_some(()))
    })
    .with_context(|| format!("log:\n{reloaded}"))?;
    // New connections: the new CA is trusted, the old one no longer matches.
    let fresh = tls_client(s.tls_port, &next.ca, None)?;
    produce(&fresh, "reload", &["after"]).await?;
    let stale = tls_client(s.tls_port, &old_ca, None)?;
    ensure!(
        stale.metadata(&[], false).await.is_err(),
        "a client trusting only the old CA still connected"
    );
    // The connection opened before the reload keeps its session.
    produce(&open, "reload", &["still open"]).await?;
    ensure!(values(&fresh, "reload").await? == ["before", "after", "still open"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_plaintext_bytes_on_the_tls_port_should_cut_them_off_and_keep_serving() -> Result<()>
{
    use std::io::{Read, Write};
    let s = start("none")?;
    // An ApiVersions v0 request in plaintext, as a misconfigured client would send it.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", s.tls_port))?;
    raw.set_read_timeout(Some(Duration::from_secs(15)))?;
    raw.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 255, 255])?;
    let mut buf = [0u8; 256];
    let started = Instant::now();
    loop {
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue, // a TLS alert, then the close
            Err(e) => bail!("the broker neither answered nor closed: {e}"),
        }
    }
    ensure!(started.elapsed() < Duration::from_secs(12));
    // A silent client holds nothing up for others meanwhile.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", s.tls_port))?;
    let client = tls_client(s.tls_port, &s.pki.ca, None)?;
    produce(&client, "after-garbage", &["fine"]).await?;
    ensure!(values(&client, "after-garbage").await? == ["fine"]);
    Ok(())
}

#[test]
fn given_broken_listener_tables_should_refuse_to_start_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::generate(dir.path())?;
    let other = TestPki::generate(&dir.path().join("other"))?;
    let cases = [
        (
            "[[listener]]\nname = \"SECURE\"\nprotocol = \"SSL\"\nlisten = \"127.0.0.1:0\"\n"
                .to_string(),
            "listener.tls",
        ),
        (
            format!(
                "[[listener]]\nname = \"SECURE\"\nprotocol = \"SSL\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                pki.server_cert.display(),
                other.server_key.display()
            ),
            "do not make a usable certificate",
        ),
        (
            "[[listener]]\nname = \"lower\"\nprotocol = \"PLAINTEXT\"\nlisten = \"127.0.0.1:0\"\n"
                .to_string(),
            "listener.name",
        ),
        (
            format!(
                "[[listener]]\nname = \"SECURE\"\nprotocol = \"SSL\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_auth = \"required\"\n",
                pki.server_cert.display(),
                pki.server_key.display()
            ),
            "client_ca_file",
        ),
    ];
    for (i, (config, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, config)?;
        let path = path.display().to_string();
        let (status, output) = run_to_exit(
            &["--config", &path, "--check-config"],
            &[],
            Duration::from_secs(20),
        )?;
        ensure!(
            status.code() == Some(2),
            "case {i}: exit {status:?}: {output}"
        );
        ensure!(
            output.contains(expected),
            "case {i}: no {expected:?} in: {output}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_plaintext_listener_only_when_created_by_default_should_still_serve_plain_clients()
-> Result<()> {
    // No [[listener]] tables: the zero-config PLAINTEXT listener on server.listen.
    let broker = Broker::start(BrokerOptions::new())?;
    let client = Client::try_new(ClientConfig::new(broker.bootstrap(), "plain"))?;
    produce(&client, "plain", &["x"]).await?;
    ensure!(values(&client, "plain").await? == ["x"]);
    Ok(())
}
