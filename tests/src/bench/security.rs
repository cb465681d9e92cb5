//! Scenario `security` (opt-in): what TLS and SASL cost, PLAINTEXT versus SASL_SSL with
//! SCRAM-SHA-512, in the same run against the same broker.
//!
//! A run is: a test PKI ([`TestPki`]), a SCRAM user `bench` added with `runnel user add` to a
//! fresh data dir, then one `runnel` with two listeners, PLAINTEXT first (the address the
//! broker announces) and SASL_SSL, and `super_users = ["User:bench"]` plus
//! `allow_everyone_if_no_acl_found = true` (a broker with a SASL_SSL listener denies by
//! default, and PLAINTEXT clients are `User:ANONYMOUS`), so no ACL check differs between
//! the listeners. Over each listener, in turn: produce throughput
//! (acks=1, the produce scenario's code and settings), consume throughput of that topic (the
//! consume scenario's code), and the handshake time: from creating a fresh librdkafka client
//! to its first Metadata response, i.e. client set-up (including loading the CA), TCP
//! connect, TLS handshake, SASL handshake and SCRAM exchange, ApiVersions and Metadata; the
//! median of [`HANDSHAKES`]. The ratios SASL_SSL / PLAINTEXT are reported beside the numbers.
//!
//! Invariants:
//! - both listeners are measured in every run, on the same broker, so the ratios compare
//!   like with like; PLAINTEXT goes first each time;
//! - every record is checked by the consume code (size, offsets), over both listeners;
//! - `--client-config` overrides apply to both listeners' clients, after the security
//!   settings.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;

use super::broker::{Broker, BrokerSpec};
use super::client::{ClientSettings, ConsumerContextImpl};
use super::consume::{self, ConsumeSpec};
use super::deadline::Deadline;
use super::delivery::Acks;
use super::produce::{self, ProduceSpec};
use super::report::{Goal, Metric, Throughput};
use super::stats::median;

/// Fresh clients timed per listener for the handshake time.
const HANDSHAKES: usize = 20;
const USER: &str = "bench";
const PASSWORD: &str = "bench-Scram-4471";
const MECHANISM: &str = "SCRAM-SHA-512";
/// The issue's target: TLS may cost under 30% of plaintext throughput.
const GOAL_RATIO: f64 = 0.7;

/// One run of the scenario (records, sizes and partitions are the bench's own).
pub struct Case<'a> {
    pub broker: &'a BrokerSpec,
    pub client_overrides: &'a [(String, String)],
    pub topic_prefix: &'a str,
    pub records: u64,
    pub record_size: usize,
    /// Budget of each phase (produce, consume, handshakes) per listener.
    pub timeout: Duration,
}

/// What one listener measured.
struct Listener {
    produce: Throughput,
    consume: Throughput,
    /// Median time to the first Metadata response of a fresh client.
    handshake: Duration,
}

pub fn run(case: &Case<'_>) -> anyhow::Result<Vec<Metric>> {
    let dir = tempfile::Builder::new()
        .prefix("runnel-bench-security-")
        .tempdir()
        .context("creating a temporary directory for the PKI and config")?;
    let pki_dir = dir.path().join("pki");
    fs::create_dir_all(&pki_dir)?;
    let pki = TestPki::generate(&pki_dir).context("generating the test PKI (needs openssl)")?;
    let (plain_port, ssl_port) = (free_port()?, free_port()?);
    let config = dir.path().join("runnel.toml");
    fs::write(&config, broker_toml(&pki, plain_port, ssl_port))
        .with_context(|| format!("writing {}", config.display()))?;
    let password_file = dir.path().join("bench.pw");
    fs::write(&password_file, format!("{PASSWORD}\n"))?;
    let mut broker = Broker::start_prepared(case.broker, Some(&config), "127.0.0.1:0", |data| {
        add_user(&case.broker.bin, data, &password_file)
    })?;

    let plain = ClientSettings {
        bootstrap: broker.addr().to_owned(),
        overrides: case.client_overrides.to_vec(),
    };
    let mut overrides = security_settings(&pki);
    overrides.extend(case.client_overrides.iter().cloned());
    let secure = ClientSettings {
        bootstrap: format!("127.0.0.1:{ssl_port}"),
        overrides,
    };
    let plain = measure(case, &mut broker, "plaintext", &plain)?;
    let secure = measure(case, &mut broker, "sasl_ssl", &secure)?;
    Ok(metrics(&plain, &secure))
}

/// Fixed ports: a listener's advertised address defaults to its `listen`.
fn broker_toml(pki: &TestPki, plain_port: u16, ssl_port: u16) -> String {
    format!(
        r#"
[authorization]
allow_everyone_if_no_acl_found = true
super_users = ["User:{USER}"]

[[listener]]
name = "PLAIN"
protocol = "PLAINTEXT"
listen = "127.0.0.1:{plain_port}"

[[listener]]
name = "SECURE"
protocol = "SASL_SSL"
listen = "127.0.0.1:{ssl_port}"
sasl_mechanisms = ["{MECHANISM}"]
[listener.tls]
cert_file = "{}"
key_file = "{}"
"#,
        pki.server_cert.display(),
        pki.server_key.display()
    )
}

