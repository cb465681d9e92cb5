//! Store-and-forward uplinks between two real `runnel` processes on loopback: an edge with an
//! `[[uplink]]` table and a central broker on a fixed port that the tests stop, kill and
//! restart. Records are produced to the edge with rdkafka and read back from the central one
//! with rdkafka; every check counts each acknowledged record by its origin (partition, offset)
//! — carried in the `runnel.origin.*` headers — and demands it exactly once, in order.
//!
//! Rounds of kill -9: `RUNNEL_FAULT_ITERATIONS` (default 4).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use runnel_client::{Client, ClientConfig, FetchOptions, SecurityConfig, TlsSettings};
use runnel_tests::harness::clients::Record;
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;
use runnel_tests::harness::socat::{TlsTerminator, TlsTerminatorOptions};
use runnel_tests::{Broker, BrokerOptions, clients, run_to_exit, wait_until};

const DEVICE: &str = "truck-7";

/// The value and key of an acknowledged record, by origin `(partition, offset)`.
type Acked = BTreeMap<(i32, i64), (String, String)>;

fn write_config(dir: &Path, body: &str) -> Result<String> {
    let path = dir.join("edge.toml");
    std::fs::write(&path, body)?;
    Ok(path.to_string_lossy().into_owned())
}

/// An edge config forwarding `gps` and `sensors.*` to the central broker on `port`.
fn edge_config(port: u16, extra_uplink: &str, extra_top: &str) -> String {
    format!(
        r#"{extra_top}
[topics]
default_partitions = 3

[[uplink]]
name = "central"
bootstrap = ["127.0.0.1:{port}"]
device_id = "{DEVICE}"
topics = ["gps", "sensors.*"]
remote_topic = "trucks.${{device_id}}.${{topic}}"
status_interval_ms = 300
retry_backoff_min_ms = 50
retry_backoff_max_ms = 500
request_timeout_ms = 5000
{extra_uplink}
"#
    )
}

fn central_options(port: u16) -> BrokerOptions {
    BrokerOptions::new().listen(format!("127.0.0.1:{port}"))
}

fn start_edge(dir: &Path, config: &str) -> Result<Broker> {
    let path = write_config(dir, config)?;
    Broker::start(BrokerOptions::new().arg("--config").arg(path))
}

