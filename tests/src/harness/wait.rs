//! Polling instead of sleeping: tests wait for a *condition*, bounded by a generous deadline, so
//! they are as fast as the broker allows and never assert how fast that is. Also how many
//! rounds the fault tests run ([`fault_iterations`]).

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How long to sleep between two probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `probe` until it returns `Ok(Some(value))` and returns that value.
///
/// `Ok(None)` means "not yet" and an `Err` is treated as "not yet" too (a broker that is still
/// starting answers with errors), but the last error and the last description of what was seen
/// are kept for the failure message, which names `what` was awaited.
///
/// This blocks the calling thread; the rdkafka calls that probes make are blocking anyway.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(error) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {error:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        thread::sleep(PROBE_INTERVAL);
    }
}

/// Rounds of kill -9 a fault test runs: `RUNNEL_FAULT_ITERATIONS`, else `default` (small, so
/// the suite stays fast; set the variable for longer runs).
pub fn fault_iterations(default: usize) -> Result<usize> {
    match std::env::var("RUNNEL_FAULT_ITERATIONS") {
        Ok(value) => value
            .parse()
            .map_err(|e| anyhow::anyhow!("RUNNEL_FAULT_ITERATIONS={value:?}: {e}")),
        Err(_) => Ok(default),
    }
}