/// `runnel --data-dir DATA user add bench --password-file FILE`, before the broker starts.
fn add_user(bin: &Path, data: &Path, password_file: &Path) -> anyhow::Result<()> {
    let output = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(["user", "add", USER, "--password-file"])
        .arg(password_file)
        .env("NO_COLOR", "1")
        .output()
        .with_context(|| format!("running {} user add", bin.display()))?;
    if !output.status.success() {
        bail!(
            "`runnel user add {USER}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// librdkafka settings for the SASL_SSL listener (the test certificate names 127.0.0.1).
fn security_settings(pki: &TestPki) -> Vec<(String, String)> {
    [
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanisms", MECHANISM.to_owned()),
        ("sasl.username", USER.to_owned()),
        ("sasl.password", PASSWORD.to_owned()),
        ("ssl.ca.location", pki.ca.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn measure(
    case: &Case<'_>,
    broker: &mut Broker,
    label: &'static str,
    client: &ClientSettings,
) -> anyhow::Result<Listener> {
    let topic = format!("{}-security-{label}", case.topic_prefix);
    let spec = ProduceSpec {
        client,
        topic: &topic,
        acks: Acks::Leader,
        records: case.records,
        record_size: case.record_size,
    };
    let produced = produce::throughput(&spec, &Deadline::after("security", case.timeout));
    broker.ensure_running("the security scenario's produce")?;
    let produced = produced.with_context(|| format!("producing over {label}"))?;
    eprintln!("security {label} produce acks=1: {}", produced.summary());
    let spec = ConsumeSpec {
        client,
        topic: &topic,
        partitions: produced.partitions,
        records: case.records,
        record_size: case.record_size,
    };
    let consumed = consume::throughput(&spec, &Deadline::after("security", case.timeout));
    broker.ensure_running("the security scenario's consume")?;
    let consumed = consumed.with_context(|| format!("consuming over {label}"))?;
    eprintln!("security {label} consume: {}", consumed.summary());
    let handshake = handshake(client, &Deadline::after("security", case.timeout));
    broker.ensure_running("the security scenario's handshakes")?;
    let handshake = handshake.with_context(|| format!("handshakes over {label}"))?;
    eprintln!(
        "security {label} handshake (fresh client to first Metadata response, median of \
         {HANDSHAKES}): {:.2} ms",
        handshake.as_secs_f64() * 1e3
    );
    Ok(Listener {
        produce: produced,
        consume: consumed,
        handshake,
    })
}

/// The median time from creating a fresh client to its first Metadata response.
fn handshake(client: &ClientSettings, deadline: &Deadline) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(HANDSHAKES);
    for i in 0..HANDSHAKES {
        deadline.check(|| format!("handshake {i} of {HANDSHAKES}"))?;
        let timeout = deadline.remaining().min(Duration::from_secs(10));
        let start = Instant::now();
        let consumer: BaseConsumer<ConsumerContextImpl> = client
            .finish(&mut client.base())
            .create_with_context(ConsumerContextImpl::default())
            .context("creating a client")?;
        consumer
            .fetch_metadata(None, timeout)
            .with_context(|| format!("the first Metadata request of client {i}"))?;
        times.push(start.elapsed().as_secs_f64());
    }
    let secs = median(&times).unwrap_or_default();
    Ok(Duration::from_secs_f64(secs))
}

fn metrics(plain: &Listener, secure: &Listener) -> Vec<Metric> {
    let mut metrics = Vec::new();
    for (label, l) in [("plaintext", plain), ("sasl_ssl", secure)] {
        metrics.extend(l.produce.metrics(&format!("security_{label}_produce")));
        metrics.extend(l.consume.metrics(&format!("security_{label}_consume")));
        metrics.push(Metric::new(
            format!("security_{label}_handshake_ms"),
            "ms",
            l.handshake.as_secs_f64() * 1e3,
        ));
    }
    let rate = |t: &Throughput| t.records as f64 / t.elapsed.as_secs_f64().max(1e-9);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let produce = ratio(rate(&secure.produce), rate(&plain.produce));
    let consume = ratio(rate(&secure.consume), rate(&plain.consume));
    let handshake = ratio(
        secure.handshake.as_secs_f64(),
        plain.handshake.as_secs_f64(),
    );
    eprintln!(
        "security SASL_SSL / PLAINTEXT: produce {produce:.3}, consume {consume:.3}, handshake \
         {handshake:.1}x"
    );
    metrics.extend([
        Metric::new("security_produce_ratio", "x", produce).with_goal(Goal::AtLeast(GOAL_RATIO)),
        Metric::new("security_consume_ratio", "x", consume).with_goal(Goal::AtLeast(GOAL_RATIO)),
        Metric::new("security_handshake_ratio", "x", handshake),
    ]);
    metrics
}
