//! The two main Python Kafka clients against Runnel: `tests/compat/python_clients.py` runs
//! kafka-python (admin, gzip producer with acks=all, assign + seek consumer, end offsets) and
//! confluent-kafka (zstd and lz4 producers with headers, assign consumer, topic configs,
//! DescribeCluster, DeleteRecords, DeleteTopics) and exits non-zero naming the first mismatch.
//!
//! The interpreter is the virtualenv `target/pyclients` that `scripts/test-all.sh` sets up (or
//! `$RUNNEL_PYTHON`); without it the test fails and says how to create it.

use std::time::Duration;

use anyhow::Result;
use runnel_tests::BrokerOptions;
use runnel_tests::python;

/// The script's own backstop is 150 s; a healthy run takes a few seconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn given_kafka_python_and_confluent_kafka_when_running_the_compat_script_should_pass_every_check()
-> Result<()> {
    python::run_compat("python_clients.py", BrokerOptions::new(), SCRIPT_TIMEOUT)
}
