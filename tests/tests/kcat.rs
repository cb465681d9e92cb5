//! `kcat` (an older librdkafka than the rdkafka crate's) against Runnel: produce lines with
//! kcat into an auto-created topic, read them back with kcat and with rdkafka, with every
//! codec, and read rdkafka-produced records (with headers) with kcat.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::Offset;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use runnel_tests::clients;
use runnel_tests::{Broker, BrokerOptions, kcat};

const LINES: usize = 25;

fn keyed_lines() -> String {
    (0..LINES)
        .map(|i| format!("k{i}:line number {i}\n"))
        .collect()
}

/// Parses kcat output printed with `-f '%o|%k|%s\n'`.
fn parse(output: &str) -> Result<Vec<(i64, String, String)>> {
    output
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, '|');
            let offset = parts.next().context("offset")?.parse()?;
            let key = parts.next().context("key")?.to_owned();
            let value = parts.next().with_context(|| format!("value in {line:?}"))?;
            Ok((offset, key, value.to_owned()))
        })
        .collect()
}

fn expected() -> Vec<(i64, String, String)> {
    (0..LINES)
        .map(|i| {
            (
                i64::try_from(i).unwrap_or(-1),
                format!("k{i}"),
                format!("line number {i}"),
            )
        })
        .collect()
}

#[test]
fn given_kcat_lines_in_an_auto_created_topic_when_consuming_should_read_them_with_kcat_and_rdkafka()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "kcat-lines";
    kcat::produce(&bootstrap, topic, None, &keyed_lines(), &["-K:"])?;

    let printed = kcat::consume(&bootstrap, topic, 0, "%o|%k|%s\n")?;
    let got = parse(&printed)?;
    ensure!(got == expected(), "kcat read back:\n{printed}");

    let consumer = clients::consumer(&bootstrap, &[])?;
    ensure!(
        clients::partition_count(&consumer, topic)? == 1,
        "auto-created with one partition"
    );
    clients::assign(&consumer, topic, &[(0, Offset::Beginning)])?;
    let records = clients::poll_records(&consumer, LINES, Duration::from_secs(20))?;
    let got: Vec<_> = records
        .iter()
        .map(|r| (r.offset, r.key_str(), r.value_str()))
        .collect();
    ensure!(got == expected(), "rdkafka read back {got:?}");
    Ok(())
}

#[test]
fn given_each_codec_when_kcat_produces_should_read_back_the_same_lines() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        kcat::produce(
            &bootstrap,
            &topic,
            Some(0),
            &keyed_lines(),
            &["-K:", "-z", codec],
        )
        .with_context(|| format!("producing with {codec}"))?;
        let printed = kcat::consume(&bootstrap, &topic, 0, "%o|%k|%s\n")?;
        ensure!(
            parse(&printed)? == expected(),
            "{codec}: kcat read back:\n{printed}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn given_rdkafka_records_with_headers_when_consuming_with_kcat_should_print_them()
-> Result<()> {
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "rdkafka-to-kcat";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    let keys: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    let values: Vec<String> = (0..5).map(|i| format!("from rdkafka {i}")).collect();
    let outgoing = keys.iter().zip(&values).map(|(key, value)| {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "h",
                value: Some("a"),
            })
            .insert(Header {
                key: "h",
                value: Some("b"),
            });
        FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(headers)
    });
    clients::send_all(&producer, outgoing).await?;

    let printed = kcat::consume(&bootstrap, topic, 0, "%o|%k|%s|%h\n")?;
    let expected: String = values
        .iter()
        .enumerate()
        .map(|(i, value)| format!("{i}|r{i}|{value}|h=a,h=b\n"))
        .collect();
    ensure!(
        printed == expected,
        "kcat printed:\n{printed}\nexpected:\n{expected}"
    );
    Ok(())
}
