//! Consumer groups and idempotent producers with the two main Python Kafka clients:
//! `tests/compat/python_groups.py` runs one scenario with kafka-python and then with
//! confluent-kafka (idempotent producer with acks=all, two members that split six partitions
//! and hand them over when one leaves, a fresh member that resumes from the committed offsets,
//! and ListGroups/DescribeGroups/OffsetFetch/DeleteGroups through each library's admin client),
//! and exits non-zero naming the first mismatch.
//!
//! The interpreter is the virtualenv `target/pyclients` that `scripts/test-all.sh` sets up (or
//! `$RUNNEL_PYTHON`); without it the test fails and says how to create it.

use std::time::Duration;

use anyhow::Result;
use runnel_tests::BrokerOptions;
use runnel_tests::python;

/// The script's own backstop is 150 s; a healthy run takes about 15 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// A new group's first rebalance waits this long for more members; short, so tests run fast.
const INITIAL_REBALANCE_DELAY_MS: u64 = 100;
/// Lets the script's members ask for session timeouts of a few seconds.
const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;

#[test]
fn given_kafka_python_and_confluent_kafka_when_running_the_group_script_should_pass_every_check()
-> Result<()> {
    python::run_compat(
        "python_groups.py",
        BrokerOptions::new()
            .flag(
                "--group-initial-rebalance-delay-ms",
                INITIAL_REBALANCE_DELAY_MS,
            )
            .flag("--group-min-session-timeout-ms", MIN_SESSION_TIMEOUT_MS),
        SCRIPT_TIMEOUT,
    )
}
