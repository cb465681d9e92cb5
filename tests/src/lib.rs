//! Integration-test harness for Runnel.
//!
//! Every test in `tests/tests/` runs against the real `runnel` binary, started as a child process
//! on a free loopback port with its own data directory, and talks to it with real Kafka clients
//! (rdkafka, `kcat`, kafka-python, confluent-kafka) or, for the few checks no client can make,
//! with requests encoded by the `kafka-protocol` crate (or deliberately broken frames) over a
//! plain TCP socket. Nothing is mocked.
//!
//! Build the broker before running the suite (the tests do not build it for you):
//!
//! ```text
//! cargo build -p runnel-broker && cargo test -p runnel-tests
//! ```
//!
//! Environment knobs: `RUNNEL_BIN` (path of the broker binary), `KCAT_BIN` (path of `kcat`),
//! `RUNNEL_PYTHON` (a python with kafka-python and confluent-kafka; default the virtualenv
//! `target/pyclients` that `scripts/test-all.sh` creates),
//! `RUNNEL_FAULT_ITERATIONS` (kill -9 rounds in the crash and bridge fault tests),
//! `RUNNEL_POWER_LOSS_ITERATIONS` (default 200) and `RUNNEL_POWER_LOSS_SEED` (power_loss.rs),
//! `RUNNEL_BRIDGE_BIN` (path of `runnel-bridge`).

pub mod harness;

pub use harness::binary::{run_to_exit, runnel_bin};
pub use harness::broker::{Broker, BrokerOptions};
pub use harness::clients;
pub use harness::groups;
pub use harness::kcat;
pub use harness::python;
pub use harness::raw;
pub use harness::wait::wait_until;