/// Produces `count` keyed records to `topic` on the edge; returns what was acknowledged.
fn produce(
    bootstrap: &str,
    topic: &str,
    from: usize,
    count: usize,
    value_bytes: usize,
) -> Result<Acked> {
    let producer = clients::producer(
        bootstrap,
        &[("linger.ms", "5"), ("message.timeout.ms", "120000")],
    )?;
    let records: Vec<(String, String)> = (from..from + count)
        .map(|i| {
            let key = format!("truck-{}", i % 5);
            let mut value = format!("{{\"seq\":{i},\"pad\":\"");
            value.push_str(&"x".repeat(value_bytes.saturating_sub(value.len() + 2)));
            value.push_str("\"}");
            (key, value)
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new()?;
    let deliveries = runtime.block_on(clients::send_all(
        &producer,
        records
            .iter()
            .map(|(k, v)| FutureRecord::to(topic).key(k.as_str()).payload(v.as_str())),
    ))?;
    let mut acked = Acked::new();
    for (delivery, (k, v)) in deliveries.into_iter().zip(records) {
        acked.insert((delivery.partition, delivery.offset), (k, v));
    }
    Ok(acked)
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

fn origin(r: &Record) -> Result<(i32, i64)> {
    let text = |name: &str| -> Result<String> {
        Ok(String::from_utf8(
            header(r, name)
                .with_context(|| format!("no {name} header on {r:?}"))?
                .to_vec(),
        )?)
    };
    ensure!(
        text("runnel.origin.device")? == DEVICE,
        "wrong device header on {r:?}"
    );
    Ok((
        text("runnel.origin.partition")?.parse()?,
        text("runnel.origin.offset")?.parse()?,
    ))
}

/// Records in all partitions of `topic` on `bootstrap` (0 if it does not exist yet).
fn record_count(bootstrap: &str, topic: &str) -> Result<i64> {
    record_count_with(bootstrap, &[], topic)
}

fn record_count_with(bootstrap: &str, overrides: &[(&str, &str)], topic: &str) -> Result<i64> {
    let consumer = clients::consumer(bootstrap, overrides)?;
    let Ok(partitions) = clients::partition_count(&consumer, topic) else {
        return Ok(0);
    };
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = clients::watermarks(&consumer, topic, p)?;
        total += high - low;
    }
    Ok(total)
}

fn wait_for_count(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Result<()> {
    wait_for_count_with(bootstrap, &[], topic, count, timeout)
}

fn wait_for_count_with(
    bootstrap: &str,
    overrides: &[(&str, &str)],
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<()> {
    wait_until(&format!("{count} records in {topic}"), timeout, || {
        let n = record_count_with(bootstrap, overrides, topic)?;
        ensure!(
            n <= count as i64,
            "{topic} holds {n} records, more than the {count} acknowledged"
        );
        Ok((n == count as i64).then_some(()))
    })
}

/// Every acknowledged record is upstream exactly once, in the same partition, in origin
/// order, with its key and value. Returns how many records the upstream holds.
fn check_exactly_once(central: &str, topic: &str, acked: &Acked) -> Result<usize> {
    check_exactly_once_with(central, &[], topic, acked)
}

fn check_exactly_once_with(
    central: &str,
    overrides: &[(&str, &str)],
    topic: &str,
    acked: &Acked,
) -> Result<usize> {
    let records = clients::consume_all_with(central, overrides, topic, Duration::from_secs(120))?;
    let mut seen: HashMap<(i32, i64), usize> = HashMap::new();
    let mut last_in_partition: HashMap<i32, i64> = HashMap::new();
    for r in &records {
        let (partition, offset) = origin(r)?;
        ensure!(
            r.partition == partition,
            "origin partition {partition} landed in upstream partition {}",
            r.partition
        );
        if let Some(prev) = last_in_partition.insert(partition, offset) {
            ensure!(
                offset > prev,
                "partition {partition}: origin offset {offset} after {prev} (order or duplicate)"
            );
        }
        *seen.entry((partition, offset)).or_default() += 1;
        let (key, value) = acked.get(&(partition, offset)).with_context(|| {
            format!("upstream holds {partition}/{offset}, which was never acknowledged")
        })?;
        ensure!(
            &r.key_str() == key && &r.value_str() == value,
            "{partition}/{offset} arrived changed"
        );
    }
    let missing: Vec<_> = acked
        .keys()
        .filter(|k| !seen.contains_key(k))
        .take(5)
        .collect();
    ensure!(
        missing.is_empty(),
        "{} acknowledged records missing upstream, e.g. {missing:?}",
        acked.len() - seen.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    ensure!(
        twice.is_empty(),
        "records upstream more than once: {twice:?}"
    );
    Ok(records.len())
}

/// The newest status record of the `central` uplink on the edge.
fn status(edge: &str) -> Result<serde_json::Value> {
    let records = clients::consume_all(edge, "__runnel_uplink_status", Duration::from_secs(30))?;
    let last = records
        .iter()
        .filter(|r| r.key_str() == "central")
        .max_by_key(|r| r.offset)
        .context("no status record for uplink central")?;
    Ok(serde_json::from_slice(
        last.value.as_deref().unwrap_or_default(),
    )?)
}

#[test]
fn given_central_down_when_100k_records_are_produced_should_deliver_all_once_in_order_when_it_starts()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let edge = start_edge(dir.path(), &edge_config(port, "", ""))?;
    let acked = produce(&edge.bootstrap(), "gps", 0, 100_000, 100)?;
    ensure!(acked.len() == 100_000);
    let waiting = status_when(&edge.bootstrap(), "a backlog of 100000 and no link", |s| {
        s["backlog_records"] == 100_000 && s["connected"] == false
    })?;
    ensure!(
        waiting["oldest_unforwarded_age_ms"].as_i64().unwrap_or(0) > 0,
        "no backlog age in {waiting}"
    );
    let started = Instant::now();
    let central = Broker::start(central_options(port))?;
    let topic = format!("trucks.{DEVICE}.gps");
    wait_for_count(
        &central.bootstrap(),
        &topic,
        acked.len(),
        Duration::from_secs(180),
    )?;
    let drained = started.elapsed();
    check_exactly_once(&central.bootstrap(), &topic, &acked)?;
    let s = status_when(&edge.bootstrap(), "an empty backlog", |s| {
        s["backlog_records"] == 0 && s["connected"] == true
    })?;
    ensure!(s["forwarded_records"] == 100_000, "status: {s}");
    ensure!(
        s["dropped_records"] == 0 && s["possible_duplicates"] == 0,
        "status: {s}"
    );
    eprintln!("100k records drained in {drained:?} (including the central broker's start)");
    Ok(())
}

/// Waits for a status record of the `central` uplink that satisfies `ok`.
fn status_when(
    edge: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let mut last = None;
    let found = wait_until(
        &format!("uplink status with {what}"),
        Duration::from_secs(120),
        || {
            let s = status(edge)?;
            let good = ok(&s);
            last = Some(s.clone());
            Ok(good.then_some(s))
        },
    );
    found.with_context(|| {
        format!(
            "last status: {}",
            last.map(|s| s.to_string()).unwrap_or_default()
        )
    })
}

#[test]
fn given_repeated_kill_9_of_the_edge_mid_forward_should_deliver_every_record_exactly_once()
-> Result<()> {
    let rounds = runnel_tests::harness::wait::fault_iterations(4)?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let central = Broker::start(central_options(port))?;
    // A bandwidth cap keeps forwarding going long enough for the kills to land mid-batch.
    let config = edge_config(
        port,
        "max_bytes_per_sec = 1500000\nmax_batch_bytes = 65536\ncompression = \"none\"",
        "",
    );
    let mut edge = start_edge(dir.path(), &config)?;
    let mut acked = Acked::new();
    let topic = format!("trucks.{DEVICE}.gps");
    for round in 0..rounds {
        acked.extend(produce(
            &edge.bootstrap(),
            "gps",
            round * 20_000,
            20_000,
            150,
        )?);
        let forwarded = record_count(&central.bootstrap(), &topic)?;
        // Let some of this round's records go, then kill the edge while it forwards.
        wait_until("forwarding to resume", Duration::from_secs(60), || {
            Ok((record_count(&central.bootstrap(), &topic)? > forwarded + 2_000).then_some(()))
        })?;
        edge.kill9()?;
        edge.restart()?;
    }
    wait_for_count(
        &central.bootstrap(),
        &topic,
        acked.len(),
        Duration::from_secs(240),
    )?;
    check_exactly_once(&central.bootstrap(), &topic, &acked)?;
    let log = edge.log();
    ensure!(
        !log.contains("panicked"),
        "the edge panicked:\n{}",
        edge.log_tail(40)
    );
    Ok(())
}

#[test]
fn given_the_link_cut_under_continuous_produce_should_deliver_everything_once_after_it_returns()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut central = Broker::start(central_options(port))?;
    let edge = start_edge(dir.path(), &edge_config(port, "", ""))?;
    let bootstrap = edge.bootstrap();
    let producing = std::thread::spawn(move || -> Result<Acked> {
        let mut acked = Acked::new();
        for batch in 0..30 {
            acked.extend(produce(
                &bootstrap,
                "sensors.temp",
                batch * 2_000,
                2_000,
                80,
            )?);
            std::thread::sleep(Duration::from_millis(150));
        }
        Ok(acked)
    });
    std::thread::sleep(Duration::from_millis(1500));
    central.kill9()?;
    let offline = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&edge.bootstrap())?;
    ensure!(
        s["connected"] == false || offline.elapsed() < Duration::from_secs(2),
        "still connected: {s}"
    );
    central.restart()?;
    let acked = producing
        .join()
        .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    let topic = format!("trucks.{DEVICE}.sensors.temp");
    wait_for_count(
        &central.bootstrap(),
        &topic,
        acked.len(),
        Duration::from_secs(180),
    )?;
    check_exactly_once(&central.bootstrap(), &topic, &acked)?;
    Ok(())
}

#[test]
fn given_a_full_disk_while_the_link_is_down_should_drop_the_oldest_unforwarded_records_and_count_them()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let metrics_port = free_port()?;
    let top = format!(
        "[server]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n[storage]\nmax_disk_bytes = 12582912\n"
    );
    let edge = start_edge(dir.path(), &edge_config(port, "", &top))?;
    // About 3x the budget: the disk fills, relief deletes the oldest records, producers retry.
    let acked = produce(&edge.bootstrap(), "gps", 0, 36_000, 1_000)?;
    ensure!(acked.len() == 36_000);
    ensure!(
        edge.log()
            .contains("deleted the oldest records not yet forwarded"),
        "no relief logged:\n{}",
        edge.log_tail(30)
    );
    let central = Broker::start(central_options(port))?;
    let s = status_when(&edge.bootstrap(), "the backlog forwarded", |s| {
        s["backlog_records"] == 0 && s["connected"] == true
    })?;
    let dropped = s["dropped_records"].as_u64().context("dropped_records")?;
    let topic = format!("trucks.{DEVICE}.gps");
    let records = clients::consume_all(&central.bootstrap(), &topic, Duration::from_secs(120))?;
    ensure!(dropped > 0, "nothing was dropped: {s}");
    ensure!(
        records.len() as u64 + dropped == acked.len() as u64,
        "{} arrived + {dropped} dropped != {} acknowledged",
        records.len(),
        acked.len()
    );
    // What arrived is the newest part of each partition, without gaps, exactly once.
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &records {
        let (p, o) = origin(r)?;
        by_partition.entry(p).or_default().push(o);
    }
    for (p, offsets) in &by_partition {
        let end = acked
            .keys()
            .filter(|(ap, _)| ap == p)
            .map(|(_, o)| *o)
            .max()
            .unwrap_or(-1);
        let first = offsets[0];
        let expected: Vec<i64> = (first..=end).collect();
        ensure!(
            offsets == &expected,
            "partition {p}: arrived offsets are not the contiguous newest {first}..={end}"
        );
    }
    let metrics = http_get(metrics_port, "/metrics")?;
    let line = format!("runnel_uplink_dropped_records_total{{uplink=\"central\"}} {dropped}");
    ensure!(metrics.contains(&line), "metrics lack {line:?}:\n{metrics}");
    Ok(())
}

#[test]
fn given_a_template_and_headers_should_map_names_keep_record_fields_and_forward_only_selected_topics()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let central = Broker::start(central_options(port))?;
    let edge = start_edge(dir.path(), &edge_config(port, "", ""))?;
    let producer = clients::producer(&edge.bootstrap(), &[])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: "unit",
            value: Some("celsius"),
        })
        .insert(rdkafka::message::Header {
            key: "empty",
            value: None::<&str>,
        });
    runtime.block_on(clients::send_one(
        &producer,
        FutureRecord::to("sensors.temp")
            .key("engine")
            .payload("81.5")
            .timestamp(1_700_000_000_123)
            .headers(headers),
    ))?;
    runtime.block_on(clients::send_one(
        &producer,
        FutureRecord::to("other").key("x").payload("not forwarded"),
    ))?;
    let remote = format!("trucks.{DEVICE}.sensors.temp");
    wait_for_count(&central.bootstrap(), &remote, 1, Duration::from_secs(60))?;
    let records = clients::consume_all(&central.bootstrap(), &remote, Duration::from_secs(30))?;
    let r = records.first().context("one record")?;
    ensure!(r.key_str() == "engine" && r.value_str() == "81.5", "{r:?}");
    ensure!(
        r.timestamp.to_millis() == Some(1_700_000_000_123),
        "timestamp {:?}",
        r.timestamp
    );
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
    ensure!(
        names
            == [
                "unit",
                "empty",
                "runnel.origin.device",
                "runnel.origin.topic",
                "runnel.origin.partition",
                "runnel.origin.offset"
            ],
        "headers {names:?}"
    );
    ensure!(header(r, "unit") == Some(b"celsius".as_slice()) && header(r, "empty").is_none());
    ensure!(header(r, "runnel.origin.topic") == Some(b"sensors.temp".as_slice()));
    // Time for `other` to have been forwarded if it were selected.
    std::thread::sleep(Duration::from_secs(2));
    let consumer = clients::consumer(&central.bootstrap(), &[])?;
    let listed = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let names: Vec<String> = listed
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    ensure!(
        !names.iter().any(|n| n.ends_with(".other")),
        "an unselected topic was forwarded: {names:?}"
    );
    Ok(())
}

