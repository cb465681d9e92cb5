//! DescribeLogDirs, which admin tools use for topic sizes: one log dir (the data directory)
//! whose partition sizes are the bytes stored, growing as records arrive and shrinking when
//! they are deleted, at every version the broker serves, raw and through `runnel-client`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsResult;
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use runnel_client::{Client, ClientConfig};
use runnel_tests::raw::{self, RawConnection};
use runnel_tests::{Broker, BrokerOptions, clients};

const TOPIC: &str = "sized";

/// (topic, partition) → partition_size.
type Sizes = BTreeMap<(String, i32), i64>;

/// Asks DescribeLogDirs at `version` and returns the single log dir it must answer.
fn describe(
    addr: SocketAddr,
    version: i16,
    topics: Option<Vec<DescribableLogDirTopic>>,
) -> Result<DescribeLogDirsResult> {
    let request = DescribeLogDirsRequest::default().with_topics(topics);
    let response = RawConnection::connect(addr)?.call(&request, version, 35)?;
    ensure!(
        response.error_code == 0,
        "v{version}: error {}",
        response.error_code
    );
    let [dir] = <[_; 1]>::try_from(response.results)
        .map_err(|r| anyhow::anyhow!("v{version}: {} log dirs, expected 1", r.len()))?;
    ensure!(
        dir.error_code == 0,
        "v{version}: dir error {}",
        dir.error_code
    );
    Ok(dir)
}

fn sizes(dir: &DescribeLogDirsResult) -> Result<Sizes> {
    let mut out = Sizes::new();
    for t in &dir.topics {
        for p in &t.partitions {
            ensure!(
                p.offset_lag == 0 && !p.is_future_key,
                "{}/{}: offset_lag {} future {}",
                t.name.as_str(),
                p.partition_index,
                p.offset_lag,
                p.is_future_key
            );
            out.insert((t.name.to_string(), p.partition_index), p.partition_size);
        }
    }
    Ok(out)
}

fn size_of(sizes: &Sizes, partition: i32) -> i64 {
    sizes
        .get(&(TOPIC.to_string(), partition))
        .copied()
        .unwrap_or(-1)
}

async fn produce(bootstrap: &str, partition: i32, count: usize) -> Result<()> {
    let producer = clients::producer(bootstrap, &[])?;
    let value = "x".repeat(200);
    clients::send_all(
        &producer,
        (0..count).map(|_| {
            FutureRecord::<(), _>::to(TOPIC)
                .payload(&value)
                .partition(partition)
        }),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn given_records_when_describing_log_dirs_should_report_growing_partition_sizes() -> Result<()>
{
    let broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let addr = broker.addr();
    let range = raw::api_versions(addr)?
        .into_iter()
        .find(|a| a.api_key == ApiKey::DescribeLogDirs as i16)
        .context("ApiVersions does not list DescribeLogDirs (35)")?;
    ensure!(
        (range.min_version, range.max_version) == (1, 4),
        "DescribeLogDirs advertised as {}..={}",
        range.min_version,
        range.max_version
    );

    let admin = clients::admin(&bootstrap)?;
    clients::create_topic(&admin, TOPIC, 2, &[]).await?;
    clients::create_topic(&admin, "other", 1, &[]).await?;
    let empty = sizes(&describe(addr, 4, None)?)?;
    ensure!(
        size_of(&empty, 0) == 0 && size_of(&empty, 1) == 0,
        "a new topic's sizes: {empty:?}"
    );

    produce(&bootstrap, 0, 50).await?;
    let mut first = None;
    for version in 1..=4 {
        let dir = describe(addr, version, None)?;
        ensure!(
            dir.log_dir.as_str() == broker.data_dir().to_string_lossy(),
            "v{version}: log dir {:?}, the data dir is {}",
            dir.log_dir.as_str(),
            broker.data_dir().display()
        );
        if version >= 4 {
            ensure!(
                dir.total_bytes > 0 && (0..=dir.total_bytes).contains(&dir.usable_bytes),
                "v4: total {} usable {}",
                dir.total_bytes,
                dir.usable_bytes
            );
        }
        let s = sizes(&dir)?;
        ensure!(
            s.contains_key(&("other".to_string(), 0)),
            "v{version}: a null topic list must describe every topic: {s:?}"
        );
        // 50 records of 200 bytes at least; partition 1 got nothing.
        ensure!(
            size_of(&s, 0) >= 50 * 200 && size_of(&s, 1) == 0,
            "v{version} sizes after 50 records: {s:?}"
        );
        first.get_or_insert(size_of(&s, 0));
    }
    let first = first.context("no version answered")?;

    produce(&bootstrap, 0, 50).await?;
    produce(&bootstrap, 1, 10).await?;
    let grown = sizes(&describe(addr, 4, None)?)?;
    ensure!(
        size_of(&grown, 0) >= first + 50 * 200 && size_of(&grown, 1) >= 10 * 200,
        "sizes after more records: {grown:?} (partition 0 had {first})"
    );

    // Named topics: only what exists, unknown topics and partitions left out.
    let named = |name: &str, partitions: Vec<i32>| {
        DescribableLogDirTopic::default()
            .with_topic(TopicName(StrBytes::from_string(name.to_string())))
            .with_partitions(partitions)
    };
    let only = sizes(&describe(
        addr,
        2,
        Some(vec![named(TOPIC, vec![1, 9]), named("missing", vec![0])]),
    )?)?;
    ensure!(
        only == Sizes::from([((TOPIC.to_string(), 1), size_of(&grown, 1))]),
        "named partitions: {only:?}"
    );

    // runnel-client's view, as the admin GUI uses it.
    let client = Client::new(ClientConfig::new(&bootstrap, "log-dirs-test"));
    let from_client = client
        .log_dir_sizes(&[TOPIC])
        .await?
        .context("the client says DescribeLogDirs is not served")?;
    let expected: BTreeMap<(String, i32), u64> = (0..2)
        .map(|p| ((TOPIC.to_string(), p), size_of(&grown, p) as u64))
        .collect();
    ensure!(
        from_client == expected,
        "client sizes {from_client:?}, broker {grown:?}"
    );

    // Deleting every record of partition 0 frees its batches.
    let mut all = TopicPartitionList::new();
    all.add_partition_offset(TOPIC, 0, Offset::End)?;
    admin
        .delete_records(&all, &clients::admin_options())
        .await?
        .find_partition(TOPIC, 0)
        .context("DeleteRecords result lacks the partition")?
        .error()
        .context("DeleteRecords")?;
    let trimmed = sizes(&describe(addr, 3, None)?)?;
    ensure!(
        size_of(&trimmed, 0) == 0,
        "partition 0 after deleting its records: {trimmed:?}"
    );
    Ok(())
}
