//! Starting and configuring the binary: bad configuration exits with code 2 naming the key,
//! every flag can come from a `RUNNEL_*` environment variable.

use std::time::Duration;

use anyhow::{Result, ensure};
use rdkafka::consumer::Consumer;
use runnel_tests::{Broker, BrokerOptions, clients, run_to_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn given_a_malformed_flag_value_when_starting_should_exit_2_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_string_lossy().into_owned();
    let (status, output) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--max-message-bytes",
            "lots",
        ],
        &[],
        EXIT_TIMEOUT,
    )?;
    ensure!(
        status.code() == Some(2),
        "exit status {status}; output:\n{output}"
    );
    ensure!(
        output.contains("max-message-bytes"),
        "the message does not name the key:\n{output}"
    );
    Ok(())
}

#[test]
fn given_a_malformed_env_value_when_starting_should_exit_2_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_string_lossy().into_owned();
    let (status, output) = run_to_exit(
        &["--listen", "127.0.0.1:0"],
        &[
            ("RUNNEL_DATA_DIR", &data_dir),
            ("RUNNEL_DEFAULT_PARTITIONS", "many"),
        ],
        EXIT_TIMEOUT,
    )?;
    ensure!(
        status.code() == Some(2),
        "exit status {status}; output:\n{output}"
    );
    ensure!(
        output.contains("default-partitions")
            || output.contains("DEFAULT_PARTITIONS")
            || output.contains("default_partitions"),
        "the message does not name the key:\n{output}"
    );
    Ok(())
}

#[test]
fn given_zero_default_partitions_when_starting_should_exit_2_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().to_string_lossy().into_owned();
    let (status, output) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--default-partitions",
            "0",
        ],
        &[],
        EXIT_TIMEOUT,
    )?;
    ensure!(
        status.code() == Some(2),
        "exit status {status}; output:\n{output}"
    );
    ensure!(
        output.contains("default-partitions") || output.contains("default_partitions"),
        "the message does not name the key:\n{output}"
    );
    Ok(())
}

#[test]
fn given_env_vars_when_starting_should_use_them_like_flags() -> Result<()> {
    let broker = Broker::start(BrokerOptions::new().env("RUNNEL_DEFAULT_PARTITIONS", "3"))?;
    let consumer = clients::consumer(&broker.bootstrap(), &[("allow.auto.create.topics", "true")])?;
    // A Metadata request for an unknown topic auto-creates it with the default partition count.
    let partitions = runnel_tests::wait_until("auto-creation", Duration::from_secs(10), || {
        let metadata = consumer.fetch_metadata(Some("from-env"), clients::REQUEST_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == "from-env" && t.error().is_none())
            .map(|t| t.partitions().len()))
    })?;
    ensure!(partitions == 3, "auto-created with {partitions} partitions");
    Ok(())
}

#[test]
fn given_a_running_broker_when_sigterm_should_exit_0() -> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let status = broker.terminate()?;
    ensure!(status.code() == Some(0), "SIGTERM: exit status {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_waiting_fetch_and_a_producer_when_sigterm_should_exit_0_without_waiting_for_them()
-> Result<()> {
    let mut broker = Broker::start(BrokerOptions::new())?;
    let bootstrap = broker.bootstrap();
    let topic = "shutdown";
    clients::create_topic(&clients::admin(&bootstrap)?, topic, 1, &[]).await?;
    let producer = clients::producer(&bootstrap, &[])?;
    clients::send_one(
        &producer,
        rdkafka::producer::FutureRecord::<(), _>::to(topic).payload("x"),
    )
    .await?;
    // A fetch that may wait 30 s, longer than the harness gives a shutdown (20 s).
    let consumer = clients::consumer(
        &bootstrap,
        &[
            ("fetch.wait.max.ms", "30000"),
            ("socket.timeout.ms", "60000"),
        ],
    )?;
    clients::assign(&consumer, topic, &[(0, rdkafka::Offset::Offset(1))])?;
    clients::expect_nothing(&consumer, Duration::from_millis(1000))?;

    let status = broker.terminate()?;
    ensure!(
        status.code() == Some(0),
        "SIGTERM with clients connected: exit status {status}"
    );
    Ok(())
}

#[test]
fn given_a_config_file_when_starting_should_use_its_values() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("runnel.toml");
    std::fs::write(&config, "[topics]\ndefault_partitions = 2\n")?;
    let broker = Broker::start(BrokerOptions::new().flag("--config", config.display()))?;
    let consumer = clients::consumer(&broker.bootstrap(), &[("allow.auto.create.topics", "true")])?;
    let partitions = runnel_tests::wait_until("auto-creation", Duration::from_secs(10), || {
        let metadata = consumer.fetch_metadata(Some("from-file"), clients::REQUEST_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == "from-file" && t.error().is_none())
            .map(|t| t.partitions().len()))
    })?;
    ensure!(partitions == 2, "auto-created with {partitions} partitions");
    Ok(())
}

fn start_with_config_file(contents: &str) -> Result<(std::process::ExitStatus, String)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("runnel.toml");
    std::fs::write(&config, contents)?;
    let config = config.to_string_lossy().into_owned();
    let data_dir = dir.path().join("data").to_string_lossy().into_owned();
    run_to_exit(
        &[
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
        ],
        &[],
        EXIT_TIMEOUT,
    )
}

#[test]
fn given_a_config_file_with_a_wrongly_typed_value_when_starting_should_exit_2_naming_the_key()
-> Result<()> {
    let (status, output) = start_with_config_file("[topics]\ndefault_partitions = \"two\"\n")?;
    ensure!(
        status.code() == Some(2),
        "exit status {status}; output:\n{output}"
    );
    ensure!(
        output.contains("default_partitions"),
        "the message does not name the key:\n{output}"
    );
    Ok(())
}

#[test]
fn given_a_config_file_with_an_unknown_key_when_starting_should_exit_2_naming_the_key() -> Result<()>
{
    // A typo must not be silently ignored.
    let (status, output) = start_with_config_file("[topics]\ndefault_partitons = 2\n")?;
    ensure!(
        status.code() == Some(2),
        "exit status {status}; output:\n{output}"
    );
    ensure!(
        output.contains("default_partitons"),
        "the message does not name the key:\n{output}"
    );
    Ok(())
}