#[test]
fn given_a_bad_uplink_table_should_refuse_to_start_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config =
        edge_config(9, "", "").replace("trucks.${device_id}.${topic}", "trucks.${region}.${topic}");
    let path = write_config(dir.path(), &config)?;
    let (status, output) = run_to_exit(
        &["--config", &path, "--check-config"],
        &[],
        Duration::from_secs(20),
    )?;
    if status.code() != Some(2) {
        bail!("expected exit code 2, got {status:?}: {output}");
    }
    ensure!(
        output.contains("remote_topic") && output.contains("${region}"),
        "{output}"
    );
    Ok(())
}

#[test]
fn given_a_central_broker_behind_mutual_tls_should_forward_over_tls_with_the_client_certificate()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::generate(dir.path())?;
    let (cert, key) = pki.client_cert("truck-7")?;
    let tls_port = free_port()?;
    // The central broker is reachable only through TLS: it advertises the terminator's port.
    let central = Broker::start(
        BrokerOptions::new().flag("--advertised-listener", format!("127.0.0.1:{tls_port}")),
    )?;
    let _proxy = TlsTerminator::start(TlsTerminatorOptions {
        port: tls_port,
        target_port: central.addr().port(),
        pki: pki.clone(),
        require_client_cert: true,
    })?;
    let tls = format!(
        "[uplink.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nserver_name = \"localhost\"\n",
        pki.ca.display(),
        cert.display(),
        key.display()
    );
    let edge = start_edge(dir.path(), &edge_config(tls_port, &tls, ""))?;
    let acked = produce(&edge.bootstrap(), "gps", 0, 5_000, 100)?;
    let topic = format!("trucks.{DEVICE}.gps");
    // The broker advertises only the TLS port, and the test's rdkafka has no OpenSSL: read it
    // back over TLS with runnel-client.
    let mut config = ClientConfig::new(format!("127.0.0.1:{tls_port}"), "uplink-test");
    config.security = SecurityConfig {
        tls: Some(TlsSettings {
            ca_file: Some(pki.ca.clone()),
            cert_file: Some(cert),
            key_file: Some(key),
            server_name: Some("localhost".into()),
        }),
        sasl: None,
    };
    let client = Client::try_new(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut seen: BTreeMap<(i32, i64), (String, String)> = BTreeMap::new();
    wait_until(
        "every record upstream, read over TLS",
        Duration::from_secs(120),
        || {
            seen.clear();
            for partition in 0..3 {
                let mut offset = 0;
                loop {
                    let fetched = runtime.block_on(client.fetch(
                        &topic,
                        partition,
                        offset,
                        FetchOptions::default(),
                    ))?;
                    for r in &fetched.records {
                        let text = |name: &str| -> Result<String> {
                            let found = r
                                .headers
                                .iter()
                                .find(|(k, _)| k == name)
                                .and_then(|(_, v)| v.clone());
                            Ok(String::from_utf8(
                                found.with_context(|| format!("no {name}"))?.to_vec(),
                            )?)
                        };
                        let origin = (
                            text("runnel.origin.partition")?.parse()?,
                            text("runnel.origin.offset")?.parse()?,
                        );
                        let kv = (
                            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default())
                                .into_owned(),
                            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                                .into_owned(),
                        );
                        ensure!(
                            seen.insert(origin, kv).is_none(),
                            "{origin:?} upstream twice"
                        );
                        offset = r.offset + 1;
                    }
                    if fetched.records.is_empty() || offset >= fetched.high_watermark {
                        break;
                    }
                }
            }
            Ok((seen.len() == acked.len()).then_some(()))
        },
    )?;
    ensure!(
        seen == acked,
        "what arrived over TLS differs from what was acknowledged"
    );
    Ok(())
}

