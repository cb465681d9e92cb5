//! Telling systemd how the process is doing (`Type=notify` units in `deploy/systemd/`):
//! `READY=1` once serving, `STOPPING=1` on shutdown, and watchdog pings while the async
//! runtime is responsive. Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.
//!
//! Shared by both binaries: `runnel` depends on this crate for its embedded bridge.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Tells systemd the service is ready, with a one-line status.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::debug!(error = %e, "sd_notify READY failed");
    }
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// When the unit has `WatchdogSec=`, pings at half the interval until `shutdown`. The pings
/// come from a task on the runtime, so a stalled runtime stops them and systemd restarts the
/// service.
pub async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    loop {
        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
