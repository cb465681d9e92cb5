//! The Uplinks screen and the fleet overview against two real `runnel` processes: an edge with
//! an `[[uplink]]` to a central port where nothing listens yet, so the records produced to it
//! (with rdkafka) wait there; then the central broker starts on that port and the backlog
//! drains to "caught up" — all read through the real UI, the forwarded records checked on the
//! central broker with rdkafka. Last, the edge dies and the screen keeps its last values,
//! marked stale.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::state::count_label;
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::{Broker, BrokerOptions, clients};
use support::{TEST_TIMING, TEST_WINDOW, has_label};

const DEVICE: &str = "truck-042";
const RECORDS: usize = 300;
/// Long enough for the uplink to reconnect (its backoff is at most 500 ms here) and forward
/// everything, on a busy machine.
const DRAIN: Duration = Duration::from_secs(60);

/// An edge forwarding `gps` to the central broker on `port`, publishing its status often.
fn edge_config(port: u16) -> String {
    format!(
        r#"[[uplink]]
name = "central"
bootstrap = ["127.0.0.1:{port}"]
device_id = "{DEVICE}"
topics = ["gps"]
status_interval_ms = 300
retry_backoff_min_ms = 50
retry_backoff_max_ms = 500
request_timeout_ms = 3000
"#
    )
}

/// A config file in the temporary directory, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn write(body: &str) -> Result<ConfigFile> {
        let path = std::env::temp_dir().join(format!(
            "runnel-admin-uplinks-{}-{}.toml",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        std::fs::write(&path, body)?;
        Ok(ConfigFile(path))
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn wait_for(
    harness: &mut Harness<'_, AdminApp>,
    what: &str,
    probe: impl FnMut(&Harness<'_, AdminApp>) -> bool,
) -> Result<()> {
    support::wait_for(harness, what, Duration::from_secs(20), probe)
}

/// What the shown cluster knows about the uplink `central`: (backlog, connected).
fn uplink_state(h: &Harness<'_, AdminApp>) -> Option<(i64, bool)> {
    let app = h.state();
    let model = app.worker.model();
    let s = &model
        .clusters
        .get(&app.current()?)?
        .uplinks
        .get("central")?
        .value;
    Some((s.backlog_records, s.connected))
}

#[test]
fn given_an_uplink_whose_upstream_is_down_when_viewing_uplinks_should_show_the_backlog_until_it_drains()
-> Result<()> {
    let port = free_port()?;
    let config = ConfigFile::write(&edge_config(port))?;
    let mut edge = Broker::start(BrokerOptions::new().arg("--config").arg(&config.0))?;
    let bootstrap = edge.bootstrap();
    tokio::runtime::Runtime::new()?.block_on(async {
        let admin = clients::admin(&bootstrap)?;
        clients::create_topic(&admin, "gps", 1, &[]).await
    })?;
    support::produce(&bootstrap, "gps", RECORDS, 200)?;

    let mut harness = support::harness(support::app(TEST_TIMING)?, TEST_WINDOW);
    support::connect(&mut harness, "truck", &bootstrap);
    harness.state_mut().screen = Screen::Uplinks;
    let backlog = format!("{} records (", count_label(RECORDS as i64));
    wait_for(&mut harness, "the backlog, not connected", |h| {
        h.query_by_label("not connected").is_some()
            && has_label(h, &backlog)
            && h.query_by_label(DEVICE).is_some()
    })?;
    // The uplink's row and, once expanded, its partition's row show the same backlog.
    let backlog_label = harness
        .query_all_by_label_contains(&backlog)
        .next()
        .and_then(|n| n.accesskit_node().value())
        .context("the backlog's label")?;
    ensure!(
        uplink_state(&harness) == Some((RECORDS as i64, false)),
        "the uplink's status: {:?}",
        uplink_state(&harness)
    );
    {
        let model = harness.state().worker.model();
        let view = model.clusters.values().next().context("the cluster")?;
        let s = &view.uplinks.get("central").context("the uplink")?.value;
        ensure!(
            s.oldest_unforwarded_ms.is_some() && s.last_error.is_some(),
            "no oldest record or no last error while the upstream is down: {s:?}"
        );
        ensure!(
            s.partitions.len() == 1 && s.partitions[0].backlog_records == RECORDS as i64,
            "the partitions: {:?}",
            s.partitions
        );
    }
    // The partitions, expanded.
    ensure!(
        !has_label(&harness, "Partitions of central"),
        "partitions shown before expanding"
    );
    harness.get_by_label("[+] central").click();
    // Its one partition: the upstream partition is unknown until the upstream answers.
    wait_for(&mut harness, "the uplink's partitions", |h| {
        has_label(h, "[-] central")
            && has_label(h, "Partitions of central")
            && h.query_by_label("gps/0").is_some()
            && h.query_by_label("gps/?").is_some()
            && h.query_all_by_label(&backlog_label).count() == 2
    })?;

    // The fleet overview: which device still holds data.
    harness.state_mut().screen = Screen::Connections;
    let fleet = format!("{DEVICE} -> central: {}", backlog);
    wait_for(&mut harness, "the device's backlog in the fleet", |h| {
        // The fleet's line (the Uplinks screen is not shown).
        has_label(h, &fleet) && has_label(h, ", not connected")
    })?;

    // The central broker comes up on the uplink's port: everything goes, the backlog drains.
    let central = Broker::start(BrokerOptions::new().listen(format!("127.0.0.1:{port}")))?;
    support::wait_for(&mut harness, "the fleet to say caught up", DRAIN, |h| {
        has_label(h, &format!("{DEVICE} -> central: caught up"))
    })?;
    harness.state_mut().screen = Screen::Uplinks;
    // Forwarded: `300 (… KiB)`; the partition's row names its upstream partition now.
    let forwarded = format!("{} (", count_label(RECORDS as i64));
    wait_for(&mut harness, "connected and caught up", |h| {
        h.query_by_label("connected").is_some()
            && h.query_all_by_label("caught up").count() == 2
            && has_label(h, &forwarded)
            && h.query_all_by_label("gps/0").count() == 2
    })?;
    ensure!(
        uplink_state(&harness) == Some((0, true)),
        "the uplink's status: {:?}",
        uplink_state(&harness)
    );
    let consumer = clients::consumer(&central.bootstrap(), &[])?;
    let (low, high) = clients::watermarks(&consumer, "gps", 0)?;
    ensure!(
        high - low == RECORDS as i64,
        "the central broker holds {} records of gps",
        high - low
    );

    // The edge dies: the last status stays on screen, marked stale with its age.
    edge.kill9()?;
    wait_for(&mut harness, "the stale status record", |h| {
        has_label(h, "stale: ") && h.query_by_label("connected").is_some()
    })?;
    Ok(())
}