#[test]
fn given_a_closed_window_should_hold_records_and_given_a_cap_should_not_exceed_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let central = Broker::start(central_options(port))?;
    // A one-minute window twelve hours away from now (UTC) is closed for the whole test.
    let now_min = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 60)
        % 1440;
    let start = (now_min + 720) % 1440;
    let window = format!(
        "window = \"{:02}:{:02}-{:02}:{:02}\"",
        start / 60,
        start % 60,
        (start + 1) % 1440 / 60,
        (start + 1) % 60
    );
    let closed = start_edge(dir.path(), &edge_config(port, &window, ""))?;
    produce(&closed.bootstrap(), "gps", 0, 1_000, 100)?;
    let s = status_when(&closed.bootstrap(), "the window closed", |s| {
        s["window_open"] == false && s["backlog_records"] == 1_000
    })?;
    ensure!(
        s["forwarded_records"] == 0,
        "forwarded outside the window: {s}"
    );
    ensure!(
        record_count(&central.bootstrap(), &format!("trucks.{DEVICE}.gps"))? == 0,
        "records upstream outside the window"
    );
    drop(closed);

    // 1.5 MB through a 500 kB/s cap: the first second's budget is free, the rest is paid for.
    let dir = tempfile::tempdir()?;
    let capped = start_edge(
        dir.path(),
        &edge_config(
            port,
            "max_bytes_per_sec = 500000\ncompression = \"none\"\nmax_batch_bytes = 65536",
            "",
        ),
    )?;
    let acked = produce(&capped.bootstrap(), "sensors.cap", 0, 10_000, 150)?;
    let started = Instant::now();
    let topic = format!("trucks.{DEVICE}.sensors.cap");
    wait_for_count(
        &central.bootstrap(),
        &topic,
        acked.len(),
        Duration::from_secs(120),
    )?;
    let took = started.elapsed();
    let s = status(&capped.bootstrap())?;
    let bytes = s["forwarded_bytes"].as_f64().context("forwarded_bytes")?;
    let floor = Duration::from_secs_f64((bytes - 500_000.0).max(0.0) / 500_000.0 * 0.9);
    ensure!(
        took >= floor,
        "{bytes} bytes forwarded in {took:?}, faster than the cap allows ({floor:?})"
    );
    check_exactly_once(&central.bootstrap(), &topic, &acked)?;
    Ok(())
}

fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}
